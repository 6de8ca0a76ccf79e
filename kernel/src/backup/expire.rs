//! Which backups `expire` removes.
//!
//! A volume's policy for one kind (`backup_full` or `backup_increment`) may say `expire: 7d`:
//! after each backup of that kind, the backups of that kind of that volume that started more
//! than that long ago are removed, their snapshots forgotten and pruned. Two are always kept,
//! whatever their age: the volume's newest successful full backup, and its newest successful
//! backup of any kind (the parent of the next incremental one).

use super::{BackupRecord, Kind, Outcome};

/// `expire` (`<n>m`, `<n>h` or `<n>d`, as `lain validate` checks it) in seconds.
pub fn parse(expire: &str) -> Option<i64> {
    let unit = match expire.chars().last()? {
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: i64 = expire[..expire.len() - 1].parse().ok()?;
    n.checked_mul(unit).filter(|s| *s > 0)
}

/// The ids among `records` (the backups of one volume) that expire at `now` under a policy of
/// kind `kind` keeping backups `keep_secs` seconds. Running backups never expire.
pub fn due(records: &[BackupRecord], kind: Kind, keep_secs: i64, now: i64) -> Vec<u64> {
    let succeeded = |r: &&BackupRecord| r.outcome == Outcome::Succeeded && r.snapshot.is_some();
    let newest_full = records
        .iter()
        .filter(succeeded)
        .filter(|r| r.kind == Kind::Full)
        .max_by_key(|r| (r.started_at, r.id))
        .map(|r| r.id);
    let newest = records
        .iter()
        .filter(succeeded)
        .max_by_key(|r| (r.started_at, r.id))
        .map(|r| r.id);
    records
        .iter()
        .filter(|r| r.kind == kind && r.outcome != Outcome::Running)
        .filter(|r| r.started_at.saturating_add(keep_secs) < now)
        .filter(|r| Some(r.id) != newest_full && Some(r.id) != newest)
        .map(|r| r.id)
        .collect()
}

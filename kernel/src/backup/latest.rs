//! How each app's backups stand, from the latest finished backup of each of its volumes: what
//! `lain app list` shows without reading an app's records on every request.
//!
//! An app's entry is built from its records the first time it is asked for (after a kernel
//! start, or after a record of it was deleted) and then kept up to date as backups end.

use super::{BackupRecord, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// How an app's backups stand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupState {
    /// `failed` or `interrupted` when the latest finished backup of one of the app's volumes
    /// ended so (the most recent such backup is shown); else how the app's most recent finished
    /// backup ended (`succeeded`, `skipped`).
    pub outcome: Outcome,
    /// That backup's id.
    pub id: u64,
    /// When it ended (Unix seconds).
    pub ended_at: Option<i64>,
    /// Its proc.
    pub proc: String,
    /// Its instance number.
    pub instance: u32,
    /// Its volume's path in the instance.
    pub volume: String,
    /// What went wrong.
    pub error: Option<String>,
    /// Volumes whose latest finished backup failed or was interrupted.
    pub failing: u32,
}

/// A volume of an app: proc, instance, path.
type Volume = (String, u32, String);

/// The latest finished backup of each volume, for the apps asked about so far.
#[derive(Default)]
pub(super) struct Latest(parking_lot::Mutex<HashMap<String, BTreeMap<Volume, BackupRecord>>>);

/// Whether `outcome` is a backup that did not give a snapshot it should have.
fn failing(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Failed | Outcome::Interrupted)
}

/// Keeps `r` in `volumes` if it is the latest finished backup of its volume.
fn keep(volumes: &mut BTreeMap<Volume, BackupRecord>, r: &BackupRecord) {
    if r.outcome == Outcome::Running {
        return;
    }
    let key = (r.proc.clone(), r.instance, r.volume.clone());
    if volumes.get(&key).is_none_or(|old| old.id <= r.id) {
        volumes.insert(key, r.clone());
    }
}

impl Latest {
    /// How `app`'s backups stand (none when no backup of it ended); `load` reads the app's
    /// records when the app's entry is not built yet.
    pub fn state<E>(
        &self,
        app: &str,
        load: impl FnOnce() -> Result<Vec<BackupRecord>, E>,
    ) -> Result<Option<BackupState>, E> {
        let mut apps = self.0.lock();
        if !apps.contains_key(app) {
            let mut volumes = BTreeMap::new();
            for r in load()? {
                keep(&mut volumes, &r);
            }
            apps.insert(app.to_string(), volumes);
        }
        let Some(volumes) = apps.get(app) else {
            return Ok(None);
        };
        let n = volumes.values().filter(|r| failing(r.outcome)).count();
        let shown = volumes
            .values()
            .filter(|r| n == 0 || failing(r.outcome))
            .max_by_key(|r| r.id);
        Ok(shown.map(|r| BackupState {
            outcome: r.outcome,
            id: r.id,
            ended_at: r.ended_at,
            proc: r.proc.clone(),
            instance: r.instance,
            volume: r.volume.clone(),
            error: r.error.clone(),
            failing: n as u32,
        }))
    }

    /// Takes in a backup that ended (after its record was written).
    pub fn ended(&self, r: &BackupRecord) {
        if let Some(volumes) = self.0.lock().get_mut(&r.app) {
            keep(volumes, r);
        }
    }

    /// Drops `app`'s entry (after records of it were deleted): the next ask rebuilds it.
    pub fn forget(&self, app: &str) {
        self.0.lock().remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::tests::record;
    use crate::backup::{Kind, Outcome::*};

    fn at(id: u64, volume: &str, outcome: Outcome) -> BackupRecord {
        BackupRecord {
            volume: volume.into(),
            error: failing(outcome).then(|| format!("error {id}")),
            ..record(id, Kind::Full, outcome, id as i64)
        }
    }

    fn state(latest: &Latest, records: &[BackupRecord]) -> Option<BackupState> {
        let records = records.to_vec();
        latest
            .state("a", move || Ok::<_, ()>(records))
            .expect("loads")
    }

    #[test]
    fn a_volume_whose_latest_backup_failed_shows_until_a_later_one_succeeds() {
        let latest = Latest::default();
        assert_eq!(state(&latest, &[]), None);
        latest.forget("a");
        let records = [
            at(1, "/data", Succeeded),
            at(2, "/logs", Failed),
            at(3, "/data", Succeeded),
            at(4, "/data", Running),
        ];
        let s = state(&latest, &records).expect("a state");
        assert_eq!((s.outcome, s.id, s.failing), (Failed, 2, 1));
        assert_eq!(
            (s.volume.as_str(), s.error.as_deref()),
            ("/logs", Some("error 2"))
        );
        // Built once: later records arrive through `ended`, not by loading again.
        latest.ended(&at(5, "/data", Interrupted));
        let s = latest
            .state("a", || Err("loaded again"))
            .expect("kept")
            .expect("a state");
        assert_eq!((s.outcome, s.id, s.failing), (Interrupted, 5, 2));
        latest.ended(&at(6, "/logs", Succeeded));
        latest.ended(&at(7, "/data", Skipped));
        let s = latest.state("a", || Err("loaded again")).expect("kept");
        assert_eq!(
            s.map(|s| (s.outcome, s.id, s.failing)),
            Some((Skipped, 7, 0))
        );
        // A record deleted: the app is read again.
        latest.forget("a");
        assert_eq!(latest.state("a", || Err("read again")), Err("read again"));
    }
}

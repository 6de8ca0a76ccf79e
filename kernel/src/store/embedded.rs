//! The embedded default store: one redb database file in the data dir.
//!
//! Besides the keys (`kv`) and the revision (`meta`), every commit appends its changes to a
//! `changes` table keyed by (revision, index), trimmed to the last [`DEFAULT_LOG_RETENTION`]
//! revisions, so a watcher can resume from a recent revision even after a restart. Live
//! watchers get committed changes through an in-process broadcast.

use super::{Change, Expect, Op, Store, StoreError, Watch, compacted, last_op_per_key};
use parking_lot::Mutex;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::path::Path;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Weak};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// A change-log key: (revision, index of the change in its apply).
type LogKey = (u64, u32);
/// A change-log entry: the key and its new value, `None` for a delete.
type LogEntry<'a> = (&'a str, Option<&'a [u8]>);
/// The change log, trimmed to the retained revisions.
const CHANGES: TableDefinition<LogKey, LogEntry> = TableDefinition::new("changes");
const REVISION: &str = "revision";
/// The newest revision no longer in the change log (watches must start at or after it).
const LOG_FLOOR: &str = "log_floor";

/// How many revisions of history the change log keeps by default.
pub const DEFAULT_LOG_RETENTION: u64 = 10_000;

/// A redb-backed [`Store`]. Commits are durable (fsync) before `apply` returns.
pub struct EmbeddedStore {
    db: Database,
    retention: u64,
    /// The live watchers. The lock is also held across each whole apply, so a new watcher's
    /// catch-up read and its registration see each commit exactly once.
    watchers: Mutex<Vec<Watcher>>,
}

/// One live watcher: where its changes go and what it wants.
struct Watcher {
    prefix: String,
    from: u64,
    tx: Sender<Result<Change, StoreError>>,
    /// Dead once the [`Watch`] (which holds the strong end) is dropped.
    alive: Weak<()>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, StoreError> {
    Ok(meta.get(key).map_err(err)?.map_or(0, |v| v.value()))
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`, keeping [`DEFAULT_LOG_RETENTION`] revisions
    /// of change history.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        Self::open_with_retention(path, DEFAULT_LOG_RETENTION)
    }

    /// Opens (or creates) the database at `path`, keeping the last `retention` revisions
    /// (at least 1) of change history for watchers.
    pub fn open_with_retention(path: &Path, retention: u64) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        }
        let db =
            Database::create(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(KV).map_err(err)?;
        txn.open_table(CHANGES).map_err(err)?;
        {
            let mut meta = txn.open_table(META).map_err(err)?;
            // A database written before the change log existed has no history to replay.
            if meta.get(LOG_FLOOR).map_err(err)?.is_none() {
                let current = meta_value(&meta, REVISION)?;
                meta.insert(LOG_FLOOR, current).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        let store = EmbeddedStore {
            db,
            retention: retention.max(1),
            watchers: Mutex::new(Vec::new()),
        };
        let current = store.revision()?;
        store.compact(current.saturating_sub(store.retention))?;
        Ok(store)
    }

    /// Drops the change history up to and including revision `through` (capped at the current
    /// revision): later watches from an older revision fail as compacted.
    pub fn compact(&self, through: u64) -> Result<(), StoreError> {
        let _serialised = self.watchers.lock();
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut meta = txn.open_table(META).map_err(err)?;
            let mut log = txn.open_table(CHANGES).map_err(err)?;
            let through = through.min(meta_value(&meta, REVISION)?);
            trim(&mut log, &mut meta, through)?;
        }
        txn.commit().map_err(err)
    }

    /// One write transaction: checks `expect`, applies `ops`, logs the changes and tells the
    /// watchers; `None` when a condition fails (the transaction is dropped, so nothing changes).
    fn commit(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        let mut watchers = self.watchers.lock();
        let txn = self.db.begin_write().map_err(err)?;
        let (revision, changes) = {
            let mut table = txn.open_table(KV).map_err(err)?;
            let mut meta = txn.open_table(META).map_err(err)?;
            let current = meta_value(&meta, REVISION)?;
            for e in expect {
                let now = table.get(e.key.as_str()).map_err(err)?;
                if now.as_ref().map(|v| v.value()) != e.value.as_deref() {
                    return Ok(None);
                }
            }
            let mut changes = Vec::new();
            for op in last_op_per_key(ops) {
                let changed = match &op {
                    Op::Put(k, v) => table.insert(k.as_str(), v.as_slice()).map(|_| true),
                    Op::Delete(k) => table.remove(k.as_str()).map(|old| old.is_some()),
                };
                if changed.map_err(err)? {
                    changes.push(op);
                }
            }
            if changes.is_empty() {
                return Ok(Some(current));
            }
            let next = current + 1;
            let mut log = txn.open_table(CHANGES).map_err(err)?;
            for (i, op) in changes.iter().enumerate() {
                let index = u32::try_from(i).map_err(err)?;
                let entry = match op {
                    Op::Put(k, v) => (k.as_str(), Some(v.as_slice())),
                    Op::Delete(k) => (k.as_str(), None),
                };
                log.insert((next, index), entry).map_err(err)?;
            }
            meta.insert(REVISION, next).map_err(err)?;
            trim(&mut log, &mut meta, next.saturating_sub(self.retention))?;
            (next, changes)
        };
        txn.commit().map_err(err)?;
        watchers.retain(|w| {
            w.alive.strong_count() > 0
                && (revision <= w.from
                    || changes
                        .iter()
                        .filter(|op| op.key().starts_with(&w.prefix))
                        .all(|op| {
                            let change = Change {
                                revision,
                                op: op.clone(),
                            };
                            w.tx.send(Ok(change)).is_ok()
                        }))
        });
        Ok(Some(revision))
    }
}

/// Removes the log entries up to revision `through` and raises the floor to it.
fn trim(
    log: &mut Table<LogKey, LogEntry>,
    meta: &mut Table<&str, u64>,
    through: u64,
) -> Result<(), StoreError> {
    if through <= meta_value(meta, LOG_FLOOR)? {
        return Ok(());
    }
    log.retain_in(..(through + 1, 0), |_, _| false)
        .map_err(err)?;
    meta.insert(LOG_FLOOR, through).map_err(err)?;
    Ok(())
}

impl Store for EmbeddedStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(KV).map_err(err)?;
        Ok(table.get(key).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(KV).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.commit(&[], ops)?
            .ok_or_else(|| StoreError("an apply without conditions was refused".into()))
    }

    fn apply_if(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        self.commit(expect, ops)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        meta_value(&meta, REVISION)
    }

    /// Replays the retained change log after `from_revision`, then follows live commits.
    /// The catch-up is queued in memory at once (at most the retained history).
    fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let mut watchers = self.watchers.lock();
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let floor = meta_value(&meta, LOG_FLOOR)?;
        if from_revision < floor {
            return Err(compacted(
                from_revision,
                format_args!("history is kept after revision {floor}"),
            ));
        }
        let (tx, rx) = channel();
        let log = txn.open_table(CHANGES).map_err(err)?;
        for entry in log.range((from_revision + 1, 0)..).map_err(err)? {
            let (id, value) = entry.map_err(err)?;
            let (revision, _) = id.value();
            let (key, new) = value.value();
            if key.starts_with(prefix) {
                let op = match new {
                    Some(v) => Op::Put(key.to_string(), v.to_vec()),
                    None => Op::Delete(key.to_string()),
                };
                // The receiver is still in hand, so this cannot fail.
                let _ = tx.send(Ok(Change { revision, op }));
            }
        }
        let alive = Arc::new(());
        watchers.push(Watcher {
            prefix: prefix.to_string(),
            from: from_revision,
            tx,
            alive: Arc::downgrade(&alive),
        });
        Ok(Watch::new(rx, Some(Box::new(alive))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_listings_and_revisions() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let path = dir.path().join("state.redb");
        {
            let store = EmbeddedStore::open(&path)?;
            assert_eq!(store.revision()?, 0);
            let rev = store.apply(vec![
                Op::Put("a/1".into(), b"one".to_vec()),
                Op::Put("a/2".into(), b"two".to_vec()),
                Op::Put("b/1".into(), b"other".to_vec()),
            ])?;
            assert_eq!(rev, 1);
            store.apply(vec![
                Op::Delete("a/1".into()),
                Op::Put("a/3".into(), b"three".to_vec()),
            ])?;
        }
        let store = EmbeddedStore::open(&path)?;
        assert_eq!(store.revision()?, 2);
        let keys: Vec<String> = store.list("a/")?.into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a/2", "a/3"]);
        assert_eq!(store.get("b/1")?.as_deref(), Some(&b"other"[..]));
        assert_eq!(store.get("a/1")?, None);
        Ok(())
    }

    #[test]
    fn the_change_log_keeps_only_the_retained_revisions() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let path = dir.path().join("state.redb");
        {
            let store = EmbeddedStore::open_with_retention(&path, 3)?;
            for i in 0..6u8 {
                store.apply(vec![Op::Put("k".into(), vec![i])])?;
            }
            assert!(store.watch("", 2).is_err());
            let revisions: Vec<u64> = drain(store.watch("", 3)?)?;
            assert_eq!(revisions, [4, 5, 6]);
        }
        // A reopen with a shorter retention trims at once.
        let store = EmbeddedStore::open_with_retention(&path, 1)?;
        let refused = store.watch("", 4).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("compacted")));
        assert_eq!(drain(store.watch("", 5)?)?, [6]);
        Ok(())
    }

    #[test]
    fn a_database_without_a_change_log_refuses_old_watches() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().map_err(err)?;
        let path = dir.path().join("state.redb");
        {
            let store = EmbeddedStore::open(&path)?;
            store.apply(vec![Op::Put("k".into(), b"v".to_vec())])?;
            let txn = store.db.begin_write().map_err(err)?;
            txn.open_table(META)
                .map_err(err)?
                .remove(LOG_FLOOR)
                .map_err(err)?;
            txn.delete_table(CHANGES).map_err(err)?;
            txn.commit().map_err(err)?;
        }
        let store = EmbeddedStore::open(&path)?;
        assert!(store.watch("", 0).is_err());
        assert!(drain(store.watch("", 1)?)?.is_empty());
        Ok(())
    }

    /// The revisions of the changes already queued on `watch`.
    fn drain(watch: Watch) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        while let Some(change) = watch.recv_timeout(std::time::Duration::from_millis(20))? {
            out.push(change.revision);
        }
        Ok(out)
    }
}

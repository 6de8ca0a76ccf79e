//! The embedded default store: one redb database file in the data dir.
//!
//! Besides the keys (`kv`) and the revision (`meta`), every commit appends its changes to a
//! `changes` table keyed by (revision, index), trimmed to the last [`DEFAULT_LOG_RETENTION`]
//! revisions, so a watcher can resume from a recent revision even after a restart. Live
//! watchers get committed changes through an in-process broadcast.
//!
//! After an I/O error (a full disk, say) redb refuses every later operation until the database is
//! re-opened. The store closes it on such an error, returns the error itself (e.g. "No space
//! left on device"), and re-opens it at the next operation, so it recovers once the cause is
//! gone; a commit whose outcome was unknown is delivered to the watchers after the re-open if it
//! did land.

use super::{Change, Expect, Op, Store, StoreError, Watch, compacted, last_op_per_key};
use parking_lot::{Mutex, RwLock};
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use std::path::{Path, PathBuf};
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
    path: PathBuf,
    retention: u64,
    /// The open database, `None` once an I/O error closed it (until a re-open succeeds). Reads
    /// share it; closing and re-opening take it exclusively, with [`Self::writer`] held.
    db: RwLock<Option<Database>>,
    /// Held across each whole write, watch registration, close and re-open, so a new watcher's
    /// catch-up read and its registration see each commit exactly once.
    writer: Mutex<Writer>,
}

/// What the writer lock guards.
struct Writer {
    watchers: Vec<Watcher>,
    /// The newest revision the watchers were given (or that was there when the store opened).
    delivered: u64,
    /// The I/O error that closed the database, while it is closed.
    closed_by: Option<String>,
}

/// One live watcher: where its changes go and what it wants.
struct Watcher {
    prefix: String,
    from: u64,
    tx: Sender<Result<Change, StoreError>>,
    /// Dead once the [`Watch`] (which holds the strong end) is dropped.
    alive: Weak<()>,
}

/// A failure inside the store, and whether it is an I/O error (after which redb needs the
/// database re-opened).
#[derive(Debug)]
struct Failure {
    message: String,
    io: bool,
}

impl Failure {
    fn other(e: impl std::fmt::Display) -> Failure {
        Failure {
            message: e.to_string(),
            io: false,
        }
    }
}

macro_rules! from_redb {
    ($($error:ty),*) => {$(
        impl From<$error> for Failure {
            fn from(e: $error) -> Failure {
                let e = redb::Error::from(e);
                Failure {
                    io: matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo),
                    message: e.to_string(),
                }
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::StorageError,
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::DatabaseError
);

impl From<Failure> for StoreError {
    fn from(f: Failure) -> StoreError {
        StoreError(f.message)
    }
}

fn meta_value(meta: &impl ReadableTable<&'static str, u64>, key: &str) -> Result<u64, Failure> {
    Ok(meta.get(key)?.map_or(0, |v| v.value()))
}

/// Opens (or creates) the database at `path` with its tables, marking a database written before
/// the change log existed as having no history to replay.
fn open_db(path: &Path) -> Result<Database, Failure> {
    let db = Database::create(path)?;
    let txn = db.begin_write()?;
    txn.open_table(KV)?;
    txn.open_table(CHANGES)?;
    {
        let mut meta = txn.open_table(META)?;
        if meta.get(LOG_FLOOR)?.is_none() {
            let current = meta_value(&meta, REVISION)?;
            meta.insert(LOG_FLOOR, current)?;
        }
    }
    txn.commit()?;
    Ok(db)
}

/// Sends each change to the watchers that want it; drops the watchers that are gone.
fn deliver(watchers: &mut Vec<Watcher>, changes: &[Change]) {
    watchers.retain(|w| {
        w.alive.strong_count() > 0
            && changes
                .iter()
                .filter(|c| c.revision > w.from && c.op.key().starts_with(&w.prefix))
                .all(|c| w.tx.send(Ok(c.clone())).is_ok())
    });
}

/// The changes of the change log after revision `after`, in order.
fn log_after(txn: &redb::ReadTransaction, after: u64) -> Result<Vec<Change>, Failure> {
    let log = txn.open_table(CHANGES)?;
    let mut out = Vec::new();
    for entry in log.range((after + 1, 0)..)? {
        let (id, value) = entry?;
        let (revision, _) = id.value();
        let (key, new) = value.value();
        let op = match new {
            Some(v) => Op::Put(key.to_string(), v.to_vec()),
            None => Op::Delete(key.to_string()),
        };
        out.push(Change { revision, op });
    }
    Ok(out)
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
            open_db(path).map_err(|e| StoreError(format!("{}: {}", path.display(), e.message)))?;
        let store = EmbeddedStore {
            path: path.to_path_buf(),
            retention: retention.max(1),
            db: RwLock::new(Some(db)),
            writer: Mutex::new(Writer {
                watchers: Vec::new(),
                delivered: 0,
                closed_by: None,
            }),
        };
        let current = store.revision()?;
        store.writer.lock().delivered = current;
        store.compact(current.saturating_sub(store.retention))?;
        Ok(store)
    }

    /// Drops the change history up to and including revision `through` (capped at the current
    /// revision): later watches from an older revision fail as compacted.
    pub fn compact(&self, through: u64) -> Result<(), StoreError> {
        let mut writer = self.writer.lock();
        self.write(&mut writer, |db, _| {
            let txn = db.begin_write()?;
            {
                let mut meta = txn.open_table(META)?;
                let mut log = txn.open_table(CHANGES)?;
                let through = through.min(meta_value(&meta, REVISION)?);
                trim(&mut log, &mut meta, through)?;
            }
            Ok(txn.commit()?)
        })
    }

    /// Runs the read `f` on the open database. On an I/O error (or a closed database) it runs
    /// once more under the writer lock, after closing and re-opening the database.
    fn read<T>(&self, f: impl Fn(&Database) -> Result<T, Failure>) -> Result<T, StoreError> {
        let failed = match self.db.read().as_ref().map(&f) {
            Some(Err(e)) if e.io => Some(e),
            Some(done) => return done.map_err(Into::into),
            None => None,
        };
        let mut writer = self.writer.lock();
        if let Some(e) = failed {
            self.close(&mut writer, &e);
        }
        self.write(&mut writer, |db, _| f(db))
    }

    /// Runs `f` on the database with the writer lock held, re-opening the database first if an
    /// I/O error closed it; an I/O error from `f` closes it and is returned as it is.
    fn write<T>(
        &self,
        writer: &mut Writer,
        f: impl FnOnce(&Database, &mut Writer) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        self.reopen(writer)?;
        let result = match self.db.read().as_ref() {
            Some(db) => f(db, writer),
            None => return Err(StoreError(format!("{}: not open", self.path.display()))),
        };
        match result {
            Err(e) if e.io => {
                self.close(writer, &e);
                Err(e.into())
            }
            other => other.map_err(Into::into),
        }
    }

    /// Closes the database after the I/O error `e`.
    fn close(&self, writer: &mut Writer, e: &Failure) {
        if self.db.write().take().is_some() {
            tracing::warn!(path = %self.path.display(), "state store closed after an I/O error: {}", e.message);
        }
        writer.closed_by = Some(e.message.clone());
    }

    /// Re-opens the database if an I/O error closed it, and gives the watchers whatever landed
    /// that they were not given (a commit that failed on its way to the disk may have landed).
    fn reopen(&self, writer: &mut Writer) -> Result<(), StoreError> {
        let Some(closed_by) = writer.closed_by.clone() else {
            return Ok(());
        };
        let mut slot = self.db.write();
        if slot.is_none() {
            let db = open_db(&self.path).map_err(|e| {
                StoreError(format!(
                    "{}: closed after an I/O error ({closed_by}); re-opening it failed: {}",
                    self.path.display(),
                    e.message
                ))
            })?;
            *slot = Some(db);
        }
        let db = slot.as_ref().ok_or_else(|| StoreError("not open".into()))?;
        let missed = db
            .begin_read()
            .map_err(Failure::from)
            .and_then(|txn| log_after(&txn, writer.delivered))?;
        drop(slot);
        tracing::info!(path = %self.path.display(), "state store re-opened after an I/O error");
        writer.closed_by = None;
        if let Some(last) = missed.last() {
            writer.delivered = last.revision;
        }
        deliver(&mut writer.watchers, &missed);
        Ok(())
    }

    /// One write transaction: checks `expect`, applies `ops`, logs the changes and tells the
    /// watchers; `None` when a condition fails (the transaction is dropped, so nothing changes).
    fn commit(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        let mut writer = self.writer.lock();
        self.write(&mut writer, |db, writer| {
            let txn = db.begin_write()?;
            let (revision, changes) = {
                let mut table = txn.open_table(KV)?;
                let mut meta = txn.open_table(META)?;
                let current = meta_value(&meta, REVISION)?;
                for e in expect {
                    let now = table.get(e.key.as_str())?;
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
                    if changed? {
                        changes.push(op);
                    }
                }
                if changes.is_empty() {
                    return Ok(Some(current));
                }
                let next = current + 1;
                let mut log = txn.open_table(CHANGES)?;
                for (i, op) in changes.iter().enumerate() {
                    let index = u32::try_from(i).map_err(Failure::other)?;
                    let entry = match op {
                        Op::Put(k, v) => (k.as_str(), Some(v.as_slice())),
                        Op::Delete(k) => (k.as_str(), None),
                    };
                    log.insert((next, index), entry)?;
                }
                meta.insert(REVISION, next)?;
                trim(&mut log, &mut meta, next.saturating_sub(self.retention))?;
                (next, changes)
            };
            txn.commit()?;
            let changes: Vec<Change> = changes
                .into_iter()
                .map(|op| Change { revision, op })
                .collect();
            writer.delivered = revision;
            deliver(&mut writer.watchers, &changes);
            Ok(Some(revision))
        })
    }
}

/// Removes the log entries up to revision `through` and raises the floor to it.
fn trim(
    log: &mut Table<LogKey, LogEntry>,
    meta: &mut Table<&str, u64>,
    through: u64,
) -> Result<(), Failure> {
    if through <= meta_value(meta, LOG_FLOOR)? {
        return Ok(());
    }
    log.retain_in(..(through + 1, 0), |_, _| false)?;
    meta.insert(LOG_FLOOR, through)?;
    Ok(())
}

impl Store for EmbeddedStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(KV)?;
            Ok(table.get(key)?.map(|v| v.value().to_vec()))
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(KV)?;
            let mut out = Vec::new();
            for entry in table.range(prefix..)? {
                let (k, v) = entry?;
                if !k.value().starts_with(prefix) {
                    break;
                }
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.commit(&[], ops)?
            .ok_or_else(|| StoreError("an apply without conditions was refused".into()))
    }

    fn apply_if(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        self.commit(expect, ops)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.read(|db| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            meta_value(&meta, REVISION)
        })
    }

    /// Replays the retained change log after `from_revision`, then follows live commits.
    /// The catch-up is queued in memory at once (at most the retained history).
    fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let mut writer = self.writer.lock();
        let (tx, rx) = channel();
        self.write(&mut writer, |db, writer| {
            let txn = db.begin_read()?;
            let meta = txn.open_table(META)?;
            let floor = meta_value(&meta, LOG_FLOOR)?;
            if from_revision < floor {
                return Ok(Err(compacted(
                    from_revision,
                    format_args!("history is kept after revision {floor}"),
                )));
            }
            for change in log_after(&txn, from_revision)? {
                if change.op.key().starts_with(prefix) {
                    // The receiver is still in hand, so this cannot fail.
                    let _ = tx.send(Ok(change));
                }
            }
            let alive = Arc::new(());
            writer.watchers.push(Watcher {
                prefix: prefix.to_string(),
                from: from_revision,
                tx: tx.clone(),
                alive: Arc::downgrade(&alive),
            });
            Ok(Ok(alive))
        })?
        .map(|alive| Watch::new(rx, Some(Box::new(alive))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(e: impl std::fmt::Display) -> StoreError {
        StoreError(e.to_string())
    }

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
            let db = store.db.read();
            let txn = db
                .as_ref()
                .ok_or(err("closed"))?
                .begin_write()
                .map_err(err)?;
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

    #[test]
    fn a_full_disk_fails_writes_with_its_own_error_and_the_store_recovers_once_space_is_back()
    -> Result<(), StoreError> {
        let Some(disk) = crate::full_disk::SmallDisk::mount("4m") else {
            return Ok(());
        };
        let store = EmbeddedStore::open(&disk.path().join("state.redb"))?;
        store.apply(vec![Op::Put("before".into(), b"1".to_vec())])?;
        let watch = store.watch("", store.revision()?)?;
        let filler = disk.fill();
        let big = vec![7u8; 256 << 10];
        let full = (0..32)
            .find_map(|i| {
                store
                    .apply(vec![Op::Put(format!("big/{i}"), big.clone())])
                    .err()
            })
            .expect("a full disk fails a write");
        assert!(full.0.contains("No space left on device"), "{full}");
        // Later writes report the disk, not redb's "re-open the database".
        let again = store
            .apply(vec![Op::Put("big/again".into(), big.clone())])
            .expect_err("the disk is still full");
        assert!(
            again.0.contains("No space left on device") && !again.0.contains("Previous I/O"),
            "{again}"
        );
        std::fs::remove_file(&filler).map_err(err)?;
        let revision = store.apply(vec![Op::Put("after".into(), b"2".to_vec())])?;
        assert_eq!(store.get("after")?.as_deref(), Some(&b"2"[..]));
        assert_eq!(store.get("before")?.as_deref(), Some(&b"1"[..]));
        assert_eq!(store.revision()?, revision);
        let seen = drain(watch)?;
        assert_eq!(
            seen.last(),
            Some(&revision),
            "the watcher follows: {seen:?}"
        );
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "each once: {seen:?}");
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

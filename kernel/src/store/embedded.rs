//! The embedded default store: one redb database file in the data dir.

use super::{Op, Store, StoreError};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// A redb-backed [`Store`]. Commits are durable (fsync) before `apply` returns.
pub struct EmbeddedStore {
    db: Database,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<EmbeddedStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
        }
        let db =
            Database::create(path).map_err(|e| StoreError(format!("{}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(KV).map_err(err)?;
        txn.open_table(META).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(EmbeddedStore { db })
    }
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
        let txn = self.db.begin_write().map_err(err)?;
        let revision = {
            let mut table = txn.open_table(KV).map_err(err)?;
            for op in &ops {
                match op {
                    Op::Put(k, v) => {
                        table.insert(k.as_str(), v.as_slice()).map_err(err)?;
                    }
                    Op::Delete(k) => {
                        table.remove(k.as_str()).map_err(err)?;
                    }
                }
            }
            let mut meta = txn.open_table(META).map_err(err)?;
            let next = meta.get(REVISION).map_err(err)?.map_or(0, |v| v.value()) + 1;
            meta.insert(REVISION, next).map_err(err)?;
            next
        };
        txn.commit().map_err(err)?;
        Ok(revision)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        Ok(meta.get(REVISION).map_err(err)?.map_or(0, |v| v.value()))
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
}

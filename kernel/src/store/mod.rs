//! The state store: where the kernel keeps everything that must survive a crash.
//!
//! [`Store`] is a small transactional key-value interface: reads, prefix listings, atomic
//! multi-key writes and a change feed ([`Store::watch`]). Two backends implement it:
//! [`embedded::EmbeddedStore`] (redb in the data dir; commits with fsync, so a `kill -9` at any
//! moment leaves either the whole write or none of it) and, with the `etcd` feature,
//! [`etcd::EtcdStore`] (an etcd cluster shared by several kernels).
//!
//! # Revisions
//!
//! Both backends number their writes the same way, after etcd:
//! - the revision is a store-wide counter that only grows; an [`Store::apply`] that changes
//!   something (any put, or a delete of an existing key) commits at exactly one new revision,
//!   which it returns; an apply that changes nothing returns the current revision unchanged;
//! - every [`Change`] carries the revision of the apply that made it, so the changes of one apply
//!   share one revision and arrive together, in the order of its ops;
//! - [`Store::watch`]`(prefix, r)` delivers every change with a revision greater than `r`, so
//!   `watch(prefix, store.revision()?)` means "from now on", and a watcher that saw revision `r`
//!   resumes with no gap and no duplicate by watching from `r` (across kernel restarts too).
//!
//! On the embedded store, revisions start at 0 and go up by one per apply. On etcd they are
//! etcd's cluster revisions: a fresh cluster starts at 1, and writes by other users of the
//! cluster (outside this store's key prefix) also advance them, so they may skip numbers.

pub mod cas;
mod config;
pub mod embedded;
#[cfg(feature = "etcd")]
pub mod etcd;
mod watch;

pub use cas::{Txn, transact};
pub use config::{Backend, Config};
pub use watch::{Change, Watch};

/// One change in an atomic write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to the value.
    Put(String, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(String),
}

impl Op {
    /// The key this op writes.
    pub fn key(&self) -> &str {
        match self {
            Op::Put(k, _) | Op::Delete(k) => k,
        }
    }
}

/// A condition of [`Store::apply_if`]: `key` holds exactly `value` (`None`: `key` is absent).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// The key.
    pub key: String,
    /// Its expected value, or `None` for "no such key".
    pub value: Option<Vec<u8>>,
}

/// A failure of the state store.
#[derive(Debug, thiserror::Error)]
#[error("state store: {0}")]
pub struct StoreError(pub String);

/// A transactional key-value store.
pub trait Store: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every key starting with `prefix`, in key order, with its value.
    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Applies `ops` atomically and durably; returns the new revision (see the module docs).
    /// When several ops name the same key, the last one wins.
    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError>;

    /// Compare-and-set: applies `ops` like [`Store::apply`], in the same atomic step as checking
    /// that every key of `expect` still holds its expected value; returns the new revision, or
    /// `None` (and writes nothing) when a condition fails. Read, decide, then `apply_if` what
    /// was read: a concurrent writer (this kernel or another one) makes it fail, never lose.
    fn apply_if(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError>;

    /// The current revision (0 for an empty embedded store).
    fn revision(&self) -> Result<u64, StoreError>;

    /// Every change to a key starting with `prefix` after revision `from_revision`, in revision
    /// order, then live as writes commit, until the [`Watch`] is dropped.
    ///
    /// Fails with a "compacted" [`StoreError`] when the store no longer keeps the history just
    /// after `from_revision` (like etcd); the caller then re-reads with [`Store::list`] and
    /// watches from [`Store::revision`].
    fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError>;
}

/// `ops` with only the last op for each key, in the order of those last ops: the same result
/// as applying them one by one, in a form etcd accepts in one transaction.
pub(crate) fn last_op_per_key(ops: Vec<Op>) -> Vec<Op> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<Op> = ops
        .into_iter()
        .rev()
        .filter(|op| seen.insert(op.key().to_string()))
        .collect();
    out.reverse();
    out
}

/// The "compacted" error of a watch from a revision whose successors are no longer kept.
pub(crate) fn compacted(from_revision: u64, detail: impl std::fmt::Display) -> StoreError {
    StoreError(format!(
        "compacted: cannot watch from revision {from_revision} ({detail}); re-list and watch \
         from the current revision"
    ))
}

/// Reads a JSON value.
pub fn get_json<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    key: &str,
) -> Result<Option<T>, StoreError> {
    match store.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError(format!("{key}: corrupt value: {e}"))),
        None => Ok(None),
    }
}

/// An `Op::Put` of a JSON value.
pub fn put_json<T: serde::Serialize>(key: &str, value: &T) -> Result<Op, StoreError> {
    serde_json::to_vec(value)
        .map(|v| Op::Put(key.to_string(), v))
        .map_err(|e| StoreError(format!("{key}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_op_per_key_keeps_the_final_effect_in_order() {
        let ops = vec![
            Op::Put("a".into(), b"1".to_vec()),
            Op::Put("b".into(), b"2".to_vec()),
            Op::Delete("a".into()),
            Op::Put("c".into(), b"3".to_vec()),
            Op::Put("b".into(), b"4".to_vec()),
        ];
        assert_eq!(
            last_op_per_key(ops),
            [
                Op::Delete("a".into()),
                Op::Put("c".into(), b"3".to_vec()),
                Op::Put("b".into(), b"4".to_vec()),
            ]
        );
    }
}

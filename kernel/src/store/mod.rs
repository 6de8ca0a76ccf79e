//! The state store: where the kernel keeps everything that must survive a crash.
//!
//! [`Store`] is a small transactional key-value interface: reads, prefix listings and atomic
//! multi-key writes, each write returning the store's new revision. The embedded default
//! ([`embedded::EmbeddedStore`], redb in the data dir) commits with fsync, so a `kill -9` at any
//! moment leaves either the whole write or none of it.

pub mod embedded;

/// One change in an atomic write.
#[derive(Clone, Debug)]
pub enum Op {
    /// Set `key` to the value.
    Put(String, Vec<u8>),
    /// Remove `key` (no error if absent).
    Delete(String),
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

    /// Applies `ops` atomically and durably; returns the new revision.
    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError>;

    /// The current revision (0 for an empty store).
    fn revision(&self) -> Result<u64, StoreError>;
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

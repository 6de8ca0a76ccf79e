//! The leader's observation of the instances, published in the store so that every kernel's
//! API, router and watch API show it, and so that a new leader starts from it.
//!
//! One record per app under [`PREFIX`] (`published/apps/<app>`): its instances with their
//! addresses, health and readiness, and its procs' problems, wanted counts and schedules (a
//! [`AppStatus`]). The leader's reconciler writes it through the kernel's store, which fences
//! the leader's writes on etcd (a deposed leader cannot publish), and only the apps whose record
//! changed ([`Publisher`]): nothing is written by a pass that saw nothing new. Every kernel
//! follows the records into its [`StatusBoard`] while its own reconciler does not run
//! ([`follow`]).
//!
//! [`StatusBoard`]: crate::lifecycle::view::StatusBoard

mod follow;

pub use follow::follow;

use crate::lifecycle::view::AppStatus;
use crate::store::{Op, Store, StoreError};
use std::collections::BTreeMap;

/// Where the records live (under the store's prefix).
pub const PREFIX: &str = "published/apps/";

/// Largest record written or read, bytes (etcd refuses requests over 1.5 MiB by default): an app
/// whose record would be larger is not published, with a warning, and its previous record stays.
pub const MAX_RECORD: usize = 1024 * 1024;

/// Most ops and bytes in one store transaction (etcd's defaults: 128 ops, 1.5 MiB a request).
const BATCH_OPS: usize = 64;
const BATCH_BYTES: usize = MAX_RECORD;

/// Errors reading a published record.
#[derive(Debug, thiserror::Error)]
pub enum PublishedError {
    /// The store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A record is larger than [`MAX_RECORD`].
    #[error("published record {key} is {len} bytes, over the {MAX_RECORD}-byte limit")]
    TooLarge {
        /// Its key.
        key: String,
        /// Its size.
        len: usize,
    },
    /// A record is not a status.
    #[error("published record {key} is corrupt: {why}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What the parser said.
        why: String,
    },
}

/// The record of an app as stored: the countdown of an instance that backs off
/// (`restart_in`, which changes every second) is stored as the moment of its restart, so
/// a record changes only when what it says does.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    #[serde(flatten)]
    status: AppStatus,
    /// Unix seconds when each backing-off instance (by name) restarts.
    #[serde(default)]
    restart_at: BTreeMap<String, i64>,
}

/// The bytes stored for `status` at unix time `now`.
fn encode(status: &AppStatus, now: i64) -> Result<Vec<u8>, serde_json::Error> {
    let mut status = status.clone();
    let mut restart_at = BTreeMap::new();
    for i in &mut status.instances {
        if let Some(secs) = i.restart_in.take() {
            restart_at.insert(i.name.clone(), now.saturating_add_unsigned(secs));
        }
    }
    serde_json::to_vec(&Stored { status, restart_at })
}

/// The status stored under `key` as `bytes`, read at unix time `now`.
pub fn decode(key: &str, bytes: &[u8], now: i64) -> Result<AppStatus, PublishedError> {
    if bytes.len() > MAX_RECORD {
        return Err(PublishedError::TooLarge {
            key: key.into(),
            len: bytes.len(),
        });
    }
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| PublishedError::Corrupt {
        key: key.into(),
        why: e.to_string(),
    })?;
    let mut status = stored.status;
    for i in &mut status.instances {
        if let Some(at) = stored.restart_at.get(&i.name) {
            i.restart_in = Some(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
        }
    }
    Ok(status)
}

/// Every published record, by app, with its stored bytes; a record that cannot be read is left
/// out, with a warning.
fn load_raw(store: &dyn Store) -> Result<BTreeMap<String, (AppStatus, Vec<u8>)>, StoreError> {
    let now = crate::clock::unix_secs();
    let mut out = BTreeMap::new();
    for (key, bytes) in store.list(PREFIX)? {
        let Some(app) = key.strip_prefix(PREFIX) else {
            continue;
        };
        match decode(&key, &bytes, now) {
            Ok(status) => {
                out.insert(app.to_string(), (status, bytes));
            }
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Ok(out)
}

/// Every published record, by app (see [`load_raw`]).
pub fn load(store: &dyn Store) -> Result<BTreeMap<String, AppStatus>, StoreError> {
    Ok(load_raw(store)?
        .into_iter()
        .map(|(app, (status, _))| (app, status))
        .collect())
}

/// The leader's writer of the records: remembers what is stored, writes what changed.
#[derive(Default)]
pub struct Publisher {
    /// The bytes stored per app, as this publisher last wrote or read them.
    written: BTreeMap<String, Vec<u8>>,
}

impl Publisher {
    /// A publisher that starts from what `store` holds (so a new leader rewrites only what
    /// changed since the previous one published), and those records.
    pub fn load(store: &dyn Store) -> Result<(Publisher, BTreeMap<String, AppStatus>), StoreError> {
        let raw = load_raw(store)?;
        let mut publisher = Publisher::default();
        let mut apps = BTreeMap::new();
        for (app, (status, bytes)) in raw {
            publisher.written.insert(app.clone(), bytes);
            apps.insert(app, status);
        }
        Ok((publisher, apps))
    }

    /// Writes the records of `apps` that differ from the stored ones and deletes those of apps
    /// no longer in `apps`, in transactions of at most [`BATCH_OPS`] ops; returns how many
    /// records it wrote or deleted. A failed transaction is tried again at the next call.
    pub fn write(
        &mut self,
        store: &dyn Store,
        apps: &BTreeMap<String, AppStatus>,
    ) -> Result<usize, StoreError> {
        let now = crate::clock::unix_secs();
        // (app, new bytes or None for a delete)
        let mut changes: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        for (app, status) in apps {
            let bytes = match encode(status, now) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(%app, "cannot encode the published status: {e}");
                    continue;
                }
            };
            if bytes.len() > MAX_RECORD {
                tracing::warn!(%app, len = bytes.len(),
                    "the app's status is over {MAX_RECORD} bytes: not published, other kernels keep its previous one");
                continue;
            }
            if self.written.get(app) != Some(&bytes) {
                changes.push((app.clone(), Some(bytes)));
            }
        }
        for app in self.written.keys() {
            if !apps.contains_key(app) {
                changes.push((app.clone(), None));
            }
        }
        let mut done = 0;
        let mut rest = changes.as_slice();
        while !rest.is_empty() {
            let mut size = 0;
            let mut n = 0;
            while n < rest.len() && n < BATCH_OPS {
                let len = rest[n].1.as_ref().map_or(0, Vec::len);
                if n > 0 && size + len > BATCH_BYTES {
                    break;
                }
                size += len;
                n += 1;
            }
            let (batch, tail) = rest.split_at(n);
            let ops = batch
                .iter()
                .map(|(app, bytes)| match bytes {
                    Some(b) => Op::Put(format!("{PREFIX}{app}"), b.clone()),
                    None => Op::Delete(format!("{PREFIX}{app}")),
                })
                .collect();
            store.apply(ops)?;
            for (app, bytes) in batch {
                match bytes {
                    Some(b) => self.written.insert(app.clone(), b.clone()),
                    None => self.written.remove(app),
                };
            }
            done += batch.len();
            rest = tail;
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests;

//! The audit log: every mutating API call (and every read of a secret's content), who made it,
//! on what, when and with which result. Records live in the state store under `audit/`, keyed by
//! time, so they survive restarts and are shared by the kernels of a cluster; the newest
//! `[auth] audit_keep` are kept.

use crate::store::{Op, Store, StoreError, put_json};
use std::sync::atomic::{AtomicU64, Ordering};

/// One audited call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who: the principal's subject (none when the caller was not authenticated).
    pub subject: Option<String>,
    /// The auth provider that vouched for the caller.
    pub provider: Option<String>,
    /// What: method and route, e.g. `POST /api/v1/apps/{app}/deploy`.
    pub action: String,
    /// The target: the request path, e.g. `/api/v1/apps/hello/deploy`.
    pub target: String,
    /// The app concerned, if any.
    pub app: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// `ok`, `denied` (401/403), `failed`, or `pending` while the call runs (a record still
    /// `pending` after a restart is a call the kernel died during). A build answers 200 when
    /// its event stream starts: its result is how the build ended.
    pub result: String,
    /// Why a call that answered 200 still failed or was refused (a build that ended `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Which records a query wants.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this app's.
    pub app: Option<String>,
    /// Only this subject's.
    pub subject: Option<String>,
    /// Only principals of this auth provider (`bootstrap` for the local bootstrap): a subject
    /// names a principal only together with its provider.
    pub provider: Option<String>,
    /// At most this many, newest first (default 100).
    pub limit: Option<usize>,
}

/// Appends and queries audit records.
pub struct AuditLog {
    keep: usize,
    /// Distinguishes this kernel's keys from other kernels' written in the same millisecond.
    nonce: u64,
    seq: AtomicU64,
}

const PREFIX: &str = "audit/";
/// 64 random bits that tell this log's keys from every other kernel's (the clock and the process
/// id alone do not: two kernels on two hosts may share both).
fn random_nonce() -> u64 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // No system randomness: the best left is what tells processes apart locally.
        return u64::from(std::process::id()) << 32 ^ crate::clock::unix_ms() as u64;
    }
    u64::from_le_bytes(bytes)
}

/// Pruning runs once per this many appends.
const PRUNE_EVERY: u64 = 256;

impl AuditLog {
    /// A log keeping the newest `keep` records.
    pub fn new(keep: usize) -> AuditLog {
        AuditLog {
            keep: keep.max(1),
            nonce: random_nonce(),
            seq: AtomicU64::new(0),
        }
    }

    /// Records `record`; returns its key, for [`AuditLog::update`].
    pub fn append(&self, store: &dyn Store, record: &AuditRecord) -> Result<String, StoreError> {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let key = format!(
            "{PREFIX}{:015}-{:016x}-{seq:08}",
            record.at_ms.max(0),
            self.nonce
        );
        // A fresh key, unique across kernels (random nonce per log): no read decides it.
        store.apply(vec![put_json(&key, record)?])?;
        if seq % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune(store)?;
        }
        Ok(key)
    }

    /// Replaces the record at `key` (a `pending` one, with its outcome).
    pub fn update(
        &self,
        store: &dyn Store,
        key: &str,
        record: &AuditRecord,
    ) -> Result<(), StoreError> {
        // Only the request that appended the record updates it.
        store.apply(vec![put_json(key, record)?])?;
        Ok(())
    }

    fn prune(&self, store: &dyn Store) -> Result<(), StoreError> {
        let all = store.list(PREFIX)?;
        if all.len() <= self.keep {
            return Ok(());
        }
        let excess = all.len() - self.keep;
        let ops: Vec<Op> = all
            .into_iter()
            .take(excess)
            .map(|(k, _)| Op::Delete(k))
            .collect();
        // Deletes of the oldest records: another kernel pruning the same ones is harmless.
        store.apply(ops)?;
        Ok(())
    }

    /// The records `query` asks for, newest first.
    pub fn query(
        &self,
        store: &dyn Store,
        query: &AuditQuery,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let limit = query.limit.unwrap_or(100);
        let mut out = Vec::new();
        for (key, value) in store.list(PREFIX)?.into_iter().rev() {
            if out.len() >= limit {
                break;
            }
            let record: AuditRecord = serde_json::from_slice(&value)
                .map_err(|e| StoreError(format!("{key}: corrupt audit record: {e}")))?;
            let wanted = query
                .app
                .as_ref()
                .is_none_or(|a| record.app.as_ref() == Some(a))
                && query
                    .subject
                    .as_ref()
                    .is_none_or(|s| record.subject.as_ref() == Some(s))
                && query
                    .provider
                    .as_ref()
                    .is_none_or(|p| record.provider.as_ref() == Some(p));
            if wanted {
                out.push(record);
            }
        }
        Ok(out)
    }
}

//! Stream-port claims: which app's proc each stream source port (LAIN's `ports`, `src:dst`)
//! belongs to, cluster-wide.
//!
//! A claim is the store key `stream-claims/<source>`, written by a deploy or rollback in the same
//! compare-and-set as the app record ([`super::claims`]). A claim holds while its app's
//! deployment still declares the port: a port of an app that was undeployed or no longer declares
//! it is free to the next deploy that asks. A deploy asking for a port another app holds is
//! refused naming the owner, with nothing written; the router serves a port only for its owner.

use super::records::AppRecord;
use crate::store::{Expect, Op, Store, StoreError, put_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where the claims live.
pub const PREFIX: &str = "stream-claims/";

/// Who holds a stream source port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamClaim {
    /// The app.
    pub app: String,
    /// Its proc.
    pub proc: String,
}

/// The `(source, proc)` stream ports `record`'s deployment declares.
pub fn declared(record: &AppRecord) -> Vec<(u16, String)> {
    record
        .deployed
        .iter()
        .flat_map(|d| &d.procs)
        .flat_map(|p| p.stream_ports.iter().map(|s| (s.source, p.name.clone())))
        .collect()
}

/// Every claim, by source port (a value that cannot be read is skipped with a warning).
pub fn all(store: &dyn Store) -> Result<BTreeMap<u16, StreamClaim>, StoreError> {
    let mut out = BTreeMap::new();
    for (key, value) in store.list(PREFIX)? {
        let port = key[PREFIX.len()..].parse::<u16>();
        match (port, serde_json::from_slice::<StreamClaim>(&value)) {
            (Ok(port), Ok(claim)) => {
                out.insert(port, claim);
            }
            _ => tracing::warn!(%key, "stream claims: unreadable claim skipped"),
        }
    }
    Ok(out)
}

/// What claiming `record`'s stream ports for its app takes: the compare-and-set conditions and
/// writes, or why not (each refusal names the port and its owner).
pub struct Claiming {
    /// Conditions: each claim key as read.
    pub expect: Vec<Expect>,
    /// Writes: a claim per port not yet held by the app.
    pub ops: Vec<Op>,
}

/// Claims `record`'s stream ports for `record.name`. `holds(app, port)`: whether another app's
/// current deployment still declares `port` (its claim then stands).
pub fn claim(
    store: &dyn Store,
    record: &AppRecord,
    holds: impl Fn(&str, u16) -> Result<bool, super::LifecycleError>,
) -> Result<Result<Claiming, Vec<String>>, super::LifecycleError> {
    let mut expect = Vec::new();
    let mut ops = Vec::new();
    let mut refused = Vec::new();
    let mut seen: BTreeMap<u16, String> = BTreeMap::new();
    for (port, proc) in declared(record) {
        if let Some(first) = seen.insert(port, proc.clone()) {
            refused.push(format!(
                "proc `{proc}`: stream port {port} is declared by proc `{first}` too"
            ));
            continue;
        }
        let key = format!("{PREFIX}{port}");
        let raw = store.get(&key)?;
        let held: Option<StreamClaim> = raw.as_deref().and_then(|v| serde_json::from_slice(v).ok());
        let mine = StreamClaim {
            app: record.name.clone(),
            proc: proc.clone(),
        };
        match held {
            Some(h) if h == mine => {}
            Some(h) if h.app != record.name && holds(&h.app, port)? => refused.push(format!(
                "proc `{proc}`: stream port {port} is held by app `{}` (proc `{}`)",
                h.app, h.proc
            )),
            _ => ops.push(put_json(&key, &mine)?),
        }
        expect.push(Expect { key, value: raw });
    }
    Ok(if refused.is_empty() {
        Ok(Claiming { expect, ops })
    } else {
        Err(refused)
    })
}

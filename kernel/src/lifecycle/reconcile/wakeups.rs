//! What wakes the reconciler besides its own API calls: changes of desired state in the store,
//! whoever wrote them (another kernel on the same etcd, an operator's tool), seen through
//! [`Store::watch`].

use crate::store::Store;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::Notify;

/// Key prefixes whose changes the reconciler acts on: app records (scale, deploys, restarts),
/// releases, nodes, plugins, volume homes (migrations) and the scheduler pipeline and moves.
/// What the reconciler writes itself on every pass (run state, misfits, audit) is not here, so
/// its own writes do not keep it busy.
pub const DESIRED: &[&str] = &[
    crate::lifecycle::records::APPS,
    crate::lifecycle::records::RELEASES,
    crate::lifecycle::records::NODES,
    crate::lifecycle::records::VOLUMES,
    "plugins/",
    crate::schedule::live::PIPELINE_KEY,
    crate::schedule::live::MOVES_KEY,
];

/// How long the follower waits before watching again after the feed failed.
const RETRY: Duration = Duration::from_millis(500);

/// Whether a change of `key` is one of desired state.
pub fn is_desired(key: &str) -> bool {
    DESIRED.iter().any(|p| key.starts_with(p))
}

/// Follows the store on a thread of its own and notifies `wake` on every change of desired
/// state, until `alive` can no longer be upgraded (its owner, the reconciler's loop, is gone).
/// A failed feed (compacted history, a lost etcd connection) is watched again from the current
/// revision, with one wake-up for whatever it may have missed.
pub fn follow(store: Arc<dyn Store>, wake: Arc<Notify>, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("lain-reconcile-watch".into())
        .spawn(move || {
            while alive.upgrade().is_some() {
                let watch = store.revision().and_then(|rev| store.watch("", rev));
                let watch = match watch {
                    Ok(w) => w,
                    Err(e) => {
                        tracing::warn!("reconciler: cannot watch the store: {e}");
                        std::thread::sleep(RETRY);
                        continue;
                    }
                };
                loop {
                    if alive.upgrade().is_none() {
                        return;
                    }
                    match watch.recv_timeout(Duration::from_secs(1)) {
                        Ok(Some(change)) if is_desired(change.op.key()) => wake.notify_one(),
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!("reconciler: the store's watch ended: {e}");
                            wake.notify_one();
                            std::thread::sleep(RETRY);
                            break;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("reconciler: cannot start its store watch (it passes on its tick): {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Op;
    use crate::store::embedded::EmbeddedStore;

    #[tokio::test]
    async fn a_desired_state_write_by_anyone_wakes_the_reconciler_and_its_own_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("store"));
        let wake = Arc::new(Notify::new());
        let alive = Arc::new(());
        follow(store.clone(), wake.clone(), Arc::downgrade(&alive));
        // The follower watches from the revision it reads when it starts: let it start.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let put = |key: &str| {
            store
                .apply(vec![Op::Put(key.into(), b"{}".to_vec())])
                .expect("write")
        };
        put("audit/1");
        put("scheduler/misfits/x");
        put("run-state/a");
        let quiet = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
        assert!(quiet.is_err(), "woken by a write that is not desired state");
        for key in [
            "apps/a",
            "releases/a/1",
            "nodes/n1",
            "plugins/records/p",
            "scheduler/pipeline",
        ] {
            put(key);
            tokio::time::timeout(Duration::from_secs(5), wake.notified())
                .await
                .unwrap_or_else(|_| panic!("{key}: no wake-up"));
        }
    }
}

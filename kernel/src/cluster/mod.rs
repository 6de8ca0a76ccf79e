//! Several kernels on one etcd: each kernel's identity, the leader election and fencing.
//!
//! Every kernel serves the API and the router; one leader runs the "one writer" loops (the
//! reconciler with its run ticker, log-file collection, the backup scheduler). On etcd the
//! kernels campaign through etcd's election API with a lease ([`election`]); the leader's
//! writes are fenced on its election key ([`fence`]). On the embedded store the one kernel
//! leads from its start. [`Cluster::lead`] starts and stops the loops as leadership comes and
//! goes.

pub mod fence;
pub mod identity;

#[cfg(feature = "etcd")]
pub mod election;

use fence::Fence;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::sync::watch;

/// The store key (under the store's prefix) that names the etcd election.
pub const ELECTION: &str = "cluster/leader";

/// This kernel's part in the cluster, as `GET /api/v1/cluster` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// This kernel's own id (`<data dir>/kernel-id`).
    pub kernel: String,
    /// The cluster's id: the label of its instances, the same on every kernel of a store.
    pub cluster: String,
    /// `embedded` or `etcd`.
    pub store: String,
    /// `leader`, or `follower` (campaigning, or waiting for etcd).
    pub role: String,
    /// The leading kernel's id, when known.
    pub leader: Option<String>,
    /// Unix milliseconds when this kernel last became the leader.
    pub leader_since_ms: Option<i64>,
    /// Reconciler passes this kernel completed (as leader).
    pub reconciler_passes: u64,
    /// Writes the fence refused since the kernel started (it had lost the leadership).
    pub fenced_writes: u64,
}

/// The shared state of this kernel's membership.
pub struct Cluster {
    kernel_id: String,
    cluster_id: String,
    store: &'static str,
    fence: Arc<Fence>,
    leader: RwLock<(Option<String>, Option<i64>)>,
    /// Whether this kernel leads (set by the election, followed by [`Cluster::lead`]).
    leading: watch::Sender<bool>,
    /// Whether the leader's loops run (set by [`Cluster::lead`], awaited by the election).
    running: watch::Sender<bool>,
}

impl Cluster {
    /// This kernel (`kernel_id`) in the cluster `cluster_id` on a `store` backend.
    pub fn new(
        kernel_id: String,
        cluster_id: String,
        store: &'static str,
        fence: Arc<Fence>,
    ) -> Cluster {
        Cluster {
            kernel_id,
            cluster_id,
            store,
            fence,
            leader: RwLock::new((None, None)),
            leading: watch::Sender::new(false),
            running: watch::Sender::new(false),
        }
    }

    /// This kernel's own id.
    pub fn kernel_id(&self) -> &str {
        &self.kernel_id
    }

    /// The fence of this kernel's writes.
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// Whether this kernel leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// What this kernel knows of the cluster; `passes` from its reconciler.
    pub fn status(&self, passes: u64) -> ClusterStatus {
        let (leader, since) = self.leader.read().clone();
        let leading = self.is_leader();
        ClusterStatus {
            kernel: self.kernel_id.clone(),
            cluster: self.cluster_id.clone(),
            store: self.store.into(),
            role: if leading { "leader" } else { "follower" }.into(),
            leader,
            leader_since_ms: since,
            reconciler_passes: passes,
            fenced_writes: self.fence.refused(),
        }
    }

    /// Records who leads (another kernel, or nobody known).
    pub fn saw_leader(&self, leader: Option<String>) {
        self.leader.write().0 = leader;
    }

    /// This kernel leads from now on, until [`Cluster::step_down`].
    pub fn become_leader(&self) {
        *self.leader.write() = (Some(self.kernel_id.clone()), Some(crate::clock::unix_ms()));
        tracing::info!(kernel = %self.kernel_id, "this kernel is the leader: starting the reconciler, the backup scheduler and log-file collection");
        self.leading.send_replace(true);
    }

    /// Stops leading: the loops are stopped (waits until they are), then writes are
    /// unconditional again.
    pub async fn step_down(&self, why: &str) {
        self.fence.depose();
        if self.leading.send_replace(false) {
            tracing::warn!(kernel = %self.kernel_id, "this kernel is no longer the leader ({why}): stopping its loops");
        }
        let mut running = self.running.subscribe();
        let _ = running.wait_for(|r| !r).await;
        self.leader.write().0 = None;
        self.fence.open();
    }

    /// Runs `start`'s loops while this kernel leads and stops them (aborting, then awaiting
    /// each) when it stops leading; never returns.
    pub async fn lead<F>(self: Arc<Self>, start: F)
    where
        F: Fn() -> Vec<tokio::task::JoinHandle<()>>,
    {
        let mut leading = self.leading.subscribe();
        loop {
            if leading.wait_for(|l| *l).await.is_err() {
                return;
            }
            // Running first, then leading checked again: a step-down that saw the loops not
            // running (and opened the fence) is seen here, and nothing starts.
            self.running.send_replace(true);
            if !*self.leading.borrow() {
                self.running.send_replace(false);
                continue;
            }
            let loops = start();
            if leading.wait_for(|l| !*l).await.is_err() {
                return;
            }
            for task in &loops {
                task.abort();
            }
            for task in loops {
                let _ = task.await;
            }
            self.running.send_replace(false);
        }
    }
}

//! The etcd store: the [`Store`] trait on an etcd v3 cluster, shared by several kernels.
//!
//! Every key lives under a configurable prefix (e.g. `/lain/`), so several kernels or tests can
//! share one cluster. The `Store` API is blocking while the etcd client is async: the store owns
//! a one-thread tokio runtime and every call runs its future there and waits on a std channel.
//! Nothing ever calls `block_on`, so the store works from any thread, including tokio's
//! `spawn_blocking` threads (calling it straight from an async task would block that worker,
//! as any blocking call does). Dropping the store shuts its runtime down without blocking.
//!
//! Limits come from etcd: one apply may hold at most `--max-txn-ops` ops (128 by default) and
//! `--max-request-bytes` of data (1.5 MiB by default).
//!
//! Reads and writes ask etcd to require a leader (gRPC metadata `hasleader`): a member that has
//! none (quorum lost, or an election under way) refuses the request at once, before it is
//! proposed, instead of holding it until etcd's own request timeout. The store tries such a
//! request again for [`ELECTION_PATIENCE`], which an election takes, so losing one member of
//! three goes unseen while losing quorum fails in seconds. Watches do not require a leader: they
//! go on where a member still serves them.

use super::{Change, Expect, Op, Store, StoreError, Watch, compacted, last_op_per_key};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KvClient,
    Txn, TxnOp, WatchClient, WatchOptions, WatchStream,
};
use std::future::Future;
use std::sync::mpsc::{Sender, channel};
use std::time::Duration;
use tokio::runtime::{Handle, Runtime};

/// The largest response the store accepts (prefix listings of big values).
const MAX_MESSAGE: usize = 256 << 20;

/// How long a request refused for want of a leader is tried again (every [`ELECTION_RETRY`]):
/// etcd elects a new leader within about two election timeouts (1 s each by default).
const ELECTION_PATIENCE: Duration = Duration::from_secs(3);

/// The pause between tries while etcd has no leader.
const ELECTION_RETRY: Duration = Duration::from_millis(250);

/// How long the first try of a read may take before it is given up and tried again (without a
/// bound). A read that reached a member just before it lost quorum waits there for etcd's own
/// request timeout (7 s); asked again, the member says at once that it has no leader. A healthy
/// cluster answers a linearizable read in one heartbeat round.
const READ_TRY: Duration = Duration::from_secs(2);

/// A [`Store`] on etcd; see the module docs.
pub struct EtcdStore {
    runtime: OwnedRuntime,
    kv: KvClient,
    watcher: WatchClient,
    prefix: String,
}

/// A runtime that shuts down in the background when dropped, so dropping the store inside an
/// async context does not panic.
struct OwnedRuntime(Option<Runtime>);

impl Drop for OwnedRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// A store error from an etcd error; errors that mean "no quorum or no member reachable"
/// say so first.
fn etcd_err(e: etcd_client::Error) -> StoreError {
    let text = e.to_string();
    let unavailable = [
        "no leader",
        "timed out",
        "Unavailable",
        "transport error",
        "Connection refused",
        "deadline",
    ];
    if unavailable.iter().any(|s| text.contains(s)) {
        StoreError(format!(
            "etcd unavailable (no quorum, or no member reachable; kernels recover by themselves \
             when it is back): {text}"
        ))
    } else {
        StoreError(format!("etcd: {text}"))
    }
}

fn to_i64(revision: u64) -> Result<i64, StoreError> {
    i64::try_from(revision).map_err(|_| StoreError(format!("revision {revision} out of range")))
}

fn to_u64(revision: i64) -> Result<u64, StoreError> {
    u64::try_from(revision).map_err(|_| StoreError(format!("etcd revision {revision} invalid")))
}

/// What a try that ran out of [`READ_TRY`] fails with.
const NO_ANSWER: &str = "no answer within";

/// `fut`, failing with [`NO_ANSWER`] when it takes longer than `limit`.
async fn within<T>(
    limit: Duration,
    fut: impl Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, etcd_client::Error> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(etcd_client::Error::IoError(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("{NO_ANSWER} {limit:?}: the member may have no leader"),
        )))
    })
}

/// Runs `fut` on `handle`'s runtime and waits for it from this (non-async) thread.
fn run<T, F>(handle: &Handle, fut: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv()
        .map_err(|_| StoreError("etcd: the store's runtime stopped".into()))?
        .map_err(etcd_err)
}

impl EtcdStore {
    /// Connects to the etcd cluster at `endpoints` (e.g. `http://127.0.0.1:2379`), keeping
    /// every key under `prefix`; fails unless the cluster answers within a few seconds.
    pub fn connect(endpoints: &[String], prefix: &str) -> Result<EtcdStore, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lain-etcd")
            .enable_all()
            .build()
            .map_err(|e| StoreError(format!("etcd: cannot start a runtime: {e}")))?;
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(Duration::from_secs(30));
        let connect = |options: ConnectOptions| {
            let endpoints = endpoints.to_vec();
            run(runtime.handle(), async move {
                Client::connect(endpoints, Some(options)).await
            })
        };
        let reads_and_writes = connect(options.clone().with_require_leader(true))?;
        let watches = connect(options)?;
        let store = EtcdStore {
            kv: reads_and_writes
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE),
            watcher: watches
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE),
            runtime: OwnedRuntime(Some(runtime)),
            prefix: prefix.to_string(),
        };
        store.revision()?;
        Ok(store)
    }

    /// Compacts etcd's history (cluster-wide) so that watches from a revision before `through`
    /// fail as compacted; `through` is capped at the current revision.
    pub fn compact(&self, through: u64) -> Result<(), StoreError> {
        let at = to_i64(through.saturating_add(1).min(self.revision()?))?;
        let mut kv = self.kv.clone();
        let options = CompactionOptions::new().with_physical();
        self.run(async move { kv.compact(at, Some(options)).await })
            .map(|_| ())
    }

    fn run<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        run(self.handle()?, fut)
    }

    /// [`EtcdStore::run`] of `make()`, again while the request could not even connect to the
    /// member it went to (the client spreads requests over every endpoint, and one stopped
    /// member of a healthy cluster must not fail them), while the member refused it for want of
    /// a leader (before proposing it, so a write too) for at most [`ELECTION_PATIENCE`], and,
    /// for a `read`, when the leader changed under it, or once without a bound when its first
    /// try took [`READ_TRY`]. A write that reached the proposal is never sent twice (its
    /// outcome may be unknown).
    fn run_retrying<T, F, Fut>(&self, read: bool, make: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send + 'static,
    {
        let mut attempt = 0;
        let patience = std::time::Instant::now() + ELECTION_PATIENCE;
        // Only a read's first try is bounded: one that ran out of time is asked again without a
        // bound, so a slow answer (a large listing) still comes, while a member without a
        // leader refuses the second try at once.
        let mut bounded = read;
        loop {
            let tried = if bounded {
                self.run(within(READ_TRY, make()))
            } else {
                self.run(make())
            };
            match tried {
                Err(e) if attempt < 4 && e.0.contains("tcp connect error") => {
                    attempt += 1;
                    tracing::debug!("etcd: retrying on another member: {e}");
                }
                Err(e) if bounded && e.0.contains(NO_ANSWER) => {
                    bounded = false;
                    tracing::debug!("etcd: asking again: {e}");
                }
                Err(e)
                    if std::time::Instant::now() < patience
                        && (e.0.contains("no leader")
                            || read && e.0.contains("leader changed")) =>
                {
                    tracing::debug!("etcd: retrying while it elects a leader: {e}");
                    std::thread::sleep(ELECTION_RETRY);
                }
                result => return result,
            }
        }
    }

    /// The store's runtime (always there until the store is dropped).
    fn handle(&self) -> Result<&Handle, StoreError> {
        match &self.runtime.0 {
            Some(runtime) => Ok(runtime.handle()),
            None => Err(StoreError("etcd: the store is closed".into())),
        }
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn get_range(
        &self,
        key: &str,
        options: GetOptions,
    ) -> Result<etcd_client::GetResponse, StoreError> {
        let key = self.full_key(key);
        self.run_retrying(true, || {
            let (mut kv, key, options) = (self.kv.clone(), key.clone(), options.clone());
            async move { kv.get(key, Some(options)).await }
        })
    }
}

/// The store key of an etcd key: without the prefix.
fn store_key(prefix: &str, key: &[u8]) -> Result<String, StoreError> {
    std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(prefix))
        .map(str::to_string)
        .ok_or_else(|| {
            StoreError(format!(
                "etcd: unexpected key {}",
                String::from_utf8_lossy(key)
            ))
        })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<u64, StoreError> {
    to_u64(header.map_or(0, |h| h.revision()))
}

impl Store for EtcdStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self.get_range(key, GetOptions::new())?;
        Ok(response.kvs().first().map(|kv| kv.value().to_vec()))
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let response = self.get_range(prefix, GetOptions::new().with_prefix())?;
        response
            .kvs()
            .iter()
            .map(|kv| Ok((store_key(&self.prefix, kv.key())?, kv.value().to_vec())))
            .collect()
    }

    /// One etcd transaction with every put and delete; returns its header revision.
    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        self.apply_if(&[], ops)?
            .ok_or_else(|| StoreError("etcd: a transaction without conditions failed".into()))
    }

    /// One etcd transaction whose `compare` is `expect` (a value, or version 0 for an absent
    /// key) and whose success branch is every put and delete.
    fn apply_if(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        let ops: Vec<TxnOp> = last_op_per_key(ops)
            .into_iter()
            .map(|op| match op {
                Op::Put(k, v) => TxnOp::put(self.full_key(&k), v, None),
                Op::Delete(k) => TxnOp::delete(self.full_key(&k), None),
            })
            .collect();
        let compares: Vec<Compare> = expect
            .iter()
            .map(|e| match &e.value {
                Some(v) => Compare::value(self.full_key(&e.key), CompareOp::Equal, v.clone()),
                None => Compare::version(self.full_key(&e.key), CompareOp::Equal, 0),
            })
            .collect();
        if ops.is_empty() && compares.is_empty() {
            return self.revision().map(Some);
        }
        let txn = Txn::new().when(compares).and_then(ops);
        let response = self.run_retrying(false, || {
            let (mut kv, txn) = (self.kv.clone(), txn.clone());
            async move { kv.txn(txn).await }
        })?;
        if !response.succeeded() {
            return Ok(None);
        }
        header_revision(response.header()).map(Some)
    }

    fn revision(&self) -> Result<u64, StoreError> {
        let response = self.get_range("", GetOptions::new().with_count_only())?;
        header_revision(response.header())
    }

    /// An etcd watch with `start_revision = from_revision + 1`, forwarded by a task on the
    /// store's runtime until the [`Watch`] is dropped.
    fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        let start = to_i64(from_revision.saturating_add(1))?;
        // etcd reports a compacted start only inside the stream: check up front instead.
        if from_revision < self.revision()? {
            let probe = GetOptions::new().with_count_only().with_revision(start);
            if let Err(e) = self.get_range(prefix, probe) {
                return Err(if e.0.contains("compacted") {
                    compacted(from_revision, e)
                } else {
                    e
                });
            }
        }
        let mut watcher = self.watcher.clone();
        let key = self.full_key(prefix);
        let options = WatchOptions::new().with_prefix().with_start_revision(start);
        let stream = self.run(async move { watcher.watch(key, Some(options)).await })?;
        let (tx, rx) = channel();
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let store_prefix = self.prefix.clone();
        self.handle()?.spawn(async move {
            tokio::select! {
                _ = cancelled => {}
                () = forward(stream, &store_prefix, from_revision, &tx) => {}
            }
        });
        Ok(Watch::new(rx, Some(Box::new(cancel))))
    }
}

/// Forwards the events of `stream` to `tx` until either side ends; an error ends the feed.
async fn forward(
    mut stream: WatchStream,
    prefix: &str,
    from_revision: u64,
    tx: &Sender<Result<Change, StoreError>>,
) {
    loop {
        let response = match stream.message().await {
            Ok(Some(response)) => response,
            Ok(None) => {
                let _ = tx.send(Err(StoreError("etcd: the watch stream closed".into())));
                return;
            }
            Err(e) => {
                let _ = tx.send(Err(etcd_err(e)));
                return;
            }
        };
        if response.canceled() {
            let error = if response.compact_revision() > 0 {
                compacted(
                    from_revision,
                    format_args!("etcd compacted up to {}", response.compact_revision()),
                )
            } else {
                StoreError(format!(
                    "etcd cancelled the watch: {}",
                    response.cancel_reason()
                ))
            };
            let _ = tx.send(Err(error));
            return;
        }
        for event in response.events() {
            let Some(kv) = event.kv() else { continue };
            let change = store_key(prefix, kv.key()).and_then(|key| {
                let op = match event.event_type() {
                    EventType::Put => Op::Put(key, kv.value().to_vec()),
                    EventType::Delete => Op::Delete(key),
                };
                Ok(Change {
                    revision: to_u64(kv.mod_revision())?,
                    op,
                })
            });
            if tx.send(change).is_err() {
                return;
            }
        }
    }
}

//! Stream ports (LAIN's streamrouter): TCP connections and UDP datagrams forwarded from the
//! node's port `source` to port `destination` of a proc's ready instances.
//!
//! The table is rebuilt with the web routes (from the deployed apps, the stream claims and the
//! reconciler's last observation) and swapped in atomically. Each source port has one listener
//! task; a new connection goes to the next ready instance in turn (round robin), trying the
//! others when one refuses. An instance that stops being ready (or is being retired) gets no new
//! connection, while the connections it has are left to finish: that is the drain of a rolling
//! upgrade. A port the router cannot bind (in use, privileged) is reported in the table view and
//! the log, and tried again at the next rebuild; it never stops the router. UDP ports are served
//! by [`udp`]: a session per client address instead of a connection.

pub mod udp;

use crate::lifecycle::records::AppRecord;
use crate::lifecycle::stream_claims::StreamClaim;
use crate::lifecycle::view::InstanceView;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::plugin::bindings::types::Protocol as PlanProtocol;
pub use crate::runtime::Protocol;
use arc_swap::ArcSwap;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long connecting to one instance may take before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes buffered per direction of a forwarded connection.
const BUFFER: usize = 64 * 1024;
/// Connections one source port forwards at once (each holds two [`BUFFER`]s: 128 MiB at most
/// per port). Beyond it the listener stops accepting until one closes, so further clients wait
/// in the kernel's backlog instead of growing the router's memory without bound.
const MAX_CONNECTIONS: usize = 1024;

/// Where one source port goes.
#[derive(Debug)]
pub struct StreamTarget {
    /// The app holding the port.
    pub app: String,
    /// Its proc.
    pub proc: String,
    /// The instances' port.
    pub destination: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// `host:port` reaching `destination` of each ready instance: where new connections and
    /// sessions go.
    pub backends: Vec<String>,
    /// `host:port` of each instance still running but not ready or being retired: it gets
    /// nothing new, and a UDP session it has goes on until it is gone.
    pub draining: Vec<String>,
}

/// The stream table: source port -> target.
pub type StreamTable = BTreeMap<u16, Arc<StreamTarget>>;

/// The table for `apps` given the stream `claims` and the instances the reconciler saw: a port
/// is served only for the app that holds its claim; only ready instances not being retired are
/// backends.
pub fn build(
    apps: &[AppRecord],
    claims: &BTreeMap<u16, StreamClaim>,
    instances: &BTreeMap<String, Vec<InstanceView>>,
) -> StreamTable {
    let mut table = StreamTable::new();
    for app in apps {
        let Some(deployed) = &app.deployed else {
            continue;
        };
        let seen = instances.get(&app.name).map_or(&[][..], Vec::as_slice);
        for plan in &deployed.procs {
            for s in &plan.stream_ports {
                let owner = claims.get(&s.source);
                if owner.is_none_or(|c| c.app != app.name || c.proc != plan.name) {
                    continue;
                }
                let protocol = match s.protocol {
                    PlanProtocol::Tcp => Protocol::Tcp,
                    PlanProtocol::Udp => Protocol::Udp,
                };
                let key = crate::runtime::InstancePort {
                    number: s.destination,
                    protocol,
                }
                .to_string();
                let (mut backends, mut draining) = (Vec::new(), Vec::new());
                for i in seen
                    .iter()
                    .filter(|i| i.proc == plan.name && i.state.is_running())
                {
                    if let Some(at) = i.streams.get(&key) {
                        if i.ready && !i.retiring {
                            backends.push(at.clone());
                        } else {
                            draining.push(at.clone());
                        }
                    }
                }
                backends.sort();
                draining.sort();
                table.insert(
                    s.source,
                    Arc::new(StreamTarget {
                        app: app.name.clone(),
                        proc: plan.name.clone(),
                        destination: s.destination,
                        protocol,
                        backends,
                        draining,
                    }),
                );
            }
        }
    }
    table
}

/// One row of `lain router streams`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamView {
    /// The node's port.
    pub source: u16,
    /// The app holding it.
    pub app: String,
    /// Its proc.
    pub proc: String,
    /// The instances' port.
    pub destination: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `host:port` of each ready instance connections (sessions) go to.
    pub backends: Vec<String>,
    /// Whether the router listens on the port.
    pub listening: bool,
    /// Why it does not, when binding failed.
    pub error: Option<String>,
    /// Connections (UDP: sessions) forwarded since the router started.
    pub connections: u64,
    /// Connections (UDP: sessions) open now.
    pub active: u64,
    /// UDP: datagrams dropped, from a new client beyond the session bound or with no ready
    /// instance. Always 0 for TCP.
    #[serde(default)]
    pub dropped: u64,
}

/// Counters of one source port.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    active: AtomicU64,
    dropped: AtomicU64,
    next: AtomicUsize,
}

/// A running listener.
struct Listening {
    protocol: Protocol,
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

impl Drop for Listening {
    /// Stops accepting (connections already forwarded go on until they close).
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The stream forwarder: its table, listeners and their state.
pub struct StreamRouter {
    /// The address listeners bind (the web router's listening host).
    host: String,
    table: Arc<ArcSwap<StreamTable>>,
    listeners: Mutex<BTreeMap<u16, Listening>>,
    /// Why a port could not be bound, by port.
    failed: Mutex<BTreeMap<u16, String>>,
    /// The bounds of each UDP port.
    udp_limits: udp::Limits,
}

impl StreamRouter {
    /// A forwarder binding its ports on `host` (an IP address or name).
    pub fn new(host: &str) -> StreamRouter {
        StreamRouter {
            host: host.to_string(),
            table: Arc::new(ArcSwap::from_pointee(StreamTable::new())),
            listeners: Mutex::new(BTreeMap::new()),
            failed: Mutex::new(BTreeMap::new()),
            udp_limits: udp::Limits::default(),
        }
    }

    /// The same with other UDP bounds.
    pub fn with_udp_limits(mut self, limits: udp::Limits) -> StreamRouter {
        self.udp_limits = limits;
        self
    }

    /// The table of what `lc` holds now.
    pub fn read(lc: &Lifecycle) -> Result<StreamTable, LifecycleError> {
        let apps = lc.apps()?;
        let claims = crate::lifecycle::stream_claims::all(lc.store())?;
        let (_, instances) = lc.status().snapshot();
        Ok(build(&apps, &claims, &instances))
    }

    /// The current table.
    pub fn table(&self) -> Arc<StreamTable> {
        self.table.load_full()
    }

    /// Swaps in `table` and starts or stops listeners to match (on the current tokio runtime;
    /// without one, listeners are left as they are).
    pub fn set_table(&self, table: StreamTable) {
        self.table.store(Arc::new(table));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let table = self.table.load_full();
        let mut listeners = self.listeners.lock();
        let mut failed = self.failed.lock();
        listeners.retain(|port, l| table.get(port).is_some_and(|t| t.protocol == l.protocol));
        failed.retain(|port, _| table.contains_key(port));
        for (port, target) in table.iter() {
            if listeners.contains_key(port) {
                continue;
            }
            let counters = Arc::new(Counters::default());
            let started = match target.protocol {
                Protocol::Tcp => bind(&self.host, *port).map(|listener| {
                    runtime.spawn(accept(
                        listener,
                        *port,
                        self.table.clone(),
                        counters.clone(),
                        MAX_CONNECTIONS,
                    ))
                }),
                Protocol::Udp => udp::bind(&self.host, *port).map(|socket| {
                    runtime.spawn(udp::serve(
                        socket,
                        *port,
                        self.table.clone(),
                        counters.clone(),
                        self.udp_limits,
                    ))
                }),
            };
            match started {
                Ok(task) => {
                    failed.remove(port);
                    let protocol = target.protocol;
                    tracing::info!(
                        port,
                        protocol = protocol.as_str(),
                        "stream router listening"
                    );
                    listeners.insert(
                        *port,
                        Listening {
                            protocol,
                            task,
                            counters,
                        },
                    );
                }
                Err(e) => {
                    let why = e.to_string();
                    if failed.get(port) != Some(&why) {
                        tracing::warn!(
                            port,
                            host = %self.host,
                            "stream router: cannot listen on stream port {port}: {why}"
                        );
                    }
                    failed.insert(*port, why);
                }
            }
        }
    }

    /// The table with each port's listener state and counters.
    pub fn view(&self) -> Vec<StreamView> {
        let table = self.table.load_full();
        let listeners = self.listeners.lock();
        let failed = self.failed.lock();
        table
            .iter()
            .map(|(port, t)| {
                let counters = listeners.get(port).map(|l| &l.counters);
                StreamView {
                    source: *port,
                    app: t.app.clone(),
                    proc: t.proc.clone(),
                    destination: t.destination,
                    protocol: t.protocol.as_str().to_string(),
                    backends: t.backends.clone(),
                    listening: counters.is_some(),
                    error: failed.get(port).cloned(),
                    connections: counters.map_or(0, |c| c.connections.load(Ordering::Relaxed)),
                    active: counters.map_or(0, |c| c.active.load(Ordering::Relaxed)),
                    dropped: counters.map_or(0, |c| c.dropped.load(Ordering::Relaxed)),
                }
            })
            .collect()
    }
}

/// Binds `host:port` (no `SO_REUSEPORT`, so a port in use is an error).
fn bind(host: &str, port: u16) -> std::io::Result<TcpListener> {
    let listener = std::net::TcpListener::bind((host, port))?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Accepts connections on `port` until aborted, forwarding each to the port's current target,
/// at most `limit` at once.
async fn accept(
    listener: TcpListener,
    port: u16,
    table: Arc<ArcSwap<StreamTable>>,
    counters: Arc<Counters>,
    limit: usize,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(port, "stream router: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(target) = table.load().get(&port).cloned() else {
            continue;
        };
        let counters = counters.clone();
        tokio::spawn(async move {
            let _slot = slot;
            counters.connections.fetch_add(1, Ordering::Relaxed);
            counters.active.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = forward(client, &target, &counters).await {
                tracing::debug!(port, %peer, target = %format!("{}/{}", target.app, target.proc), "stream router: {e:#}");
            }
            counters.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Connects to the next backend that answers and copies both ways until both sides close.
async fn forward(
    mut client: TcpStream,
    target: &StreamTarget,
    counters: &Counters,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let n = target.backends.len();
    anyhow::ensure!(n > 0, "no ready instance");
    let first = counters.next.fetch_add(1, Ordering::Relaxed);
    let mut last = None;
    for k in 0..n {
        let backend = &target.backends[(first + k) % n];
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(backend.as_str())).await {
            Ok(Ok(mut upstream)) => {
                let _ = client.set_nodelay(true);
                let _ = upstream.set_nodelay(true);
                tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    BUFFER,
                    BUFFER,
                )
                .await
                .with_context(|| format!("forwarding to {backend}"))?;
                return Ok(());
            }
            Ok(Err(e)) => last = Some(format!("{backend}: {e}")),
            Err(_) => last = Some(format!("{backend}: connect timed out")),
        }
    }
    anyhow::bail!(
        "no instance accepted the connection (last: {})",
        last.unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo(tag: &'static str) -> String {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    if let Ok(n) = s.read(&mut buf).await {
                        let _ = s.write_all(tag.as_bytes()).await;
                        let _ = s.write_all(&buf[..n]).await;
                    }
                });
            }
        });
        addr
    }

    async fn ask(port: u16) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        s.write_all(b"hi").await.expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    }

    fn target(backends: Vec<String>) -> Arc<StreamTarget> {
        Arc::new(StreamTarget {
            app: "a".into(),
            proc: "p".into(),
            destination: 7,
            protocol: Protocol::Tcp,
            backends,
            draining: Vec::new(),
        })
    }

    #[tokio::test]
    async fn connections_go_round_robin_and_a_dead_backend_is_skipped() {
        let (a, b) = (echo("a:").await, echo("b:").await);
        let dead = format!("127.0.0.1:{}", free_port());
        let port = free_port();
        let router = StreamRouter::new("127.0.0.1");
        router.set_table(BTreeMap::from([(port, target(vec![a, dead, b]))]));
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(ask(port).await);
        }
        assert!(seen.iter().all(|s| s.ends_with("hi")), "{seen:?}");
        assert!(seen.iter().any(|s| s.starts_with("a:")), "{seen:?}");
        assert!(seen.iter().any(|s| s.starts_with("b:")), "{seen:?}");
        let view = router.view();
        assert_eq!(view[0].connections, 6);
        assert!(view[0].listening);
    }

    #[tokio::test]
    async fn a_port_forwards_at_most_its_limit_of_connections_at_once() {
        let a = echo("a:").await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let table = Arc::new(ArcSwap::from_pointee(BTreeMap::from([(
            port,
            target(vec![a]),
        )])));
        tokio::spawn(accept(listener, port, table, Arc::default(), 1));
        // The first connection holds the only slot until it is answered.
        let mut first = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        second.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 8];
        let waited = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
        assert!(waited.is_err(), "the second connection waits for a slot");
        first.write_all(b"x").await.expect("write");
        let mut out = String::new();
        first.read_to_string(&mut out).await.expect("read");
        assert_eq!(out, "a:x");
        drop(first);
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(5), second.read_to_string(&mut out))
            .await
            .expect("answered once the first closed")
            .expect("read");
        assert_eq!(out, "a:hi");
    }

    #[tokio::test]
    async fn a_port_in_use_is_reported_and_the_rest_are_served() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let busy = taken.local_addr().expect("addr").port();
        let free = free_port();
        let a = echo("a:").await;
        let router = StreamRouter::new("127.0.0.1");
        router.set_table(BTreeMap::from([
            (busy, target(vec![a.clone()])),
            (free, target(vec![a])),
        ]));
        let view = router.view();
        let row = |p: u16| view.iter().find(|v| v.source == p).expect("row");
        assert!(!row(busy).listening);
        assert!(row(busy).error.as_deref().is_some_and(|e| !e.is_empty()));
        assert!(row(free).listening);
        assert_eq!(ask(free).await, "a:hi");
        router.set_table(BTreeMap::new());
        assert!(router.view().is_empty());
        // The aborted listener task is dropped at the runtime's next turn.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            TcpStream::connect(("127.0.0.1", free)).await.is_err(),
            "a port out of the table is closed"
        );
    }
}

//! UDP stream ports: datagrams to the node's port `source` forwarded to a proc's ready instances.
//!
//! One socket per source port. Each client address gets a session: its own upstream socket,
//! connected to one ready instance (the next in turn, as TCP connections are spread), over which
//! its datagrams go and from which the instance's replies are relayed back to it. A session ends
//! when it has been idle (no datagram either way) for [`Limits::idle`], when its instance is gone
//! (neither ready nor draining), or when the instance refuses (its port is closed); the client's
//! next datagram then opens a new one. An instance being retired or not ready gets no new
//! session; the sessions it has go on until it is gone (the drain of a rolling upgrade).
//!
//! Bounds: a datagram is at most [`MAX_DATAGRAM`] bytes (longer ones are truncated by the
//! kernel's receive); a port holds at most [`Limits::sessions`] sessions, each with one
//! [`MAX_DATAGRAM`] reply buffer. A datagram from a new client beyond the bound is dropped and
//! counted (`dropped`), so a flood of spoofed addresses cannot grow memory nor evict the clients
//! already served.

use super::{Counters, StreamTable, StreamTarget};
use arc_swap::ArcSwap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// The largest datagram forwarded, either way (UDP's own limit is 65,507 bytes of payload).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// How many sessions a port holds and how long an idle one lives.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Sessions (client addresses) at once.
    pub sessions: usize,
    /// A session with no datagram either way for this long ends.
    pub idle: Duration,
}

impl Default for Limits {
    /// 1024 sessions (64 MiB of reply buffers at most), 60 s idle.
    fn default() -> Limits {
        Limits {
            sessions: 1024,
            idle: Duration::from_secs(60),
        }
    }
}

/// One client's session.
struct Session {
    /// The `host:port` of its instance, as the table names it.
    backend: String,
    upstream: Arc<UdpSocket>,
    /// Milliseconds since the port's epoch at the last datagram either way.
    last: Arc<AtomicU64>,
    /// Set when the instance refused (ICMP port unreachable) or the socket failed.
    closed: Arc<AtomicBool>,
    relay: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Binds `host:port` for UDP.
pub(super) fn bind(host: &str, port: u16) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind((host, port))?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// Serves `port` on `socket` until aborted (its sessions end with it).
pub(super) async fn serve(
    socket: UdpSocket,
    port: u16,
    table: Arc<ArcSwap<StreamTable>>,
    counters: Arc<Counters>,
    limits: Limits,
) {
    let socket = Arc::new(socket);
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_millis() as u64;
    let idle = limits.idle.as_millis() as u64;
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval((limits.idle / 4).min(Duration::from_secs(1)));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            got = socket.recv_from(&mut buf) => {
                let (n, peer) = match got {
                    Ok(got) => got,
                    Err(e) => {
                        tracing::debug!(port, "stream router: udp receive: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let Some(target) = table.load().get(&port).cloned() else {
                    continue;
                };
                if sessions.get(&peer).is_some_and(|s| !alive(s, &target)) {
                    sessions.remove(&peer);
                }
                if !sessions.contains_key(&peer) {
                    if sessions.len() >= limits.sessions {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        counters.active.store(sessions.len() as u64, Ordering::Relaxed);
                        continue;
                    }
                    match open(&socket, peer, &target, &counters, now).await {
                        Ok(session) => {
                            counters.connections.fetch_add(1, Ordering::Relaxed);
                            sessions.insert(peer, session);
                        }
                        Err(e) => {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(port, %peer, "stream router: udp: {e:#}");
                            continue;
                        }
                    }
                }
                counters.active.store(sessions.len() as u64, Ordering::Relaxed);
                let Some(session) = sessions.get(&peer) else {
                    continue;
                };
                session.last.store(now(), Ordering::Relaxed);
                if let Err(e) = session.upstream.send(&buf[..n]).await {
                    tracing::debug!(port, %peer, backend = %session.backend, "stream router: udp send: {e}");
                    session.closed.store(true, Ordering::Relaxed);
                }
            }
            _ = sweep.tick() => {
                let target = table.load().get(&port).cloned();
                let t = now();
                sessions.retain(|_, s| {
                    t.saturating_sub(s.last.load(Ordering::Relaxed)) < idle
                        && target.as_ref().is_some_and(|target| alive(s, target))
                });
                counters.active.store(sessions.len() as u64, Ordering::Relaxed);
            }
        }
    }
}

/// Whether `session` may go on: its instance is still ready or draining, and did not refuse.
fn alive(session: &Session, target: &StreamTarget) -> bool {
    !session.closed.load(Ordering::Relaxed)
        && (target.backends.contains(&session.backend)
            || target.draining.contains(&session.backend))
}

/// A session for `peer` to the next ready instance, its replies relayed through `socket`.
async fn open(
    socket: &Arc<UdpSocket>,
    peer: SocketAddr,
    target: &StreamTarget,
    counters: &Counters,
    now: impl Fn() -> u64 + Send + 'static,
) -> anyhow::Result<Session> {
    use anyhow::Context as _;
    let n = target.backends.len();
    anyhow::ensure!(n > 0, "no ready instance");
    let backend = target.backends[counters.next.fetch_add(1, Ordering::Relaxed) % n].clone();
    let addr = tokio::net::lookup_host(backend.as_str())
        .await
        .with_context(|| format!("resolving {backend}"))?
        .next()
        .with_context(|| format!("{backend} resolves to no address"))?;
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let upstream = UdpSocket::bind(local)
        .await
        .context("binding an upstream socket")?;
    upstream
        .connect(addr)
        .await
        .with_context(|| format!("connecting to {backend}"))?;
    let upstream = Arc::new(upstream);
    let last = Arc::new(AtomicU64::new(now()));
    let closed = Arc::new(AtomicBool::new(false));
    let relay = tokio::spawn(relay(
        upstream.clone(),
        socket.clone(),
        peer,
        last.clone(),
        closed.clone(),
        now,
    ));
    Ok(Session {
        backend,
        upstream,
        last,
        closed,
        relay,
    })
}

/// Relays what the instance sends on `upstream` to `peer` through `socket`, until the instance
/// refuses or the session is dropped.
async fn relay(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    peer: SocketAddr,
    last: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    now: impl Fn() -> u64,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match upstream.recv(&mut buf).await {
            Ok(n) => {
                last.store(now(), Ordering::Relaxed);
                if let Err(e) = socket.send_to(&buf[..n], peer).await {
                    tracing::debug!(%peer, "stream router: udp reply: {e}");
                }
            }
            Err(e) => {
                // ECONNREFUSED: the instance's port is closed; the next datagram opens a new
                // session.
                tracing::debug!(%peer, "stream router: udp upstream: {e}");
                closed.store(true, Ordering::Relaxed);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::stream::Protocol;
    use std::collections::BTreeMap;

    /// A UDP echo answering `tag` then what it got; its address.
    async fn echo(tag: &'static str) -> String {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        let addr = s.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            while let Ok((n, peer)) = s.recv_from(&mut buf).await {
                let mut out = tag.as_bytes().to_vec();
                out.extend_from_slice(&buf[..n]);
                let _ = s.send_to(&out, peer).await;
            }
        });
        addr
    }

    fn target(backends: Vec<String>, draining: Vec<String>) -> Arc<StreamTarget> {
        Arc::new(StreamTarget {
            app: "a".into(),
            proc: "p".into(),
            destination: 7,
            protocol: Protocol::Udp,
            backends,
            draining,
        })
    }

    /// Serves a free port with `limits`; the port, the table and the counters.
    async fn start(
        t: Arc<StreamTarget>,
        limits: Limits,
    ) -> (u16, Arc<ArcSwap<StreamTable>>, Arc<Counters>) {
        let socket = bind("127.0.0.1", 0).expect("bind");
        let port = socket.local_addr().expect("addr").port();
        let table = Arc::new(ArcSwap::from_pointee(BTreeMap::from([(port, t)])));
        let counters = Arc::new(Counters::default());
        tokio::spawn(serve(socket, port, table.clone(), counters.clone(), limits));
        (port, table, counters)
    }

    async fn ask(client: &UdpSocket, port: u16, what: &str) -> Option<String> {
        client
            .send_to(what.as_bytes(), ("127.0.0.1", port))
            .await
            .expect("send");
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let n = tokio::time::timeout(Duration::from_secs(2), client.recv(&mut buf))
            .await
            .ok()?
            .ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    async fn client() -> UdpSocket {
        UdpSocket::bind("127.0.0.1:0").await.expect("bind")
    }

    #[tokio::test]
    async fn each_client_gets_its_own_replies_from_one_instance_and_clients_are_spread() {
        let (a, b) = (echo("a:").await, echo("b:").await);
        let (port, _, counters) = start(target(vec![a, b], vec![]), Limits::default()).await;
        let (one, two) = (client().await, client().await);
        let first = ask(&one, port, "one").await.expect("a reply");
        let second = ask(&two, port, "two").await.expect("a reply");
        assert!(
            first.ends_with(":one") && second.ends_with(":two"),
            "{first} {second}"
        );
        assert_ne!(first[..2], second[..2], "two clients, two instances");
        for _ in 0..3 {
            let again = ask(&one, port, "one").await.expect("a reply");
            assert_eq!(again[..2], first[..2], "a session keeps its instance");
        }
        assert_eq!(counters.connections.load(Ordering::Relaxed), 2);
        assert_eq!(counters.active.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn new_clients_beyond_the_bound_are_dropped_and_idle_sessions_expire() {
        let a = echo("a:").await;
        let limits = Limits {
            sessions: 3,
            idle: Duration::from_millis(400),
        };
        let (port, _, counters) = start(target(vec![a], vec![]), limits).await;
        let kept = client().await;
        assert!(ask(&kept, port, "x").await.is_some());
        let mut flood = Vec::new();
        for _ in 0..10 {
            let c = client().await;
            c.send_to(b"flood", ("127.0.0.1", port))
                .await
                .expect("send");
            flood.push(c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(counters.active.load(Ordering::Relaxed), 3);
        assert_eq!(counters.dropped.load(Ordering::Relaxed), 8);
        assert_eq!(
            ask(&kept, port, "y").await.as_deref(),
            Some("a:y"),
            "kept is served"
        );
        // Once idle past the timeout, sessions end and a new client is served.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(counters.active.load(Ordering::Relaxed), 0);
        let late = client().await;
        assert_eq!(ask(&late, port, "z").await.as_deref(), Some("a:z"));
    }

    #[tokio::test]
    async fn a_draining_instance_keeps_its_sessions_and_a_gone_one_loses_them() {
        let (a, b) = (echo("a:").await, echo("b:").await);
        let limits = Limits {
            sessions: 8,
            idle: Duration::from_secs(60),
        };
        let (port, table, _) = start(target(vec![a.clone()], vec![]), limits).await;
        let c = client().await;
        assert_eq!(ask(&c, port, "1").await.as_deref(), Some("a:1"));
        // a is retired: new clients go to b, c stays on a.
        table.store(Arc::new(BTreeMap::from([(
            port,
            target(vec![b.clone()], vec![a]),
        )])));
        assert_eq!(ask(&c, port, "2").await.as_deref(), Some("a:2"));
        assert_eq!(
            ask(&client().await, port, "3").await.as_deref(),
            Some("b:3")
        );
        // a is gone: c's next datagram opens a session to b.
        table.store(Arc::new(BTreeMap::from([(port, target(vec![b], vec![]))])));
        assert_eq!(ask(&c, port, "4").await.as_deref(), Some("b:4"));
    }

    #[tokio::test]
    async fn a_refusing_instance_ends_the_session_and_the_next_datagram_finds_another() {
        let dead = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.local_addr().expect("addr").to_string()
        };
        let a = echo("a:").await;
        let (port, _, _) = start(target(vec![dead, a], vec![]), Limits::default()).await;
        let c = client().await;
        let mut answers = Vec::new();
        for i in 0..4 {
            answers.push(ask(&c, port, &i.to_string()).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            answers.iter().flatten().any(|a| a.starts_with("a:")),
            "{answers:?}"
        );
        assert!(
            answers
                .last()
                .is_some_and(|a| a.as_deref().is_some_and(|a| a.starts_with("a:"))),
            "{answers:?}"
        );
    }
}

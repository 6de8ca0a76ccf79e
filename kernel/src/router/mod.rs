//! The web router (LAIN's webrouter): HTTP traffic to web procs, by host and path; and stream
//! ports (LAIN's streamrouter).
//!
//! - [`table`]: the routes, rebuilt from the deployed web procs and their ready instances whenever
//!   the reconciler publishes what it saw, and swapped in atomically: routes follow deploys,
//!   scaling and health without a restart and without touching open connections.
//! - [`server`]: listeners (HTTP, and HTTPS with [`tls`]) served by worker threads, each with its
//!   own single-threaded runtime and its own keep-alive pools to the instances, like nginx's
//!   workers: a request and its upstream connection never cross threads.
//! - [`proxy`]: one request: route, `https_only` redirect, proxy with one retry, upgrades.
//! - [`health`]: active checks on the `healthcheck` path and passive ones on connection errors.
//! - [`metrics`] and [`access`]: request counts and latencies, and access logs in the log store.
//! - [`crate::lifecycle::route_claims`]: which app each host and path belongs to; the table serves
//!   only the owner's.
//! - [`nginx`]: the same routes as nginx configuration, for sites that front lain with nginx.
//! - [`stream`]: stream ports (LAIN's streamrouter): TCP from a node port to a proc's ready
//!   instances, rebuilt with the route table; [`crate::lifecycle::stream_claims`] says which app
//!   each source port belongs to.
//!
//! Only ready instances take traffic; an instance being retired is taken out of the table first
//! and stopped after a drain period, so rolling upgrades drop no request.

pub mod access;
mod config;
pub mod health;
pub mod metrics;
pub mod nginx;
pub mod proxy;
pub mod server;
pub mod stream;
pub mod table;
pub mod tls;
pub mod upstream;

use crate::lifecycle::Lifecycle;
use arc_swap::ArcSwap;
pub use config::{CertificateConfig, Config, HealthConfig};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;
use table::RouteTable;

/// The router's shared state: its tables, health knowledge, counters and access log. Sockets
/// and pools live in [`server`].
pub struct WebRouter {
    /// The table from the state, before health checks.
    base: ArcSwap<RouteTable>,
    /// What requests are routed by: `base` without the backends the active checks took out.
    table: ArcSwap<RouteTable>,
    /// Serialises rebuilds of `table`.
    rebuild: Mutex<()>,
    next: AtomicUsize,
    /// What the health checks know.
    pub health: health::Backends,
    health_config: HealthConfig,
    /// Request counters by proc.
    pub stats: metrics::Stats,
    /// The access-log writer, if enabled.
    pub access: Option<access::AccessLog>,
    /// The HTTPS listener's port (0: none), for `https_only` redirects.
    https_port: AtomicU16,
    /// Stream ports (LAIN's streamrouter), bound on the host of `[router] listen`.
    pub streams: stream::StreamRouter,
}

impl Default for WebRouter {
    /// A router without access logs, with LAIN's health-check settings.
    fn default() -> Self {
        WebRouter {
            base: ArcSwap::from_pointee(RouteTable::default()),
            table: ArcSwap::from_pointee(RouteTable::default()),
            rebuild: Mutex::new(()),
            next: AtomicUsize::new(0),
            health: health::Backends::default(),
            health_config: HealthConfig::default(),
            stats: metrics::Stats::default(),
            access: None,
            https_port: AtomicU16::new(0),
            streams: stream::StreamRouter::new("127.0.0.1"),
        }
    }
}

impl WebRouter {
    /// A router configured by `[router]`, writing access logs under `logs_dir` if enabled.
    pub fn new(config: &Config, logs_dir: &Path) -> std::io::Result<WebRouter> {
        let access = if config.access_log {
            Some(access::AccessLog::start(logs_dir)?)
        } else {
            None
        };
        Ok(WebRouter {
            health_config: config.health.clone(),
            access,
            streams: stream::StreamRouter::new(&listen_host(&config.listen)),
            ..WebRouter::default()
        })
    }

    /// Rebuilds the tables (web routes and stream ports) from the deployed apps and the
    /// reconciler's last observation.
    pub fn refresh(&self, lc: &Lifecycle) {
        match RouteTable::read(lc) {
            Ok(table) => self.set_table(table),
            // The table in use stays: a store that cannot be read takes no route away.
            Err(e) => tracing::warn!("router: cannot read apps and route claims: {e}"),
        }
        match stream::StreamRouter::read(lc) {
            Ok(table) => self.streams.set_table(table),
            Err(e) => tracing::warn!("router: cannot read apps and stream claims: {e}"),
        }
    }

    /// Replaces the table (each proc keeps its counters).
    pub fn set_table(&self, mut table: RouteTable) {
        for route in table.routes_mut() {
            route.stats = self.stats.adopt(&route.target);
        }
        let _guard = self.rebuild.lock();
        self.base.store(Arc::new(table));
        self.rebuild_locked();
    }

    /// Recomputes `table` from `base` and the backends that are down.
    fn rebuild_locked(&self) {
        let base = self.base.load_full();
        let down = self.health.down();
        if down.is_empty() {
            self.table.store(base);
            return;
        }
        let mut table = (*base).clone();
        for route in table.routes_mut() {
            let up: Vec<String> = route
                .backends
                .iter()
                .filter(|b| !down.contains(*b))
                .cloned()
                .collect();
            if !up.is_empty() {
                route.backends = up;
                route.refresh_upstreams();
            }
        }
        self.table.store(Arc::new(table));
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// The HTTPS port `https_only` redirects go to, if HTTPS is served.
    pub fn https_port(&self) -> Option<u16> {
        match self.https_port.load(Ordering::Relaxed) {
            0 => None,
            p => Some(p),
        }
    }

    /// Keeps the table in step with the reconciler until the task is dropped.
    pub async fn follow(self: Arc<Self>, lc: Arc<Lifecycle>) {
        let mut changes = lc.status().subscribe();
        loop {
            self.refresh(&lc);
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Runs the active health checks until the task is dropped (returns at once if disabled).
    pub async fn check_health(self: Arc<Self>) {
        let config = self.health_config.clone();
        if config.interval_ms == 0 {
            return;
        }
        let checker = health::checker();
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let mut tick = tokio::time::interval(Duration::from_millis(config.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let base = self.base.load_full();
            let mut checks: Vec<(&str, &str)> = base
                .routes()
                .filter_map(|r| r.health.as_deref().map(|path| (r, path)))
                .flat_map(|(r, path)| r.backends.iter().map(move |b| (b.as_str(), path)))
                .collect();
            checks.sort_unstable();
            checks.dedup_by_key(|(b, _)| *b);
            let current: HashSet<&str> = base
                .routes()
                .flat_map(|r| r.backends.iter().map(String::as_str))
                .collect();
            let mut changed = self.health.retain(&current);
            let results = futures::future::join_all(
                checks
                    .iter()
                    .map(|(backend, path)| checker.alive(backend, path, timeout)),
            )
            .await;
            for ((backend, _), alive) in checks.iter().zip(results) {
                changed |= self.health.checked(backend, alive, &config);
            }
            if changed {
                let _guard = self.rebuild.lock();
                self.rebuild_locked();
            }
        }
    }

    /// The index of the next backend of `route`, skipping `skip` and those held out after a
    /// connection error (unless that leaves none).
    fn pick(&self, route: &table::Route, skip: Option<usize>) -> Option<usize> {
        let n = route.upstreams.len();
        if skip.is_none() && self.health.all_passing() {
            return (n > 0).then(|| self.next.fetch_add(1, Ordering::Relaxed) % n);
        }
        let held = self.health.held();
        let others: Vec<usize> = (0..n).filter(|i| Some(*i) != skip).collect();
        let usable: Vec<usize> = others
            .iter()
            .copied()
            .filter(|i| route.backends.get(*i).is_some_and(|b| !held.contains(b)))
            .collect();
        let pool = if usable.is_empty() { others } else { usable };
        if pool.is_empty() {
            return None;
        }
        pool.get(self.next.fetch_add(1, Ordering::Relaxed) % pool.len())
            .copied()
    }
}

/// The host part of a listening address (`0.0.0.0:80` -> `0.0.0.0`, `[::1]:80` -> `::1`).
fn listen_host(address: &str) -> String {
    if let Ok(addr) = address.parse::<std::net::SocketAddr>() {
        return addr.ip().to_string();
    }
    address
        .rsplit_once(':')
        .map_or(address, |(host, _)| host)
        .trim_matches(['[', ']'])
        .to_string()
}

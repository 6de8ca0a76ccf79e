//! The web router (LAIN's webrouter): HTTP traffic to web procs, by host and path.
//!
//! The proxy core is hyper's pooled client (`hyper-util`, HTTP/1.1 keep-alive pools to the
//! instances); the server side is axum over hyper, so clients may speak HTTP/1.1 or HTTP/2. The
//! route table is rebuilt whenever the reconciler publishes what it saw and swapped in
//! atomically, so routes follow deploys, scaling and health without a restart and without
//! touching connections. Only ready instances take traffic; an instance being retired is taken out
//! first and stopped after a drain period, so rolling upgrades drop no request. A connection
//! error takes an instance out for a few seconds (passive health check) and a request without a
//! body is retried once on another instance.

pub mod nginx;
pub mod table;

use crate::lifecycle::Lifecycle;
use arc_swap::ArcSwap;
use axum::body::{Body, HttpBody as _};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use table::{RouteTable, forwarded_path};

/// How long an instance that refused a connection takes no traffic.
const PASSIVE_HOLD: Duration = Duration::from_secs(5);

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The router: its table and its connection pools.
pub struct WebRouter {
    table: ArcSwap<RouteTable>,
    client: Client<HttpConnector, Body>,
    next: AtomicUsize,
    failed: Mutex<HashMap<String, Instant>>,
    /// Entries in `failed`: zero on the fast path, which then takes no lock and allocates nothing.
    failures: AtomicUsize,
}

impl Default for WebRouter {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .build(connector);
        WebRouter {
            table: ArcSwap::from_pointee(RouteTable::default()),
            client,
            next: AtomicUsize::new(0),
            failed: Mutex::default(),
            failures: AtomicUsize::new(0),
        }
    }
}

impl WebRouter {
    /// Rebuilds the table from the deployed apps and the reconciler's last observation.
    pub fn refresh(&self, lc: &Lifecycle) {
        match lc.apps() {
            Ok(apps) => {
                let (_, instances) = lc.status.snapshot();
                self.table
                    .store(Arc::new(RouteTable::build(&apps, &instances)));
            }
            Err(e) => tracing::warn!("router: cannot read apps: {e}"),
        }
    }

    /// Replaces the table.
    pub fn set_table(&self, table: RouteTable) {
        self.table.store(Arc::new(table));
    }

    /// The current table.
    pub fn table(&self) -> Arc<RouteTable> {
        self.table.load_full()
    }

    /// Keeps the table in step with the reconciler until the task is dropped.
    pub async fn follow(self: Arc<Self>, lc: Arc<Lifecycle>) {
        let mut changes = lc.status.subscribe();
        loop {
            self.refresh(&lc);
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// The next backend of `backends`, skipping those that failed recently (unless all did).
    fn pick(&self, backends: &[String], skip: Option<&str>) -> Option<String> {
        if skip.is_none() && self.failures.load(Ordering::Relaxed) == 0 {
            if backends.is_empty() {
                return None;
            }
            let i = self.next.fetch_add(1, Ordering::Relaxed) % backends.len();
            return backends.get(i).cloned();
        }
        let mut failed = self.failed.lock();
        failed.retain(|_, t| t.elapsed() <= PASSIVE_HOLD);
        self.failures.store(failed.len(), Ordering::Relaxed);
        let usable: Vec<&String> = backends
            .iter()
            .filter(|b| Some(b.as_str()) != skip)
            .filter(|b| failed.get(*b).is_none_or(|t| t.elapsed() > PASSIVE_HOLD))
            .collect();
        let pool: Vec<&String> = if usable.is_empty() {
            backends
                .iter()
                .filter(|b| Some(b.as_str()) != skip)
                .collect()
        } else {
            usable
        };
        if pool.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % pool.len();
        pool.get(i).map(|b| (*b).clone())
    }
}

/// The router's HTTP service: every request is proxied.
pub fn app(router: Arc<WebRouter>) -> axum::Router {
    axum::Router::new().fallback(proxy).with_state(router)
}

async fn proxy(
    State(router): State<Arc<WebRouter>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request<Body>,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let table = router.table();
    let Some(route) = table.find(&host, request.uri().path()) else {
        return text(
            StatusCode::NOT_FOUND,
            format!("lain: no route for host `{host}` and path `{path_and_query}`\n"),
        );
    };
    if route.https_only {
        let location = format!(
            "https://{}{path_and_query}",
            host.split(':').next().unwrap_or(&host)
        );
        return (
            StatusCode::MOVED_PERMANENTLY,
            [(header::LOCATION, location)],
        )
            .into_response();
    }
    let target = route.target.clone();
    let path = forwarded_path(route, &path_and_query);
    let Some(mut backend) = router.pick(&route.backends, None) else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("lain: no ready instance of {target}\n"),
        );
    };
    let replayable = request.body().is_end_stream()
        || matches!(request.method().as_str(), "GET" | "HEAD" | "OPTIONS")
            && request.headers().get(header::CONTENT_LENGTH).is_none();
    let (parts, body) = request.into_parts();
    let mut body = Some(body);
    for attempt in 0..2 {
        let uri: Uri = match format!("http://{backend}{path}").parse() {
            Ok(uri) => uri,
            Err(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("lain: bad request path: {e}\n"),
                );
            }
        };
        let mut upstream = Request::builder().method(parts.method.clone()).uri(uri);
        if let Some(headers) = upstream.headers_mut() {
            copy_headers(&parts.headers, headers);
            forwarded_headers(headers, &host, peer);
        }
        let outgoing = body.take().unwrap_or_else(Body::empty);
        let Ok(upstream) = upstream.body(outgoing) else {
            return text(StatusCode::BAD_REQUEST, "lain: bad request\n".into());
        };
        match router.client.request(upstream).await {
            Ok(response) => {
                let (mut parts, incoming) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                return Response::from_parts(parts, Body::new(incoming));
            }
            Err(e) => {
                tracing::warn!(%backend, %target, "router: {e}");
                {
                    let mut failed = router.failed.lock();
                    failed.insert(backend.clone(), Instant::now());
                    router.failures.store(failed.len(), Ordering::Relaxed);
                }
                let retry = (attempt == 0 && replayable)
                    .then(|| router.pick(&route.backends, Some(&backend)))
                    .flatten();
                match retry {
                    Some(next) => backend = next,
                    None => break,
                }
            }
        }
    }
    text(
        StatusCode::BAD_GATEWAY,
        format!("lain: no instance of {target} answered\n"),
    )
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if !HOP_BY_HOP.contains(&name.as_str()) {
            to.append(name.clone(), value.clone());
        }
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// `X-Forwarded-For`, `-Host` and `-Proto`, as LAIN's webrouter (nginx) set them.
fn forwarded_headers(headers: &mut HeaderMap, host: &str, peer: SocketAddr) {
    let client = peer.ip().to_string();
    let chain = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client}"),
        None => client,
    };
    for (name, value) in [
        ("x-forwarded-for", chain),
        ("x-forwarded-host", host.to_string()),
        ("x-forwarded-proto", "http".to_string()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}

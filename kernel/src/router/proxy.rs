//! One request through the router: route, redirect or proxy, retry, upgrade, count, log.
//!
//! Requests and responses pass through as hyper bodies (no boxing, no buffering). The request's
//! own parts are reused for the upstream request: the URI is rewritten, hop-by-hop headers are
//! removed and the `X-Forwarded-*` headers LAIN's webrouter set are added. A bodiless request
//! whose backend refuses the connection is sent once more to another backend; anything with a
//! body is not (it may have been consumed). `Upgrade` requests (WebSocket) are tunnelled once the
//! backend answers `101`.

use super::WebRouter;
use super::metrics::RouteStats;
use super::table::forwarded_path;
use super::upstream::Upstreams;
use bytes::Bytes;
use http_body_util::{Either, Empty, Full};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

/// What the router answers: the instance's body, or its own short text.
pub type RouterBody = Either<Incoming, Full<Bytes>>;

/// Headers that belong to one connection and are never forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// One router thread's view: the shared router and the thread's own connection pools.
pub struct Worker {
    /// The shared router.
    pub router: Arc<WebRouter>,
    upstreams: Upstreams,
}

impl Worker {
    /// A worker with fresh pools (connections are owned by the thread that opened them).
    pub fn new(router: Arc<WebRouter>) -> Worker {
        Worker {
            router,
            upstreams: Upstreams::default(),
        }
    }
}

/// Who sent a request and how (one per connection).
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// It came over TLS.
    pub tls: bool,
    /// The client's IP as a header value, made once per connection.
    ip: HeaderValue,
}

impl Peer {
    /// The peer at `addr`, over TLS or not.
    pub fn new(addr: SocketAddr, tls: bool) -> Peer {
        let ip = HeaderValue::from_str(&addr.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("-"));
        Peer { addr, tls, ip }
    }
}

/// Answers one request.
pub async fn handle(
    w: &Worker,
    mut request: Request<Incoming>,
    peer: &Peer,
) -> Response<RouterBody> {
    let started = Instant::now();
    let host = host_of(&request);
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let base = Line {
        peer,
        method: &method,
        path: path_and_query.as_str(),
        version: request.version(),
        host: &host,
        user_agent: request.headers().get(header::USER_AGENT).cloned(),
        backend: None,
    };
    let table = w.router.table();
    let Some(route) = table.find(&host, path_and_query.path()) else {
        let response = text(
            StatusCode::NOT_FOUND,
            format!("lain: no route for host `{host}` and path `{path_and_query}`\n"),
        );
        finish(
            w,
            &w.router.stats.unrouted,
            &base,
            response.status(),
            started,
        );
        return response;
    };
    let stats = &route.stats;
    if route.https_only && !peer.tls {
        let response = redirect(&host, path_and_query.as_str(), w.router.https_port());
        finish(w, stats, &base, response.status(), started);
        return response;
    }
    let path = if route.prefix == "/" {
        path_and_query.clone()
    } else {
        match PathAndQuery::try_from(forwarded_path(route, path_and_query.as_str())) {
            Ok(p) => p,
            Err(e) => {
                let response = text(
                    StatusCode::BAD_REQUEST,
                    format!("lain: bad request path: {e}\n"),
                );
                finish(w, stats, &base, response.status(), started);
                return response;
            }
        }
    };
    let Some(mut backend) = w.router.pick(route, None) else {
        let response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("lain: no ready instance of {}\n", route.target),
        );
        finish(w, stats, &base, response.status(), started);
        return response;
    };
    let upgrade = is_upgrade(request.headers()).then(|| hyper::upgrade::on(&mut request));
    let replayable = request.body().is_end_stream()
        || matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
            && !request.headers().contains_key(header::CONTENT_LENGTH)
            && !request.headers().contains_key(header::TRANSFER_ENCODING);
    let (mut parts, body) = request.into_parts();
    prepare_headers(&mut parts.headers, &host, peer, upgrade.is_some());
    parts.version = Version::HTTP_11;
    // A retry needs another backend; with one there is nothing to keep the headers for.
    let replayable = replayable && route.upstreams.len() > 1;
    let retry_headers = replayable.then(|| parts.headers.clone());
    let mut outgoing = Some(Request::from_parts(parts, Either::Left(body)));
    for attempt in 0..2 {
        let mut upstream = match outgoing.take() {
            Some(r) => r,
            None => {
                let mut r = Request::new(Either::Right(Empty::new()));
                *r.method_mut() = method.clone();
                if let Some(h) = &retry_headers {
                    *r.headers_mut() = h.clone();
                }
                r
            }
        };
        let Some(authority) = route.upstreams.get(backend) else {
            break;
        };
        // Origin form: the connection already goes to the instance; `Host` stays the client's.
        *upstream.uri_mut() = Uri::from(path.clone());
        match w.upstreams.send(authority, upstream).await {
            Ok(mut response) => {
                if response.status() == StatusCode::SWITCHING_PROTOCOLS
                    && let Some(client_side) = upgrade
                {
                    let backend_side = hyper::upgrade::on(&mut response);
                    tokio::spawn(tunnel(client_side, backend_side, route.target.clone()));
                } else {
                    strip_hop_by_hop(response.headers_mut());
                }
                let response = response.map(Either::Left);
                let line = Line {
                    backend: route.backends.get(backend),
                    ..base
                };
                finish(w, stats, &line, response.status(), started);
                return response;
            }
            Err(e) => {
                let name = route.backends.get(backend).map_or("?", String::as_str);
                tracing::warn!(backend = %name, target = %route.target, "router: {e}");
                w.router.health.connection_failed(name);
                let retry = (attempt == 0 && replayable)
                    .then(|| w.router.pick(route, Some(backend)))
                    .flatten();
                match retry {
                    Some(next) => backend = next,
                    None => break,
                }
            }
        }
    }
    let response = text(
        StatusCode::BAD_GATEWAY,
        format!("lain: no instance of {} answered\n", route.target),
    );
    let line = Line {
        backend: route.backends.get(backend),
        ..base
    };
    finish(w, stats, &line, response.status(), started);
    response
}

/// The fields of an access-log line.
struct Line<'a> {
    peer: &'a Peer,
    method: &'a Method,
    path: &'a str,
    version: Version,
    host: &'a str,
    user_agent: Option<HeaderValue>,
    backend: Option<&'a String>,
}

thread_local! {
    /// The current second as an HTTP date, formatted once per second per worker.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// Counts the request and writes its access-log line:
/// `<date> <client> "<method> <path> <version>" <status> <seconds> host=<host>
/// upstream=<backend> scheme=<http|https> agent="<user agent>"`.
fn finish(w: &Worker, stats: &Arc<RouteStats>, l: &Line<'_>, status: StatusCode, started: Instant) {
    let elapsed = started.elapsed();
    stats.record(status.as_u16(), elapsed);
    let Some(log) = &w.router.access else {
        return;
    };
    let mut line = String::with_capacity(160 + l.path.len());
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let now = std::time::SystemTime::now();
        let secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if date.0 != secs {
            *date = (secs, httpdate::fmt_http_date(now));
        }
        line.push_str(&date.1);
    });
    let _ = write!(line, " {} \"{} ", l.peer.addr.ip(), l.method);
    push_escaped(&mut line, l.path);
    let version = match l.version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    let _ = write!(
        line,
        " {version}\" {} {:.3} host=",
        status.as_u16(),
        elapsed.as_secs_f64()
    );
    push_escaped(&mut line, l.host);
    line.push_str(" upstream=");
    line.push_str(l.backend.map_or("-", String::as_str));
    line.push_str(if l.peer.tls {
        " scheme=https agent=\""
    } else {
        " scheme=http agent=\""
    });
    push_escaped(
        &mut line,
        l.user_agent
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-"),
    );
    line.push('"');
    log.write(stats, line);
}

/// Appends `text`, escaping quotes, backslashes and control characters (a log line stays one
/// line and its quoted fields stay parseable).
fn push_escaped(out: &mut String, text: &str) {
    if text
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ')
    {
        out.push_str(text);
    } else {
        out.extend(text.escape_debug());
    }
}

/// The request's host: the `Host` header, else the URI's authority (HTTP/2).
fn host_of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default()
}

/// `https_only`: 301 to the same host and path on HTTPS (on the router's HTTPS port when it is
/// not 443).
fn redirect(host: &str, path_and_query: &str, https_port: Option<u16>) -> Response<RouterBody> {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let port = match https_port {
        Some(p) if p != 443 => format!(":{p}"),
        _ => String::new(),
    };
    let mut response = text(StatusCode::MOVED_PERMANENTLY, "lain: HTTPS only\n".into());
    if let Ok(location) = HeaderValue::from_str(&format!("https://{name}{port}{path_and_query}")) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn text(status: StatusCode, body: String) -> Response<RouterBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `Connection: upgrade` with an `Upgrade` header.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes hop-by-hop headers (and those `Connection` names) from `headers`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
}

/// The request headers as the instance gets them: hop-by-hop ones removed (kept for an upgrade),
/// `X-Forwarded-For`, `-Host`, `-Proto` and `X-Real-IP` set as LAIN's webrouter (nginx) set them.
fn prepare_headers(headers: &mut HeaderMap, host: &str, peer: &Peer, upgrade: bool) {
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(headers);
    if upgrade && let Some(protocol) = upgrade_to {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    let host_value = match headers.get(header::HOST) {
        Some(v) => Some(v.clone()),
        None => HeaderValue::from_str(host).ok(),
    };
    if let Some(v) = &host_value {
        headers.insert(header::HOST, v.clone());
    }
    let chain = match headers.get(X_FORWARDED_FOR).map(HeaderValue::as_bytes) {
        Some(prior) => {
            let mut chain = Vec::with_capacity(prior.len() + 2 + peer.ip.len());
            chain.extend_from_slice(prior);
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(peer.ip.as_bytes());
            HeaderValue::from_bytes(&chain).unwrap_or_else(|_| peer.ip.clone())
        }
        None => peer.ip.clone(),
    };
    headers.insert(X_FORWARDED_FOR, chain);
    headers.insert(X_REAL_IP, peer.ip.clone());
    if let Some(v) = host_value {
        headers.insert(X_FORWARDED_HOST, v);
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if peer.tls { "https" } else { "http" }),
    );
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// Copies bytes both ways between an upgraded client connection and its backend connection.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    backend: hyper::upgrade::OnUpgrade,
    target: String,
) {
    match tokio::try_join!(client, backend) {
        Ok((client, backend)) => {
            let (mut a, mut b) = (TokioIo::new(client), TokioIo::new(backend));
            if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await {
                tracing::debug!(%target, "router: upgraded connection ended: {e}");
            }
        }
        Err(e) => tracing::warn!(%target, "router: upgrade failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn redirects_keep_path_and_use_the_https_port() {
        let r = redirect("shop.lain.local:8080", "/a?b=1", Some(8443));
        assert_eq!(r.status(), StatusCode::MOVED_PERMANENTLY);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://shop.lain.local:8443/a?b=1"
        );
        let r = redirect("shop.lain.local", "/", Some(443));
        assert_eq!(r.headers()[header::LOCATION], "https://shop.lain.local/");
        let r = redirect("shop.lain.local", "/", None);
        assert_eq!(r.headers()[header::LOCATION], "https://shop.lain.local/");
    }

    #[test]
    fn forwarded_headers_append_to_the_chain() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        let peer = Peer::new("127.0.0.2:5000".parse().expect("addr"), true);
        prepare_headers(&mut h, "a.lain.local", &peer, true);
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-real-ip"], "127.0.0.2");
        assert_eq!(h[header::HOST], "a.lain.local");
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }
}

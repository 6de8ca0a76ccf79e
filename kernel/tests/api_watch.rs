//! `GET /api/v1/watch` through the API router (no socket), on the embedded store and on a real
//! etcd: the snapshot, changes filtered by the caller's rights (two users who each see only
//! their own app), resuming from an event id with no gap and no duplicate, a compacted `from`
//! (410), a slow reader dropped with a final error, and bad input refused.

mod common;

#[path = "store_suite/etcd_server.rs"]
mod etcd_server;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::token;
use http_body_util::BodyExt as _;
use lain::kernel::Kernel;
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt as _;

/// How long a test waits for an event that should come.
const PATIENCE: Duration = Duration::from_secs(15);

fn kernel(config: lain::config::KernelConfig) -> Kernel {
    let mut config = config;
    common::token_users(
        &mut config,
        &[("root", &["admins"]), ("alice", &[]), ("bob", &[])],
    );
    config.auth.register_users = vec!["token:alice".into(), "token:bob".into()];
    common::open_kernel(config).expect("kernel opens")
}

/// A tar holding a `lain.yaml` of app `app` (`n` varies its release).
fn context(app: &str, n: u32) -> Vec<u8> {
    let yaml = format!(
        "appname: {app}\nbuild:\n  base: busybox\n  script: [\"echo {n}\"]\nworker:\n  cmd: sleep 100\n"
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, "lain.yaml", yaml.as_bytes())
        .expect("append");
    b.into_inner().expect("tar")
}

async fn build(kernel: &Kernel, user: &str, app: &str, n: u32) {
    let (status, body) = common::api_raw(
        kernel,
        "POST",
        "/api/v1/builds",
        Some(&token(user)),
        Body::from(context(app, n)),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("\"event\":\"done\""), "{body}");
}

/// An open watch, read a line at a time.
struct Watch {
    body: Body,
    buf: Vec<u8>,
}

impl Watch {
    /// Opens `uri` as `user`, sending `last_event_id`; the status, and the stream when 200.
    async fn open(
        kernel: &Kernel,
        uri: &str,
        user: &str,
        last_event_id: Option<&str>,
    ) -> Result<Watch, (StatusCode, Value)> {
        let mut request = Request::builder()
            .uri(uri)
            .header("authorization", token(user));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = lain::api::app(kernel.app_state())
            .oneshot(request.body(Body::empty()).expect("request"))
            .await
            .expect("router answers");
        let status = response.status();
        if status != StatusCode::OK {
            let bytes = response
                .into_body()
                .collect()
                .await
                .expect("body")
                .to_bytes();
            return Err((
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            ));
        }
        Ok(Watch {
            body: response.into_body(),
            buf: Vec::new(),
        })
    }

    /// The next NDJSON line, or `None` when the stream ends or nothing comes within `wait`.
    async fn next_within(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(at) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=at).collect();
                return Some(serde_json::from_slice(&line).expect("a JSON line"));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .expect("stream");
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    async fn next(&mut self) -> Option<Value> {
        self.next_within(PATIENCE).await
    }

    /// Events up to the next one that has an id (status events have none), returned last.
    async fn until_id(&mut self) -> Vec<Value> {
        let mut seen = Vec::new();
        while let Some(event) = self.next().await {
            let has_id = event["id"].is_string();
            seen.push(event);
            if has_id {
                return seen;
            }
        }
        panic!("the stream ended or went quiet: {seen:#?}");
    }
}

fn names(events: &[Value], event: &str) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == event)
        .filter_map(|e| e["name"].as_str().map(str::to_string))
        .collect()
}

/// The behaviour both stores must show.
async fn scenario(kernel: &Kernel) {
    build(kernel, "alice", "alpha", 1).await;
    build(kernel, "bob", "beta", 1).await;

    // The snapshot: alice sees her app, not bob's, and the nodes; then `synced`.
    let mut alice = Watch::open(kernel, "/api/v1/watch?format=ndjson", "alice", None)
        .await
        .expect("alice watches");
    let snapshot = alice.until_id().await;
    let synced = snapshot.last().expect("synced");
    assert_eq!(synced["event"], "synced", "{snapshot:#?}");
    let s = synced["id"].as_str().expect("an id").to_string();
    assert_eq!(names(&snapshot, "app"), ["alpha"], "{snapshot:#?}");
    assert!(!names(&snapshot, "node").is_empty(), "{snapshot:#?}");
    assert!(
        snapshot
            .iter()
            .filter(|e| e["event"] == "app")
            .all(|e| e["action"] == "snapshot" && e["object"]["app"]["name"] == "alpha"),
        "{snapshot:#?}"
    );
    let mut bob = Watch::open(
        kernel,
        &format!("/api/v1/watch?format=ndjson&kinds=app&from={s}"),
        "bob",
        None,
    )
    .await
    .expect("bob watches");

    // bob's change is not alice's to see; hers comes with an id past the snapshot's.
    build(kernel, "bob", "beta", 2).await;
    build(kernel, "alice", "alpha", 2).await;
    let seen = alice.until_id().await;
    let put = seen.last().expect("an event");
    assert_eq!(
        (&put["event"], &put["name"], &put["action"]),
        (&json!("app"), &json!("alpha"), &json!("put")),
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|e| e.to_string().contains("beta")),
        "alice saw bob's app: {seen:#?}"
    );
    assert_eq!(put["object"]["app"]["name"], "alpha", "{put:#}");
    let i1 = put["id"].as_str().expect("id").to_string();
    assert_ne!(i1, s);
    let seen = bob.until_id().await;
    assert_eq!(
        names(&seen, "app").last().map(String::as_str),
        Some("beta"),
        "{seen:#?}"
    );
    assert!(
        !seen.iter().any(|e| e.to_string().contains("alpha")),
        "bob saw alice's app: {seen:#?}"
    );
    assert!(
        names(&seen, "node").is_empty(),
        "kinds=app: no nodes: {seen:#?}"
    );

    // Resuming from the snapshot's id gives the same change with the same id (no gap)...
    drop(alice);
    let mut again = Watch::open(kernel, "/api/v1/watch?format=ndjson", "alice", Some(&s))
        .await
        .expect("resume");
    let seen = again.until_id().await;
    assert_eq!(seen.last().expect("event")["id"], json!(i1), "{seen:#?}");
    assert!(
        seen[..seen.len() - 1]
            .iter()
            .all(|e| e["action"] == "status"),
        "only status comes before the replay: {seen:#?}"
    );
    // ... and from that id, nothing of it again (no duplicate): the next id is a new change.
    drop(again);
    let mut after = Watch::open(
        kernel,
        &format!("/api/v1/watch?format=ndjson&from={i1}"),
        "alice",
        None,
    )
    .await
    .expect("resume after");
    build(kernel, "alice", "alpha", 3).await;
    let seen = after.until_id().await;
    let next = seen.last().expect("event");
    assert_eq!(next["name"], "alpha", "{seen:#?}");
    assert_ne!(next["id"], json!(i1), "a duplicate: {seen:#?}");
    assert!(
        next["revision"].as_u64() > put["revision"].as_u64(),
        "{next:#} after {put:#}"
    );

    // Narrowed to an app the caller may not read: 403, nothing streamed.
    let refused = Watch::open(kernel, "/api/v1/watch?app=beta", "alice", None).await;
    assert!(
        matches!(&refused, Err((StatusCode::FORBIDDEN, body)) if body["error"]["message"].is_string()),
        "{:?}",
        refused.err()
    );
}

#[tokio::test]
async fn the_watch_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(common::config(dir.path()));
    scenario(&kernel).await;
    slow_reader_is_dropped(&kernel).await;
    bad_input(&kernel).await;
}

#[tokio::test]
async fn the_watch_on_a_real_etcd() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.store = lain::store::Config {
        backend: lain::store::Backend::Etcd,
        endpoints: vec![etcd.endpoint.clone()],
        prefix: format!("/lain-watch-{}/", std::process::id()),
        ..lain::store::Config::default()
    };
    let kernel = kernel(config);
    scenario(&kernel).await;

    // History compacted past `from`: 410, telling the client to re-list.
    let old = kernel.store.revision().expect("revision");
    build(&kernel, "alice", "alpha", 9).await;
    let now = kernel.store.revision().expect("revision");
    let mut client = etcd_client::Client::connect([etcd.endpoint.as_str()], None)
        .await
        .expect("etcd client");
    client
        .compact(i64::try_from(now).expect("revision"), None)
        .await
        .expect("compact");
    let gone = Watch::open(
        &kernel,
        &format!("/api/v1/watch?from={}", old.saturating_sub(1)),
        "alice",
        None,
    )
    .await;
    match gone {
        Err((StatusCode::GONE, body)) => {
            assert_eq!(body["error"]["code"], "compacted", "{body}");
            assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("re-list")),
                "{body}"
            );
        }
        other => panic!("expected 410: {:?}", other.err()),
    }
}

/// A client that does not read is sent what fits, then a final `too-slow` error, and dropped.
async fn slow_reader_is_dropped(kernel: &Kernel) {
    let mut slow = Watch::open(
        kernel,
        "/api/v1/watch?format=ndjson&kinds=node",
        "root",
        None,
    )
    .await
    .expect("root watches");
    let changes = lain::api::watch::BUFFER + 50;
    for n in 0..changes {
        let (status, body) = common::api_raw(
            kernel,
            "POST",
            "/api/v1/nodes",
            Some(&token("root")),
            Body::from(json!({ "name": format!("n{n}"), "memory": 1u64 << 30 }).to_string()),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    tokio::time::sleep(lain::api::watch::PATIENCE + Duration::from_secs(1)).await;
    let mut events = Vec::new();
    while let Some(e) = slow.next_within(Duration::from_secs(5)).await {
        events.push(e);
    }
    let last = events.last().expect("events");
    assert_eq!(last["event"], "error", "{last:#}");
    assert_eq!(last["code"], "too-slow", "{last:#}");
    assert!(
        events.len() <= lain::api::watch::BUFFER + 2,
        "{} events held for a client that did not read",
        events.len()
    );
    assert!(
        names(&events, "node").len() < changes,
        "every change was buffered"
    );
}

async fn bad_input(kernel: &Kernel) {
    for (uri, what) in [
        ("/api/v1/watch?kinds=app,secrets", "unknown kind `secrets`"),
        ("/api/v1/watch?from=abc", "expected a store revision"),
        ("/api/v1/watch?format=xml", "expected `sse` or `ndjson`"),
    ] {
        match Watch::open(kernel, uri, "alice", None).await {
            Err((StatusCode::BAD_REQUEST, body)) => assert!(
                body["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(what)),
                "{uri}: {body}"
            ),
            other => panic!("{uri}: expected 400: {:?}", other.err()),
        }
    }
    let anonymous = lain::api::app(kernel.app_state())
        .oneshot(
            Request::builder()
                .uri("/api/v1/watch")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // Server-sent events by default: typed events, the revision as the id.
    let response = lain::api::app(kernel.app_state())
        .oneshot(
            Request::builder()
                .uri("/api/v1/watch?kinds=app")
                .header("authorization", token("alice"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        response.headers()
    );
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("event: synced") {
        let frame = tokio::time::timeout(PATIENCE, body.frame())
            .await
            .expect("in time")
            .expect("a frame")
            .expect("stream");
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: app\ndata: {"), "{text}");
    assert!(text.contains("\nid: "), "{text}");
}

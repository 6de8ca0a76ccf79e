//! Fencing and the election on a real etcd: a leader whose lease ended cannot write, and two
//! kernels' election loops elect one leader and hand over when it resigns; a leader paused past
//! its lease makes no runtime call when it resumes.

mod common;
#[path = "store_suite/etcd_server.rs"]
mod etcd_server;

use lain::cluster::Cluster;
use lain::cluster::election::{self, Settings};
use lain::cluster::fence::{Fence, FencedStore};
use lain::store::etcd::EtcdStore;
use lain::store::{Op, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn put(key: &str) -> Vec<Op> {
    vec![Op::Put(key.into(), b"v".to_vec())]
}

#[test]
fn a_leader_whose_lease_ended_cannot_write_through_its_fenced_store() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd");
    let prefix = "/fence/";
    let inner: Arc<dyn Store> =
        Arc::new(EtcdStore::connect(std::slice::from_ref(&etcd.endpoint), prefix).expect("store"));
    let fence = Arc::new(Fence::default());
    let store = FencedStore::new(inner.clone(), fence.clone());
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (lease, key) = runtime.block_on(async {
        let client = etcd_client::Client::connect([etcd.endpoint.clone()], None)
            .await
            .expect("client");
        let lease = client
            .lease_client()
            .grant(5, None)
            .await
            .expect("lease")
            .id();
        let won = client
            .election_client()
            .campaign(format!("{prefix}cluster/leader"), "k1", lease)
            .await
            .expect("campaign");
        let key =
            String::from_utf8(won.leader().expect("leader key").key().to_vec()).expect("utf-8");
        (lease, key)
    });
    let key = key
        .strip_prefix(prefix)
        .expect("under the prefix")
        .to_string();
    fence.hold(key, b"k1".to_vec());
    store
        .apply(put("while-leading"))
        .expect("the leader writes");

    // The lease ends (as when the leader was paused past its TTL): etcd deletes the key.
    runtime.block_on(async {
        let client = etcd_client::Client::connect([etcd.endpoint.clone()], None)
            .await
            .expect("client");
        client.lease_client().revoke(lease).await.expect("revoke");
    });
    let err = store.apply(put("after")).expect_err("fenced").to_string();
    assert!(err.contains("no longer the cluster's leader"), "{err}");
    assert_eq!(inner.get("after").expect("get"), None, "nothing written");
    assert_eq!(fence.refused(), 1);
    assert_eq!(
        inner.get("while-leading").expect("get"),
        Some(b"v".to_vec())
    );
}

/// Polls `check` for up to 20 s.
async fn until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn two_election_loops_elect_one_leader_and_the_other_takes_over_after_it_stops() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd");
    let settings = Settings {
        endpoints: vec![etcd.endpoint.clone()],
        prefix: "/elect/".into(),
        ttl: Duration::from_secs(2),
    };
    let cluster = |id: &str| {
        Arc::new(Cluster::new(
            id.into(),
            "c".into(),
            "etcd",
            Arc::new(Fence::default()),
        ))
    };
    let (a, b) = (cluster("a"), cluster("b"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let first = tokio::spawn(election::run(a.clone(), settings.clone()));
        until("a leads", || a.is_leader()).await;
        assert_eq!(
            a.fence().may_act(),
            Ok(()),
            "the election tells the fence until when its lease lives"
        );
        election::join(&b, &settings, false)
            .await
            .expect("b may join");
        let err = election::join(&b, &settings, true)
            .await
            .expect_err("a second process-runtime kernel");
        assert!(err.to_string().contains("kernel a already leads"), "{err}");
        let second = tokio::spawn(election::run(b.clone(), settings.clone()));
        until("b sees a lead", || {
            b.status(0).leader.as_deref() == Some("a")
        })
        .await;
        assert!(!b.is_leader(), "one leader");

        // a dies without resigning: its lease ends after the TTL and b takes over.
        first.abort();
        let stopped = Instant::now();
        until("b leads", || b.is_leader()).await;
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "{:?}",
            stopped.elapsed()
        );
        second.abort();
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_makes_no_runtime_call_when_it_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = common::open_kernel(common::config(dir.path())).expect("kernel");
    let admin = common::admin(&kernel);
    // The fence held as the election holds it: the election key in the store, the lease known
    // to live for a moment only.
    kernel
        .store
        .apply(vec![Op::Put("cluster/leader/1".into(), b"k1".to_vec())])
        .expect("election key");
    let fence = kernel.cluster.fence().clone();
    fence.hold("cluster/leader/1".into(), b"k1".to_vec());
    fence.confirm_lease(Instant::now() + Duration::from_millis(50));
    let yaml = "appname: paused\nbuild:\n  base: busybox\n  script:\n    - \"true\"\nworker:\n  cmd: sleep 100\n  num_instances: 2\n";
    let call = |method: &'static str, uri: &'static str, body: Vec<u8>| {
        common::api_raw(
            &kernel,
            method,
            uri,
            Some(&admin),
            axum::body::Body::from(body),
        )
    };
    let (status, out) = call(
        "POST",
        "/api/v1/builds",
        common::tar_of(&[("lain.yaml", yaml)]),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&out));
    let (status, out) = call("POST", "/api/v1/apps/paused/deploy", b"{}".to_vec()).await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&out));

    // Paused past the lease's end; on resuming, the reconciler's first pass wants 2 instances.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let runtime = kernel.lifecycle.runtime();
    let kernel_id = kernel.lifecycle.kernel_id().to_string();
    let loops = kernel.leader_loops();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let seen = runtime.list(&kernel_id).await.expect("list");
    assert!(
        seen.is_empty(),
        "no runtime call after the lease lapsed: {seen:?}"
    );
    let err = fence.may_act().expect_err("deposed");
    assert!(err.contains("no longer the cluster's leader"), "{err}");

    // What the election does next: steps down, wins again with a live lease. The same
    // reconciler then acts, so only the fence held it back.
    fence.open();
    fence.hold("cluster/leader/1".into(), b"k1".to_vec());
    fence.confirm_lease(Instant::now() + Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let running = runtime
            .list(&kernel_id)
            .await
            .expect("list")
            .iter()
            .filter(|o| o.state.is_running())
            .count();
        if running == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{running} of 2 running");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for task in loops {
        task.abort();
    }
    kernel.lifecycle.stop_all().await.expect("stop");
}

#[tokio::test]
async fn a_kernel_that_does_not_lead_refuses_a_restore_in_place_naming_why() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    config.store = lain::store::Config {
        backend: lain::store::Backend::Etcd,
        endpoints: vec![etcd.endpoint.clone()],
        prefix: "/restore-follower/".into(),
        ..lain::store::Config::default()
    };
    common::token_users(&mut config, &[("root", &["admins"])]);
    // Opened, not campaigning: a follower.
    let kernel = common::open_kernel(config).expect("kernel");
    let admin = common::token("root");
    let restore = |body: &'static str| {
        common::api_raw(
            &kernel,
            "POST",
            "/api/v1/apps/shop/backups/1/restore",
            Some(&admin),
            axum::body::Body::from(body),
        )
    };
    let (status, body) = restore("{}").await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, 409, "{body}");
    assert!(
        body.contains("not-the-leader") && body.contains("no kernel leads"),
        "{body}"
    );
    // Beside (`to`) is not held from the reconciler: it goes on to its own checks.
    let (status, body) = restore(r#"{"to": "/srv/restored"}"#).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
}

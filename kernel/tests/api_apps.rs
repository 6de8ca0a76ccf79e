//! The app and node endpoints through the router, without a socket: builds, deploys, scale,
//! rollback and nodes; every refusal is a clear 4xx that changes nothing.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use serde_json::{Value, json};

fn kernel(dir: &std::path::Path) -> Kernel {
    let config = KernelConfig {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        ..KernelConfig::default()
    };
    common::open_kernel(config).expect("kernel opens")
}

async fn raw(kernel: &Kernel, method: &str, uri: &str, body: Body) -> (StatusCode, Vec<u8>) {
    common::api_raw(kernel, method, uri, Some(&common::admin(kernel)), body).await
}

async fn call(kernel: &Kernel, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let (status, bytes) = raw(kernel, method, uri, body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Every event of a build, in order.
async fn build(kernel: &Kernel, tar: Vec<u8>) -> Vec<Value> {
    let (status, bytes) = raw(kernel, "POST", "/api/v1/builds", Body::from(tar)).await;
    assert_eq!(status, StatusCode::OK);
    String::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

const APP: &str = "appname: shop\nbuild:\n  base: busybox\n  script:\n    - echo built > out.txt\nweb:\n  cmd: python3 server.py\nworker:\n  cmd: sleep 100\n";

async fn apps(kernel: &Kernel) -> Value {
    call(kernel, "GET", "/api/v1/apps", Value::Null).await.1
}

#[tokio::test]
async fn builds_report_progress_and_refusals_record_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());

    let events = build(&kernel, b"not a tar at all".repeat(40)).await;
    let last = events.last().expect("an event");
    assert_eq!(last["event"], "failed");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a valid tar")),
        "{last}"
    );

    let events = build(&kernel, common::tar_of(&[("README", "no yaml")])).await;
    assert!(
        events.last().expect("event")["message"]
            .as_str()
            .is_some_and(|m| m.contains("no readable lain.yaml"))
    );

    let events = build(
        &kernel,
        common::tar_of(&[("lain.yaml", "appname: shop\nweb:\n  num_instance: 2\n")]),
    )
    .await;
    let last = events.last().expect("event");
    assert_eq!(last["event"], "failed");
    let d = last["diagnostics"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["path"] == "web.num_instance"))
        .unwrap_or_else(|| panic!("located diagnostic: {last}"));
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(3), Some(3)),
        "{last}"
    );
    assert!(
        d["hint"]
            .as_str()
            .is_some_and(|h| h.contains("num_instances")),
        "{last}"
    );

    let failing = APP.replace("echo built > out.txt", "false");
    let events = build(&kernel, common::tar_of(&[("lain.yaml", &failing)])).await;
    let last = events.last().expect("event");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("build: `false`: exited")),
        "{last}"
    );
    assert_eq!(apps(&kernel).await, json!([]), "nothing recorded");

    let events = build(&kernel, common::tar_of(&[("lain.yaml", APP)])).await;
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step" && e["message"] == "build: echo built > out.txt")
    );
    assert!(
        events.iter().any(|e| e["event"] == "warning"),
        "build.base is not applied by the process runtime"
    );
    let done = events.last().expect("event");
    assert_eq!(done["event"], "done", "{done}");
    let version = done["release"]["version"]
        .as_str()
        .expect("version")
        .to_string();
    let image = done["release"]["image"].as_str().expect("image");
    assert_eq!(
        std::fs::read_to_string(format!("{image}/out.txt")).expect("built file"),
        "built\n"
    );

    let again = build(&kernel, common::tar_of(&[("lain.yaml", APP)])).await;
    assert_eq!(
        again.last().expect("event")["release"]["version"],
        version.as_str(),
        "same context, same release"
    );
    let (status, releases) = call(&kernel, "GET", "/api/v1/apps/shop/releases", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(releases.as_array().map(Vec::len), Some(1));

    // A key that has no effect yet is said so by the build, where it is written.
    let with_giturl = APP.replacen("build:", "giturl: http://git.example.com/shop\nbuild:", 1);
    let events = build(&kernel, common::tar_of(&[("lain.yaml", &with_giturl)])).await;
    assert!(
        events.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("lain.yaml:2:1: giturl: has no effect yet"))),
        "{events:?}"
    );
    assert_eq!(events.last().expect("event")["event"], "done");
}

#[tokio::test]
async fn deploy_scale_rollback_and_undeploy_change_only_what_they_say() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let (status, _) = call(&kernel, "POST", "/api/v1/apps/shop/deploy", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    build(&kernel, common::tar_of(&[("lain.yaml", APP)])).await;

    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/apps/shop/deploy",
        json!({"release": "1-nope"}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(
        apps(&kernel).await[0]["release"],
        Value::Null,
        "nothing deployed"
    );
    let (status, body) = call(&kernel, "POST", "/api/v1/apps/shop/rollback", Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let (status, view) = call(&kernel, "POST", "/api/v1/apps/shop/deploy", Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{view}");
    let procs: Vec<&str> = view["procs"]
        .as_array()
        .expect("procs")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(procs, ["web", "worker"]);
    assert_eq!(view["converged"], false, "nothing runs yet");
    let deployed = view["app"]["deployed"].clone();
    let env = deployed["procs"][0]["env"].as_array().expect("env");
    assert!(
        env.iter().any(|e| e[0] == "LAIN_APPNAME" && e[1] == "shop"),
        "LAIN's environment: {env:?}"
    );

    for (body, want) in [
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"num_instances": 5000}), StatusCode::BAD_REQUEST),
        (json!({"memory": 1024}), StatusCode::BAD_REQUEST),
        (
            json!({"num_instances": "three"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = call(
            &kernel,
            "PATCH",
            "/api/v1/apps/shop/procs/web",
            body.clone(),
        )
        .await;
        assert_eq!(status, want, "{body} -> {answer}");
    }
    let (status, answer) = call(
        &kernel,
        "PATCH",
        "/api/v1/apps/shop/procs/cron",
        json!({"num_instances": 2}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("web, worker")),
        "{answer}"
    );
    let (_, view) = call(&kernel, "GET", "/api/v1/apps/shop", Value::Null).await;
    assert_eq!(
        view["app"]["scale"],
        json!({}),
        "refused scale changed nothing"
    );

    let (status, view) = call(
        &kernel,
        "PATCH",
        "/api/v1/apps/shop/procs/web",
        json!({"num_instances": 3, "memory": 134217728}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let web = view["procs"]
        .as_array()
        .expect("procs")
        .iter()
        .find(|p| p["name"] == "web")
        .expect("web")
        .clone();
    assert_eq!(
        (web["desired"].as_u64(), web["memory"].as_u64()),
        (Some(3), Some(128 << 20))
    );

    let (status, view) = call(&kernel, "DELETE", "/api/v1/apps/shop", Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(view["release"], Value::Null);
    let (status, view) = call(&kernel, "POST", "/api/v1/apps/shop/rollback", Value::Null).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "undeploy keeps the deployment for rollback: {view}"
    );
    assert_eq!(view["app"]["deployed"]["release"], deployed["release"]);
}

#[tokio::test]
async fn nodes_are_added_drained_and_removed_with_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let (_, nodes) = call(&kernel, "GET", "/api/v1/nodes", Value::Null).await;
    assert_eq!(
        nodes[0]["name"], "local",
        "the embedded default registers this host"
    );
    assert_eq!(nodes[0]["labels"]["group"], "default");

    for (body, want) in [
        (
            json!({"name": "Bad Name", "memory": 1}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": "n2", "memory": 0}), StatusCode::BAD_REQUEST),
        (
            json!({"name": "n2", "memory": 1, "address": "tcp://10.1.1.1:2376"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "n2", "memory": 1, "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (status, answer) = call(&kernel, "POST", "/api/v1/nodes", body.clone()).await;
        assert_eq!(status, want, "{body} -> {answer}");
    }
    let (_, nodes) = call(&kernel, "GET", "/api/v1/nodes", Value::Null).await;
    assert_eq!(
        nodes.as_array().map(Vec::len),
        Some(1),
        "refusals added nothing"
    );

    let (status, node) = call(
        &kernel,
        "POST",
        "/api/v1/nodes",
        json!({"name": "n2", "memory": 1 << 30, "labels": {"group": "batch"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(node["labels"]["group"], "batch");
    let (status, node) = call(
        &kernel,
        "POST",
        "/api/v1/nodes/n2/maintain",
        json!({"on": true}),
    )
    .await;
    assert_eq!(
        (status, node["state"].as_str()),
        (StatusCode::OK, Some("maintenance"))
    );
    let (status, _) = call(
        &kernel,
        "POST",
        "/api/v1/nodes/n9/maintain",
        json!({"on": true}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&kernel, "DELETE", "/api/v1/nodes/n9", Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&kernel, "DELETE", "/api/v1/nodes/n2", Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_openapi_document_describes_the_lifecycle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let (_, doc) = call(&kernel, "GET", "/api/openapi.json", Value::Null).await;
    for path in [
        "/api/v1/builds",
        "/api/v1/apps",
        "/api/v1/apps/{app}",
        "/api/v1/apps/{app}/deploy",
        "/api/v1/apps/{app}/rollback",
        "/api/v1/apps/{app}/procs/{proc}",
        "/api/v1/apps/{app}/procs/{proc}/logs",
        "/api/v1/nodes",
        "/api/v1/nodes/{name}/maintain",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn apps_needing_what_lain_cannot_give_are_refused_at_deploy_and_nothing_is_deployed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let client = format!("{APP}use_services:\n  pg:\n    - db\n");
    build(&kernel, common::tar_of(&[("lain.yaml", &client)])).await;
    let service = "appname: pg\nbuild:\n  base: busybox\nservice.db:\n  cmd: sleep 100\n  port: 5432\n  portal:\n    allow_clients: \"**\"\n";
    build(&kernel, common::tar_of(&[("lain.yaml", service)])).await;
    let user = "appname: blog\nbuild:\n  base: busybox\nworker:\n  cmd: sleep 100\nuse_resources:\n  redis:\n    services:\n      - redis\n";
    let events = build(&kernel, common::tar_of(&[("lain.yaml", user)])).await;
    assert!(
        !events.iter().any(|e| e["event"] == "warning"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("use_resources"))),
        "use_resources acts, so it is not warned of: {events:?}"
    );
    let resource = "appname: redis\napptype: resource\nbuild:\n  base: busybox\nworker:\n  cmd: sleep {{ seconds }}\n";
    build(&kernel, common::tar_of(&[("lain.yaml", resource)])).await;
    let bad = "appname: news\nbuild:\n  base: busybox\nworker:\n  cmd: sleep 100\nuse_resources:\n  redis:\n    services: []\n";
    build(&kernel, common::tar_of(&[("lain.yaml", bad)])).await;
    for (app, why) in [
        (
            "blog",
            "use_resources.redis.services (redis): a client reaches a resource's portals",
        ),
        (
            "redis",
            "a resource is a template; it is deployed for each client that uses it",
        ),
        (
            "news",
            "resource `redis` rendered for `news`: worker.cmd: parameter `seconds` is not given",
        ),
        (
            "shop",
            "use_services (pg): a client reaches a service by its name",
        ),
        (
            "pg",
            "proc `portal-db`: a portal serves its clients by service name",
        ),
    ] {
        let (status, body) = call(
            &kernel,
            "POST",
            &format!("/api/v1/apps/{app}/deploy"),
            Value::Null,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{app}: {body}");
        let message = body.to_string();
        assert!(message.contains(why), "{app}: {message}");
    }
    let listed = apps(&kernel).await;
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.iter().all(|app| app["release"].is_null())),
        "nothing deployed: {listed}"
    );
}

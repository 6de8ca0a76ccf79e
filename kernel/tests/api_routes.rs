//! Web routes belong to apps, called through the API router without a socket: an `outsider`
//! cannot mount `owner`'s host or a path under it (refused naming the owner, nothing recorded),
//! path claims by whole segments, default domains, admins reassigning and releasing, claims
//! surviving a restart, and a router that never serves a route its app does not own, even when
//! the store holds a conflict written before claims existed.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use lain::kernel::Kernel;
use serde_json::{Value, json};

/// A kernel whose `token` provider knows `root` (an admin), `owner` and `outsider` (both may
/// register apps).
fn kernel(dir: &std::path::Path) -> Kernel {
    let mut config = common::config(dir);
    common::token_users(
        &mut config,
        &[
            ("root", &["admins"]),
            ("owner", &["dev"]),
            ("outsider", &["dev"]),
        ],
    );
    config.auth.register_groups = vec!["dev".into()];
    common::open_kernel(config).expect("kernel opens")
}

use common::token;

async fn call(
    kernel: &Kernel,
    method: &str,
    uri: &str,
    user: &str,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let (status, bytes) = common::api_raw(kernel, method, uri, Some(&token(user)), body).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// Everything in the store but the audit log.
fn snapshot(kernel: &Kernel) -> Vec<(String, Vec<u8>)> {
    kernel
        .store
        .list("")
        .expect("store")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("audit/"))
        .collect()
}

/// `lain.yaml` of app `name` with a `web` proc (its default mountpoints, plus `mountpoints`).
fn app_yaml(name: &str, mountpoints: &[&str]) -> String {
    let mut yaml =
        format!("appname: {name}\nbuild:\n  base: busybox\n  script: []\nweb:\n  cmd: sleep 100\n");
    if !mountpoints.is_empty() {
        yaml.push_str("  mountpoint:\n");
        for m in mountpoints {
            yaml.push_str(&format!("    - {m}\n"));
        }
    }
    yaml
}

/// Builds (as `user`) the app of `yaml` and deploys it; the deploy's status and body.
async fn build_and_deploy(kernel: &Kernel, user: &str, yaml: &str) -> (StatusCode, Value) {
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, "lain.yaml", yaml.as_bytes())
        .expect("append");
    let tar = b.into_inner().expect("tar");
    let (status, body) = common::api_raw(
        kernel,
        "POST",
        "/api/v1/builds",
        Some(&token(user)),
        Body::from(tar),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert!(
        status == StatusCode::OK && body.contains("\"event\":\"done\""),
        "build as {user}: {status} {body}"
    );
    let name = yaml
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("appname: "))
        .expect("appname");
    // The release built (an earlier one when the same context was built before).
    let done: Value = body
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e["event"] == "done")
        .expect("done");
    call(
        kernel,
        "POST",
        &format!("/api/v1/apps/{name}/deploy"),
        user,
        json!({ "release": done["release"]["version"] }),
    )
    .await
}

/// The `app/proc` the router sends `host` + `path` to, after rebuilding its table.
fn routed(kernel: &Kernel, host: &str, path: &str) -> Option<String> {
    kernel.router.refresh(&kernel.lifecycle);
    kernel
        .router
        .table()
        .find(host, path)
        .map(|r| r.target.clone())
}

/// A deploy of `evil` mounting `mountpoint` is refused with 409 naming `owner` and records
/// nothing.
async fn refused(kernel: &Kernel, mountpoint: &str, owner: &str) {
    let before = snapshot(kernel);
    let (status, body) =
        build_and_deploy(kernel, "outsider", &app_yaml("evil", &[mountpoint])).await;
    assert_eq!(status, StatusCode::CONFLICT, "{mountpoint}: {body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("app `{owner}`")) && message.contains(mountpoint),
        "{mountpoint}: {message}"
    );
    let after: Vec<_> = snapshot(kernel)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("releases/evil/"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(k, _)| !k.starts_with("releases/evil/"))
        .collect();
    assert_eq!(
        before, after,
        "{mountpoint}: a refused deploy records nothing"
    );
}

#[tokio::test]
async fn an_outsider_cannot_take_another_apps_host_or_path_and_admins_reassign() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let (status, body) =
        build_and_deploy(&kernel, "owner", &app_yaml("appa", &["shop.example.org/a"])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) = build_and_deploy(&kernel, "outsider", &app_yaml("evil", &[])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // The whole host, a path under it, the other app's paths, a host over them.
    refused(&kernel, "appa.lain.local", "appa").await;
    refused(&kernel, "appa.lain.local/login", "appa").await;
    refused(&kernel, "shop.example.org/a", "appa").await;
    refused(&kernel, "shop.example.org/a/x", "appa").await;
    refused(&kernel, "shop.example.org", "appa").await;
    // The default domain of an app nobody registered yet is kept for it.
    refused(&kernel, "future.lain.local", "future").await;
    assert_eq!(
        routed(&kernel, "appa.lain.local", "/login").as_deref(),
        Some("appa/web")
    );

    // Disjoint paths share a host; paths compare by whole segments.
    let (status, body) = build_and_deploy(
        &kernel,
        "outsider",
        &app_yaml("evil", &["shop.example.org/b", "shop.example.org/ab"]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        routed(&kernel, "shop.example.org", "/a/1").as_deref(),
        Some("appa/web")
    );
    assert_eq!(
        routed(&kernel, "shop.example.org", "/ab").as_deref(),
        Some("evil/web")
    );
    assert_eq!(
        routed(&kernel, "shop.example.org", "/b/2").as_deref(),
        Some("evil/web")
    );

    // Claims are listed for the apps one may read; admins see all.
    let (status, mine) = call(
        &kernel,
        "GET",
        "/api/v1/router/claims",
        "outsider",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let apps: Vec<&str> = mine
        .as_array()
        .expect("claims")
        .iter()
        .filter_map(|c| c["app"].as_str())
        .collect();
    assert!(
        !apps.is_empty() && apps.iter().all(|a| *a == "evil"),
        "{mine}"
    );
    let (_, all) = call(&kernel, "GET", "/api/v1/router/claims", "root", Value::Null).await;
    let held: Vec<(String, String)> = all
        .as_array()
        .expect("claims")
        .iter()
        .map(|c| {
            (
                c["mountpoint"].as_str().unwrap_or_default().to_string(),
                c["app"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for (m, app) in [
        ("appa.lain.local", "appa"),
        ("appa.lain", "appa"),
        ("shop.example.org/a", "appa"),
        ("shop.example.org/b", "evil"),
        ("evil.lain.local", "evil"),
    ] {
        assert!(
            held.contains(&(m.to_string(), app.to_string())),
            "{m} {app}: {all}"
        );
    }

    // Only admins reassign; an assignment carves a path out of the owner's host.
    let assign = json!({ "mountpoint": "appa.lain.local/login", "app": "evil" });
    let before = snapshot(&kernel);
    for who in ["outsider", "owner"] {
        let (status, body) =
            call(&kernel, "PUT", "/api/v1/router/claims", who, assign.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    assert_eq!(before, snapshot(&kernel));
    let (status, body) = call(&kernel, "PUT", "/api/v1/router/claims", "root", assign).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["claim"]["assigned_by"], "token:root", "{body}");
    let (status, body) = build_and_deploy(
        &kernel,
        "outsider",
        &app_yaml("evil", &["shop.example.org/b", "appa.lain.local/login"]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(
        routed(&kernel, "appa.lain.local", "/login/x").as_deref(),
        Some("evil/web")
    );
    assert_eq!(
        routed(&kernel, "appa.lain.local", "/").as_deref(),
        Some("appa/web")
    );
    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/apps/appa/deploy",
        "owner",
        Value::Null,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the owner keeps the rest: {body}"
    );

    // Bad input: a clear 400, nothing changes.
    let before = snapshot(&kernel);
    for (body, why) in [
        (json!({ "mountpoint": "/x", "app": "evil" }), "host"),
        (
            json!({ "mountpoint": "a.org/x/../y", "app": "evil" }),
            "segments",
        ),
        (json!({ "mountpoint": "a.org", "app": "nope" }), "no app"),
        (json!({ "mountpoint": "a.org" }), "app"),
    ] {
        let (status, answer) = call(&kernel, "PUT", "/api/v1/router/claims", "root", body).await;
        assert!(
            status.is_client_error() && status != StatusCode::FORBIDDEN,
            "{why}: {status} {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{why}: {answer}"
        );
    }
    let (status, _) = call(
        &kernel,
        "DELETE",
        "/api/v1/router/claims?mountpoint=nothing.example.org",
        "root",
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(before, snapshot(&kernel));

    // Claims survive a restart (and an undeploy): the outsider still cannot take appa's path.
    let (status, _) = call(&kernel, "DELETE", "/api/v1/apps/appa", "owner", Value::Null).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    drop(kernel);
    let kernel = self::kernel(dir.path());
    refused(&kernel, "shop.example.org/a/x", "appa").await;
    let (_, after) = call(&kernel, "GET", "/api/v1/router/claims", "root", Value::Null).await;
    assert_eq!(
        after.as_array().map(Vec::len),
        all.as_array().map(|a| a.len() + 1),
        "{after}"
    );

    // Released, the path is free for the next deploy that mounts it.
    let (status, body) = call(
        &kernel,
        "DELETE",
        "/api/v1/router/claims?mountpoint=shop.example.org/a",
        "root",
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, &body["app"]),
        (StatusCode::OK, &json!("appa")),
        "{body}"
    );
    let (status, body) = build_and_deploy(
        &kernel,
        "outsider",
        &app_yaml("evil", &["shop.example.org/a/x"]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn the_router_serves_only_owners_even_when_the_store_holds_a_conflict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let (status, body) = build_and_deploy(
        &kernel,
        "outsider",
        &app_yaml("early", &["shared.example.org"]),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, body) =
        build_and_deploy(&kernel, "owner", &app_yaml("appa", &["other.example.org"])).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");

    // A store as an older kernel left it: no claims, and later apps' deployments mounting an
    // earlier app's host and another app's default domain.
    let mut later = kernel.lifecycle.app("appa").expect("appa");
    let mut record = kernel.lifecycle.app("early").expect("early");
    let early_routes = record.deployed.as_ref().expect("deployed").procs[0]
        .plan
        .routes
        .clone();
    let deployed = later.deployed.as_mut().expect("deployed");
    deployed.procs[0].plan.routes.extend(early_routes.clone());
    record.created_at -= 10;
    later.created_at = record.created_at + 5;
    let mut on_appa = early_routes[0].clone();
    on_appa.host = "appa.lain.local".into();
    record.deployed.as_mut().expect("deployed").procs[0]
        .plan
        .routes
        .push(on_appa);
    let mut ops: Vec<lain::store::Op> = kernel
        .store
        .list("routes/")
        .expect("claims")
        .into_iter()
        .map(|(k, _)| lain::store::Op::Delete(k))
        .collect();
    ops.push(lain::store::Op::Delete("kernel/route-claims".into()));
    ops.push(lain::store::put_json("apps/appa", &later).expect("json"));
    ops.push(lain::store::put_json("apps/early", &record).expect("json"));
    kernel.store.apply(ops).expect("write");
    drop(kernel);

    // Reopened: the earlier app keeps its host, the default domain stays its app's.
    let kernel = self::kernel(dir.path());
    assert_eq!(
        routed(&kernel, "shared.example.org", "/").as_deref(),
        Some("early/web")
    );
    assert_eq!(
        routed(&kernel, "appa.lain.local", "/").as_deref(),
        Some("appa/web")
    );
    assert_eq!(
        routed(&kernel, "other.example.org", "/").as_deref(),
        Some("appa/web")
    );
    let (_, claims) = call(&kernel, "GET", "/api/v1/router/claims", "root", Value::Null).await;
    let owner_of = |m: &str| {
        claims
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["mountpoint"] == m)
            .map(|c| c["app"].clone())
    };
    assert_eq!(
        owner_of("shared.example.org"),
        Some(json!("early")),
        "{claims}"
    );
    assert_eq!(owner_of("appa.lain.local"), Some(json!("appa")), "{claims}");

    // A conflicting deployment written straight into the store later is not served either.
    let mut later = kernel.lifecycle.app("appa").expect("appa");
    later.deployed.as_mut().expect("deployed").procs[0]
        .plan
        .routes[0]
        .host = "early.lain.local".into();
    kernel
        .store
        .apply(vec![
            lain::store::put_json("apps/appa", &later).expect("json"),
        ])
        .expect("write");
    assert_eq!(
        routed(&kernel, "early.lain.local", "/").as_deref(),
        Some("early/web")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_deploys_of_one_route_one_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    for round in 0..3 {
        let host = format!("race{round}.example.org");
        let (a, b) = (format!("one{round}"), format!("two{round}"));
        // Registered and built first, so that only the deploys race.
        for (user, app) in [("owner", &a), ("outsider", &b)] {
            let (status, body) = build_and_deploy(&kernel, user, &app_yaml(app, &[])).await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        let (yaml_a, yaml_b) = (app_yaml(&a, &[&host]), app_yaml(&b, &[&host]));
        let (first, second) = tokio::join!(
            build_and_deploy(&kernel, "owner", &yaml_a),
            build_and_deploy(&kernel, "outsider", &yaml_b),
        );
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::ACCEPTED, StatusCode::CONFLICT],
            "{first:?} {second:?}"
        );
        let winner = if first.0 == StatusCode::ACCEPTED {
            &a
        } else {
            &b
        };
        let target = format!("{winner}/web");
        assert_eq!(
            routed(&kernel, &host, "/").as_deref(),
            Some(target.as_str())
        );
    }
}

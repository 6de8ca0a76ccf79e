//! Hostile build inputs through the API router, without a socket (issue 12): deeply nested
//! `lain.yaml`s, hostile tars, symlinked `lain.yaml`s, two identical builds at once, and what
//! the audit log says about builds. Every refusal names what it refuses, records nothing, and
//! writes nothing outside the build's staging directory.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use common::hostile::{ONE_LINE_KINDS, RawTar, deep_yaml, kind};
use lain::kernel::Kernel;
use serde_json::{Value, json};
use std::path::Path;

/// A kernel whose `token` provider knows alice and bob (no admins); alice may register apps.
fn kernel(dir: &Path) -> Kernel {
    let mut config = common::config(dir);
    common::token_users(&mut config, &[("alice", &[]), ("bob", &[])]);
    config.auth.register_users = vec!["token:alice".into()];
    common::open_kernel(config).expect("kernel opens")
}

use common::token;

async fn call(kernel: &Kernel, method: &str, uri: &str, body: Body) -> (StatusCode, Value) {
    let (status, bytes) = common::api_raw(kernel, method, uri, Some(&token("alice")), body).await;
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// Every event of a build by `user`, in order.
async fn build_as(kernel: &Kernel, user: &str, tar: Vec<u8>) -> Vec<Value> {
    let (status, bytes) = common::api_raw(
        kernel,
        "POST",
        "/api/v1/builds",
        Some(&token(user)),
        Body::from(tar),
    )
    .await;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(status, StatusCode::OK, "{text}");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect()
}

async fn build(kernel: &Kernel, tar: Vec<u8>) -> Vec<Value> {
    build_as(kernel, "alice", tar).await
}

/// The last event, which must be `failed`.
fn failure(events: &[Value]) -> &Value {
    let last = events.last().expect("an event");
    assert_eq!(last["event"], "failed", "{events:#?}");
    last
}

const APP: &str = "appname: shop\nbuild:\n  base: busybox\n  script:\n    - echo built > out.txt\nworker:\n  cmd: sleep 100\n";

/// Nothing recorded, no staging directory left, nothing named `escaped` anywhere in `dir`.
async fn nothing_left(kernel: &Kernel, dir: &Path, what: &str) {
    let (_, apps) = call(kernel, "GET", "/api/v1/apps", Body::empty()).await;
    assert_eq!(apps, json!([]), "{what}: nothing recorded");
    let releases = dir.join("releases");
    let left: Vec<String> = std::fs::read_dir(&releases)
        .map(|d| {
            d.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "{what}: left in releases/: {left:?}");
    let mut stack = vec![dir.parent().expect("parent").to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let t = e.file_type().expect("type");
            assert_ne!(e.file_name(), "escaped", "{what}: {}", e.path().display());
            if t.is_dir() {
                stack.push(e.path());
            }
        }
    }
}

#[tokio::test]
async fn deep_lain_yamls_are_located_errors_and_the_kernel_lives() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let kernel = kernel(&dir);
    let mut cases: Vec<(String, String)> = Vec::new();
    for kind in ONE_LINE_KINDS {
        for n in [5_000, 200_000] {
            cases.push((format!("{kind} x{n}"), deep_yaml(kind, n)));
        }
    }
    cases.push((
        "indented-map x1000".into(),
        deep_yaml("indented-map", 1_000),
    ));
    for (what, text) in &cases {
        let (status, report) = call(
            &kernel,
            "POST",
            "/api/v1/validate",
            Body::from(text.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{what}");
        assert_eq!(report["valid"], false, "{what}");
        let d = &report["diagnostics"][0];
        assert_eq!(d["message"], "nested deeper than 64 levels", "{what}: {d}");
        let line = if what.starts_with("indented") { 65 } else { 2 };
        assert_eq!(d["line"], line, "{what}: {d}");

        let tar = RawTar::new()
            .file("lain.yaml", 0o644, text.as_bytes())
            .finish();
        let events = build(&kernel, tar).await;
        let d = &failure(&events)["diagnostics"][0];
        assert_eq!(
            (d["message"].as_str(), d["line"].as_u64()),
            (Some("nested deeper than 64 levels"), Some(line)),
            "{what}: {d}"
        );
    }
    // Block nesting over 1,500 levels passes the size limit first.
    let (_, report) = call(
        &kernel,
        "POST",
        "/api/v1/validate",
        Body::from(deep_yaml("indented-map", 5_000)),
    )
    .await;
    assert_eq!(
        report["diagnostics"][0]["message"],
        "the file is larger than 1048576 bytes"
    );
    let (status, _) = call(&kernel, "GET", "/healthz", Body::empty()).await;
    assert_eq!(status, StatusCode::OK, "the kernel still answers");
    nothing_left(&kernel, &dir, "deep yaml").await;
}

#[tokio::test]
async fn hostile_tars_are_refused_naming_the_entry() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let kernel = kernel(&dir);
    let yaml = APP.as_bytes();
    let with_yaml = || RawTar::new().file("lain.yaml", 0o644, yaml);
    let deep = "a/".repeat(1_000) + "escaped";
    let cases: Vec<(&str, RawTar, String)> = vec![
        (
            "absolute",
            with_yaml().file("/tmp/escaped", 0o644, b"x"),
            "entry `/tmp/escaped`: absolute paths are not allowed".into(),
        ),
        (
            "traversal",
            with_yaml().file("../../../escaped", 0o644, b"x"),
            "entry `../../../escaped`: `..` is not allowed in paths".into(),
        ),
        (
            "symlink out",
            with_yaml().symlink("up", "../../.."),
            "entry `up`: symlink to `../../..` points outside the build context".into(),
        ),
        (
            "write through a symlink out",
            with_yaml()
                .symlink("up", "../../..")
                .file("up/escaped", 0o644, b"x"),
            "entry `up/escaped`: its parent `up` is a symlink".into(),
        ),
        (
            "write under a symlink",
            with_yaml()
                .dir("d")
                .symlink("l", "d")
                .file("l/escaped", 0o644, b"x"),
            "entry `l/escaped`: its parent `l` is a symlink".into(),
        ),
        (
            "absolute symlink",
            with_yaml().symlink("escaped", "/etc/passwd"),
            "entry `escaped`: symlink to `/etc/passwd` is absolute".into(),
        ),
        (
            "device",
            with_yaml().entry("zero", kind::CHAR, "", 0o666, b""),
            "entry `zero`: device entries are not allowed".into(),
        ),
        (
            "fifo",
            with_yaml().entry("pipe", kind::FIFO, "", 0o666, b""),
            "entry `pipe`: FIFO entries are not allowed".into(),
        ),
        (
            "hard link out",
            with_yaml().hard_link("escaped", "/etc/passwd"),
            "entry `escaped`: hard link to `/etc/passwd`: absolute paths are not allowed".into(),
        ),
        (
            "hard link forward",
            with_yaml()
                .hard_link("h", "later")
                .file("later", 0o644, b"x"),
            "entry `h`: hard link to `later`: no earlier regular file".into(),
        ),
        (
            "1,000 levels (finding 10)",
            with_yaml().file(&deep, 0o644, b"x"),
            format!("entry `{deep}`: the path is 2007 bytes long, more than 1024"),
        ),
        (
            "100 short levels",
            with_yaml().file(&("d/".repeat(100) + "f"), 0o644, b"x"),
            "nested more than 64 levels deep".into(),
        ),
        (
            "1 TiB sparse (finding 17)",
            with_yaml().sparse("huge", 1 << 40, &[7; 512]),
            "entry `huge`: the build context unpacks to more than 268435456 bytes".into(),
        ),
        (
            "lain.yaml twice",
            with_yaml().file("lain.yaml", 0o644, b"appname: other\n"),
            "entry `lain.yaml`: it appears twice".into(),
        ),
    ];
    for (what, tar, want) in cases {
        let started = std::time::Instant::now();
        let events = build(&kernel, tar.finish()).await;
        let message = failure(&events)["message"].as_str().unwrap_or_default();
        assert!(message.contains(&want), "{what}: {message}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{what}: {:?}",
            started.elapsed()
        );
        nothing_left(&kernel, &dir, what).await;
    }
}

#[tokio::test]
async fn a_symlinked_lain_yaml_is_refused_and_never_read() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let kernel = kernel(&dir);
    // Finding 3: `lain.yaml` -> /dev/zero ran the kernel out of memory.
    for (target, want) in [
        (
            "/dev/zero",
            "entry `lain.yaml`: symlink to `/dev/zero` is absolute",
        ),
        (
            "../../../../../../etc/passwd",
            "points outside the build context",
        ),
        (
            "real.yaml",
            "the build context has no readable lain.yaml: it is a symlink",
        ),
    ] {
        let tar = RawTar::new()
            .file("real.yaml", 0o644, APP.as_bytes())
            .symlink("lain.yaml", target)
            .finish();
        let events = build(&kernel, tar).await;
        let message = failure(&events)["message"].as_str().unwrap_or_default();
        assert!(message.contains(want), "{target}: {message}");
        assert!(!message.contains("root:"), "{message}");
        nothing_left(&kernel, &dir, target).await;
    }
    // A lain.yaml over 1 MiB is refused once 1 MiB + 1 byte has been read.
    let big = format!("{APP}#{}\n", "x".repeat(1 << 20));
    let events = build(
        &kernel,
        RawTar::new()
            .file("lain.yaml", 0o644, big.as_bytes())
            .finish(),
    )
    .await;
    assert!(
        failure(&events)["message"]
            .as_str()
            .is_some_and(|m| m.contains("no readable lain.yaml: it is larger than 1048576 bytes")),
        "{events:?}"
    );
}

#[tokio::test]
async fn releases_get_normalised_modes() {
    use std::os::unix::fs::PermissionsExt as _;
    let root = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(&root.path().join("data"));
    let tar = RawTar::new()
        .file("lain.yaml", 0o666, APP.as_bytes())
        .file("bin/run", 0o6777, b"#!/bin/sh\n")
        .file("shared", 0o1666, b"x")
        .finish();
    let events = build(&kernel, tar).await;
    let done = events.last().expect("event");
    assert_eq!(done["event"], "done", "{events:#?}");
    let release = Path::new(done["release"]["image"].as_str().expect("image"));
    let mode = |p: &str| {
        std::fs::metadata(release.join(p))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (
            mode("lain.yaml"),
            mode("bin/run"),
            mode("shared"),
            mode("bin")
        ),
        // Directories of a release are the kernel's alone (instances see hard links in trees
        // of their own); files keep the modes the unpacker normalised.
        (0o644, 0o755, 0o644, 0o700)
    );
}

#[tokio::test]
async fn two_identical_builds_at_once_share_one_release() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let kernel = kernel(&dir);
    // Finding 18: both used one staging directory and one wiped the other mid-build.
    let slow = APP.replace("echo built > out.txt", "sleep 1; echo built > out.txt");
    let tar = || {
        RawTar::new()
            .file("lain.yaml", 0o644, slow.as_bytes())
            .finish()
    };
    let (a, b) = tokio::join!(build(&kernel, tar()), build(&kernel, tar()));
    let (a, b) = (a.last().expect("event"), b.last().expect("event"));
    assert_eq!(
        (&a["event"], &b["event"]),
        (&json!("done"), &json!("done")),
        "{a}\n{b}"
    );
    assert_eq!(a["release"]["version"], b["release"]["version"]);
    let (_, releases) = call(&kernel, "GET", "/api/v1/apps/shop/releases", Body::empty()).await;
    assert_eq!(releases.as_array().map(Vec::len), Some(1), "{releases}");
    let image = a["release"]["image"].as_str().expect("image");
    assert_eq!(
        std::fs::read_to_string(Path::new(image).join("out.txt")).expect("built"),
        "built\n"
    );
    let left: Vec<_> = std::fs::read_dir(dir.join("releases"))
        .expect("releases")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".build-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The audit records of builds, newest first.
async fn build_records(kernel: &Kernel) -> Vec<Value> {
    let admin = common::admin(kernel);
    let (status, bytes) = common::api_raw(
        kernel,
        "GET",
        "/api/v1/audit?limit=1000",
        Some(&admin),
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let all: Vec<Value> = serde_json::from_slice(&bytes).expect("records");
    all.into_iter()
        .filter(|r| r["action"] == "POST /api/v1/builds")
        .collect()
}

#[tokio::test]
async fn builds_are_audited_with_their_app_and_how_they_ended() {
    let root = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(&root.path().join("data"));
    let done = build(
        &kernel,
        RawTar::new()
            .file("lain.yaml", 0o644, APP.as_bytes())
            .finish(),
    )
    .await;
    assert_eq!(done.last().expect("event")["event"], "done");
    let r = &build_records(&kernel).await[0];
    assert_eq!(
        (&r["subject"], &r["app"], &r["status"], &r["result"]),
        (&json!("alice"), &json!("shop"), &json!(200), &json!("ok")),
        "{r}"
    );

    let failing = APP.replace("echo built > out.txt", "false");
    let events = build(
        &kernel,
        RawTar::new()
            .file("lain.yaml", 0o644, failing.as_bytes())
            .finish(),
    )
    .await;
    failure(&events);
    let r = &build_records(&kernel).await[0];
    assert_eq!(
        (&r["app"], &r["status"], &r["result"]),
        (&json!("shop"), &json!(200), &json!("failed")),
        "{r}"
    );
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|m| m.contains("build: `false`: exited")),
        "{r}"
    );

    // bob's lain.yaml is a hard link, which the check before the stream does not read: the
    // build itself refuses him once it has read the name, and the record says so.
    let bobs = APP.replace("sleep 100", "sleep 200");
    let tar = RawTar::new()
        .file("real.yaml", 0o644, bobs.as_bytes())
        .hard_link("lain.yaml", "real.yaml")
        .finish();
    let events = build_as(&kernel, "bob", tar).await;
    let message = failure(&events)["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("bob"), "{message}");
    let r = &build_records(&kernel).await[0];
    assert_eq!(
        (
            &r["subject"],
            &r["app"],
            &r["status"],
            &r["result"],
            &r["reason"]
        ),
        (
            &json!("bob"),
            &json!("shop"),
            &json!(200),
            &json!("denied"),
            &json!(message)
        ),
        "{r}"
    );
    // Refused before the stream: a 403, with the app.
    let (status, _) = common::api_raw(
        &kernel,
        "POST",
        "/api/v1/builds",
        Some(&token("bob")),
        Body::from(
            RawTar::new()
                .file("lain.yaml", 0o644, bobs.as_bytes())
                .finish(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let r = &build_records(&kernel).await[0];
    assert_eq!(
        (&r["subject"], &r["app"], &r["status"], &r["result"]),
        (&json!("bob"), &json!("shop"), &json!(403), &json!("denied")),
        "{r}"
    );
}

#[test]
fn a_restarted_kernel_removes_what_unfinished_builds_left() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("data");
    let releases = dir.join("releases");
    // What a build killed with its kernel leaves: a staging directory with the context in it.
    let stale = releases.join(".build-0123456789ab-4242-0");
    std::fs::create_dir_all(stale.join("src")).expect("stale staging");
    std::fs::write(stale.join("src/big"), vec![0u8; 4096]).expect("file");
    let kept = releases.join("shop");
    std::fs::create_dir_all(&kept).expect("an app's releases");
    drop(kernel(&dir));
    assert!(!stale.exists(), "the staging directory is swept at start");
    assert!(kept.exists(), "releases stay");
}

//! Two kernels on one etcd prefix (separate data dirs), written to at once: every change either
//! answers 2xx and is kept, or is refused; none is lost (compare-and-swap with retry, see
//! `kernel/src/store/cas`). And their secrets: a kernel with another master key is refused, and a
//! rotation through one kernel is followed by the other.
//!
//! Until the leader election lands both kernels reconcile; this test checks API writes and their
//! stored results only (the app's procs are scaled to 0, so nothing runs).

#[path = "../../kernel/tests/store_suite/etcd_server.rs"]
mod etcd_server;
mod support;

use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::{KernelProcess, json as parse};

const TOKEN: &str = "cluster-admin-token-0123456789";
const ROUNDS: usize = 25;

fn config(endpoint: &str, prefix: &str) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    format!(
        "[store]\nbackend = \"etcd\"\nendpoints = [\"{endpoint}\"]\nprefix = \"{prefix}\"\n\
         [plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n"
    )
}

fn start(data: &Path, config: &str) -> KernelProcess {
    let mut kernel = KernelProcess::start(data, config);
    kernel.cli_token = Some(TOKEN.into());
    kernel
}

/// `lain serve` on `data`, expected to exit with an error: its log.
fn refused_start(data: &Path, config: &str) -> String {
    std::fs::create_dir_all(data).expect("data dir");
    std::fs::write(data.join("lain.toml"), config).expect("config");
    let mut child = std::process::Command::new(support::lain_bin())
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", support::free_port()),
        ])
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(data.join("lain.toml"))
        .env(
            "LAIN_ROUTER_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(
                !status.success(),
                "a kernel with another key must not start"
            );
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the kernel with another master key kept running");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
        .expect("read");
    err
}

fn key_id(hex_key: &str) -> String {
    let bytes = hex::decode(hex_key.trim()).expect("hex");
    hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(bytes)[..6])
}

fn call(kernel: &KernelProcess, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
    let body = body.map(|b| b.to_string().into_bytes());
    kernel.api(method, path, Some(TOKEN), body.as_deref())
}

/// What one kernel's writer had acknowledged (2xx) last, per thing it wrote.
#[derive(Default, Debug)]
struct Acked {
    cpu: Option<u64>,
    users: Vec<String>,
    secrets: Vec<String>,
    limit: Option<u64>,
    refused: Vec<String>,
}

/// `ROUNDS` rounds of a scale of proc `proc`, a maintainer added, a secret set and plugin
/// setting `limit` changed, through `kernel`.
fn writer(kernel: &KernelProcess, tag: &str, proc: &str, limit: &str, base: u64) -> Acked {
    let mut acked = Acked::default();
    let mut note = |what: &str, (status, body): (u16, String)| {
        let ok = (200..300).contains(&status);
        if !ok {
            acked.refused.push(format!("{what}: {status} {body}"));
        }
        ok
    };
    for i in 0..ROUNDS as u64 {
        let cpu = base + i;
        let r = call(
            kernel,
            "PATCH",
            &format!("/api/v1/apps/cas/procs/{proc}"),
            Some(json!({ "num_instances": 0, "cpu": cpu })),
        );
        if note("scale", r) {
            acked.cpu = Some(cpu);
        }
        let user = format!("token:{tag}-{i}");
        let r = call(
            kernel,
            "PUT",
            &format!("/api/v1/apps/cas/maintainers/users/{user}"),
            None,
        );
        if note("maintainer", r) {
            acked.users.push(user);
        }
        let path = format!("/s/{tag}-{i}");
        let content = base64_of(format!("{tag} {i}").as_bytes());
        let r = call(
            kernel,
            "PUT",
            &format!("/api/v1/apps/cas/procs/{proc}/secrets"),
            Some(json!({ "path": path, "content": content })),
        );
        if note("secret", r) {
            acked.secrets.push(path);
        }
        let value = 1000 + cpu;
        let r = call(
            kernel,
            "PUT",
            "/api/v1/plugins/spread/config",
            Some(json!({ "set": { format!("limits.{limit}"): value } })),
        );
        if note("plugin config", r) {
            acked.limit = Some(value);
        }
    }
    acked
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Store write conflicts the kernel logged (debug lines of `store::cas`).
fn conflicts(kernel: &KernelProcess) -> usize {
    kernel
        .logs()
        .matches("a concurrent write changed what this one read")
        .count()
}

#[test]
fn concurrent_writes_through_two_kernels_keep_every_acknowledged_change() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let prefix = format!("/lain-cas-{}/", std::process::id());
    let config = config(&etcd.endpoint, &prefix);
    let tmp = tempfile::tempdir().expect("tempdir");
    let env = [("LAIN_LOG", "info,lain::store::cas=debug")];
    let mut a = KernelProcess::start_with_env(&tmp.path().join("a"), &config, &env);
    a.cli_token = Some(TOKEN.into());

    // A second kernel with its own master key is refused, naming both ids.
    let a_key = std::fs::read_to_string(tmp.path().join("a/vault.key")).expect("a's key");
    let err = refused_start(&tmp.path().join("stray"), &config);
    let stray_key = std::fs::read_to_string(tmp.path().join("stray/vault.key")).expect("key");
    assert!(
        err.contains(&key_id(&a_key)) && err.contains(&key_id(&stray_key)),
        "the refusal names both key ids: {err}"
    );
    assert!(
        err.contains("vault.next"),
        "and says where a rotation's key goes: {err}"
    );

    // With the cluster's key, it starts. a leads with the process runtime (the builds and
    // instances are on its machine); a second process-runtime kernel on the prefix would be
    // refused (docs/operations.md), so b, which only takes API writes here, is a Docker kernel
    // whose engine is never reached.
    std::fs::create_dir_all(tmp.path().join("b")).expect("b");
    std::fs::write(tmp.path().join("b/vault.key"), &a_key).expect("copy key");
    let b_config = format!(
        "runtime = \"docker\"\n[docker]\nlocal = \"unix:///nonexistent/docker.sock\"\n{config}"
    );
    let mut b = KernelProcess::start_with_env(&tmp.path().join("b"), &b_config, &env);
    b.cli_token = Some(TOKEN.into());

    let app = support::write_app(
        tmp.path(),
        "cas",
        "appname: cas\nbuild:\n  base: busybox\n  script: []\nworker.one:\n  cmd: sleep 100000\n  num_instances: 0\nworker.two:\n  cmd: sleep 100000\n  num_instances: 0\n",
    );
    a.lain_ok(&["build", app.to_str().expect("utf-8")]);
    a.lain_ok(&["deploy", "-a", "cas", "--no-wait"]);

    let (acked_a, acked_b) = std::thread::scope(|s| {
        let ta = s.spawn(|| writer(&a, "a", "one", "cpu_ms", 100));
        let tb = s.spawn(|| writer(&b, "b", "two", "wall_ms", 500));
        (ta.join().expect("a"), tb.join().expect("b"))
    });
    eprintln!(
        "refused: a {:?}, b {:?}; conflicts retried: a {}, b {}",
        acked_a.refused,
        acked_b.refused,
        conflicts(&a),
        conflicts(&b)
    );
    assert!(acked_a.refused.is_empty() && acked_b.refused.is_empty());

    for kernel in [&a, &b] {
        let view = parse(&call(kernel, "GET", "/api/v1/apps/cas", None).1);
        assert_eq!(
            view["app"]["scale"]["one"]["cpu"].as_u64(),
            acked_a.cpu,
            "{view:#}"
        );
        assert_eq!(
            view["app"]["scale"]["two"]["cpu"].as_u64(),
            acked_b.cpu,
            "{view:#}"
        );
        let m = parse(&call(kernel, "GET", "/api/v1/apps/cas/maintainers", None).1);
        for user in acked_a.users.iter().chain(&acked_b.users) {
            assert!(m.to_string().contains(user), "{user} kept: {m}");
        }
    }
    let listed = parse(&call(&b, "GET", "/api/v1/apps/cas/secrets", None).1);
    for path in acked_a.secrets.iter().chain(&acked_b.secrets) {
        assert!(listed.to_string().contains(path), "{path} kept: {listed}");
    }
    // A kernel shows the plugin records it loaded or wrote (another kernel's later change
    // reaches it at its restart): the stored record is what a restart loads.
    for kernel in [&mut a, &mut b] {
        kernel.kill9();
        kernel.restart();
        let config = parse(&call(kernel, "GET", "/api/v1/plugins/spread/config", None).1);
        let limits = &config["operator"]["limits"];
        assert_eq!(limits["cpu_ms"].as_u64(), acked_a.limit, "{config:#}");
        assert_eq!(limits["wall_ms"].as_u64(), acked_b.limit, "{config:#}");
    }

    // Key rotation across kernels: the operator puts the next key beside both key files, then
    // rotates through A; B follows and keeps reading and writing.
    let next = "ab".repeat(32);
    std::fs::write(tmp.path().join("a/vault.next"), &next).expect("a next");
    std::fs::write(tmp.path().join("b/vault.next"), &next).expect("b next");
    let rotated = parse(&a.lain_ok(&["secret", "rotate-key", "-o", "json"]));
    assert_eq!(rotated["key_id"], key_id(&next), "{rotated}");
    let read = |kernel: &KernelProcess, proc: &str, path: &str| {
        call(
            kernel,
            "GET",
            &format!("/api/v1/apps/cas/procs/{proc}/secrets/content?path={path}"),
            None,
        )
    };
    assert_eq!(read(&b, "one", "/s/a-0"), (200, "a 0".into()));
    let r = call(
        &b,
        "PUT",
        "/api/v1/apps/cas/procs/two/secrets",
        Some(json!({ "path": "/s/after", "content": base64_of(b"after") })),
    );
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(read(&a, "two", "/s/after"), (200, "after".into()));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("b/vault.key"))
            .expect("b key")
            .trim(),
        next,
        "B's key file is the new key now"
    );
    // Both restart on the new key.
    a.kill9();
    a.restart();
    b.kill9();
    b.restart();
    assert_eq!(read(&a, "two", "/s/b-0"), (200, "b 0".into()));
}

/// p50 of `n` scale PATCHes through `kernel` as `token` (ms).
fn p50_patch(kernel: &KernelProcess, token: &str, n: usize) -> f64 {
    let mut ms: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let body = json!({ "num_instances": 0, "cpu": 100 + i }).to_string();
            let (status, out) = kernel.api(
                "PATCH",
                "/api/v1/apps/cas/procs/one",
                Some(token),
                Some(body.as_bytes()),
            );
            assert_eq!(status, 202, "{out}");
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[n / 2]
}

/// A measurement, run in its quick mode (10 PATCHes per store) by the suite so that it keeps
/// running: prints the p50 write latency of a scale PATCH on the embedded store and on etcd.
/// The full run (200 each): `LAIN_BENCH_FULL=1 cargo test -p lain --test e2e_cluster_writes
/// patch_latency -- --nocapture`.
#[test]
fn patch_latency() {
    let n = if std::env::var_os("LAIN_BENCH_FULL").is_some() {
        200
    } else {
        10
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = support::write_app(
        tmp.path(),
        "cas",
        "appname: cas\nbuild:\n  base: busybox\n  script: []\nworker.one:\n  cmd: sleep 100000\n  num_instances: 0\n",
    );
    let embedded = KernelProcess::start(&tmp.path().join("e"), "");
    embedded.lain_ok(&["build", app.to_str().expect("utf-8")]);
    embedded.lain_ok(&["deploy", "-a", "cas", "--no-wait"]);
    let p50 = p50_patch(&embedded, &embedded.token(), n);
    eprintln!("embedded store: PATCH p50 {p50:.2} ms");
    drop(embedded);
    let etcd = etcd_server::EtcdServer::start().expect("etcd");
    let kernel = start(
        &tmp.path().join("d"),
        &config(&etcd.endpoint, "/lain-latency/"),
    );
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "cas", "--no-wait"]);
    eprintln!("etcd: PATCH p50 {:.2} ms", p50_patch(&kernel, TOKEN, n));
}

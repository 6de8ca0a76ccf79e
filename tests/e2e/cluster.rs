//! Several kernels: real `lain serve` processes on a real etcd elect one leader; a paused
//! leader loses its lease, the other kernel leads, and the old one steps down when it resumes;
//! a data dir takes one kernel; a second process-runtime kernel on one etcd prefix is refused.

#[path = "../../kernel/tests/store_suite/etcd_server.rs"]
mod etcd_server;
mod support;

use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::{KernelProcess, lain_bin};

const TOKEN: &str = "cluster-admin-token-0123456789";

/// A kernel's `[store]` on `etcd` under `prefix`, the CLI an admin through the `token`
/// provider; `runtime` is `process` or `docker` (the Docker engine is never reached here).
fn config(etcd: &etcd_server::EtcdServer, prefix: &str, runtime: &str) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    format!(
        "runtime = \"{runtime}\"\n[docker]\nlocal = \"unix:///nonexistent/docker.sock\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{prefix}\"\n\
         lease_ttl_secs = 2\n\
         [plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n",
        etcd.endpoint
    )
}

fn start(data: &Path, config: &str) -> KernelProcess {
    let mut kernel = KernelProcess::start(data, config);
    kernel.cli_token = Some(TOKEN.into());
    kernel
}

/// Starts a second kernel of `first`'s cluster on `data`: with `first`'s master key, as every
/// kernel on one store needs (docs/security.md).
fn start_joining(first: &KernelProcess, data: &Path, config: &str) -> KernelProcess {
    first.share_key(data);
    start(data, config)
}

fn signal(kernel: &KernelProcess, sig: &str) {
    let pid = kernel.pid().expect("running").to_string();
    let ok = Command::new("kill")
        .args([sig, &pid])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill {sig} {pid}");
}

#[test]
fn two_kernels_elect_one_leader_and_a_paused_leader_steps_down_when_it_resumes() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&etcd, "/lain-cluster/", "docker");
    let a = start(&tmp.path().join("a"), &cfg);
    let sa = a.wait_status("a leads", |s| s["role"] == "leader");
    let b = start_joining(&a, &tmp.path().join("b"), &cfg);
    let sb = b.wait_status("b sees a lead", |s| s["leader"] == sa["kernel"]);
    assert_eq!(sb["role"], "follower");
    assert_ne!(sa["kernel"], sb["kernel"], "each kernel has its own id");
    assert_eq!(
        sa["cluster"], sb["cluster"],
        "one cluster id labels the instances"
    );
    let metrics = |k: &KernelProcess| k.api("GET", "/metrics", Some(TOKEN), None).1;
    let leader_line = |s: &Value, v: u8| {
        format!(
            "lain_leader{{kernel=\"{}\"}} {v}",
            s["kernel"].as_str().unwrap_or_default()
        )
    };
    assert!(
        metrics(&a).contains(&leader_line(&sa, 1)),
        "{}",
        metrics(&a)
    );
    assert!(
        metrics(&b).contains(&leader_line(&sb, 0)),
        "{}",
        metrics(&b)
    );

    // a freezes past its lease: b leads; a, resumed, must not think it still leads.
    signal(&a, "-STOP");
    let paused = Instant::now();
    b.wait_status("b leads", |s| s["role"] == "leader");
    let took = paused.elapsed();
    assert!(took < Duration::from_secs(8), "took {took:?}");
    std::thread::sleep(Duration::from_secs(1));
    signal(&a, "-CONT");
    let sa = a.wait_status("a steps down", |s| {
        s["role"] == "follower" && s["leader"] == sb["kernel"]
    });
    assert!(a.logs().contains("no longer the leader"), "{}", a.logs());
    assert_eq!(b.status()["role"], "leader", "one leader: {sa:#}");
    assert!(metrics(&a).contains(&leader_line(&sa, 0)));
}

/// A leader stopped with SIGTERM (an upgrade, a reboot) hands over at once: with a 30 s lease,
/// waiting for the lease to end would take 30 s.
#[test]
fn a_leader_stopped_with_sigterm_hands_over_without_waiting_for_its_lease() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&etcd, "/lain-handover/", "docker")
        .replace("lease_ttl_secs = 2", "lease_ttl_secs = 30");
    let mut a = start(&tmp.path().join("a"), &cfg);
    let sa = a.wait_status("a leads", |s| s["role"] == "leader");
    let b = start_joining(&a, &tmp.path().join("b"), &cfg);
    b.wait_status("b sees a lead", |s| s["leader"] == sa["kernel"]);
    signal(&a, "-TERM");
    let stopped = Instant::now();
    assert!(
        a.wait_exit(Duration::from_secs(20)).is_some(),
        "a did not stop: {}",
        a.logs()
    );
    b.wait_status("b leads", |s| s["role"] == "leader");
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "b led {took:?} after a stopped, as if a had not resigned: {}",
        a.logs()
    );
    assert!(
        a.logs().contains("handed the leadership over"),
        "{}",
        a.logs()
    );
}

#[test]
fn a_second_kernel_on_a_data_dir_is_refused_and_says_why() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let first = KernelProcess::start(&data, "");
    let out = Command::new(lain_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("LAIN_ROUTER_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run lain serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    let pid = first.pid().expect("running");
    assert!(
        err.contains(&format!("is in use by another lain kernel (pid {pid})")),
        "{err}"
    );
    // The first kernel is untouched.
    first.lain_ok(&["status"]);
}

#[test]
fn a_second_process_runtime_kernel_on_one_etcd_prefix_is_refused() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&etcd, "/lain-process/", "process");
    let a = start(&tmp.path().join("a"), &cfg);
    a.wait_status("a leads", |s| s["role"] == "leader");
    let data = tmp.path().join("b");
    a.share_key(&data);
    std::fs::write(data.join("lain.toml"), &cfg).expect("config");
    let out = Command::new(lain_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(data.join("lain.toml"))
        .env("LAIN_ROUTER_LISTEN", "127.0.0.1:0")
        .output()
        .expect("run lain serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("already leads the etcd prefix") && err.contains("process runtime"),
        "{err}"
    );
    // A restarted kernel is its own previous self, not a second kernel: it leads again at once.
    let mut a = a;
    a.kill9();
    let killed = Instant::now();
    a.restart();
    a.wait_status("a leads again", |s| s["role"] == "leader");
    assert!(killed.elapsed() < Duration::from_secs(30));
}

/// GET `/` of the app `hello` (at its default mountpoint) through `kernel`'s router.
fn through_router(kernel: &KernelProcess) -> String {
    ureq::get(&format!("http://{}/", kernel.router))
        .header("Host", "hello.lain.local")
        .call()
        .map(|mut r| r.body_mut().read_to_string().unwrap_or_default())
        .unwrap_or_else(|e| format!("router: {e}"))
}

#[test]
fn losing_a_member_changes_nothing_and_losing_quorum_answers_503_while_the_app_serves() {
    let mut etcd = etcd_server::EtcdCluster::start(3).expect("3 etcd members");
    let tmp = tempfile::tempdir().expect("tempdir");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    let endpoints: Vec<String> = etcd.endpoints().iter().map(|e| format!("{e:?}")).collect();
    let cfg = format!(
        "[store]\nbackend = \"etcd\"\nendpoints = [{}]\nprefix = \"/lain-quorum/\"\n\
         lease_ttl_secs = 2\n\
         [plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n",
        endpoints.join(", ")
    );
    let kernel = start(&tmp.path().join("k"), &cfg);
    kernel.wait_status("the kernel leads", |s| s["role"] == "leader");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    kernel.lain_ok(&["build", hello.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "hello"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !through_router(&kernel).starts_with("Hello from lain") {
        assert!(Instant::now() < deadline, "{}", through_router(&kernel));
        std::thread::sleep(Duration::from_millis(100));
    }
    let apps = || kernel.api("GET", "/api/v1/apps", Some(TOKEN), None);

    // One member of three gone: nothing visible changes.
    etcd.stop_member(0);
    let (status, body) = apps();
    assert_eq!(status, 200, "{body}");
    kernel.wait_status("a leader", |s| s["role"] == "leader");
    kernel.lain_ok(&["scale", "web", "-a", "hello", "--num-instances", "3"]);

    // Quorum lost: the API says so with 503; the instances keep running and serving.
    etcd.stop_member(1);
    let asked = Instant::now();
    let (status, body) = apps();
    let took = asked.elapsed();
    eprintln!("quorum lost: 503 after {took:?}");
    assert_eq!(status, 503, "{body}");
    // A member without a leader refuses at once (the store requires one), a read left waiting
    // on it is asked again after 2 s, and the store tries only while an election could end
    // (3 s): sooner than etcd's own request timeout (7 s), which it took before.
    assert!(took < Duration::from_millis(6500), "503 after {took:?}");
    assert!(
        body.contains("store-unavailable") && body.contains("etcd"),
        "{body}"
    );
    kernel.wait_status("the leader's loops stopped", |s| s["role"] == "follower");
    for _ in 0..5 {
        assert!(
            through_router(&kernel).starts_with("Hello from lain"),
            "{}",
            through_router(&kernel)
        );
    }

    // Quorum back: the kernel recovers without a restart.
    etcd.restart_member(0).expect("m0 back");
    etcd.restart_member(1).expect("m1 back");
    let deadline = Instant::now() + Duration::from_secs(60);
    while apps().0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the API did not recover: {}",
            kernel.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    kernel.wait_status("it leads again", |s| s["role"] == "leader");
    // Its new reconciler routes the instances again once it has probed them ready.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !through_router(&kernel).starts_with("Hello from lain") {
        assert!(Instant::now() < deadline, "{}", through_router(&kernel));
        std::thread::sleep(Duration::from_millis(100));
    }
}

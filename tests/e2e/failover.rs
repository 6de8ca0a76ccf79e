//! Failover with instances: real `lain serve` kernels on a real etcd, the Docker runtime on one
//! real dockerd. Every kernel serves the leader's routes and instance views (published in the
//! store); when the leader is killed with `kill -9`, the other kernel's router keeps serving, and
//! a rollout the dead leader started is finished by the next one without a duplicate. A kernel
//! restarted after `kill -9` routes at once from the readiness it published.

mod docker_engine;
#[path = "../../kernel/tests/store_suite/etcd_server.rs"]
mod etcd_server;
mod support;

use docker_engine::DockerEngine;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{KernelProcess, instances, json};

const TOKEN: &str = "failover-admin-token-0123456789";

/// A Docker-runtime kernel's configuration on `etcd` under `prefix`, reaching `engine`, the CLI
/// an admin through the `token` provider.
fn config(etcd: &etcd_server::EtcdServer, prefix: &str, engine: &DockerEngine) -> String {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(TOKEN));
    format!(
        "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\n\
         [store]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{prefix}\"\n\
         lease_ttl_secs = 2\n\
         [plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n",
        engine.address, etcd.endpoint
    )
}

fn start(data: &Path, config: &str) -> KernelProcess {
    let mut kernel = KernelProcess::start(data, config);
    kernel.cli_token = Some(TOKEN.into());
    kernel
}

/// Two kernels of one cluster (the second with the first's master key); the first leads.
fn two_kernels(tmp: &Path, config: &str) -> (KernelProcess, KernelProcess) {
    let a = start(&tmp.join("a"), config);
    let sa = a.wait_status("a leads", |s| s["role"] == "leader");
    a.share_key(&tmp.join("b"));
    let b = start(&tmp.join("b"), config);
    b.wait_status("b follows a", |s| {
        s["role"] == "follower" && s["leader"] == sa["kernel"]
    });
    (a, b)
}

/// An app `shop`: `web` instances of busybox httpd answering `greeting`, behind a health check.
fn app(dir: &Path, greeting: &str, webs: u32) -> String {
    let app = support::write_app(
        dir,
        "shop",
        &format!(
            "appname: shop\nbuild:\n  base: {base}\n  script:\n    - echo '{greeting}' > /lain/app/index.html\n\
             web:\n  cmd: httpd -f -p 80 -h /lain/app\n  num_instances: {webs}\n  healthcheck: /index.html\n",
            base = docker_engine::BASE
        ),
    );
    app.to_string_lossy().into_owned()
}

/// GET `/` of `shop` through the router at `router`: the body, or `None` on any failure.
fn through_router(router: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let mut response = agent
        .get(&format!("http://{router}/"))
        .header("Host", "shop.lain.local")
        .call()
        .ok()?;
    response.body_mut().read_to_string().ok()
}

/// Requests through `router` every 20 ms on a thread until `stop`: when each succeeded, and the
/// bodies of those that did not answer one of `bodies`.
fn hammer(
    router: String,
    bodies: &'static [&'static str],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<Instant>, usize, Vec<String>)> {
    std::thread::spawn(move || {
        let (mut ok, mut sent, mut odd) = (Vec::new(), 0, Vec::new());
        while !stop.load(Ordering::SeqCst) {
            sent += 1;
            match through_router(&router) {
                Some(body) if bodies.contains(&body.as_str()) => ok.push(Instant::now()),
                Some(body) => odd.push(body),
                None => {}
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (ok, sent, odd)
    })
}

/// The longest time between two successful requests in `ok`, from `from` on.
fn longest_gap(ok: &[Instant], from: Instant) -> Duration {
    let mut last = from;
    let mut gap = Duration::ZERO;
    for t in ok.iter().filter(|t| **t >= from) {
        gap = gap.max(t.saturating_duration_since(last));
        last = *t;
    }
    gap
}

fn kill9(kernel: &mut KernelProcess) {
    let pid = kernel.pid().expect("running").to_string();
    let ok = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(ok.success(), "kill -9 {pid}");
    assert!(
        kernel.wait_exit(Duration::from_secs(10)).is_some(),
        "still running"
    );
}

/// The running containers of `shop` on the engine at `address`, by (proc, instance number,
/// release): how many of each (`docker ps` with the labels the kernel gives its containers).
fn running(address: &str) -> BTreeMap<(String, String, String), usize> {
    let out = Command::new("docker")
        .args(["-H", address])
        .args([
            "ps",
            "--filter",
            "label=lain.app=shop",
            "--filter",
            "status=running",
            "--format",
            "{{.Label \"lain.proc\"}} {{.Label \"lain.instance\"}} {{.Label \"lain.release\"}}",
        ])
        .output()
        .expect("docker CLI");
    assert!(
        out.status.success(),
        "docker ps: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split(' ');
        let mut next = || parts.next().unwrap_or_default().to_string();
        *seen.entry((next(), next(), next())).or_insert(0) += 1;
    }
    seen
}

/// Duplicates among `running`: a (proc, number, release) with more than one running container,
/// or a (proc, number) with more than two (the old and the new one of a rolling upgrade).
fn duplicates(running: &BTreeMap<(String, String, String), usize>) -> Vec<String> {
    let mut per_number: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut out = Vec::new();
    for ((proc, no, release), n) in running {
        if *n > 1 {
            out.push(format!(
                "{n} running containers of {proc} {no} at {release}"
            ));
        }
        *per_number.entry((proc, no)).or_default() += n;
    }
    for ((proc, no), n) in per_number {
        if n > 2 {
            out.push(format!("{n} running containers of {proc} {no}"));
        }
    }
    out
}

#[test]
fn every_kernel_serves_the_leaders_routes_and_the_follower_keeps_serving_when_the_leader_dies() {
    let _host = docker_engine::lock_host();
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let engine = DockerEngine::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&etcd, "/lain-routes/", &engine);
    let (mut a, b) = two_kernels(tmp.path(), &cfg);

    let shop = app(tmp.path(), "hello from shop", 2);
    a.lain_ok(&["build", &shop]);
    a.lain_ok(&["deploy", "-a", "shop"]);
    // Deployed through a; listed by `lain ps` through b, and served by b's router.
    let view = b.wait_for("shop", "b's view of the instances", |v| {
        v["converged"] == true && instances(v, "web").iter().all(|i| i["ready"] == true)
    });
    assert_eq!(instances(&view, "web").len(), 2, "{view:#}");
    assert_eq!(view["pass"], 0, "b's view is the leader's: b ran no pass");
    assert_eq!(
        through_router(&b.router).as_deref(),
        Some("hello from shop\n"),
        "{}",
        b.logs()
    );

    // kill -9 of the leader: b's router keeps serving all along.
    let stop = Arc::new(AtomicBool::new(false));
    let load = hammer(b.router.clone(), &["hello from shop\n"], stop.clone());
    std::thread::sleep(Duration::from_secs(1));
    let killed = Instant::now();
    kill9(&mut a);
    b.wait_status("b leads", |s| s["role"] == "leader");
    let led = killed.elapsed();
    b.wait_status("b's reconciler passes", |s| {
        s["reconciler_passes"].as_u64() >= Some(2)
    });
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (ok, sent, odd) = load.join().expect("load thread");
    let gap = longest_gap(&ok, killed - Duration::from_secs(1));
    eprintln!(
        "failover: b led {led:?} after the kill; {} of {sent} requests through b's router \
         succeeded; longest gap between successes {gap:?}",
        ok.len()
    );
    assert!(odd.is_empty(), "{odd:?}");
    assert!(
        gap < Duration::from_millis(1500),
        "b's router stopped serving for {gap:?} (b led {led:?} after the kill)\n{}",
        b.logs()
    );
    let view = b.ps("shop");
    assert_eq!(view["converged"], true, "{view:#}");
    assert!(view["pass"].as_u64() >= Some(1), "b's own passes: {view:#}");
}

#[test]
fn a_rollout_the_killed_leader_started_is_finished_by_the_next_one_without_duplicates() {
    let _host = docker_engine::lock_host();
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let engine = DockerEngine::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cfg = config(&etcd, "/lain-rollout/", &engine);
    let (mut a, b) = two_kernels(tmp.path(), &cfg);

    let shop = app(tmp.path(), "v1", 4);
    let v1 = json(&a.lain_ok(&["build", &shop, "-o", "json"]))["version"]
        .as_str()
        .expect("version")
        .to_string();
    a.lain_ok(&["deploy", "-a", "shop"]);
    b.wait_for("shop", "v1 on b", |v| v["converged"] == true);
    support::edit_app(Path::new(&shop), |y| y.replace("'v1'", "'v2'"));
    let v2 = json(&a.lain_ok(&["build", &shop, "-o", "json"]))["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert_ne!(v1, v2);

    // Duplicates are looked for all along, and the app is served through b.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, address) = (stop.clone(), engine.address.clone());
        std::thread::spawn(move || {
            let mut found = Vec::new();
            let mut polls = 0;
            while !stop.load(Ordering::SeqCst) {
                found.extend(duplicates(&running(&address)));
                polls += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            (found, polls)
        })
    };
    let load = hammer(b.router.clone(), &["v1\n", "v2\n"], stop.clone());

    a.lain_ok(&["deploy", "-a", "shop", "--no-wait"]);
    // Mid-rollout: a v2 instance runs beside the v1 ones.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let now = running(&engine.address);
        let at = |r: &str| now.keys().filter(|k| k.2 == r).count();
        if at(&v2) >= 1 && at(&v1) >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no rollout seen: {now:?}\n{}",
            a.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let killed = Instant::now();
    kill9(&mut a);
    b.wait_status("b leads", |s| s["role"] == "leader");

    // b finishes the rollout: every web instance at v2, ready, one container each.
    let view = b.wait_for("shop", "the rollout under b", |v| {
        let web = instances(v, "web");
        v["converged"] == true
            && web.len() == 4
            && web
                .iter()
                .all(|i| i["release"] == v2.as_str() && i["ready"] == true)
    });
    let finished = killed.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let (found, polls) = watcher.join().expect("watcher");
    let (ok, sent, odd) = load.join().expect("load thread");
    let gap = longest_gap(&ok, killed - Duration::from_secs(1));
    eprintln!(
        "rollout failover: finished {finished:?} after the kill; {polls} docker ps polls; \
         {} of {sent} requests through b's router succeeded; longest gap {gap:?}",
        ok.len()
    );
    assert!(found.is_empty(), "duplicates: {found:?}");
    assert!(odd.is_empty(), "{odd:?}");
    assert!(
        gap < Duration::from_millis(1500),
        "b's router stopped serving for {gap:?}"
    );
    let end = running(&engine.address);
    assert_eq!(end.len(), 4, "{end:?}\n{view:#}");
    assert!(
        end.iter().all(|((_, _, r), n)| r == &v2 && *n == 1),
        "{end:?}"
    );
    assert_eq!(through_router(&b.router).as_deref(), Some("v2\n"));
}

/// GET `/` of `hello` through the router at `router`: whether it answered the greeting.
fn hello_served(router: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    agent
        .get(&format!("http://{router}/"))
        .header("Host", "hello.lain.local")
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_to_string().ok())
        .is_some_and(|b| b.starts_with("Hello from lain"))
}

/// The next leader starts from the published readiness: a health-checked instance the previous
/// one found healthy is routed from the new reconciler's first pass, not only once it has been
/// checked again. Shown with the process runtime (whose health checks the reconciler runs
/// itself) and one kernel restarted after `kill -9`, which leads again as a new leader would.
#[test]
fn a_kernel_restarted_after_kill_9_routes_at_once_from_the_published_readiness() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kernel = KernelProcess::start(&tmp.path().join("k"), "");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello");
    kernel.lain_ok(&["build", hello.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "hello"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !hello_served(&kernel.router) {
        assert!(Instant::now() < deadline, "not served: {}", kernel.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    kernel.kill9();
    kernel.restart();
    // From the moment the restarted kernel answers, for 3 s (its health checks run every
    // second while an instance is not known healthy): every request is served.
    let started = Instant::now();
    let (mut sent, mut failed) = (0, Vec::new());
    while started.elapsed() < Duration::from_secs(3) {
        sent += 1;
        if !hello_served(&kernel.router) {
            failed.push(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let passes = json(&kernel.lain_ok(&["status", "-o", "json"]))["reconciler_passes"].clone();
    assert!(passes.as_u64() >= Some(2), "{passes}");
    assert!(
        failed.is_empty(),
        "{} of {sent} requests failed after the restart, at {failed:?}\n{}",
        failed.len(),
        kernel.logs()
    );
}

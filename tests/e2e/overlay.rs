//! Docker overlay mode end to end: two real dockerd engines in one Docker swarm (the second in
//! its own network namespace, linked to the host by a veth pair, as a second machine), the real
//! `lain` binary with `[docker] network = "overlay"`. Procs of one app on different engines
//! reach each other by name, a client reaches a portal on the other engine, other apps are kept
//! out, and an engine outside the swarm is refused as a node.

mod docker_engine;
mod support;

use docker_engine::{DockerEngine, Netns};
use std::time::{Duration, Instant};
use support::{KernelProcess, instances};

/// The node an instance of `proc` runs on, and its name.
fn placed(kernel: &KernelProcess, app: &str, proc: &str) -> (String, String) {
    let view = kernel.wait_for(app, "a running instance", |v| {
        instances(v, proc)
            .first()
            .is_some_and(|i| i["state"]["state"] == "running")
    });
    let instance = instances(&view, proc)[0];
    let field = |k: &str| instance[k].as_str().expect(k).to_string();
    (field("node"), field("name"))
}

/// `wget` of `url` from container `name` on `engine`, until it answers `expected` (60 s).
fn wait_wget(engine: &DockerEngine, name: &str, url: &str, expected: &str, kernel: &KernelProcess) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = engine.docker(&["exec", name, "timeout", "3", "wget", "-q", "-O-", url]);
        if String::from_utf8_lossy(&out.stdout) == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never got {url}: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            kernel.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Container `name`'s address on network `network`.
fn address_on(engine: &DockerEngine, name: &str, network: &str) -> String {
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let ip = engine.docker_ok(&["inspect", "-f", &format, name]);
    let ip = ip.trim().to_string();
    assert!(!ip.is_empty(), "{name} has no address on {network}");
    ip
}

#[test]
fn overlay_networks_join_an_apps_procs_across_engines_and_keep_other_apps_out() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let netns = Netns::create();
    let e1 = DockerEngine::start();
    let e2 = DockerEngine::start_in(Some(&netns), &[]);
    let outsider = DockerEngine::start();
    // VXLAN on a port of its own, overlay subnets apart from the engines' bridge pools.
    let data_port = 4800 + (std::process::id() % 1000) as u16;
    e1.swarm_init(&netns.host_ip, "10.251.0.0/16", data_port);
    e2.swarm_join(&e1, &netns.host_ip, &netns.ns_ip);

    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\nnetwork = \"overlay\"\n",
            e1.address
        ),
    );
    // An engine outside the swarm is refused, naming it and why; nothing is added.
    let refused = kernel.lain_err(&[
        "node",
        "add",
        "n3",
        "--address",
        &outsider.address,
        "--memory",
        "4G",
    ]);
    assert!(
        refused.contains(&outsider.address) && refused.contains("not an active swarm member"),
        "{refused}"
    );
    let nodes = kernel.lain_ok(&["node", "list", "-o", "json"]);
    assert!(!nodes.contains("\"n3\""), "{nodes}");

    kernel.add_node("local", "local", &["spot=here"]);
    kernel.add_node("n2", &e2.address, &["disk=ssd"]);
    let base = docker_engine::BASE;
    let here = "  filters:\n    - constraint:spot==here\n";
    let there = "  filters:\n    - constraint:disk==ssd\n";
    let chat = support::write_app(
        tmp.path(),
        "chat",
        &format!(
            "appname: chat\nbuild:\n  base: {base}\n  script:\n    - echo 'from far' > /lain/app/index.html\n\
             worker.near:\n  cmd: sleep 100000\n{here}\
             worker.far:\n  cmd: httpd -f -p 8080 -h /lain/app\n{there}"
        ),
    );
    let pg = support::write_app(
        tmp.path(),
        "pg",
        &format!(
            "appname: pg\nbuild:\n  base: {base}\n  script:\n    - echo 'from pg' > /lain/app/index.html\n\
             service.db:\n  cmd: httpd -f -p 5432 -h /lain/app\n  port: 5432\n{there}  portal:\n    cmd: httpd -f -p 5432 -h /lain/app\n    filters:\n      - constraint:disk==ssd\n"
        ),
    );
    let shop = support::write_app(
        tmp.path(),
        "shop",
        &format!(
            "appname: shop\nbuild:\n  base: {base}\n  script: []\n\
             worker:\n  cmd: sleep 100000\n{here}use_services:\n  pg:\n    - db\n"
        ),
    );
    let other = support::write_app(
        tmp.path(),
        "other",
        &format!(
            "appname: other\nbuild:\n  base: {base}\n  script: []\n\
             worker:\n  cmd: sleep 100000\n{there}"
        ),
    );
    for (name, dir) in [
        ("chat", &chat),
        ("pg", &pg),
        ("shop", &shop),
        ("other", &other),
    ] {
        kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
        kernel.lain_ok(&["deploy", "-a", name]);
    }
    let (near_node, near) = placed(&kernel, "chat", "near");
    let (far_node, far) = placed(&kernel, "chat", "far");
    assert_eq!((near_node.as_str(), far_node.as_str()), ("local", "n2"));

    // Across engines, by proc name, both ways.
    wait_wget(
        &e1,
        &near,
        "http://far:8080/index.html",
        "from far\n",
        &kernel,
    );
    e2.docker_ok(&["exec", &far, "ping", "-c", "1", "-W", "3", "near"]);

    // One overlay network per app, swarm-scope, labelled as the kernel's.
    let network = e1.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{.Driver}} {{.Scope}} {{.Attachable}} {{index .Labels \"lain.app\"}} {{index .Labels \"lain.kernel\"}}",
        "lain-chat",
    ]);
    let fields: Vec<&str> = network.split_whitespace().collect();
    assert_eq!(
        fields[..4],
        ["overlay", "swarm", "true", "chat"],
        "{network}"
    );
    assert!(fields.len() == 5 && !fields[4].is_empty(), "{network}");

    // A client on e1 reaches the portal of its service on e2 by the service's name.
    let (portal_node, portal) = placed(&kernel, "pg", "portal-db");
    assert_eq!(portal_node, "n2", "the portal is on the other engine");
    let (shop_node, client) = placed(&kernel, "shop", "worker");
    assert_eq!(shop_node, "local");
    wait_wget(
        &e1,
        &client,
        "http://db:5432/index.html",
        "from pg\n",
        &kernel,
    );
    assert!(
        e2.docker_ok(&[
            "inspect",
            "-f",
            "{{json .NetworkSettings.Networks}}",
            &portal
        ])
        .contains("lain-shop"),
        "the portal joined its client's overlay network"
    );

    // Another app, on the same engine as `far`, reaches it neither by name nor by address.
    let (other_node, stranger) = placed(&kernel, "other", "worker");
    assert_eq!(other_node, "n2");
    let far_ip = address_on(&e2, &far, "lain-chat");
    for url in [
        "http://far:8080/index.html".to_string(),
        format!("http://{far_ip}:8080/index.html"),
        "http://db:5432/index.html".to_string(),
    ] {
        let out = e2.docker(&["exec", &stranger, "timeout", "3", "wget", "-q", "-O-", &url]);
        assert!(
            !out.status.success(),
            "app `other` reached {url}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    drop(kernel);
}

/// The bridge/overlay bench (`scripts/bench-docker-overlay`) in its quick mode, so a change that
/// breaks it fails the suite: every path must carry its pings and its HTTP blob.
#[test]
fn the_overlay_bench_runs_in_quick_mode() {
    let _host = docker_engine::lock_host();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("scripts")
        .join("bench-docker-overlay");
    let out = std::process::Command::new(&script)
        .env("LAIN_BENCH_QUICK", "1")
        .output()
        .expect("the overlay bench starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed: {stdout}{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    for path in [
        "bridge, one engine",
        "overlay, one engine",
        "overlay, across engines",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(path) && l.contains("MiB/s")),
            "no figure for {path}: {stdout}"
        );
    }
}

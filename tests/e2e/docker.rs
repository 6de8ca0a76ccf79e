//! The Docker runtime end to end: real dockerd engines started by the test, the real `lain`
//! binary, real HTTP. Builds images, deploys, heals, scales, isolates apps by network, survives
//! `kill -9` of the kernel, and places instances across two engines.

mod docker_engine;
mod support;
mod terminal;

use docker_engine::DockerEngine;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{KernelProcess, get, instances, json};

fn kernel_on(dir: &Path, engine: &DockerEngine, extra: &str) -> KernelProcess {
    KernelProcess::start(
        &dir.join("data"),
        &format!(
            "runtime = \"docker\"\n{extra}\n[docker]\nlocal = \"{}\"\n",
            engine.address
        ),
    )
}

/// An app: a busybox web server answering with `greeting`, and a worker.
fn app(dir: &Path, name: &str, greeting: &str, workers: u32) -> String {
    let app = support::write_app(
        dir,
        name,
        &format!(
            "appname: {name}\nbuild:\n  base: {base}\n  script:\n    - echo '{greeting}' > /lain/app/index.html\n\
             web:\n  cmd: httpd -f -p 80 -h /lain/app\n  healthcheck: /index.html\n\
             worker:\n  cmd: sh -c 'while true; do echo tick; sleep 1; done'\n  num_instances: {workers}\n",
            base = docker_engine::BASE
        ),
    );
    app.to_string_lossy().into_owned()
}

/// An app `shop` whose one worker must run on a node labelled `disk=ssd`.
fn ssd_worker(dir: &Path) -> std::path::PathBuf {
    support::write_app(
        dir,
        "shop",
        &format!(
            "appname: shop\nbuild:\n  base: {}\n  script: []\nworker:\n  cmd: sleep 100000\n  filters:\n    - constraint:disk==ssd\n",
            docker_engine::BASE
        ),
    )
}

#[test]
fn docker_builds_deploys_heals_scales_and_isolates_apps() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let shop = app(tmp.path(), "shop", "hello from shop", 1);

    let release = json(&kernel.lain_ok(&["build", &shop, "-o", "json"]));
    let version = release["version"].as_str().expect("version");
    assert_eq!(release["image"], format!("shop:release-{version}"));
    engine.docker_ok(&["image", "inspect", &format!("shop:build-{version}")]);

    let view = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    let web = instances(&view, "web")[0];
    assert_eq!(web["health"], "healthy", "Docker's HEALTHCHECK: {web}");
    assert_eq!(get(web["url"].as_str().expect("url")), "hello from shop\n");
    let names = engine.containers("lain.app=shop");
    assert_eq!(names.len(), 2, "{names:?}");

    // Procs of one app reach each other by proc name on the app's network.
    let worker = instances(&view, "worker")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let body = engine.docker_ok(&[
        "exec",
        &worker,
        "wget",
        "-q",
        "-O-",
        "http://web/index.html",
    ]);
    assert_eq!(body, "hello from shop\n");
    // And one instance by `<proc>-<n>`, as in LAIN; the app's domain is searched.
    let body = engine.docker_ok(&[
        "exec",
        &worker,
        "wget",
        "-q",
        "-O-",
        "http://web-1/index.html",
    ]);
    assert_eq!(body, "hello from shop\n");
    let resolv = engine.docker_ok(&["exec", &worker, "cat", "/etc/resolv.conf"]);
    assert!(
        resolv
            .lines()
            .any(|l| l.starts_with("search ") && l.contains("shop.lain")),
        "{resolv}"
    );

    // Another app can neither resolve nor reach it.
    let other = app(tmp.path(), "other", "hello from other", 1);
    kernel.lain_ok(&["build", &other]);
    let view_other = json(&kernel.lain_ok(&["deploy", "-a", "other", "-o", "json"]));
    let stranger = instances(&view_other, "worker")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let web_ip = engine.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        web["name"].as_str().expect("name"),
    ]);
    let by_name = engine.docker(&[
        "exec",
        &stranger,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        "http://web/index.html",
    ]);
    assert!(
        !String::from_utf8_lossy(&by_name.stdout).contains("hello from shop"),
        "`web` of shop resolved from another app"
    );
    let by_ip = engine.docker(&[
        "exec",
        &stranger,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        &format!("http://{}/index.html", web_ip.trim()),
    ]);
    assert!(
        !by_ip.status.success(),
        "another app reached shop's web by IP"
    );
    let control = engine.docker_ok(&[
        "exec",
        &worker,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        &format!("http://{}/index.html", web_ip.trim()),
    ]);
    assert_eq!(
        control, "hello from shop\n",
        "the same request works inside the app"
    );
    let own = engine.docker_ok(&[
        "exec",
        &stranger,
        "wget",
        "-q",
        "-O-",
        "http://web/index.html",
    ]);
    assert_eq!(own, "hello from other\n", "each app reaches its own web");
    // And the other way round: shop cannot reach other's web.
    let other_web = instances(&view_other, "web")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let other_ip = engine.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        &other_web,
    ]);
    let back = engine.docker(&[
        "exec",
        &worker,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        &format!("http://{}/index.html", other_ip.trim()),
    ]);
    assert!(!back.status.success(), "shop reached other's web by IP");

    // A container killed from outside is noticed (Docker events) and started again.
    engine.docker_ok(&["kill", &worker]);
    let healed = kernel.wait_for("shop", "the worker to run again", |v| {
        instances(v, "worker")
            .first()
            .is_some_and(|w| w["state"]["state"] == "running" && w["restarts"] == 1)
    });
    assert_eq!(instances(&healed, "worker").len(), 1);

    // Output reaches the log store.
    let logs = kernel.lain_ok(&["logs", "worker", "-a", "shop"]);
    assert!(logs.contains("[1] tick"), "{logs}");

    // Scale up and down; memory in place.
    let view = json(&kernel.lain_ok(&[
        "scale",
        "worker",
        "-a",
        "shop",
        "--num-instances",
        "3",
        "-o",
        "json",
    ]));
    assert_eq!(instances(&view, "worker").len(), 3);
    let view = json(&kernel.lain_ok(&[
        "scale", "worker", "-a", "shop", "--memory", "48M", "-o", "json",
    ]));
    let limit = engine.docker_ok(&["inspect", "-f", "{{.HostConfig.Memory}}", &worker]);
    assert_eq!(limit.trim(), (48u64 << 20).to_string(), "{view:#}");
    json(&kernel.lain_ok(&[
        "scale",
        "worker",
        "-a",
        "shop",
        "--num-instances",
        "1",
        "-o",
        "json",
    ]));
    assert_eq!(engine.containers("lain.proc=shop.worker.worker").len(), 1);

    // A new release rolls out (new container first, old one retired once healthy); rollback
    // brings the first back.
    support::edit_app(Path::new(&shop), |yaml| {
        yaml.replace("hello from shop", "shop v2")
    });
    kernel.lain_ok(&["build", &shop]);
    let v2 = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    assert_ne!(v2["release"], version);
    let url = instances(&v2, "web")[0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(get(&url), "shop v2\n");
    assert_eq!(
        engine.containers("lain.proc=shop.web.web").len(),
        1,
        "the old web was retired"
    );
    let back = json(&kernel.lain_ok(&["rollback", "-a", "shop", "-o", "json"]));
    assert_eq!(back["release"], version);
    let url = instances(&back, "web")[0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(get(&url), "hello from shop\n");

    // Undeploy removes the containers.
    kernel.lain_ok(&["undeploy", "-a", "other"]);
    assert!(engine.containers("lain.app=other").is_empty());
}

#[test]
fn docker_kill_dash_nine_mid_deploy_leaves_no_duplicate_and_adopts() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let mut kernel = kernel_on(tmp.path(), &engine, "");
    let shop = app(tmp.path(), "shop", "hi", 6);
    kernel.lain_ok(&["build", &shop]);
    kernel.lain_ok(&["deploy", "-a", "shop", "--no-wait"]);
    std::thread::sleep(Duration::from_millis(300));
    kernel.kill9();
    kernel.restart();
    let view = kernel.wait_for("shop", "convergence", |v| v["converged"] == true);
    assert_eq!(instances(&view, "worker").len(), 6);
    let before = engine.containers("lain.app=shop");
    assert_eq!(
        before.len(),
        7,
        "6 workers and a web, no duplicate: {before:?}"
    );
    let ids = engine.docker_ok(&["ps", "-q", "--filter", "label=lain.app=shop"]);

    kernel.kill9();
    kernel.restart();
    kernel.wait_for("shop", "adoption", |v| {
        v["converged"] == true && v["pass"].as_u64() > Some(1)
    });
    assert_eq!(
        engine.docker_ok(&["ps", "-q", "--filter", "label=lain.app=shop"]),
        ids,
        "the same containers, adopted"
    );
}

#[test]
fn two_engines_take_instances_in_turn_and_maintenance_moves_them() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (e1, e2) = (DockerEngine::start(), DockerEngine::start());
    let kernel = kernel_on(tmp.path(), &e1, "");
    kernel.add_node("n2", &e2.address, &[]);
    let err = kernel.lain_err(&["node", "add", "n3", "--address", "ssh://somewhere"]);
    assert!(err.contains("a Docker engine is unix:///path"), "{err}");
    let shop = app(tmp.path(), "shop", "hi", 4);
    kernel.lain_ok(&["build", &shop]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    let on = |v: &Value, node: &str| {
        instances(v, "worker")
            .iter()
            .filter(|i| i["node"] == node)
            .count()
    };
    assert_eq!(
        (on(&view, "local"), on(&view, "n2")),
        (2, 2),
        "spread: {view:#}"
    );
    assert_eq!(
        e2.containers("lain.proc=shop.worker.worker").len(),
        2,
        "really on the second engine"
    );
    let web_url = instances(&view, "web")[0]["url"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(get(&web_url), "hi\n");

    kernel.lain_ok(&["node", "maintain", "local"]);
    let view = kernel.wait_for("shop", "the drain", |v| {
        v["converged"] == true && on(v, "local") == 0
    });
    assert_eq!(on(&view, "n2"), 4);
    assert!(
        e1.containers("lain.app=shop").is_empty(),
        "{:?}",
        e1.containers("lain.app=shop")
    );
    assert_eq!(e2.containers("lain.app=shop").len(), 5);
}

#[test]
fn constraints_pick_the_engine_and_a_lost_engine_is_marked_down_and_its_instances_move() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (e1, mut e2) = (DockerEngine::start(), DockerEngine::start());
    let kernel = kernel_on(tmp.path(), &e1, "");
    kernel.add_node("n2", &e2.address, &["disk=ssd"]);
    let dir = support::write_app(
        tmp.path(),
        "db",
        &format!(
            "appname: db\nbuild:\n  base: {}\n  script: []\n\
             worker.fast:\n  cmd: sleep 100000\n  num_instances: 2\n  filters:\n    - constraint:disk==ssd\n\
             worker.any:\n  cmd: sleep 100000\n  num_instances: 2\n",
            docker_engine::BASE
        ),
    );
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "db", "-o", "json"]));
    let fast: Vec<&str> = instances(&view, "fast")
        .iter()
        .filter_map(|i| i["node"].as_str())
        .collect();
    assert_eq!(fast, ["n2", "n2"], "constraint:disk==ssd: {view:#}");

    // n2's engine goes away: the node is marked down; its stateless instances that may run elsewhere
    // move to `local`; those only n2 may take wait for it, and say so.
    e2.stop();
    let view = kernel.wait_for("db", "the move", |v| {
        instances(v, "any")
            .iter()
            .filter(|i| i["node"] == "local" && i["state"]["state"] == "running")
            .count()
            == 2
    });
    let nodes = json(&kernel.lain_ok(&["node", "list", "-o", "json"]));
    assert!(
        nodes
            .as_array()
            .expect("nodes")
            .iter()
            .any(|n| n["name"] == "n2" && n["state"] == "down"),
        "{nodes:#}"
    );
    let fast = view["procs"]
        .as_array()
        .expect("procs")
        .iter()
        .find(|p| p["name"] == "fast")
        .cloned();
    let problem = fast
        .as_ref()
        .and_then(|p| p["problem"].as_str())
        .unwrap_or_default();
    assert!(
        problem.contains("no node for") && problem.contains("removed the last"),
        "{view:#}"
    );
    drop(e1);
}

#[test]
fn a_resource_portal_is_reached_by_its_client_under_the_service_name_with_its_parameters() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    // The portal serves a page holding a rendered parameter.
    let kv = support::write_app(
        tmp.path(),
        "kv",
        &format!(
            "appname: kv\napptype: resource\nbuild:\n  base: {}\n  script: []\n\
             service.db:\n  cmd: sleep 100000\n  port: 5432\n  portal:\n    \
             cmd: \"sh -c 'mkdir -p /tmp/w && echo {{{{ greeting }}}} > /tmp/w/index.html && exec httpd -f -p 5432 -h /tmp/w'\"\n",
            docker_engine::BASE
        ),
    );
    let shop = app(tmp.path(), "shop", "shop", 1);
    support::edit_app(Path::new(&shop), |yaml| {
        format!(
            "{yaml}use_resources:\n  kv:\n    services:\n      - db\n    greeting: hello-from-kv\n"
        )
    });
    kernel.lain_ok(&["build", &kv.to_string_lossy()]);
    kernel.lain_ok(&["build", &shop]);
    kernel.lain_ok(&["deploy", "-a", "shop"]);
    let view = json(&kernel.lain_ok(&["ps", "-a", "shop", "-o", "json"]));
    let client = instances(&view, "worker")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = engine.docker(&[
            "exec",
            &client,
            "timeout",
            "3",
            "wget",
            "-q",
            "-O-",
            "http://db:5432/index.html",
        ]);
        if String::from_utf8_lossy(&out.stdout) == "hello-from-kv\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client never reached its resource's portal: {}",
            kernel.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let instance = json(&kernel.lain_ok(&["ps", "-a", "resource.kv.shop", "-o", "json"]));
    assert_eq!(instance["converged"], true, "{instance:#}");
}

#[test]
fn a_portal_is_reachable_by_its_service_name_from_declared_clients_only() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let pg = support::write_app(
        tmp.path(),
        "pg",
        &format!(
            "appname: pg\nbuild:\n  base: {}\n  script:\n    - echo 'from pg' > /lain/app/index.html\n\
             service.db:\n  cmd: httpd -f -p 5432 -h /lain/app\n  port: 5432\n  portal:\n    cmd: httpd -f -p 5432 -h /lain/app\n",
            docker_engine::BASE
        ),
    );
    let shop = app(tmp.path(), "shop", "shop", 1);
    support::edit_app(Path::new(&shop), |yaml| {
        format!("{yaml}use_services:\n  pg:\n    - db\n")
    });
    let other = app(tmp.path(), "other", "other", 1);
    for (name, dir) in [
        ("pg", pg.to_string_lossy().into_owned()),
        ("shop", shop),
        ("other", other),
    ] {
        kernel.lain_ok(&["build", &dir]);
        kernel.lain_ok(&["deploy", "-a", name]);
    }
    let worker_of = |app: &str| {
        let view = json(&kernel.lain_ok(&["ps", "-a", app, "-o", "json"]));
        instances(&view, "worker")[0]["name"]
            .as_str()
            .expect("name")
            .to_string()
    };
    let (client, stranger) = (worker_of("shop"), worker_of("other"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = engine.docker(&[
            "exec",
            &client,
            "timeout",
            "3",
            "wget",
            "-q",
            "-O-",
            "http://db:5432/index.html",
        ]);
        if String::from_utf8_lossy(&out.stdout) == "from pg\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the client never reached the portal: {}",
            kernel.logs()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = engine.docker(&[
        "exec",
        &stranger,
        "timeout",
        "3",
        "wget",
        "-q",
        "-O-",
        "http://db:5432/index.html",
    ]);
    assert!(
        !out.status.success(),
        "an app that did not declare the service reached its portal"
    );

    // The portal reaches its service on its own app's network.
    let pg_view = json(&kernel.lain_ok(&["ps", "-a", "pg", "-o", "json"]));
    let portal = pg_view["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .find(|i| i["name"].as_str().is_some_and(|n| n.contains(".portal.")))
        .and_then(|i| i["name"].as_str())
        .expect("portal instance")
        .to_string();
    let inside = engine.docker_ok(&[
        "exec",
        &portal,
        "wget",
        "-q",
        "-O-",
        "http://db:5432/index.html",
    ]);
    assert_eq!(inside, "from pg\n");

    // A client that goes away loses the portal.
    kernel.lain_ok(&["undeploy", "-a", "shop"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let networks = engine.docker_ok(&[
            "inspect",
            "-f",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            &portal,
        ]);
        if !networks.contains("lain-shop") {
            assert!(networks.contains("lain-pg"), "{networks}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "portal still on lain-shop: {networks}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn releases_are_pushed_to_a_real_registry_and_pulled_by_other_nodes() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let registry = docker_engine::Registry::start();
    let (e1, e2) = (DockerEngine::start(), DockerEngine::start());
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\nregistry = \"{}\"\n",
            e1.address, registry.address
        ),
    );
    kernel.add_node("n2", &e2.address, &["disk=ssd"]);
    let dir = ssd_worker(tmp.path());
    let release = json(&kernel.lain_ok(&["build", dir.to_str().expect("utf-8"), "-o", "json"]));
    let image = release["image"].as_str().expect("image").to_string();
    assert!(
        image.starts_with(&format!("{}/shop:release-", registry.address)),
        "{image}"
    );
    assert!(
        registry.catalog().contains("\"shop\""),
        "{}",
        registry.catalog()
    );
    assert!(
        !e2.docker(&["image", "inspect", &image]).status.success(),
        "not on n2 before the deploy"
    );

    let view = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    assert_eq!(instances(&view, "worker")[0]["node"], "n2", "{view:#}");
    e2.docker_ok(&["image", "inspect", &image]);
    assert!(
        kernel.logs().contains("pulled"),
        "n2 pulled the release from the registry"
    );
    drop(e1);
}

#[test]
fn prepare_build_release_and_test_images_follow_lain_yaml() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let yaml = |test: &str| {
        format!(
            "appname: stages\nbuild:\n  base: {base}\n  prepare:\n    version: \"1\"\n    script:\n      - echo deps > /lain/app/deps.txt\n      - echo junk > /lain/app/junk.txt\n    keep:\n      - deps.txt\n  script:\n    - cat deps.txt > built.txt\n    - echo artifact > artifact.txt\n\
             release:\n  dest_base: {base}\n  copy:\n    - src: artifact.txt\n      dest: /srv/artifact.txt\n    - src: built.txt\n      dest: built.txt\n\
             test:\n  script:\n    - {test}\n\
             worker:\n  cmd: sleep 100000\n",
            base = docker_engine::BASE
        )
    };
    let dir = support::write_app(tmp.path(), "stages", &yaml("test -f built.txt"));
    let path = dir.to_str().expect("utf-8").to_string();
    let release = json(&kernel.lain_ok(&["build", &path, "-o", "json"]));
    let version = release["version"].as_str().expect("version").to_string();
    let image = release["image"].as_str().expect("image").to_string();
    let cat = |image: &str, file: &str| engine.docker(&["run", "--rm", image, "cat", file]);
    let out = cat(&image, "/srv/artifact.txt");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "artifact\n",
        "copied to an absolute dest"
    );
    let out = cat(&image, "/lain/app/built.txt");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "deps\n",
        "built on the prepare image"
    );
    assert!(
        !cat(&image, "/lain/app/deps.txt").status.success(),
        "dest_base has only what was copied"
    );
    assert!(
        !cat("stages:prepare-1", "/lain/app/junk.txt")
            .status
            .success(),
        "prepare keeps only `keep`"
    );
    engine.docker_ok(&["image", "inspect", &format!("stages:test-{version}")]);

    // A changed context rebuilds, reusing the prepare image by its version.
    std::fs::write(dir.join("README"), "changed").expect("write");
    let out = kernel.lain(&["build", &path]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("prepare: reusing stages:prepare-1"));

    // A failing test script fails the build; no release is recorded.
    support::edit_app(&dir, |_| yaml("test -f nothing-here"));
    let err = kernel.lain_err(&["build", &path]);
    assert!(err.contains("test"), "{err}");
    let releases: Value = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert_eq!(releases.as_array().map(Vec::len), Some(1));
    let (status, body) = {
        let mut resp = ureq::get(&format!("{}/api/v1/apps/stages/releases", kernel.url))
            .header("Authorization", &format!("Bearer {}", kernel.token()))
            .call()
            .expect("releases");
        (
            resp.status(),
            resp.body_mut().read_to_string().expect("body"),
        )
    };
    assert_eq!(status, 200);
    assert_eq!(
        json(&body).as_array().map(Vec::len),
        Some(2),
        "two good builds, the failed one not recorded"
    );
}

#[test]
fn a_node_reached_over_tcp_with_tls_runs_instances() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).expect("mkdir");
    docker_engine::tls_material(&certs);
    let port = support::free_port();
    let c = |f: &str| certs.join(f).to_string_lossy().into_owned();
    let e1 = DockerEngine::start();
    let e2 = DockerEngine::start_with(&[
        "--tlsverify".into(),
        "--tlscacert".into(),
        c("ca.pem"),
        "--tlscert".into(),
        c("server.pem"),
        "--tlskey".into(),
        c("server-key.pem"),
        "-H".into(),
        format!("tcp://127.0.0.1:{port}"),
    ]);
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\ntls = {{ ca = \"{}\", cert = \"{}\", key = \"{}\" }}\n",
            e1.address,
            c("ca.pem"),
            c("cert.pem"),
            c("key.pem")
        ),
    );
    let address = format!("tcp://127.0.0.1:{port}");
    kernel.add_node("n2", &address, &["disk=ssd"]);
    let dir = ssd_worker(tmp.path());
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    assert_eq!(instances(&view, "worker")[0]["node"], "n2", "{view:#}");
    assert_eq!(
        e2.containers("lain.app=shop").len(),
        1,
        "running on the TLS engine"
    );
    let nodes = json(&kernel.lain_ok(&["node", "list", "-o", "json"]));
    assert!(
        nodes
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["state"] == "ready"),
        "{nodes:#}"
    );
}

#[test]
fn secret_files_are_written_into_containers_before_they_start_and_nowhere_else() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let plaintext = "api_key = \"s3cr3t-in-the-container-only\"\n";
    let app = support::write_app(
        tmp.path(),
        "sealed",
        &format!(
            "appname: sealed\nbuild:\n  base: {}\n  script: []\nworker:\n  cmd: sh -c 'sha256sum /lain/app/conf/key.toml; sleep 100000'\n  secret_files:\n    - conf/key.toml\n",
            docker_engine::BASE
        ),
    );
    let release = json(&kernel.lain_ok(&["build", &app.to_string_lossy(), "-o", "json"]));
    let image = release["image"].as_str().expect("image").to_string();
    let file = tmp.path().join("key.toml");
    std::fs::write(&file, plaintext).expect("write");
    kernel.lain_ok(&[
        "secret",
        "add",
        "worker",
        "conf/key.toml",
        "-a",
        "sealed",
        "-f",
        &file.to_string_lossy(),
    ]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "sealed", "-o", "json"]));
    let name = instances(&view, "worker")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();

    // In the container, root-owned 0400, in its own layer only.
    assert_eq!(
        engine.docker_ok(&["exec", &name, "cat", "/lain/app/conf/key.toml"]),
        plaintext
    );
    assert_eq!(
        engine
            .docker_ok(&[
                "exec",
                &name,
                "stat",
                "-c",
                "%a %u",
                "/lain/app/conf/key.toml"
            ])
            .trim(),
        "400 0"
    );
    assert!(
        engine
            .docker_ok(&["diff", &name])
            .contains("/lain/app/conf/key.toml")
    );
    let from_image = engine.docker(&["run", "--rm", &image, "cat", "/lain/app/conf/key.toml"]);
    assert!(!from_image.status.success(), "the image does not hold it");
    let logs = support::until("the worker reads its secret", || {
        let out = engine.docker_ok(&["logs", &name]);
        out.contains("/lain/app/conf/key.toml").then_some(out)
    });
    assert!(!logs.contains("s3cr3t"), "{logs}");

    // Not in the container's or the image's configuration (env, labels, cmd), not in lain's
    // output, not in lain's data dir.
    for args in [
        vec!["inspect", name.as_str()],
        vec!["image", "inspect", image.as_str()],
        vec!["history", "--no-trunc", image.as_str()],
    ] {
        let out = engine.docker_ok(&args);
        assert!(!out.contains("s3cr3t"), "{args:?}: {out}");
    }
    for args in [
        vec!["ps", "-a", "sealed", "-o", "json"],
        vec!["secret", "list", "-a", "sealed", "-o", "json"],
        vec!["logs", "worker", "-a", "sealed"],
    ] {
        let out = kernel.lain_ok(&args);
        assert!(!out.contains("s3cr3t"), "{args:?}: {out}");
    }
    let grep = std::process::Command::new("grep")
        .args(["-rl", "s3cr3t-in-the-container-only"])
        .arg(&kernel.data_dir)
        .output()
        .expect("grep");
    assert_eq!(
        String::from_utf8_lossy(&grep.stdout),
        "",
        "lain's data dir holds no plaintext"
    );
}

#[test]
fn a_cloud_volume_is_a_named_volume_of_the_configured_driver_shared_by_the_instances() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    // The `local` driver binding a host directory per volume (`{name}`): what an NFS export
    // would be on several hosts, on this one.
    let exports = tmp.path().join("exports");
    let volume = "lain-cv.pool.worker.shared";
    std::fs::create_dir_all(exports.join(volume)).expect("export dir");
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\n[docker.cloud_volumes]\ndriver = \"local\"\n\
             options = {{ type = \"none\", o = \"bind\", device = \"{}/{{name}}\" }}\n",
            engine.address,
            exports.display()
        ),
    );
    let app = support::write_app(
        tmp.path(),
        "pool",
        &format!(
            "appname: pool\nbuild:\n  base: {}\n  script: []\nworker:\n  num_instances: 2\n  \
             cmd: sh -c 'echo $LAIN_INSTANCE_NO > /shared/from-$LAIN_INSTANCE_NO; \
             until [ -e /shared/from-1 ] && [ -e /shared/from-2 ]; do sleep 0.2; done; echo saw both; \
             echo file too >> /lain/logs/app.log; sleep 100000'\n  \
             cloud_volumes:\n    type: single\n    dirs:\n      - /shared\n  logs:\n    - app.log\n",
            docker_engine::BASE
        ),
    );
    kernel.lain_ok(&["build", &app.to_string_lossy()]);
    kernel.lain_ok(&["deploy", "-a", "pool"]);
    let logs = support::until("both instances to see both marks", || {
        let logs = kernel.lain_ok(&["logs", "worker", "-a", "pool"]);
        (logs.matches("saw both").count() == 2).then_some(logs)
    });
    assert!(
        logs.contains("[1] saw both") && logs.contains("[2] saw both"),
        "{logs}"
    );
    for no in ["1", "2"] {
        let mark = exports.join(volume).join(format!("from-{no}"));
        assert_eq!(
            std::fs::read_to_string(&mark).expect("the mark is in the export"),
            format!("{no}\n")
        );
    }
    // A declared log file of a container on node `local` reaches `lain logs --file`.
    let file = support::until("the log file", || {
        let text = kernel.lain_ok(&["logs", "worker", "-a", "pool", "--file", "app.log"]);
        (text.matches("file too").count() == 2).then_some(text)
    });
    assert!(
        file.contains("[1] file too\n") && file.contains("[2] file too\n"),
        "{file}"
    );
    let inspect = json(&engine.docker_ok(&["volume", "inspect", volume]));
    assert_eq!(inspect[0]["Driver"], "local", "{inspect:#}");
    assert_eq!(inspect[0]["Labels"]["lain.app"], "pool", "{inspect:#}");
    assert_eq!(
        inspect[0]["Options"]["device"],
        format!("{}/{volume}", exports.display()),
        "{inspect:#}"
    );
}

#[test]
fn a_lost_engine_does_not_get_its_instances_with_volumes_started_elsewhere() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let (e1, mut e2) = (DockerEngine::start(), DockerEngine::start());
    let mut kernel = kernel_on(tmp.path(), &e1, "");
    kernel.add_node("n2", &e2.address, &[]);
    let dir = support::write_app(
        tmp.path(),
        "vault",
        &format!(
            "appname: vault\nbuild:\n  base: {}\n  script: []\n\
             worker.store:\n  cmd: sh -c 'echo run >> /data/runs; sleep 100000'\n  num_instances: 2\n  \
             volumes:\n    - /data\n\
             worker.any:\n  cmd: sleep 100000\n  num_instances: 2\n",
            docker_engine::BASE
        ),
    );
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "vault", "-o", "json"]));
    let on_n2: Vec<u64> = instances(&view, "store")
        .iter()
        .filter(|i| i["node"] == "n2")
        .filter_map(|i| i["instance"].as_u64())
        .collect();
    assert_eq!(on_n2.len(), 1, "spread over the engines: {view:#}");
    let no = on_n2[0];
    let local_no = if no == 1 { "2" } else { "1" };
    // The kernel cannot write n2's volumes (another engine, another host): a migration there is
    // refused, saying why, and changes nothing.
    let err = kernel.lain_err(&[
        "volume", "migrate", "vault", "store", local_no, "--to", "n2",
    ]);
    assert!(
        err.contains("cannot write the volumes of node n2") && err.contains(&e2.address),
        "{err}"
    );
    let on = |v: &Value, proc: &str, node: &str| {
        instances(v, proc)
            .iter()
            .filter(|i| i["node"] == node && i["state"]["state"] == "running")
            .count()
    };

    // n2's engine goes away: its stateless instance moves; the one with a volume waits for n2
    // (its volume is there), and says so, also after a kill -9 of the kernel (which forgets what
    // it last saw of n2: the volume's home is in the store).
    e2.stop();
    let view = kernel.wait_for("vault", "the stateless move and the report", |v| {
        on(v, "any", "local") == 2
            && v["procs"].to_string().contains(&format!(
                "instance {no} has its volumes on node n2, which is down"
            ))
    });
    assert_eq!(on(&view, "store", "local"), 1, "{view:#}");
    kernel.kill9();
    kernel.restart();
    kernel.wait_for("vault", "the report after a restart", |v| {
        v["pass"].as_u64() > Some(2)
            && v["procs"]
                .to_string()
                .contains(&format!("instance {no} has its volumes on node n2"))
    });
    std::thread::sleep(Duration::from_secs(2));
    let view = json(&kernel.lain_ok(&["ps", "-a", "vault", "-o", "json"]));
    assert_eq!(
        instances(&view, "store")
            .iter()
            .filter(|i| i["node"] == "local")
            .count(),
        1,
        "nothing started on local on an empty volume: {view:#}"
    );
    let listed = json(&kernel.lain_ok(&["volume", "list", "-a", "vault", "-o", "json"]));
    assert!(
        listed
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| v["number"] == no && v["node"] == "n2" && v["bytes"].is_null()),
        "n2's volume is listed, without a size (not on this host): {listed:#}"
    );
    // Nor can it read them to move them: only a backup given can.
    let err = kernel.lain_err(&[
        "volume",
        "migrate",
        "vault",
        "store",
        &no.to_string(),
        "--to",
        "local",
    ]);
    assert!(
        err.contains("cannot read the volumes") && err.contains("--backup ID"),
        "{err}"
    );
    let after = json(&kernel.lain_ok(&["volume", "list", "-a", "vault", "-o", "json"]));
    assert_eq!(after, listed, "refusals change nothing");
    drop(e1);
}

/// A UDP echo server (`udp-echo PORT`: answers each datagram with `echo:` and the datagram),
/// compiled static so it runs in a busybox image.
fn udp_echo_binary(dir: &Path) -> std::path::PathBuf {
    let source = dir.join("udp_echo.rs");
    std::fs::write(
        &source,
        "fn main() {\n\
         let port = std::env::args().nth(1).unwrap_or_default();\n\
         let socket = std::net::UdpSocket::bind(format!(\"0.0.0.0:{port}\")).expect(\"bind\");\n\
         let mut buf = [0u8; 1500];\n\
         loop {\n\
             if let Ok((n, from)) = socket.recv_from(&mut buf) {\n\
                 let mut reply = b\"echo:\".to_vec();\n\
                 reply.extend_from_slice(&buf[..n]);\n\
                 let _ = socket.send_to(&reply, from);\n\
             }\n\
         }\n\
         }\n",
    )
    .expect("write");
    let binary = dir.join("udp-echo");
    let out = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["-O", "-C", "target-feature=+crt-static", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .expect("rustc");
    assert!(
        out.status.success(),
        "rustc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    binary
}

/// What `address` answers to one UDP datagram `message` within a second, if anything.
fn udp_exchange(address: &str, message: &str) -> Option<String> {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    socket.send_to(message.as_bytes(), address).ok()?;
    let mut buf = [0u8; 1500];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn a_proc_runs_its_own_image_from_the_registry_with_its_labels_and_a_udp_port() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let registry = docker_engine::Registry::start();
    let engine = DockerEngine::start();
    // The proc's own image: the base with a UDP echo server the release image does not have,
    // in the registry only.
    let echo = udp_echo_binary(tmp.path());
    let own = format!("{}/lain-test/udp:1", registry.address);
    engine.docker_ok(&["create", "--name", "udp-base", docker_engine::BASE, "true"]);
    engine.docker_ok(&["cp", &echo.to_string_lossy(), "udp-base:/bin/udp-echo"]);
    engine.docker_ok(&["commit", "udp-base", &own]);
    engine.docker_ok(&["rm", "udp-base"]);
    engine.docker_ok(&["push", &own]);
    engine.docker_ok(&["rmi", &own]);
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        &format!(
            "runtime = \"docker\"\n[docker]\nlocal = \"{}\"\nregistry = \"{}\"\n",
            engine.address, registry.address
        ),
    );
    let dir = support::write_app(
        tmp.path(),
        "dns",
        &format!(
            "appname: dns\nbuild:\n  base: {}\n  script: []\n\
             worker:\n  cmd: sleep 100000\n  labels:\n    - team:core\n\
             worker.dns:\n  image: lain-test/udp:1\n  cmd: /bin/udp-echo 53\n  port: \"53:udp\"\n  labels:\n    - team:dns\n    - tier:edge\n",
            docker_engine::BASE
        ),
    );
    let path = dir.to_string_lossy().into_owned();
    let release = json(&kernel.lain_ok(&["build", &path, "-o", "json"]));
    let release_image = release["image"].as_str().expect("image").to_string();
    let view = json(&kernel.lain_ok(&["deploy", "-a", "dns", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    let dns = instances(&view, "dns")[0];
    let name = dns["name"].as_str().expect("name");
    let worker = instances(&view, "worker")[0]["name"]
        .as_str()
        .expect("name")
        .to_string();

    // Its own image, pulled through the registry (`lain-test/udp:1` is the registry's); the
    // other proc runs the release.
    let image_of = |c: &str| engine.docker_ok(&["inspect", "-f", "{{.Config.Image}}", c]);
    assert_eq!(image_of(name).trim(), own);
    assert_eq!(image_of(&worker).trim(), release_image);
    assert!(kernel.logs().contains("pulled"), "{}", kernel.logs());

    // Labels: on the containers beside the kernel's own, and in `lain ps`.
    let labels = json(&engine.docker_ok(&["inspect", "-f", "{{json .Config.Labels}}", name]));
    assert_eq!(labels["team"], "dns", "{labels:#}");
    assert_eq!(labels["tier"], "edge", "{labels:#}");
    assert_eq!(labels["lain.app"], "dns", "{labels:#}");
    assert_eq!(
        dns["labels"],
        serde_json::json!({"team": "dns", "tier": "edge"}),
        "{dns:#}"
    );
    let table = kernel.lain_ok(&["ps", "-a", "dns"]);
    assert!(
        table.contains("LABELS")
            && table.contains("team=dns,tier=edge")
            && table.contains("team=core"),
        "{table}"
    );

    // 53/udp is published as UDP (and not as TCP), and a datagram through it is answered.
    let bindings =
        json(&engine.docker_ok(&["inspect", "-f", "{{json .HostConfig.PortBindings}}", name]));
    assert!(bindings.get("53/udp").is_some(), "{bindings:#}");
    assert!(bindings.get("53/tcp").is_none(), "{bindings:#}");
    let url = dns["url"].as_str().expect("url");
    let address = url
        .strip_prefix("udp://")
        .unwrap_or_else(|| panic!("{url}"));
    let published = engine.docker_ok(&["port", name, "53/udp"]);
    assert!(
        published.contains(&format!(":{}", address.rsplit(':').next().unwrap_or("?"))),
        "{published} vs {url}"
    );
    let answer = support::until("the UDP echo to answer", || udp_exchange(address, "ping"));
    assert_eq!(answer, "echo:ping");

    // A label in the kernel's namespace is refused, naming it; nothing is built.
    support::edit_app(&dir, |yaml| {
        yaml.replace("    - tier:edge\n", "    - lain.node:n9\n")
    });
    let err = kernel.lain_err(&["build", &path]);
    assert!(
        err.contains("\"lain.node\"") && err.contains("belong to the kernel"),
        "{err}"
    );
}

#[test]
fn cpu_is_a_limit_changed_in_place() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let dir = support::write_app(
        tmp.path(),
        "cpus",
        &format!(
            "appname: cpus\nbuild:\n  base: {}\n  script:\n    - echo ok\nworker:\n  cmd: sleep 100000\n  cpu: 500m\n",
            docker_engine::BASE
        ),
    );
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "cpus"]);
    let containers = engine.containers("lain.proc=cpus.worker.worker");
    assert_eq!(containers.len(), 1);
    let nano = |c: &str| engine.docker_ok(&["inspect", "-f", "{{.HostConfig.NanoCpus}}", c]);
    assert_eq!(nano(&containers[0]).trim(), "500000000");
    kernel.lain_ok(&["scale", "worker", "-a", "cpus", "--cpu", "1500"]);
    support::until("the new cpu limit", || {
        (nano(&containers[0]).trim() == "1500000000").then_some(())
    });
    assert_eq!(
        engine.containers("lain.proc=cpus.worker.worker"),
        containers,
        "the same container"
    );
}

#[test]
fn build_volumes_are_kept_between_builds_of_an_app_and_stay_out_of_its_images() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let yaml = |app: &str| {
        format!(
            "appname: {app}\nbuild:\n  base: {}\n  build_arg:\n    - LITERAL=plain-91\n  volumes:\n    - /cache/m2\n  script:\n    - echo \"SEEN-{app} $(cat /cache/m2/stamp 2>/dev/null || echo none) $LITERAL\" | tee seen.txt\n    - cp n.txt /cache/m2/stamp\n    - cp n.txt built.txt\nworker:\n  cmd: sleep 100000\n",
            docker_engine::BASE
        )
    };
    let a = support::write_app(tmp.path(), "cachea", &yaml("cachea"));
    std::fs::write(a.join("n.txt"), "one").expect("write");
    let build = |dir: &Path| {
        let out = kernel.lain(&["build", dir.to_str().expect("utf-8"), "-o", "json"]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let release = json(&String::from_utf8_lossy(&out.stdout));
        let image = release["image"].as_str().expect("image").to_string();
        let seen = engine.docker(&["run", "--rm", &image, "cat", "/lain/app/seen.txt"]);
        (String::from_utf8_lossy(&seen.stdout).into_owned(), image)
    };
    let (out, _) = build(&a);
    assert_eq!(out, "SEEN-cachea none plain-91\n");
    std::fs::write(a.join("n.txt"), "two").expect("write");
    let (out, image) = build(&a);
    assert_eq!(out, "SEEN-cachea one plain-91\n");

    // The release has the build's output, not the cache, the build argument or the script.
    let run = |args: &[&str]| engine.docker(&[&["run", "--rm", &image][..], args].concat());
    assert_eq!(
        String::from_utf8_lossy(&run(&["cat", "/lain/app/built.txt"]).stdout),
        "two"
    );
    assert!(!run(&["cat", "/cache/m2/stamp"]).status.success());
    assert!(!run(&["ls", "/.lain-build.sh"]).status.success());
    let config = engine.docker_ok(&["image", "inspect", "-f", "{{json .Config}}", &image]);
    assert!(
        !config.contains("plain-91") && !config.contains("lain-build"),
        "{config}"
    );
    let base = engine.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{json .Config.Entrypoint}}",
        docker_engine::BASE,
    ]);
    let mine = engine.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .Config.Cmd}} {{json .Config.Entrypoint}}",
        &image,
    ]);
    // An image without an entrypoint gets an empty one (the same to the engine).
    assert_eq!(
        mine.replace(" []", " null"),
        base,
        "the base image's command and entrypoint"
    );

    // Another app starts with an empty cache; a failing script fails the build.
    let b = support::write_app(tmp.path(), "cacheb", &yaml("cacheb"));
    std::fs::write(b.join("n.txt"), "b").expect("write");
    let (out, _) = build(&b);
    assert_eq!(out, "SEEN-cacheb none plain-91\n");
    support::edit_app(&b, |y| {
        y.replace("cp n.txt built.txt", "echo FAILING-91; exit 4")
    });
    let err = kernel.lain_err(&["build", b.to_str().expect("utf-8")]);
    assert!(
        err.contains("FAILING-91") && err.contains("exited with 4"),
        "{err}"
    );
    let volumes = engine.docker_ok(&[
        "volume",
        "ls",
        "-q",
        "--filter",
        "label=lain.build-cache=cachea",
    ]);
    assert_eq!(volumes.lines().count(), 1, "{volumes}");
}

#[test]
fn exec_runs_in_the_container_and_restart_replaces_it_on_docker() {
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let shop = app(tmp.path(), "shop", "hello from shop", 1);
    kernel.lain_ok(&["build", &shop]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "shop", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");

    // The command runs in the container (its files and environment); output and status back.
    let out = kernel.lain(&[
        "exec",
        "web",
        "-a",
        "shop",
        "--",
        "sh",
        "-c",
        "cat /lain/app/index.html; echo \"app $LAIN_APPNAME\"; echo oops >&2; exit 5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{stdout}");
    assert_eq!(stdout, "hello from shop\napp shop\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let started = Instant::now();
    let out = kernel.lain(&[
        "exec",
        "web",
        "-a",
        "shop",
        "--timeout",
        "1",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(20));

    // On a terminal (Docker's own): the window's size and type, resizes, Ctrl-C, the status.
    let mut cmd = kernel.lain_cmd(&["exec", "-t", "web", "-a", "shop", "--", "sh"]);
    cmd.env("TERM", "vt100");
    let mut t = terminal::Terminal::start(cmd, 31, 97);
    let status = t.check_shell(
        ("tty-$TERM-$((2*3))", "tty-vt100-6"),
        (45, 120),
        4,
        Duration::from_secs(60),
    );
    assert_eq!(status.code(), Some(4), "{}", t.screen());

    // restart: a new container; the worker is untouched.
    let web = instances(&view, "web")[0]["name"].clone();
    let worker = instances(&view, "worker")[0]["name"].clone();
    let view = json(&kernel.lain_ok(&["restart", "web", "-a", "shop", "-o", "json"]));
    let new = instances(&view, "web");
    assert_eq!(new.len(), 1, "{view:#}");
    assert_ne!(new[0]["name"], web, "{view:#}");
    assert_eq!(new[0]["restart"], 1, "{view:#}");
    assert_eq!(instances(&view, "worker")[0]["name"], worker);
    let body = get(new[0]["url"].as_str().expect("url"));
    assert!(body.contains("hello from shop"), "{body}");
}

/// A stream port on Docker: the container's port 7000 is published, the router forwards the
/// node's source port to it, spread over both instances.
#[test]
fn a_stream_port_forwards_tcp_to_the_containers_published_port() {
    use std::io::{Read, Write};
    let _host = docker_engine::lock_host();
    let tmp = tempfile::tempdir().expect("tempdir");
    let engine = DockerEngine::start();
    let kernel = kernel_on(tmp.path(), &engine, "");
    let source = (9500..=10000)
        .rev()
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 9500-10000");
    let dir = support::write_app(
        tmp.path(),
        "streams",
        &format!(
            "appname: streams\nbuild:\n  base: {}\n  script: []\n\
             worker:\n  cmd: sh -c 'mkdir -p /tmp/w && echo \"instance $LAIN_INSTANCE_NO\" > /tmp/w/index.html && exec httpd -f -p 7000 -h /tmp/w'\n  num_instances: 2\n  setup_time: 1\n  ports:\n    - {source}:7000\n",
            docker_engine::BASE
        ),
    );
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "streams"]);
    // A raw HTTP request over the stream port (the forwarder knows nothing of HTTP).
    let ask = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", source)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        out.lines()
            .find_map(|l| l.strip_prefix("instance "))
            .map(str::to_string)
    };
    support::until("an answer through the stream port", ask);
    support::until("both instances behind the stream port", || {
        let streams = json(&kernel.lain_ok(&["router", "streams", "-o", "json"]));
        streams[0]["backends"]
            .as_array()
            .is_some_and(|b| b.len() == 2)
            .then_some(())
    });
    let seen: std::collections::BTreeSet<String> = (0..20).filter_map(|_| ask()).collect();
    assert_eq!(
        seen,
        std::collections::BTreeSet::from(["1".to_string(), "2".to_string()]),
        "spread over both containers"
    );
}

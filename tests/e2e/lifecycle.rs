//! The app lifecycle end to end: the real `lain` binary (kernel and CLI), real processes, real
//! HTTP. Builds and deploys `examples/hello`, scales, upgrades, rolls back and undeploys it; kills
//! instances and the kernel from outside.

#[path = "../../kernel/tests/store_suite/etcd_server.rs"]
mod etcd_server;
mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{KernelProcess, get, instances, json};

fn hello_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello")
}

fn pid(instance: &Value) -> i64 {
    instance["state"]["pid"]
        .as_i64()
        .unwrap_or_else(|| panic!("no pid: {instance}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        if entry.file_type().expect("type").is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
        }
    }
}

#[test]
fn hello_builds_deploys_heals_scales_upgrades_rolls_back_and_undeploys() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let hello = hello_dir();
    let hello = hello.to_str().expect("utf-8 path");

    // Build and deploy.
    let release: Value = json(&kernel.lain_ok(&["build", hello, "-o", "json"]));
    let v1 = release["version"].as_str().expect("version").to_string();
    let view = json(&kernel.lain_ok(&["deploy", "-a", "hello", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    assert_eq!(view["release"], v1.as_str());
    let web = instances(&view, "web");
    assert_eq!(web.len(), 2, "{view:#}");
    for i in &web {
        assert_eq!(i["health"], "healthy");
        let body = get(i["url"].as_str().expect("url"));
        assert!(
            body.starts_with(&format!(
                "Hello from lain: instance {} of hello, release {v1}",
                i["instance"]
            )),
            "{body}"
        );
    }
    let migrate = instances(&view, "migrate");
    assert_eq!(migrate[0]["state"]["state"], "exited");
    assert_eq!(migrate[0]["state"]["code"], 0);

    // Logs: the oneshot's output, from the log store.
    let logs = kernel.lain_ok(&["logs", "migrate", "-a", "hello"]);
    assert!(
        logs.contains(&format!("[1] migrating for release {v1}")),
        "{logs}"
    );

    // An instance killed from outside comes back; the oneshot is never run again.
    let worker = instances(&view, "worker")[0].clone();
    let old_pid = pid(&worker);
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &old_pid.to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let healed = kernel.wait_for("hello", "the worker to come back", |v| {
        instances(v, "worker").first().is_some_and(|w| {
            w["state"]["state"] == "running" && w["state"]["pid"].as_i64() != Some(old_pid)
        })
    });
    assert_eq!(instances(&healed, "worker")[0]["restarts"], 1);
    std::thread::sleep(Duration::from_secs(2));
    let logs = kernel.lain_ok(&["logs", "migrate", "-a", "hello"]);
    assert_eq!(
        logs.matches("migrating for release").count(),
        1,
        "oneshot ran again: {logs}"
    );
    assert_eq!(instances(&kernel.ps("hello"), "migrate")[0]["restarts"], 0);

    // Scale up, down, and memory in place (same process).
    let view = json(&kernel.lain_ok(&[
        "scale",
        "web",
        "-a",
        "hello",
        "--num-instances",
        "3",
        "-o",
        "json",
    ]));
    assert_eq!(instances(&view, "web").len(), 3, "{view:#}");
    let view = json(&kernel.lain_ok(&[
        "scale",
        "web",
        "-a",
        "hello",
        "--num-instances",
        "1",
        "-o",
        "json",
    ]));
    assert_eq!(instances(&view, "web").len(), 1, "{view:#}");
    let worker_pid = pid(instances(&view, "worker")[0]);
    let view = json(&kernel.lain_ok(&[
        "scale", "worker", "-a", "hello", "--memory", "48M", "-o", "json",
    ]));
    let worker = instances(&view, "worker")[0];
    assert_eq!(worker["memory"], 48 << 20);
    assert_eq!(
        pid(worker),
        worker_pid,
        "memory changed in place, not by a restart"
    );

    // A new release rolls out; scale survives the redeploy (LAIN's autopatch).
    let v2_dir = tmp.path().join("hello-v2");
    copy_dir(Path::new(hello), &v2_dir);
    let yaml = std::fs::read_to_string(v2_dir.join("lain.yaml")).expect("lain.yaml");
    std::fs::write(
        v2_dir.join("lain.yaml"),
        yaml.replace("Hello from lain", "Bonjour from lain"),
    )
    .expect("write");
    let release: Value =
        json(&kernel.lain_ok(&["build", v2_dir.to_str().expect("utf-8"), "-o", "json"]));
    let v2 = release["version"].as_str().expect("version").to_string();
    assert_ne!(v1, v2);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "hello", "-o", "json"]));
    assert_eq!(view["release"], v2.as_str());
    let web = instances(&view, "web");
    assert_eq!(web.len(), 1, "scale kept across deploys: {view:#}");
    assert!(get(web[0]["url"].as_str().expect("url")).starts_with("Bonjour from lain"));
    assert!(
        view["instances"]
            .as_array()
            .expect("list")
            .iter()
            .all(|i| i["release"] == v2.as_str()),
        "{view:#}"
    );
    let logs = kernel.lain_ok(&["logs", "migrate", "-a", "hello"]);
    assert!(
        logs.contains(&format!("migrating for release {v2}")),
        "the oneshot runs once per release: {logs}"
    );

    // Rollback brings the previous release back.
    let view = json(&kernel.lain_ok(&["rollback", "-a", "hello", "-o", "json"]));
    assert_eq!(view["release"], v1.as_str());
    assert!(
        get(instances(&view, "web")[0]["url"].as_str().expect("url"))
            .starts_with("Hello from lain")
    );

    // Refusals change nothing.
    let err = kernel.lain_err(&["deploy", "-a", "nope"]);
    assert!(
        err.contains("no app named `nope`") && err.contains("404"),
        "{err}"
    );
    let err = kernel.lain_err(&["scale", "cron", "-a", "hello", "--num-instances", "2"]);
    assert!(
        err.contains("no proc `cron`") && err.contains("web"),
        "{err}"
    );
    let err = kernel.lain_err(&["scale", "web", "-a", "hello", "--memory", "1k"]);
    assert!(err.contains("below the minimum"), "{err}");
    assert_eq!(kernel.ps("hello")["release"], v1.as_str());

    // Undeploy stops everything.
    let view = json(&kernel.lain_ok(&["undeploy", "-a", "hello", "-o", "json"]));
    assert_eq!(
        view["instances"].as_array().map(Vec::len),
        Some(0),
        "{view:#}"
    );
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert_eq!(apps[0]["release"], Value::Null);
}

/// An app whose worker instances are `sleep` processes, to count them on the host.
fn sleeper_app(dir: &Path, instances: u32) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("lain.yaml"),
        format!(
            "appname: sleeper\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  num_instances: {instances}\n"
        ),
    )
    .expect("write");
}

/// Live processes of the kernel on `data`, with their command lines: its shims (`lain-shim
/// <data>/runtime/process/...`) and everything below them (each instance's sandbox, its init
/// and its program). Instances run in sandboxes (their working directory there is `/lain/app`),
/// so they are found by ancestry, not by path.
fn processes_of(data: &Path) -> Vec<(u32, String)> {
    let data = data.canonicalize().expect("canonical");
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let ppid = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, ppid, cmdline.replace('\0', " ")))
        })
        .collect();
    let is_shim = |cmdline: &str| {
        let mut args = cmdline.split(' ');
        args.next().is_some_and(|exe| exe.ends_with("/lain-shim"))
            && args.next().is_some_and(|d| Path::new(d).starts_with(&data))
    };
    let parent = |pid: u32| procs.iter().find(|p| p.0 == pid);
    procs
        .iter()
        .filter(|(pid, _, _)| {
            let mut at = parent(*pid);
            for _ in 0..16 {
                match at {
                    Some((_, ppid, cmdline)) if !is_shim(cmdline) => at = parent(*ppid),
                    Some(_) => return true,
                    None => return false,
                }
            }
            false
        })
        .map(|(pid, _, cmdline)| (*pid, cmdline.clone()))
        .collect()
}

/// Live `sleep` processes of the kernel on `data`.
fn sleeps_of(data: &Path) -> usize {
    processes_of(data)
        .iter()
        .filter(|(_, cmdline)| cmdline.starts_with("sleep "))
        .count()
}

fn kill9_mid_deploy_leaves_no_duplicate(config: &str, token: Option<&str>) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, config);
    kernel.cli_token = token.map(str::to_string);
    assert_eq!(
        data.join("bootstrap.token").exists(),
        token.is_none(),
        "the local bootstrap exists on the embedded store only"
    );
    let app = tmp.path().join("sleeper");
    sleeper_app(&app, 8);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "sleeper", "--no-wait"]);
    std::thread::sleep(Duration::from_millis(150));
    kernel.kill9();
    kernel.restart();
    let view = kernel.wait_for("sleeper", "8 workers", |v| v["converged"] == true);
    assert_eq!(instances(&view, "worker").len(), 8, "{view:#}");
    let mut pids: Vec<i64> = instances(&view, "worker").iter().map(|i| pid(i)).collect();
    pids.sort();
    assert_eq!(sleeps_of(&data), 8, "no duplicate process");

    // A crash in steady state: everything is adopted, nothing restarted.
    kernel.kill9();
    kernel.restart();
    let view = kernel.wait_for("sleeper", "adoption", |v| {
        v["converged"] == true && v["pass"].as_u64() > Some(1)
    });
    let mut after: Vec<i64> = instances(&view, "worker").iter().map(|i| pid(i)).collect();
    after.sort();
    assert_eq!(pids, after, "the same processes, adopted");
    assert_eq!(sleeps_of(&data), 8);
}

#[test]
fn kill_dash_nine_mid_deploy_then_restart_leaves_the_same_instances_and_no_duplicate() {
    kill9_mid_deploy_leaves_no_duplicate("", None);
}

#[test]
fn the_same_holds_with_state_in_a_real_etcd() {
    let etcd = etcd_server::EtcdServer::start().expect("etcd (etcd-server) starts");
    let prefix = format!("/lain-e2e-{}/", std::process::id());
    // No local bootstrap with etcd: the CLI is a cluster admin through the `token` provider.
    let token = "etcd-admin-token-0123456789";
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(token));
    kill9_mid_deploy_leaves_no_duplicate(
        &format!(
            "[store]\nbackend = \"etcd\"\nendpoints = [\"{}\"]\nprefix = \"{prefix}\"\n\
             [plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n",
            etcd.endpoint
        ),
        Some(token),
    );
}

#[test]
fn maintenance_drains_a_node_and_removal_waits_for_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    kernel.lain_ok(&["node", "add", "n2", "--memory", "2G", "--label", "disk=ssd"]);
    let nodes = json(&kernel.lain_ok(&["node", "list", "-o", "json"]));
    assert_eq!(nodes.as_array().map(Vec::len), Some(2), "{nodes:#}");
    assert_eq!(nodes[1]["labels"]["group"], "default");
    let app = tmp.path().join("sleeper");
    sleeper_app(&app, 4);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "sleeper", "-o", "json"]));
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

    let err = kernel.lain_err(&["node", "remove", "local"]);
    assert!(
        err.contains("still runs 2 instance(s)") && err.contains("409"),
        "{err}"
    );
    kernel.lain_ok(&["node", "maintain", "local"]);
    let view = kernel.wait_for("sleeper", "the drain", |v| {
        v["converged"] == true && on(v, "local") == 0
    });
    assert_eq!(on(&view, "n2"), 4, "{view:#}");
    kernel.lain_ok(&["node", "remove", "local"]);

    let err = kernel.lain_err(&["node", "add", "far", "--address", "tcp://10.0.0.9:2376"]);
    assert!(
        err.contains("process runtime runs instances on this host only"),
        "{err}"
    );
}

#[test]
fn a_scale_flip_while_instances_retire_reaches_the_target() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    // Instances ignore SIGTERM, so a retiring one takes its whole `kill_timeout` (10 s) to
    // stop:
    // the flip back finds instance numbers 6..10 still retiring.
    let app = tmp.path().join("flip");
    std::fs::create_dir_all(&app).expect("mkdir");
    std::fs::write(
        app.join("lain.yaml"),
        "appname: flip\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh -c 'trap \"\" TERM; while :; do sleep 1; done'\n  memory: 64M\n  num_instances: 10\n",
    )
    .expect("write");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "flip"]);
    let scale = |n: &str| {
        kernel.lain_ok(&[
            "scale",
            "worker",
            "-a",
            "flip",
            "--num-instances",
            n,
            "--no-wait",
        ]);
    };
    scale("5");
    std::thread::sleep(Duration::from_millis(300));
    scale("10");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let view = kernel.ps("flip");
        let ready = instances(&view, "worker")
            .iter()
            .filter(|i| i["ready"] == true)
            .count();
        if view["converged"] == true && ready == 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "stuck at {ready}/10 after the flip: {view:#}\n{}",
            kernel.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Each instance is created once, and instances 6..10 once more after their retirement: not
    // again and again while the instance of the same name retires (each of those creations
    // reserved its memory once more, until no node had room).
    let creations = kernel.logs().matches(" creating ").count();
    assert!(creations <= 15, "{creations} creations:\n{}", kernel.logs());
}

/// Half the reconciler's periodic pass: what events and due times bring must come well before.
fn well_before_the_safety_net() -> Duration {
    lain::lifecycle::reconcile::due::SAFETY_NET / 2
}

#[test]
fn an_instance_killed_from_outside_is_restarted_on_its_exit_event_not_the_periodic_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let app = tmp.path().join("sleeper");
    sleeper_app(&app, 1);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "sleeper"]);
    for round in 1..=2 {
        // The passes that made it ready are over: only the exit can wake the reconciler now.
        std::thread::sleep(Duration::from_secs(1));
        let old = pid(instances(&kernel.ps("sleeper"), "worker")[0]);
        assert!(
            std::process::Command::new("kill")
                .args(["-9", &old.to_string()])
                .status()
                .expect("kill")
                .success()
        );
        let killed = Instant::now();
        kernel.wait_for("sleeper", "the worker to come back", |v| {
            instances(v, "worker").first().is_some_and(|w| {
                w["state"]["state"] == "running" && w["state"]["pid"].as_i64() != Some(old)
            })
        });
        let took = killed.elapsed();
        assert!(
            took < well_before_the_safety_net(),
            "round {round}: restarted {took:?} after the kill\n{}",
            kernel.logs()
        );
    }
}

#[test]
fn a_health_checked_proc_is_ready_when_its_check_passes_not_at_the_periodic_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let app = support::write_app(
        tmp.path(),
        "checked",
        "appname: checked\nbuild:\n  base: busybox\n  script: []\nweb:\n  cmd: sh -c 'exec python3 -m http.server $PORT'\n  memory: 64M\n  healthcheck: /\n",
    );
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let started = Instant::now();
    let view = json(&kernel.lain_ok(&["deploy", "-a", "checked", "-o", "json"]));
    let took = started.elapsed();
    assert_eq!(instances(&view, "web")[0]["health"], "healthy", "{view:#}");
    assert!(
        took < well_before_the_safety_net(),
        "ready {took:?} after the deploy\n{}",
        kernel.logs()
    );
}

/// `text` without its ANSI colour sequences (`ESC [ ... m`).
fn without_colours(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn lain_deploy_waits_on_the_watch_instead_of_asking_for_the_app_again_and_again() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // The API's request log, to count what the CLI asks while it waits.
    let kernel = KernelProcess::start_with_env(
        &tmp.path().join("data"),
        "",
        &[("LAIN_LOG", "info,tower_http=debug")],
    );
    let app = support::write_app(
        tmp.path(),
        "slow",
        "appname: slow\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  setup_time: 3\n",
    );
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let started = Instant::now();
    let out = kernel.lain(&["deploy", "-a", "slow"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{out:?}");
    // The same progress lines as ever, on stderr.
    let progress = String::from_utf8_lossy(&out.stderr);
    assert!(progress.contains("==> worker 0/1 ready"), "{progress}");
    assert!(progress.contains("==> worker 1/1 ready"), "{progress}");
    assert!(
        took >= Duration::from_secs(3),
        "ready before its setup_time: {took:?}"
    );
    let logs = without_colours(&kernel.logs());
    let asked = logs.matches("uri=/api/v1/apps/slow version").count();
    let watched = logs.matches("uri=/api/v1/watch?").count();
    assert!(
        asked == 0 && watched >= 1,
        "{asked} reads of the app and {watched} watches in {took:?} of waiting\n{logs}"
    );
}

#[test]
fn a_deploy_not_converged_at_its_timeout_says_so_then() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let app = support::write_app(
        tmp.path(),
        "late",
        "appname: late\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  setup_time: 30\n",
    );
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let started = Instant::now();
    let err = kernel.lain_err(&["deploy", "-a", "late", "--timeout", "2"]);
    let took = started.elapsed();
    assert!(
        err.contains("not converged after 2s: worker 0/1 ready"),
        "{err}"
    );
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "gave up after {took:?}"
    );
}

#[test]
fn a_rollout_that_never_gets_ready_rolls_back_without_interrupting_the_old_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(
        &tmp.path().join("data"),
        "[lifecycle]\nrollout_timeout_secs = 1\n",
    );
    let app = tmp.path().join("sleeper");
    sleeper_app(&app, 2);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let v1 = json(&kernel.lain_ok(&["deploy", "-a", "sleeper", "-o", "json"]));
    let pids: Vec<i64> = instances(&v1, "worker").iter().map(|i| pid(i)).collect();

    // v2's worker exits at once: it never becomes ready.
    let yaml = std::fs::read_to_string(app.join("lain.yaml")).expect("read");
    std::fs::write(
        app.join("lain.yaml"),
        yaml.replace("sleep 100000", "sh -c 'exit 3'"),
    )
    .expect("write");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let err = kernel.lain_err(&["deploy", "-a", "sleeper", "--timeout", "60"]);
    assert!(err.contains("while waiting"), "{err}");
    let view = kernel.wait_for("sleeper", "the rollback", |v| v["converged"] == true);
    assert_eq!(view["release"], v1["release"], "{view:#}");
    let error = view["app"]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("failed") && error.contains("rolled back"),
        "{error}"
    );
    let after: Vec<i64> = instances(&view, "worker").iter().map(|i| pid(i)).collect();
    assert_eq!(pids, after, "the old instances served throughout");
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert!(
        apps[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("rolled back"))
    );
}

#[test]
fn lain_up_serves_hello_reports_metrics_follows_logs_and_stops_on_ctrl_c() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let api = format!("127.0.0.1:{}", support::free_port());
    let router = format!("127.0.0.1:{}", support::free_port());
    let mut up = Command::new(support::lain_bin())
        .arg("up")
        .arg(hello_dir())
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &api])
        .env("LAIN_ROUTER_LISTEN", &router)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(tmp.path().join("up.err")).expect("log"))
        .spawn()
        .expect("lain up");
    let stdout = up.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let mut urls = Vec::new();
    while urls.len() < 2 {
        let line = rx
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "no URLs: {}",
                    std::fs::read_to_string(tmp.path().join("up.err")).unwrap_or_default()
                )
            });
        if let Some(url) = line
            .strip_prefix("web (instance ")
            .and_then(|l| l.split(": ").nth(1))
        {
            urls.push(url.to_string());
        }
    }
    for url in &urls {
        assert!(get(url).starts_with("Hello from lain: instance"), "{url}");
    }
    // The router serves the web proc at its default mountpoint, `hello.localhost`.
    let through_router = ureq::get(&format!("http://{router}/"))
        .header("Host", "hello.localhost")
        .call()
        .expect("router")
        .body_mut()
        .read_to_string()
        .expect("body");
    assert!(
        through_router.starts_with("Hello from lain: instance"),
        "{through_router}"
    );
    // Behind the `metrics` right: the local bootstrap token is an admin's.
    let token = std::fs::read_to_string(data.join("bootstrap.token")).expect("bootstrap token");
    let metrics = support::get_as(&format!("http://{api}/metrics"), token.trim());
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("lain_instances{")
                && l.contains("proc=\"web\"")
                && l.contains("state=\"running\"")
        })
        .unwrap_or_else(|| panic!("no instance metric: {metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(
        metrics.contains("lain_reconciler_passes_total"),
        "{metrics}"
    );

    let mut logs = Command::new(support::lain_bin())
        .args([
            "logs",
            "worker",
            "-a",
            "hello",
            "-f",
            "--kernel",
            &format!("http://{api}"),
        ])
        // The documented local bootstrap: the CLI finds the admin token in the data dir.
        .env("LAIN_DATA_DIR", &data)
        .env("LAIN_USER_CONFIG", tmp.path().join("cli.toml"))
        .env_remove("LAIN_TOKEN")
        .stdout(Stdio::piped())
        .spawn()
        .expect("lain logs -f");
    let mut lines = std::io::BufReader::new(logs.stdout.take().expect("stdout")).lines();
    let first = lines.next().and_then(Result::ok).expect("a log line");
    assert!(first.starts_with("[1] worker 1: job"), "{first}");
    let next = lines.next().and_then(Result::ok).expect("a followed line");
    assert!(next.starts_with("[1] worker 1: job"), "{next}");
    let _ = logs.kill();
    let _ = logs.wait();

    assert!(
        Command::new("kill")
            .args(["-INT", &up.id().to_string()])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = up.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "lain up did not stop on Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let err = std::fs::read_to_string(tmp.path().join("up.err")).unwrap_or_default();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("stopped 4 instance(s)"), "{err}");
    // A stopped shim releases its lock as it exits; the kernel of that exit may still be
    // tearing the process down for a moment after.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_of(&data).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(processes_of(&data), Vec::new(), "no process left");
    let left = std::fs::read_dir(data.join("runtime/process")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "every instance removed");
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
fn the_process_runtime_refuses_a_procs_own_image_and_gives_labels_and_udp_ports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let yaml = |extra: &str| {
        format!(
            "appname: dns\nbuild:\n  base: busybox\n  script: []\n\
             worker.dns:\n{extra}  cmd: python3 /lain/app/udp_echo.py\n  port: \"53:udp\"\n  labels:\n    - team:dns\n"
        )
    };
    let dir = support::write_app(tmp.path(), "dns", &yaml("  image: redis:7\n"));
    // Answers each datagram on $PORT with `echo:` and the datagram.
    std::fs::write(
        dir.join("udp_echo.py"),
        "import os, socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('127.0.0.1', int(os.environ['PORT'])))\n\
         while True:\n    data, peer = s.recvfrom(1500)\n    s.sendto(b'echo:' + data, peer)\n",
    )
    .expect("write");
    let path = dir.to_string_lossy().into_owned();

    // A proc's own image: refused at deploy, naming the proc and why; nothing is deployed.
    kernel.lain_ok(&["build", &path]);
    let err = kernel.lain_err(&["deploy", "-a", "dns"]);
    assert!(
        err.contains("proc `dns`")
            && err.contains("image: redis:7")
            && err.contains("process runtime"),
        "{err}"
    );
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert_eq!(apps[0]["release"], Value::Null, "{apps:#}");

    // Without it: labels are recorded and shown, and 53:udp is a UDP host port in $PORT.
    support::edit_app(&dir, |_| yaml(""));
    kernel.lain_ok(&["build", &path]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "dns", "-o", "json"]));
    let dns = instances(&view, "dns")[0];
    assert_eq!(dns["labels"], serde_json::json!({"team": "dns"}), "{dns:#}");
    let table = kernel.lain_ok(&["ps", "-a", "dns"]);
    assert!(
        table.contains("LABELS") && table.contains("team=dns"),
        "{table}"
    );
    let url = dns["url"].as_str().expect("url");
    let address = url
        .strip_prefix("udp://")
        .unwrap_or_else(|| panic!("a UDP main port: {url}"));
    let answer = support::until("the UDP echo to answer", || udp_exchange(address, "ping"));
    assert_eq!(answer, "echo:ping");

    // A label in the kernel's namespace is refused, naming it.
    support::edit_app(&dir, |yaml| yaml.replace("team:dns", "lain.proc:other"));
    let err = kernel.lain_err(&["build", &path]);
    assert!(
        err.contains("\"lain.proc\"") && err.contains("belong to the kernel"),
        "{err}"
    );
}

/// `lain ps -w -o json`: NDJSON events of the app, reading on across a `kill -9` and restart of
/// the kernel (the CLI reconnects from the last event id it saw).
#[test]
fn lain_ps_w_follows_an_app_across_a_kernel_restart() {
    use std::io::BufRead as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let app = tmp.path().join("sleeper");
    sleeper_app(&app, 1);
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);
    let mut child = kernel
        .lain_cmd(&["ps", "-a", "sleeper", "-w", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lain ps -w");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(json(&line)).is_err() {
                break;
            }
        }
    });
    let wait = |what: &str, check: &dyn Fn(&Value) -> bool| -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(event) if check(&event) => return event,
                Ok(event) => seen.push(event),
                Err(_) => break,
            }
        }
        panic!("{what}: not seen in {seen:#?}");
    };
    let running = |n: usize| {
        move |e: &Value| {
            e["event"] == "app"
                && e["object"]["instances"].as_array().is_some_and(|i| {
                    i.len() == n && i.iter().all(|i| i["state"]["state"] == "running")
                })
        }
    };
    let snapshot = wait("the snapshot", &|e| e["event"] == "app");
    assert_eq!(snapshot["action"], "snapshot", "{snapshot:#}");
    wait("synced", &|e| e["event"] == "synced");
    kernel.lain_ok(&["deploy", "-a", "sleeper"]);
    wait("one running instance", &running(1));

    kernel.restart();
    kernel.lain_ok(&["scale", "worker", "-a", "sleeper", "--num-instances", "2"]);
    wait("two running instances after the restart", &running(2));
    let _ = child.kill();
    let _ = child.wait();
}

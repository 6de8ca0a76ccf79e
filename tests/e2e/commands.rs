//! The per-proc commands end to end on the process runtime: the real `lain` binary (kernel and
//! CLI) and real instances. `lain exec` runs in the instance (its environment and volume) and
//! exits with the command's status; `lain restart` replaces instances one number at a time
//! while the proc keeps a ready instance; `lain deploy -p` / `lain undeploy -p` touch one proc;
//! `lain exec -t` gives the command a terminal that follows the window and passes Ctrl-C;
//! a caller without the operate right is refused with 403 and nothing changes.

mod support;
mod terminal;

use serde_json::Value;
use sha2::Digest as _;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{KernelProcess, instances, json};

/// An app with a web proc (2 instances, health-checked) and a worker with a volume that
/// appends a line to `/data/starts` each time it starts.
fn cmds_app(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/server.py");
    std::fs::copy(hello, dir.join("server.py")).expect("server.py");
    std::fs::write(
        dir.join("worker.sh"),
        "echo \"start $LAIN_INSTANCE_NO\" >> /data/starts\nexec sleep 100000\n",
    )
    .expect("worker.sh");
    std::fs::write(
        dir.join("lain.yaml"),
        "appname: cmds\nbuild:\n  base: busybox\n  script: []\n\
         web:\n  cmd: python3 server.py\n  num_instances: 2\n  memory: 64M\n  healthcheck: /healthz\n  env:\n    - GREETING=hi from cmds\n\
         worker:\n  cmd: sh worker.sh\n  volumes:\n    - /data\n",
    )
    .expect("lain.yaml");
}

/// A kernel on `data` with [`cmds_app`] (written under `root`) built and deployed.
fn deployed_cmds(root: &Path, data: &Path) -> KernelProcess {
    let kernel = KernelProcess::start(data, "");
    let dir = root.join("cmds");
    cmds_app(&dir);
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "cmds", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    kernel
}

/// Instance names of `proc` by number.
fn names(view: &Value, proc: &str) -> BTreeMap<u64, String> {
    instances(view, proc)
        .iter()
        .map(|i| {
            (
                i["instance"].as_u64().expect("number"),
                i["name"].as_str().expect("name").to_string(),
            )
        })
        .collect()
}

fn starts(data: &Path) -> usize {
    std::fs::read_to_string(data.join("volumes/cmds/worker/1/data/starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn exec_restart_and_per_proc_deploy_act_on_real_instances() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = deployed_cmds(tmp.path(), &data);
    assert_eq!(starts(&data), 1);

    // exec: inside the instance (its environment), output back, exit status through.
    let out = kernel.lain(&[
        "exec",
        "web",
        "-a",
        "cmds",
        "-i",
        "2",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING $LAIN_INSTANCE_NO\"; echo oops >&2; exit 3",
    ]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout} {stderr}");
    assert_eq!(stdout, "hi from cmds 2\n");
    assert_eq!(stderr, "oops\n");
    let result = json(&kernel.lain_ok(&[
        "exec",
        "web",
        "-a",
        "cmds",
        "-o",
        "json",
        "--",
        "sh",
        "-c",
        "echo $LAIN_INSTANCE_NO; echo e >&2",
    ]));
    assert_eq!(
        (
            &result["code"],
            &result["instance"],
            &result["stdout"],
            &result["stderr"]
        ),
        (
            &Value::from(0),
            &Value::from(1),
            &Value::from("1\n"),
            &Value::from("e\n")
        ),
        "{result}"
    );
    // The audit log says how each command ended, not only that its output started.
    let audit = json(&kernel.lain_ok(&["audit", "-a", "cmds", "-o", "json"]));
    let execs: Vec<&Value> = audit
        .as_array()
        .expect("audit records")
        .iter()
        .filter(|r| r["target"] == "/api/v1/apps/cmds/procs/web/exec")
        .collect();
    assert!(
        execs
            .iter()
            .any(|r| r["result"] == "failed" && r["reason"] == "exit status 3"),
        "{audit:#}"
    );
    assert!(execs.iter().any(|r| r["result"] == "ok"), "{audit:#}");
    assert_eq!(execs.len(), 2, "{audit:#}");
    // Output is streamed: the first line arrives while the command still runs.
    let started = Instant::now();
    let mut child = kernel
        .lain_cmd(&[
            "exec",
            "web",
            "-a",
            "cmds",
            "--timeout",
            "5",
            "--",
            "sh",
            "-c",
            "echo first; sleep 30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lain exec");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut first,
    )
    .expect("first line");
    assert_eq!(first, "first\n");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the first line came only at the end"
    );
    assert_eq!(child.try_wait().expect("wait"), None, "still running");
    assert_eq!(child.wait().expect("wait").code(), Some(124));
    // A client that goes away takes the command with it (once it writes again).
    let mut child = kernel
        .lain_cmd(&[
            "exec",
            "web",
            "-a",
            "cmds",
            "--",
            "sh",
            "-c",
            "while :; do echo tick-8c1e5; sleep 0.2; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("lain exec");
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().expect("stdout")),
        &mut first,
    )
    .expect("first line");
    assert_eq!(first, "tick-8c1e5\n");
    let running = || {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .filter(|c| c.windows(10).any(|w| w == b"tick-8c1e5"))
            .count()
    };
    assert!(running() > 0);
    child.kill().expect("kill the CLI");
    child.wait().expect("wait");
    support::until("the command to be killed", || {
        (running() == 0).then_some(())
    });
    // ... with the instance's volume: it reads what the worker wrote and writes into it.
    let out = kernel.lain_ok(&[
        "exec",
        "worker",
        "-a",
        "cmds",
        "--",
        "sh",
        "-c",
        "cat /data/starts; echo by-exec > /data/exec-wrote",
    ]);
    assert_eq!(out, "start 1\n");
    assert_eq!(
        std::fs::read_to_string(data.join("volumes/cmds/worker/1/data/exec-wrote"))
            .expect("written through exec"),
        "by-exec\n"
    );
    // A command that outlives its timeout is killed: exit 124, promptly.
    let started = Instant::now();
    let out = kernel.lain(&[
        "exec",
        "web",
        "-a",
        "cmds",
        "--timeout",
        "1",
        "--",
        "sleep",
        "60",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = kernel.lain_err(&["exec", "web", "-a", "cmds", "-i", "9", "--", "true"]);
    assert!(
        err.contains("409") && err.contains("no instance 9"),
        "{err}"
    );

    // restart: new instances, one number at a time, while the proc keeps a ready instance.
    let before = kernel.ps("cmds");
    let (web_before, worker_before) = (names(&before, "web"), names(&before, "worker"));
    let mut restart = kernel
        .lain_cmd(&["restart", "web", "-a", "cmds", "-o", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lain restart");
    let mut seen = Vec::new();
    while restart.try_wait().expect("wait").is_none() {
        seen.push(kernel.ps("cmds"));
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = restart.wait_with_output().expect("restart");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(seen.len() > 3, "the restart was observed");
    for view in &seen {
        let web = instances(view, "web");
        let serving = web
            .iter()
            .filter(|i| i["ready"] == true && i["retiring"] != true)
            .count();
        assert!(serving >= 1, "no web instance served: {view:#}");
        let replacing: Vec<_> = web
            .iter()
            .filter(|i| i["restart"] == 1 && i["ready"] != true)
            .map(|i| i["instance"].clone())
            .collect();
        assert!(
            replacing.len() <= 1,
            "two numbers replaced at once: {view:#}"
        );
    }
    let after = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(after["converged"], true, "{after:#}");
    let web_after = names(&after, "web");
    assert_eq!(web_after.len(), 2, "{after:#}");
    for (no, name) in &web_after {
        assert_ne!(Some(name), web_before.get(no), "instance {no} is new");
        assert!(name.contains(".r1."), "{name}");
    }
    assert_eq!(
        names(&after, "worker"),
        worker_before,
        "the worker is untouched"
    );

    // restart -i: that number only.
    let view = json(&kernel.lain_ok(&["restart", "web", "-a", "cmds", "-i", "2", "-o", "json"]));
    let web = names(&view, "web");
    assert_eq!(web.get(&1), web_after.get(&1));
    assert_ne!(web.get(&2), web_after.get(&2));
    assert!(web[&2].contains(".r2."), "{view:#}");
    // A proc with a volume is stopped first and comes back on its volume.
    kernel.lain_ok(&["restart", "worker", "-a", "cmds"]);
    assert_eq!(starts(&data), 2);
    let err = kernel.lain_err(&["restart", "nope", "-a", "cmds"]);
    assert!(
        err.contains("404") && err.contains("no deployed proc"),
        "{err}"
    );

    // undeploy -p stops that proc only; deploy -p brings it back, the others untouched.
    let web = names(&kernel.ps("cmds"), "web");
    let view = json(&kernel.lain_ok(&["undeploy", "-p", "worker", "-a", "cmds", "-o", "json"]));
    assert!(instances(&view, "worker").is_empty(), "{view:#}");
    assert!(
        !view["procs"]
            .as_array()
            .expect("procs")
            .iter()
            .any(|p| p["name"] == "worker"),
        "{view:#}"
    );
    assert_eq!(names(&view, "web"), web, "web is untouched");
    let view = json(&kernel.lain_ok(&["deploy", "-p", "worker", "-a", "cmds", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    assert_eq!(instances(&view, "worker").len(), 1, "{view:#}");
    assert_eq!(names(&view, "web"), web, "web is untouched");
    assert_eq!(starts(&data), 3, "the worker is back on its volume");
    // deploy -p of the deployed proc changes nothing that runs (same plan).
    let worker = names(&view, "worker");
    let view = json(&kernel.lain_ok(&["deploy", "-p", "worker", "-a", "cmds", "-o", "json"]));
    assert_eq!(names(&view, "worker"), worker);
    let err = kernel.lain_err(&["deploy", "-p", "worker", "-a", "cmds", "--release", "1-abc"]);
    assert!(
        err.contains("400") && err.contains("deploy the whole app"),
        "{err}"
    );
    // As in LAIN, a proc undeployed alone comes back with the next deploy of the whole app.
    kernel.lain_ok(&["undeploy", "-p", "worker", "-a", "cmds"]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "cmds", "-o", "json"]));
    assert_eq!(instances(&view, "worker").len(), 1, "{view:#}");
    // ... and rollback undoes a deploy -p / undeploy -p like any deployment.
    kernel.lain_ok(&["undeploy", "-p", "worker", "-a", "cmds"]);
    let view = json(&kernel.lain_ok(&["rollback", "-a", "cmds", "-o", "json"]));
    assert_eq!(instances(&view, "worker").len(), 1, "{view:#}");

    // Every one of them is in the audit log.
    let audit = kernel.lain_ok(&["audit", "-a", "cmds", "-o", "json"]);
    for action in [
        "POST /api/v1/apps/{app}/procs/{proc}/exec",
        "POST /api/v1/apps/{app}/procs/{proc}/restart",
        "POST /api/v1/apps/{app}/procs/{proc}/deploy",
        "DELETE /api/v1/apps/{app}/procs/{proc}",
    ] {
        assert!(audit.contains(action), "{action} not audited: {audit}");
    }
}

/// `lain exec -t` as a person at a terminal uses it: a shell on a terminal of the window's size
/// and type, resized with the window, Ctrl-C interrupting what runs in it (not the shell), its
/// exit status lain's, the session in the audit log; without a terminal, or as a plain HTTP
/// request, it is refused and says why.
#[test]
fn exec_t_runs_a_shell_on_a_terminal_that_follows_the_window_and_passes_ctrl_c() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = deployed_cmds(tmp.path(), &data);

    let mut cmd = kernel.lain_cmd(&["exec", "-t", "web", "-a", "cmds", "-i", "2", "--", "sh"]);
    cmd.env("TERM", "xterm-256color");
    let mut t = terminal::Terminal::start(cmd, 33, 101);
    let status = t.check_shell(
        ("tty-$TERM-$LAIN_INSTANCE_NO", "tty-xterm-256color-2"),
        (50, 132),
        7,
        Duration::from_secs(30),
    );
    assert_eq!(status.code(), Some(7), "{}", t.screen());
    let audit = json(&kernel.lain_ok(&["audit", "-a", "cmds", "-o", "json"]));
    assert!(
        audit.as_array().expect("records").iter().any(|r| {
            r["target"] == "/api/v1/apps/cmds/procs/web/exec/tty"
                && r["result"] == "failed"
                && r["reason"] == "exit status 7"
        }),
        "{audit:#}"
    );

    // Without a terminal, and as a request that is not a WebSocket, it says why.
    let out = kernel.lain(&["exec", "-t", "web", "-a", "cmds", "--", "sh"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("needs a terminal"),
        "{err}"
    );
    let token = kernel.token();
    let (status, body) = kernel.api(
        "GET",
        "/api/v1/apps/cmds/procs/web/exec/tty?command=sh",
        Some(&token),
        None,
    );
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("WebSocket"), "{body}");
    let (status, body) = kernel.api(
        "GET",
        "/api/v1/apps/cmds/procs/web/exec/tty?command=sh&rows=0",
        Some(&token),
        None,
    );
    assert_eq!(status, 400, "{body}");
}

#[test]
fn a_caller_without_the_operate_right_is_refused_and_nothing_changes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hash = |t: &str| hex::encode(sha2::Sha256::digest(t));
    let config = format!(
        "[auth]\nbootstrap = false\nregister_users = [\"token:alice\"]\n[plugins.config.token]\ntokens = [{{ user = \"alice\", sha256 = \"{}\" }}, {{ user = \"bob\", sha256 = \"{}\" }}, {{ user = \"root\", groups = [\"admins\"], sha256 = \"{}\" }}]\n",
        hash("alice-secret-token-000"),
        hash("bob-secret-token-00000"),
        hash("root-secret-token-0000"),
    );
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, &config);
    let dir = tmp.path().join("cmds");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("lain.yaml"),
        "appname: cmds\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  volumes:\n    - /data\nworker.other:\n  cmd: sleep 100000\n",
    )
    .expect("lain.yaml");
    let as_user = |token: &str, args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        kernel.lain(&all)
    };
    let alice = |args: &[&str]| {
        let out = as_user("alice-secret-token-000", args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    alice(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&alice(&["deploy", "-a", "cmds", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    let ps = || json(&alice(&["ps", "-a", "cmds", "-o", "json"]));
    let before = ps();
    let record = |v: &Value| (names(v, "worker"), names(v, "other"), v["app"].clone());

    let wrote = data.join("volumes/cmds/worker/1/data/bob");
    for args in [
        &[
            "exec",
            "worker",
            "-a",
            "cmds",
            "--",
            "sh",
            "-c",
            "echo x > /data/bob",
        ][..],
        &["restart", "worker", "-a", "cmds", "--no-wait"],
        &["restart", "worker", "-a", "cmds", "-i", "1", "--no-wait"],
        &["undeploy", "-p", "other", "-a", "cmds", "--no-wait"],
        &["deploy", "-p", "other", "-a", "cmds", "--no-wait"],
    ] {
        let out = as_user("bob-secret-token-00000", args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("403") && err.contains("operate"),
            "{args:?}: {err}"
        );
    }
    // On a terminal too: refused before anything runs.
    let mut cmd = kernel.lain_cmd(&[
        "--token",
        "bob-secret-token-00000",
        "exec",
        "-t",
        "worker",
        "-a",
        "cmds",
        "--",
        "sh",
        "-c",
        "echo x > /data/bob",
    ]);
    cmd.env("TERM", "xterm");
    let mut bob = terminal::Terminal::start(cmd, 24, 80);
    let status = bob.wait(Duration::from_secs(20));
    let screen = bob.screen();
    assert!(
        !status.success() && screen.contains("403") && screen.contains("operate"),
        "{screen}"
    );
    // Give a wrongly accepted change time to show.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!wrote.exists(), "bob's command ran");
    let after = ps();
    assert_eq!(record(&after), record(&before), "{after:#}");

    // The refusals are audited as denied.
    let out = as_user(
        "root-secret-token-0000",
        &["audit", "-a", "cmds", "-o", "json"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let audit = json(&String::from_utf8_lossy(&out.stdout));
    let denied: Vec<&str> = audit
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["result"] == "denied" && r["subject"] == "bob")
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "POST /api/v1/apps/{app}/procs/{proc}/exec",
        "GET /api/v1/apps/{app}/procs/{proc}/exec/tty",
        "POST /api/v1/apps/{app}/procs/{proc}/restart",
        "POST /api/v1/apps/{app}/procs/{proc}/deploy",
        "DELETE /api/v1/apps/{app}/procs/{proc}",
    ] {
        assert!(denied.contains(&action), "{action}: {denied:?}");
    }

    // The same commands as the maintainer act (so the refusals above were the right's).
    let out = as_user(
        "alice-secret-token-000",
        &[
            "exec",
            "worker",
            "-a",
            "cmds",
            "--",
            "sh",
            "-c",
            "echo x > /data/bob",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(wrote.exists());
    let view = json(&alice(&[
        "undeploy", "-p", "other", "-a", "cmds", "-o", "json",
    ]));
    assert!(instances(&view, "other").is_empty(), "{view:#}");
}

#[test]
fn a_restarted_instance_that_never_gets_ready_leaves_the_old_one_serving_and_the_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "[lifecycle]\nrollout_timeout_secs = 5\n");
    let dir = tmp.path().join("flaky");
    std::fs::create_dir_all(&dir).expect("mkdir");
    // A worker that cannot start while /shared/broken exists (a volume the test reaches).
    std::fs::write(
        dir.join("worker.sh"),
        "if [ -e /shared/broken ]; then exit 3; fi\nexec sleep 100000\n",
    )
    .expect("worker.sh");
    std::fs::write(
        dir.join("lain.yaml"),
        "appname: flaky\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh worker.sh\n  cloud_volumes:\n    type: single\n    dirs:\n      - /shared\n",
    )
    .expect("lain.yaml");
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    kernel.lain_ok(&["deploy", "-a", "flaky"]);
    // A second release, so that a rollback would have somewhere to go.
    std::fs::write(dir.join("v2"), "2").expect("v2");
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let v2 = json(&kernel.lain_ok(&["deploy", "-a", "flaky", "-o", "json"]));
    let old = instances(&v2, "worker")[0]["name"].clone();

    let broken = data.join("cloud-volumes/flaky/worker/shared/broken");
    std::fs::write(&broken, "").expect("broken");
    kernel.lain_ok(&["restart", "worker", "-a", "flaky", "--no-wait"]);
    let view = kernel.wait_for("flaky", "the restart to be reported late", |v| {
        v["procs"][0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("restarted instance 1 was not ready"))
    });
    // Still well past the rollout timeout: no rollback, the old instance serves.
    std::thread::sleep(Duration::from_secs(3));
    let view = {
        let now = kernel.ps("flaky");
        assert_eq!(now["release"], v2["release"], "{now:#}");
        assert!(now["app"]["last_error"].is_null(), "{now:#}");
        let serving: Vec<_> = instances(&now, "worker")
            .into_iter()
            .filter(|i| i["name"] == old && i["ready"] == true)
            .collect();
        assert_eq!(
            serving.len(),
            1,
            "the old instance serves: {now:#} (was {view:#})"
        );
        now
    };
    assert_eq!(view["converged"], false);

    // Once the cause is gone the restart completes.
    std::fs::remove_file(&broken).expect("fixed");
    let view = kernel.wait_for("flaky", "the restart to complete", |v| {
        v["converged"] == true
    });
    let worker = instances(&view, "worker");
    assert_eq!(worker.len(), 1, "{view:#}");
    assert_ne!(worker[0]["name"], old);
    assert_eq!(view["release"], v2["release"]);
}

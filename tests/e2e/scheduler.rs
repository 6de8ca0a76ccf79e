//! The scheduling pipeline end to end, through the real `lain` binary: changed live with
//! `lain scheduler set` (validated, audited, kept across kill -9), placement errors that name
//! the filter, instances that no longer fit re-checked and moved, and the note on an installed
//! scheduler plugin left out of the pipeline.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use sha2::Digest;
use std::path::Path;
use support::{KernelProcess, instances, json, write_app};

fn on(view: &Value, proc: &str, node: &str) -> usize {
    instances(view, proc)
        .iter()
        .filter(|i| i["node"] == node && i["retiring"] != true)
        .count()
}

fn problem(view: &Value, proc: &str) -> String {
    view["procs"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == proc)
        .and_then(|p| p["problem"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn pipeline(kernel: &KernelProcess) -> Value {
    json(&kernel.lain_ok(&["scheduler", "show", "-o", "json"]))
}

fn build(kernel: &KernelProcess, dir: &Path) {
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
}

#[test]
fn the_pipeline_changes_live_is_checked_audited_kept_and_moves_what_no_longer_fits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bob = hex::encode(sha2::Sha256::digest("bob-secret-token-00000"));
    // `constraint` starts outside the pipeline: the kernel config only seeds it.
    let config = format!(
        "[scheduler]\nplugins = [\"resources\", \"spread\"]\n\
         [plugins.config.token]\ntokens = [{{ user = \"bob\", sha256 = \"{bob}\" }}]\n"
    );
    let mut kernel = KernelProcess::start(&tmp.path().join("data"), &config);
    let seeded = pipeline(&kernel);
    assert_eq!(
        seeded["plugins"],
        serde_json::json!(["resources", "spread"])
    );
    assert_eq!(
        seeded["outside"],
        serde_json::json!(["constraint"]),
        "{seeded:#}"
    );
    let list = kernel.lain_ok(&["plugin", "list"]);
    let row = list
        .lines()
        .find(|l| l.starts_with("constraint"))
        .unwrap_or_default();
    assert!(row.contains("not in the scheduler pipeline"), "{list}");

    kernel.add_node("n2", "local", &["disk=ssd"]);
    let app = write_app(
        tmp.path(),
        "picky",
        "appname: picky\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  memory: 32M\n  num_instances: 2\n  filters:\n    - constraint:disk==ssd\n",
    );
    build(&kernel, &app);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "picky", "-o", "json"]));
    assert_eq!(
        (on(&view, "worker", "local"), on(&view, "worker", "n2")),
        (1, 1),
        "without `constraint`, spread ignores the filter: {view:#}"
    );

    // Bad changes are refused, naming what is wrong, and change nothing.
    for (args, wanted) in [
        (vec!["--add", "nope"], "no plugin named `nope` is installed"),
        (
            vec!["--add", "web"],
            "`web` is a proc-type plugin, not a scheduler-filter plugin",
        ),
        (
            vec!["--weight", "resources=2"],
            "weight for `resources`, which only filters",
        ),
        (
            vec!["--weight", "spread=1000"],
            "weight 1000 for `spread` is out of range (0 to 100)",
        ),
        (
            vec!["--plugins", "spread,spread"],
            "`spread` is listed twice",
        ),
    ] {
        let mut full = vec!["scheduler", "set"];
        full.extend(args.iter().copied());
        let err = kernel.lain_err(&full);
        assert!(
            err.contains(wanted) && err.contains("422"),
            "{args:?}: {err}"
        );
    }
    let body = br#"{"plugins": ["resources", "constraint", "spread"], "weights": {}}"#;
    let (status, _) = kernel.api("PUT", "/api/v1/scheduler", None, Some(body));
    assert_eq!(status, 401);
    let (status, _) = kernel.api(
        "PUT",
        "/api/v1/scheduler",
        Some("bob-secret-token-00000"),
        Some(body),
    );
    assert_eq!(status, 403);
    assert_eq!(pipeline(&kernel)["plugins"], seeded["plugins"]);

    // A good change: in force without a restart; the instance on `local` no longer fits.
    let set = json(&kernel.lain_ok(&[
        "scheduler",
        "set",
        "--plugins",
        "resources,constraint,spread",
        "--weight",
        "spread=2",
        "-o",
        "json",
    ]));
    assert_eq!(set["outside"], serde_json::json!([]), "{set:#}");
    let spread = &set["members"][2];
    assert_eq!(
        (&spread["roles"], &spread["weight"]),
        (&serde_json::json!(["score"]), &serde_json::json!(2)),
        "{set:#}"
    );
    let misfits = support::until("the misfit", || {
        let m = json(&kernel.lain_ok(&["scheduler", "check", "-o", "json"]));
        (m.as_array().map(Vec::len) == Some(1)).then_some(m)
    });
    let local = instances(&view, "worker")
        .into_iter()
        .find(|i| i["node"] == "local")
        .cloned()
        .expect("the instance on local");
    assert_eq!(misfits[0]["instance"], local["name"], "{misfits:#}");
    assert_eq!(
        (
            &misfits[0]["node"],
            &misfits[0]["filter"],
            &misfits[0]["stateful"]
        ),
        (
            &Value::from("local"),
            &Value::from("constraint"),
            &Value::from(false)
        )
    );
    let view = kernel.wait_for("picky", "the misfit in lain ps", |v| {
        problem(v, "worker")
            .contains("no longer fits the scheduler pipeline (`constraint` removes local)")
    });
    assert_eq!(
        on(&view, "worker", "local"),
        1,
        "reported, not moved: {view:#}"
    );

    // Moved on request: a replacement on n2, the old one retired.
    let moved = json(&kernel.lain_ok(&["scheduler", "check", "--move", "-o", "json"]));
    assert_eq!(moved["moving"]["instances"][0], local["name"], "{moved:#}");
    let view = kernel.wait_for("picky", "the move", |v| {
        v["converged"] == true && on(v, "worker", "n2") == 2 && instances(v, "worker").len() == 2
    });
    assert_eq!(problem(&view, "worker"), "", "{view:#}");
    support::until("no misfit left", || {
        let m = json(&kernel.lain_ok(&["scheduler", "check", "-o", "json"]));
        (m.as_array().map(Vec::len) == Some(0)).then_some(())
    });

    // Audited: the change, the refusals, the denial and the move.
    let audit = json(&kernel.lain_ok(&["audit", "-o", "json", "--limit", "200"]));
    let records = audit.as_array().expect("records");
    let count = |action: &str, result: &str| {
        records
            .iter()
            .filter(|r| r["action"] == action && r["result"] == result)
            .count()
    };
    assert_eq!(count("PUT /api/v1/scheduler", "ok"), 1, "{audit:#}");
    assert_eq!(count("PUT /api/v1/scheduler", "failed"), 5, "{audit:#}");
    assert_eq!(count("PUT /api/v1/scheduler", "denied"), 2, "{audit:#}");
    assert_eq!(count("POST /api/v1/scheduler/moves", "ok"), 1, "{audit:#}");

    // Kept in the store: a kill -9 and a kernel whose config still says otherwise.
    kernel.kill9();
    kernel.restart();
    let after = pipeline(&kernel);
    assert_eq!(
        (&after["plugins"], &after["weights"]),
        (&set["plugins"], &serde_json::json!({"spread": 2})),
        "{after:#}"
    );
    let view = kernel.wait_for("picky", "the same placement after restart", |v| {
        v["converged"] == true && on(v, "worker", "n2") == 2
    });
    assert_eq!(problem(&view, "worker"), "", "{view:#}");
}

#[test]
fn placement_errors_name_the_filter_and_a_pipeline_change_places_without_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    kernel.add_node("n2", "local", &["disk=ssd"]);
    let app = write_app(
        tmp.path(),
        "nofit",
        "appname: nofit\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  memory: 32M\n  filters:\n    - constraint:disk==nvme\nworker.big:\n  cmd: sleep 100000\n  memory: 64G\n",
    );
    build(&kernel, &app);
    kernel.lain_ok(&["deploy", "-a", "nofit", "--no-wait"]);
    let view = kernel.wait_for("nofit", "both placement errors", |v| {
        !problem(v, "worker").is_empty() && !problem(v, "big").is_empty()
    });
    assert_eq!(
        problem(&view, "worker"),
        "no node for nofit.worker.worker instance 1: `constraint` removed the last 2 candidates \
         (`resources` kept 2 of 2)",
        "{view:#}"
    );
    assert_eq!(
        problem(&view, "big"),
        "no node for nofit.worker.big instance 1: `resources` removed the last 2 candidates",
        "{view:#}"
    );
    let table = kernel.lain_ok(&["app", "list"]);
    assert!(table.contains("`constraint` removed the last 2"), "{table}");

    // Without `constraint`, the next pass places the worker: no restart.
    kernel.lain_ok(&["scheduler", "set", "--remove", "constraint"]);
    let view = kernel.wait_for("nofit", "the worker placed", |v| {
        instances(v, "worker").len() == 1 && problem(v, "worker").is_empty()
    });
    assert_eq!(instances(&view, "big").len(), 0, "{view:#}");
}

#[test]
fn an_installed_scheduler_plugin_outside_the_pipeline_is_flagged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let out = kernel.lain(&["plugin", "install", fixtures::HOSTILE_SCHEDULER]);
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "`hostile-scheduler` is not in the scheduler pipeline, so it is never called; add it \
             with `lain scheduler set --add hostile-scheduler`"
        ),
        "{stderr}"
    );
    let show = kernel.lain(&["plugin", "show", "hostile-scheduler"]);
    assert!(
        String::from_utf8_lossy(&show.stderr).contains("not in the scheduler pipeline"),
        "{show:?}"
    );
    kernel.lain_ok(&["scheduler", "set", "--add", "hostile-scheduler"]);
    let show = kernel.lain(&["plugin", "show", "hostile-scheduler"]);
    assert!(
        !String::from_utf8_lossy(&show.stderr).contains("not in the scheduler pipeline"),
        "{show:?}"
    );
    assert_eq!(
        pipeline(&kernel)["plugins"],
        serde_json::json!(["resources", "constraint", "spread", "hostile-scheduler"])
    );
}

fn numbers_on(view: &Value, proc: &str) -> Vec<(u64, String)> {
    let mut out: Vec<(u64, String)> = instances(view, proc)
        .iter()
        .filter(|i| i["retiring"] != true)
        .map(|i| {
            (
                i["instance"].as_u64().unwrap_or(0),
                i["node"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

fn pairs(list: &[(u64, &str)]) -> Vec<(u64, String)> {
    list.iter().map(|(n, s)| (*n, s.to_string())).collect()
}

#[test]
fn per_node_daemons_follow_the_nodes_and_a_singleton_never_runs_twice() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    kernel.lain_ok(&["plugin", "install", fixtures::DAEMON]);
    kernel.add_node("n2", "local", &[]);
    let yaml = "appname: agents\nbuild:\n  base: busybox\n  script: []\n\
                daemon.agent:\n  cmd: sleep 100000\n  memory: 32M\n  placement: per-node\n\
                daemon.leader:\n  cmd: sh -c 'trap \"\" TERM; while :; do sleep 1; done'\n  kill_timeout: 3\n  memory: 32M\n  num_instances: 3\n  placement: singleton\n";
    let app = write_app(tmp.path(), "agents", yaml);
    build(&kernel, &app);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "agents", "-o", "json"]));
    assert_eq!(
        numbers_on(&view, "agent"),
        pairs(&[(1, "local"), (2, "n2")]),
        "one per node: {view:#}"
    );
    assert_eq!(instances(&view, "leader").len(), 1, "{view:#}");
    let proc_desired = |v: &Value, name: &str| {
        v["procs"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"] == name)
            .map(|p| p["desired"].clone())
    };
    assert_eq!(proc_desired(&view, "agent"), Some(Value::from(2)));
    assert_eq!(proc_desired(&view, "leader"), Some(Value::from(1)));

    // A node added later gets one; the others keep their numbers.
    kernel.add_node("n3", "local", &[]);
    kernel.wait_for("agents", "an agent on n3", |v| {
        v["converged"] == true
            && numbers_on(v, "agent") == pairs(&[(1, "local"), (2, "n2"), (3, "n3")])
    });
    // A drained node loses its instance; the numbers of the others stay.
    kernel.lain_ok(&["node", "maintain", "n2"]);
    kernel.wait_for("agents", "n2's agent gone", |v| {
        v["converged"] == true
            && numbers_on(v, "agent") == pairs(&[(1, "local"), (3, "n3")])
            && instances(v, "agent").len() == 2
    });
    kernel.lain_ok(&["node", "maintain", "n2", "--off"]);
    kernel.wait_for("agents", "n2's agent back as number 2", |v| {
        v["converged"] == true
            && numbers_on(v, "agent") == pairs(&[(1, "local"), (2, "n2"), (3, "n3")])
    });

    // An upgrade: the singleton's old instance (which ignores SIGTERM, so it takes its whole
    // `kill_timeout` to stop) is gone before the new one exists.
    support::edit_app(&app, |y| y.replace("kill_timeout: 3", "kill_timeout: 4"));
    build(&kernel, &app);
    let release = json(&kernel.lain_ok(&["app", "show", "-a", "agents", "-o", "json"]));
    let old_release = release["release"].clone();
    let deploy = kernel
        .lain_cmd(&["deploy", "-a", "agents", "--no-wait"])
        .output()
        .expect("deploy");
    assert!(deploy.status.success(), "{deploy:?}");
    let mut seen_new = false;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    while !seen_new {
        let v = kernel.ps("agents");
        let leaders = instances(&v, "leader");
        assert!(leaders.len() <= 1, "two leaders at once: {v:#}");
        seen_new =
            v["converged"] == true && leaders.len() == 1 && leaders[0]["release"] != old_release;
        assert!(std::time::Instant::now() < deadline, "no new leader: {v:#}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let view = kernel.ps("agents");
    assert_eq!(
        numbers_on(&view, "agent"),
        pairs(&[(1, "local"), (2, "n2"), (3, "n3")]),
        "agents keep their node through the upgrade: {view:#}"
    );
}

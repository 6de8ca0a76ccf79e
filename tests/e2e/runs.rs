//! How a proc's instances run and complete, end to end through the real `lain` binary and the
//! process runtime: a run to completion holds `lain deploy` until it exits, a failed one fails
//! the deploy with its exit status and the end of its log, and a changed plan rolls out.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{KernelProcess, edit_app, instances, json, write_app};

/// An app with a worker and a oneshot `migrate` running `migrate`.
fn jobs_app(root: &Path, migrate: &str) -> std::path::PathBuf {
    write_app(
        root,
        "jobs",
        &format!(
            "appname: jobs\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\noneshot.migrate:\n  cmd: {migrate}\n"
        ),
    )
}

fn build(kernel: &KernelProcess, dir: &Path) -> String {
    let release = json(&kernel.lain_ok(&["build", dir.to_str().expect("utf-8"), "-o", "json"]));
    release["version"].as_str().expect("version").to_string()
}

#[test]
fn a_failed_run_fails_the_deploy_with_its_exit_status_and_log_tail_and_a_later_one_rolls_back() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let dir = jobs_app(
        tmp.path(),
        r#"sh -c "echo preparing the schema; echo cannot reach the database >&2; exit 7""#,
    );
    build(&kernel, &dir);

    // The first deploy has nothing to go back to: it fails, and says why.
    let err = kernel.lain_err(&["deploy", "-a", "jobs", "--timeout", "60"]);
    for part in [
        "oneshot.migrate instance 1 failed: exit status 7",
        "preparing the schema",
        "cannot reach the database",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    let view = kernel.ps("jobs");
    let error = view["app"]["last_error"].as_str().unwrap_or_default();
    assert!(
        error.contains("exit status 7") && error.contains("cannot reach the database"),
        "{view:#}"
    );
    let migrate = instances(&view, "migrate");
    assert_eq!(migrate[0]["failed"], "exit status 7", "{view:#}");
    let table = kernel.lain_ok(&["ps", "-a", "jobs"]);
    assert!(
        table.contains("failed (exit status 7)") && table.contains("last error: "),
        "{table}"
    );
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    assert!(
        apps[0]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exit status 7")),
        "{apps:#}"
    );

    // A fixed release deploys; the failure is gone.
    edit_app(&dir, |y| {
        y.replace(
            r#"sh -c "echo preparing the schema; echo cannot reach the database >&2; exit 7""#,
            r#"sh -c "echo migrated""#,
        )
    });
    let v2 = build(&kernel, &dir);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "jobs", "--timeout", "60", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    assert_eq!(view["app"]["last_error"], Value::Null, "{view:#}");
    let migrate = instances(&view, "migrate");
    assert_eq!(
        (
            migrate.len(),
            &migrate[0]["release"],
            &migrate[0]["state"]["code"]
        ),
        (1, &Value::from(v2.as_str()), &Value::from(0)),
        "{view:#}"
    );

    // A release whose job fails goes back to the one before, as a failed rollout does.
    edit_app(&dir, |y| {
        y.replace(
            r#"sh -c "echo migrated""#,
            r#"sh -c "echo bad data; exit 4""#,
        )
    });
    let v3 = build(&kernel, &dir);
    let err = kernel.lain_err(&["deploy", "-a", "jobs", "--timeout", "60"]);
    for part in [
        format!("rollout of release {v3} failed and was rolled back to {v2}"),
        "exit status 4".into(),
        "bad data".into(),
    ] {
        assert!(err.contains(&part), "`{part}` missing from: {err}");
    }
    let view = kernel.wait_for("jobs", "the rollback", |v| v["converged"] == true);
    assert_eq!(view["release"], v2.as_str(), "{view:#}");
}

#[test]
fn deploy_waits_for_a_run_to_complete_and_says_so() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let dir = jobs_app(tmp.path(), r#"sh -c "sleep 3; echo done""#);
    build(&kernel, &dir);
    let started = Instant::now();
    let out = kernel.lain(&["deploy", "-a", "jobs", "--timeout", "60"]);
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(took >= Duration::from_secs(3), "returned after {took:?}");
    assert!(
        stderr.contains("oneshot.migrate: running, waiting for it to complete"),
        "{stderr}"
    );
    let view = kernel.ps("jobs");
    let migrate = instances(&view, "migrate");
    assert_eq!(
        (&migrate[0]["state"]["state"], &migrate[0]["state"]["code"]),
        (&Value::from("exited"), &Value::from(0)),
        "{view:#}"
    );
    assert!(
        kernel
            .lain_ok(&["logs", "migrate", "-a", "jobs"])
            .contains("done"),
        "the job ran to its end"
    );
}

/// The plan stamp of proc `name` in the deployment of `view`.
fn plan_stamp(view: &Value, name: &str) -> String {
    view["app"]["deployed"]["procs"]
        .as_array()
        .expect("procs")
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["plan_stamp"].as_str())
        .unwrap_or_else(|| panic!("no plan stamp of {name}: {view:#}"))
        .to_string()
}

#[test]
fn a_plugin_upgrade_rolls_out_to_the_procs_whose_plan_changed_on_the_next_deploy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    let out = kernel.lain_ok(&["plugin", "install", fixtures::RUNS_BATCH]);
    assert!(out.contains("installed runs-batch"), "{out}");
    let dir = write_app(
        tmp.path(),
        "stamped",
        "appname: stamped\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\nbatch.report:\n  cmd: sh -c 'echo stamp=$BATCH_STAMP'\n",
    );
    let v1 = build(&kernel, &dir);
    let before = json(&kernel.lain_ok(&["deploy", "-a", "stamped", "-o", "json"]));
    assert_eq!(before["converged"], true, "{before:#}");
    let logs = kernel.lain_ok(&["logs", "report", "-a", "stamped"]);
    assert!(logs.contains("stamp=one"), "{logs}");

    // The same release again, nothing changed: nothing is replaced.
    let again = json(&kernel.lain_ok(&["deploy", "-a", "stamped", "--release", &v1, "-o", "json"]));
    let names = |v: &Value| -> Vec<String> {
        v["instances"]
            .as_array()
            .expect("instances")
            .iter()
            .map(|i| i["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&before), names(&again));

    // The plugin renders another env: the next deploy of the same release replaces the batch
    // instance, and only it.
    let upgraded = tmp.path().join("runs-batch-2.wasm");
    std::fs::copy(fixtures::RUNS_BATCH, &upgraded).expect("copy");
    std::fs::write(
        upgraded.with_extension("toml"),
        "name = \"runs-batch\"\nversion = \"0.2.0\"\nkind = \"proc-type\"\ndescription = \"second cut\"\n\n[config]\nstamp = \"two\"\n",
    )
    .expect("manifest");
    kernel.lain_ok(&[
        "plugin",
        "upgrade",
        "runs-batch",
        upgraded.to_str().expect("utf-8"),
    ]);
    let after = json(&kernel.lain_ok(&["deploy", "-a", "stamped", "--release", &v1, "-o", "json"]));
    let after = if after["instances"].as_array().map(Vec::len) == Some(2) {
        after
    } else {
        kernel.wait_for("stamped", "the old batch instance to go", |v| {
            v["instances"].as_array().map(Vec::len) == Some(2)
        })
    };
    assert_eq!(after["converged"], true, "{after:#}");
    assert_ne!(plan_stamp(&before, "report"), plan_stamp(&after, "report"));
    assert_eq!(plan_stamp(&before, "worker"), plan_stamp(&after, "worker"));
    let (old_report, new_report) = (
        instances(&before, "report")[0],
        instances(&after, "report")[0],
    );
    assert_ne!(old_report["name"], new_report["name"], "{after:#}");
    assert!(
        new_report["name"]
            .as_str()
            .is_some_and(|n| n.contains(&format!(".p{}.", plan_stamp(&after, "report")))),
        "{after:#}"
    );
    assert_eq!(new_report["state"]["code"], 0, "{after:#}");
    assert_eq!(
        instances(&before, "worker")[0]["state"]["pid"],
        instances(&after, "worker")[0]["state"]["pid"],
        "the worker's plan did not change: it kept running"
    );
    let logs = kernel.lain_ok(&["logs", "report", "-a", "stamped"]);
    assert!(logs.contains("stamp=two"), "{logs}");
}

#[test]
fn a_retried_run_sees_its_attempt_keeps_its_count_across_kill_dash_nine_and_its_plan_labels_and_volumes()
 {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    kernel.lain_ok(&["plugin", "install", fixtures::RUNS_BATCH]);
    // Fails on attempts 1 to 3 and succeeds on the 4th: no loop, the kernel runs it again.
    let dir = write_app(
        tmp.path(),
        "retry",
        "appname: retry\nbuild:\n  base: busybox\n  script: []\nbatch.flaky:\n  cmd: sh -c 'echo attempt $LAIN_ATTEMPT; echo $LAIN_ATTEMPT >> /lain/batch/attempts; sleep 1; test $LAIN_ATTEMPT -ge 4'\n  retries: 5\n",
    );
    build(&kernel, &dir);
    kernel.lain_ok(&["deploy", "-a", "retry", "--no-wait"]);
    kernel.wait_for("retry", "a second attempt", |v| {
        instances(v, "flaky")
            .first()
            .is_some_and(|i| i["attempt"].as_u64() >= Some(2))
    });
    kernel.kill9();
    kernel.restart();
    let view = kernel.wait_for("retry", "the run to succeed", |v| v["converged"] == true);
    let flaky = instances(&view, "flaky")[0];
    assert_eq!(
        (
            &flaky["attempt"],
            &flaky["restarts"],
            &flaky["state"]["code"]
        ),
        (&Value::from(4), &Value::from(3), &Value::from(0)),
        "{view:#}"
    );
    assert_eq!(flaky["labels"]["batch.kind"], "retrying", "{view:#}");
    assert!(
        flaky["labels"]
            .as_object()
            .is_some_and(|l| l.keys().all(|k| !k.starts_with("lain."))),
        "{view:#}"
    );
    let logs = kernel.lain_ok(&["logs", "flaky", "-a", "retry"]);
    for n in 1..=4 {
        assert_eq!(
            logs.matches(&format!("attempt {n}\n")).count(),
            1,
            "attempt {n} ran once: {logs}"
        );
    }
    // The plan's volume is the instance's, kept across its runs.
    let attempts = std::fs::read_to_string(data.join("volumes/retry/flaky/1/lain/batch/attempts"))
        .expect("the plan's volume");
    assert_eq!(attempts, "1\n2\n3\n4\n");
}

#[test]
fn a_run_out_of_restarts_is_failed_not_run_again_and_fails_the_deploy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(&tmp.path().join("data"), "");
    kernel.lain_ok(&["plugin", "install", fixtures::RUNS_BATCH]);
    let dir = write_app(
        tmp.path(),
        "doomed",
        "appname: doomed\nbuild:\n  base: busybox\n  script: []\nbatch.job:\n  cmd: sh -c 'echo attempt $LAIN_ATTEMPT; exit 1'\n  retries: 2\n",
    );
    build(&kernel, &dir);
    let err = kernel.lain_err(&["deploy", "-a", "doomed", "--timeout", "60"]);
    for part in [
        "batch.job instance 1 failed after 2 restarts: exit status 1",
        "attempt 3",
    ] {
        assert!(err.contains(part), "`{part}` missing from: {err}");
    }
    std::thread::sleep(Duration::from_secs(3));
    let view = kernel.ps("doomed");
    let job = instances(&view, "job")[0];
    assert_eq!(
        (&job["failed"], &job["attempt"], &job["restarts"]),
        (
            &Value::from("after 2 restarts: exit status 1"),
            &Value::from(3),
            &Value::from(2)
        ),
        "{view:#}"
    );
    assert!(
        view["app"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("failed after 2 restarts: exit status 1")),
        "{view:#}"
    );
    let table = kernel.lain_ok(&["ps", "-a", "doomed"]);
    assert!(
        table.contains("failed (after 2 restarts: exit status 1)"),
        "{table}"
    );
    let logs = kernel.lain_ok(&["logs", "job", "-a", "doomed"]);
    assert!(!logs.contains("attempt 4"), "never run again: {logs}");
}

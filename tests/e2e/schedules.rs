//! End-to-end: scheduled procs through the real `lain` binary and the process runtime. The
//! template plugin's `cron` type is installed, an app with a job every 2 s is deployed, and its
//! runs are observed with `lain runs` (history, exit statuses, logs), `forbid` skipping ticks
//! while a slow run runs, and a kill -9 of the kernel keeping the history and recording the
//! ticks missed meanwhile.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use std::time::Duration;
use support::{KernelProcess, json, until};

const APP: &str = "appname: ticker
build:
  base: busybox
  script: []
cron.tick:
  cmd: sh /lain/app/job.sh
  schedule: \"@every 2s\"
  timezone: Europe/Paris
cron.slow:
  cmd: sleep 5
  schedule: \"@every 2s\"
  concurrency: forbid
";

/// Prints its run and tick; run 3 fails with status 5.
const JOB: &str = "echo \"tick $LAIN_RUN_ID at $LAIN_SCHEDULED_AT\"
if [ \"$LAIN_RUN_ID\" = 3 ]; then echo failing >&2; exit 5; fi
";

fn runs(kernel: &KernelProcess, proc: &str) -> Vec<Value> {
    let list = json(&kernel.lain_ok(&["runs", "-a", "ticker", "-p", proc, "-o", "json"]));
    list.as_array().expect("a list").clone()
}

fn outcome(run: &Value) -> &str {
    run["outcome"].as_str().unwrap_or_default()
}

#[test]
fn a_cron_proc_runs_per_tick_keeps_its_history_and_survives_a_kill_dash_nine() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    kernel.lain_ok(&["plugin", "install", fixtures::TEMPLATE]);
    let app = support::write_app(tmp.path(), "ticker", APP);
    std::fs::write(app.join("job.sh"), JOB).expect("job.sh");
    kernel.lain_ok(&["build", app.to_str().expect("utf-8")]);

    // Deploy does not wait for a run: a scheduled proc has no instance between runs.
    let view = json(&kernel.lain_ok(&["deploy", "-a", "ticker", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");

    // Several runs, each with its id, tick, exit status and log; run 3 failed.
    let done = until("four finished runs of tick", || {
        let list = runs(&kernel, "tick");
        (list.iter().filter(|r| outcome(r) != "running").count() >= 4).then_some(list)
    });
    let by_id = |id: u64| {
        done.iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no run {id}: {done:#?}"))
    };
    for id in [1, 2, 4] {
        let r = by_id(id);
        assert_eq!(
            (outcome(r), r["exit_code"].as_i64()),
            ("succeeded", Some(0)),
            "{r:#}"
        );
        assert_eq!(r["attempts"], 1, "{r:#}");
        assert!(r["started_at"].as_i64() <= r["ended_at"].as_i64(), "{r:#}");
        let log = kernel.lain_ok(&[
            "runs",
            "-a",
            "ticker",
            "-p",
            "tick",
            "--log",
            &id.to_string(),
        ]);
        assert!(log.contains(&format!("tick {id} at 20")), "{log}");
        assert!(
            log.trim_end().ends_with('Z'),
            "LAIN_SCHEDULED_AT is RFC 3339 UTC: {log}"
        );
    }
    let failed = by_id(3);
    assert_eq!(
        (outcome(failed), failed["exit_code"].as_i64()),
        ("failed", Some(5)),
        "{failed:#}"
    );
    let log = kernel.lain_ok(&["runs", "-a", "ticker", "-p", "tick", "--log", "3"]);
    assert!(log.contains("failing"), "{log}");
    let err = kernel.lain_err(&["runs", "-a", "ticker", "-p", "tick", "--log", "999999"]);
    assert!(err.contains("no run 999999"), "{err}");
    let table = kernel.lain_ok(&["runs", "-a", "ticker"]);
    assert!(
        table.contains("OUTCOME") && table.contains("failed"),
        "{table}"
    );
    let ps = kernel.lain_ok(&["ps", "-a", "ticker"]);
    assert!(
        ps.contains("tick scheduled `@every 2s` (Europe/Paris): next tick"),
        "{ps}"
    );

    // forbid: ticks that fall while the 5 s run runs are skipped, and the run still succeeds.
    let slow = until("a skipped tick and a finished slow run", || {
        let list = runs(&kernel, "slow");
        let skipped = list.iter().any(|r| outcome(r) == "skipped");
        let succeeded = list.iter().any(|r| outcome(r) == "succeeded");
        (skipped && succeeded).then_some(list)
    });
    let skipped = slow
        .iter()
        .find(|r| outcome(r) == "skipped")
        .expect("skipped");
    assert!(
        skipped["note"]
            .as_str()
            .unwrap_or("")
            .contains("still running"),
        "{skipped:#}"
    );
    assert!(
        skipped["log"].is_null(),
        "a skipped tick started nothing: {skipped:#}"
    );

    // kill -9 while a slow run runs; the kernel stays down for several ticks.
    let running = until("a slow run running", || {
        runs(&kernel, "slow")
            .into_iter()
            .find(|r| outcome(r) == "running" && r["started_at"].is_i64())
    });
    let before = runs(&kernel, "tick");
    kernel.kill9();
    std::thread::sleep(Duration::from_secs(5));
    kernel.restart();

    let after = until("the missed ticks recorded", || {
        let list = runs(&kernel, "tick");
        list.iter().any(|r| outcome(r) == "missed").then_some(list)
    });
    for old in before.iter().filter(|r| outcome(r) != "running") {
        let same = after.iter().find(|r| r["id"] == old["id"]);
        assert_eq!(same, Some(old), "history kept across kill -9: {after:#?}");
    }
    let missed = after
        .iter()
        .find(|r| outcome(r) == "missed")
        .expect("missed");
    assert!(missed["missed"].as_u64() >= Some(2), "{missed:#}");
    assert!(
        missed["note"]
            .as_str()
            .unwrap_or("")
            .contains("while the kernel was down"),
        "{missed:#}"
    );
    // The slow run that ran through the crash is adopted and its end recorded, once.
    let id = running["id"].clone();
    let ended = until("the adopted slow run recorded", || {
        runs(&kernel, "slow")
            .into_iter()
            .find(|r| r["id"] == id && outcome(r) != "running")
    });
    assert_eq!(outcome(&ended), "succeeded", "{ended:#}");
    assert_eq!(
        ended["started_at"], running["started_at"],
        "the same instance, not a new one"
    );
    // Ticking goes on after the restart.
    let last = after
        .iter()
        .map(|r| r["id"].as_u64().unwrap_or(0))
        .max()
        .unwrap_or(0);
    until("a run after the restart", || {
        runs(&kernel, "tick")
            .into_iter()
            .find(|r| r["id"].as_u64() > Some(last) && outcome(r) == "succeeded")
    });
}

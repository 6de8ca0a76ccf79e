use super::ticker::Ticker;
use super::*;
use crate::lifecycle::reconcile::context::Settings;
use crate::lifecycle::reconcile::desired::Desired;
use crate::lifecycle::reconcile::identity::{Instance, InstanceKey};
use crate::lifecycle::records::ProcPlan;
use crate::runtime::{Observed, RunState};
use crate::store::embedded::EmbeddedStore;
use std::collections::BTreeMap;
use std::time::Duration;

struct World {
    _dir: tempfile::TempDir,
    store: EmbeddedStore,
    settings: Settings,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("state.redb")).expect("store");
    let settings = Settings {
        drain: Duration::ZERO,
        rollout_timeout: Duration::from_secs(60),
        logs: dir.path().join("logs"),
        volumes: dir.path().join("volumes"),
        cloud_volumes: dir.path().join("cloud-volumes"),
        local_engine: String::new(),
        parallel_starts: 4,
    };
    World {
        _dir: dir,
        store,
        settings,
    }
}

/// A scheduled proc `tick` of app `a` (`@every 10s`) under `concurrency` and `missed`, restart
/// policy `restart` with `max` restarts.
fn desired(
    concurrency: &str,
    missed: &str,
    restart: &str,
    max: Option<u32>,
    history: u32,
) -> BTreeMap<String, Desired> {
    let plan: ProcPlan = serde_json::from_value(serde_json::json!({
        "name": "tick", "full_name": "a.cron.tick", "proc_type": "cron", "num_instances": 1,
        "filters": [], "labels": [], "stateful": false, "env": [],
        "plan": {
            "image": "", "entrypoint": null, "cmd": null, "env": [], "user": null, "workdir": null,
            "ports": [], "cpu": 0, "memory": 33554432, "health": null,
            "restart": {"policy": variant(restart), "max_restarts": max, "backoff_initial": 0, "backoff_max": 0},
            "schedule": {"cron": "@every 10s", "timezone": "UTC", "concurrency": variant(concurrency),
                         "missed": variant(missed), "history": history},
            "placement": "Spread", "routes": [], "portal": null, "labels": [], "volumes": [],
            "kill_timeout": 10, "setup_time": 0
        }
    }))
    .expect("plan");
    let d = Desired {
        app: "a".into(),
        release: "r1".into(),
        image: String::new(),
        plan,
        grants: Vec::new(),
        runs: None,
        deployed_at: 0,
        restarts: Default::default(),
    };
    BTreeMap::from([("a.cron.tick".to_string(), d)])
}

/// The stored name of a WIT enum case (`on-failure` -> `OnFailure`).
fn variant(case: &str) -> String {
    case.split('-')
        .map(|w| w[..1].to_uppercase() + &w[1..])
        .collect()
}

fn instance(no: u32, state: RunState) -> Instance {
    let key = InstanceKey {
        app: "a".into(),
        proc: "a.cron.tick".into(),
        number: Some(no),
        release: "r1".into(),
        node: "local".into(),
        secrets: String::new(),
        plan: String::new(),
        attempt: 1,
        restart: 0,
    };
    Instance::new(Observed {
        name: key.name(),
        labels: key.labels("k"),
        state,
        host_ports: Vec::new(),
        memory: 0,
        cpu: 0,
        health: None,
        networks: Vec::new(),
    })
}

fn exited(code: i32) -> RunState {
    RunState::Exited {
        code: Some(code),
        signal: None,
        finished_at: None,
    }
}

impl World {
    fn pass(
        &self,
        t: &mut Ticker,
        d: &mut BTreeMap<String, Desired>,
        seen: &[Instance],
        restarts: u32,
        now: i64,
    ) -> Vec<u32> {
        let ticked = t.pass(&self.store, &self.settings, d, seen, &|_| restarts, now);
        assert!(ticked.problems.is_empty(), "{:?}", ticked.problems);
        d["a.cron.tick"]
            .runs
            .as_ref()
            .expect("runs")
            .keys()
            .copied()
            .collect()
    }

    fn runs(&self) -> Vec<(u32, Outcome)> {
        list_runs(&self.store, "a", "tick")
            .expect("runs")
            .into_iter()
            .map(|r| (r.id, r.outcome))
            .collect()
    }
}

#[test]
fn a_tick_starts_a_run_whose_exit_is_recorded_and_forbid_skips_while_it_runs() {
    let w = world();
    let mut t = Ticker::new(1000);
    let mut d = desired("forbid", "skip", "never", None, 0);
    assert_eq!(
        w.pass(&mut t, &mut d, &[], 0, 1001),
        Vec::<u32>::new(),
        "no run before a tick"
    );
    assert_eq!(w.pass(&mut t, &mut d, &[], 0, 1010), [1]);
    assert_eq!(d["a.cron.tick"].runs.as_ref().unwrap()[&1], 1010);
    let running = instance(
        1,
        RunState::Running {
            pid: None,
            started_at: 1011,
        },
    );
    assert_eq!(w.pass(&mut t, &mut d, &[running], 0, 1020), [1]);
    assert_eq!(w.runs(), [(1, Outcome::Running), (2, Outcome::Skipped)]);
    assert_eq!(
        w.pass(&mut t, &mut d, &[instance(1, exited(0))], 0, 1025),
        Vec::<u32>::new()
    );
    assert_eq!(w.pass(&mut t, &mut d, &[], 0, 1030), [3]);
    assert_eq!(
        w.pass(&mut t, &mut d, &[instance(3, exited(7))], 0, 1031),
        Vec::<u32>::new()
    );
    let runs = list_runs(&w.store, "a", "tick").unwrap();
    assert_eq!(
        (runs[0].outcome, runs[0].started_at, runs[0].exit_code),
        (Outcome::Succeeded, Some(1011), Some(0))
    );
    assert_eq!(
        (runs[2].outcome, runs[2].exit_code, runs[2].attempts),
        (Outcome::Failed, Some(7), 1)
    );
    assert!(
        runs[2]
            .log
            .as_deref()
            .is_some_and(|l| l.ends_with("a/tick/3.log"))
    );
}

#[test]
fn a_failed_attempt_is_retried_within_the_run_up_to_the_limit() {
    let w = world();
    let mut t = Ticker::new(1000);
    let mut d = desired("forbid", "skip", "on-failure", Some(2), 0);
    w.pass(&mut t, &mut d, &[], 0, 1001);
    assert_eq!(w.pass(&mut t, &mut d, &[], 0, 1010), [1]);
    assert_eq!(
        w.pass(&mut t, &mut d, &[instance(1, exited(1))], 1, 1012),
        [1],
        "a restart left"
    );
    assert_eq!(
        w.pass(&mut t, &mut d, &[instance(1, exited(1))], 2, 1014),
        Vec::<u32>::new()
    );
    let run = &list_runs(&w.store, "a", "tick").unwrap()[0];
    assert_eq!((run.outcome, run.attempts), (Outcome::Failed, 3));
}

#[test]
fn allow_runs_beside_and_replace_stops_the_running_one() {
    let w = world();
    let mut t = Ticker::new(1000);
    let mut d = desired("allow", "skip", "never", None, 0);
    w.pass(&mut t, &mut d, &[], 0, 1001);
    w.pass(&mut t, &mut d, &[], 0, 1010);
    assert_eq!(w.pass(&mut t, &mut d, &[], 0, 1020), [1, 2]);
    let w = world();
    let mut t = Ticker::new(1000);
    let mut d = desired("replace", "skip", "never", None, 0);
    w.pass(&mut t, &mut d, &[], 0, 1001);
    w.pass(&mut t, &mut d, &[], 0, 1010);
    assert_eq!(w.pass(&mut t, &mut d, &[], 0, 1020), [2]);
    assert_eq!(w.runs(), [(1, Outcome::Replaced), (2, Outcome::Running)]);
}

#[test]
fn ticks_missed_while_the_kernel_was_down_are_one_entry_and_run_once_starts_one_run() {
    for (policy, want) in [
        ("skip", vec![(1, Outcome::Missed)]),
        (
            "run-once",
            vec![(1, Outcome::Missed), (2, Outcome::Running)],
        ),
    ] {
        let w = world();
        let mut first = Ticker::new(1000);
        let mut d = desired("forbid", policy, "never", None, 0);
        w.pass(&mut first, &mut d, &[], 0, 1001);
        // The kernel is down from 1002 to 1105: ticks 1010..=1100 fell meanwhile.
        let mut again = Ticker::new(1105);
        w.pass(&mut again, &mut d, &[], 0, 1106);
        assert_eq!(w.runs(), want, "{policy}");
        let missed = &list_runs(&w.store, "a", "tick").unwrap()[0];
        assert_eq!((missed.missed, missed.scheduled_at), (10, 1100), "{policy}");
        assert!(
            missed.note.contains("while the kernel was down"),
            "{}",
            missed.note
        );
        // The next pass does not count them again.
        w.pass(&mut again, &mut d, &[], 0, 1107);
        assert_eq!(w.runs().len(), want.len());
    }
}

#[test]
fn a_run_in_the_store_is_adopted_by_a_new_kernel_and_its_end_recorded() {
    let w = world();
    let mut d = desired("forbid", "skip", "never", None, 0);
    let mut first = Ticker::new(1000);
    w.pass(&mut first, &mut d, &[], 0, 1001);
    assert_eq!(w.pass(&mut first, &mut d, &[], 0, 1010), [1]);
    let mut again = Ticker::new(1012);
    let running = instance(
        1,
        RunState::Running {
            pid: None,
            started_at: 1010,
        },
    );
    assert_eq!(
        w.pass(&mut again, &mut d, &[running], 0, 1013),
        [1],
        "adopted, not a new run"
    );
    assert_eq!(
        w.pass(&mut again, &mut d, &[instance(1, exited(0))], 0, 1014),
        Vec::<u32>::new()
    );
    assert_eq!(w.runs(), [(1, Outcome::Succeeded)]);
}

#[test]
fn the_history_keeps_the_last_runs_and_deletes_older_logs() {
    let w = world();
    let mut t = Ticker::new(1000);
    let mut d = desired("forbid", "skip", "never", None, 2);
    w.pass(&mut t, &mut d, &[], 0, 1001);
    let dir = w.settings.logs.join("a").join("tick");
    std::fs::create_dir_all(&dir).unwrap();
    for (k, now) in [1010, 1020, 1030].into_iter().enumerate() {
        let id = k as u32 + 1;
        assert_eq!(w.pass(&mut t, &mut d, &[], 0, now), [id]);
        std::fs::write(dir.join(format!("{id}.log")), "out\n").unwrap();
        w.pass(&mut t, &mut d, &[instance(id, exited(0))], 0, now + 1);
    }
    assert_eq!(w.runs(), [(2, Outcome::Succeeded), (3, Outcome::Succeeded)]);
    assert!(
        !dir.join("1.log").exists(),
        "the dropped run's log is deleted"
    );
    assert!(dir.join("2.log").exists());
}

#[test]
fn a_run_gets_its_id_and_tick_in_rfc3339() {
    let env = run_env(7, 1_800_000_000);
    assert_eq!(env[0], ("LAIN_RUN_ID".into(), "7".into()));
    assert_eq!(
        env[1],
        ("LAIN_SCHEDULED_AT".into(), "2027-01-15T08:00:00Z".into())
    );
}

//! The reconciler's health checks of instances (for runtimes that do not check themselves) and
//! what makes an instance ready. HTTP checks go through the probe the router uses too
//! ([`HttpProbe`]); command checks run inside the instance through the runtime.

use super::desired::Desired;
use super::identity::Instance;
use crate::plugin::bindings::types::Probe;
use crate::runtime::probe::HttpProbe;
use crate::runtime::{Health, RunState, Runtime};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Without a health check, an instance counts as ready once this reconciler has seen it running
/// for this long (or `setup_time`, if longer), measured on the monotonic clock: a command that
/// exits at once must not pass for a ready instance and retire the old release's during a
/// rollout (the flake fixed in 6aa7ad9, where a whole-second clock made 0 s of running count).
pub const MIN_UP: Duration = Duration::from_millis(300);

/// The same rule for an instance this reconciler has not watched start (one adopted after a
/// kernel restart): its start time is in whole seconds, so 2 means at least one real second.
const MIN_UP_SECS: i64 = 2;

/// How often an instance not (yet) healthy is checked, whatever its check's interval.
const UNHEALTHY_EVERY: Duration = Duration::from_secs(1);

/// Checks due this much later than now start in the same pass, so the checks of many instances
/// fall into few passes (at most a quarter of their period early).
const GATHER: Duration = Duration::from_secs(1);

/// One instance's checks so far.
#[derive(Default)]
struct Probing {
    /// When this reconciler first saw the instance running (it is forgotten when it is not).
    up_since: Option<Instant>,
    health: Option<Health>,
    failures: u32,
    last: Option<Instant>,
    in_flight: bool,
    /// Its check's interval (while healthy).
    interval: Duration,
}

impl Probing {
    /// Time between two checks: the check's interval while healthy, else a second.
    fn every(&self) -> Duration {
        if self.health == Some(Health::Healthy) {
            self.interval
        } else {
            UNHEALTHY_EVERY
        }
    }

    /// When the next check is due, if one ran.
    fn next_check(&self) -> Option<Instant> {
        Some(self.last? + self.every())
    }
}

/// How much earlier than due a check of period `every` may start (see [`GATHER`]).
fn gather(every: Duration) -> Duration {
    (every / 4).min(GATHER)
}

/// Health checks by instance name, updated by background checks.
#[derive(Clone)]
pub struct Prober {
    state: Arc<Mutex<HashMap<String, Probing>>>,
    http: HttpProbe,
}

impl Default for Prober {
    fn default() -> Self {
        Prober {
            state: Arc::default(),
            http: HttpProbe::new("lain-health-check"),
        }
    }
}

impl Prober {
    /// Starts the checks that are due, for running instances of desired procs with a health
    /// check the runtime does not run itself; forgets instances that are gone or not running.
    /// A check that changes an instance's health, or that ends when the next one is due already,
    /// notifies `wake`.
    pub fn start_due(
        &self,
        runtime: &Arc<dyn Runtime>,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
        wake: &Arc<tokio::sync::Notify>,
    ) {
        self.track(desired, instances);
        let now = crate::clock::unix_secs();
        let mut probes = self.state.lock();
        for i in instances {
            let o = &i.seen;
            let (Some(d), RunState::Running { started_at, .. }) =
                (desired.get(&i.key.proc), &o.state)
            else {
                continue;
            };
            let check = d.plan.plan.health.clone().filter(|_| o.health.is_none());
            let Some(check) = check else {
                // No check, or the runtime checks it itself (Docker's HEALTHCHECK): no check of
                // the kernel's is due (one of an earlier deployment may have run).
                if let Some(p) = probes.get_mut(&o.name) {
                    p.last = None;
                }
                continue;
            };
            let p = probes.entry(o.name.clone()).or_default();
            p.interval = Duration::from_secs(u64::from(check.interval.max(1)));
            let early = gather(p.every());
            if p.in_flight
                || p.next_check()
                    .is_some_and(|due| due > Instant::now() + early)
            {
                continue;
            }
            p.in_flight = true;
            p.last = Some(Instant::now());
            let in_start_period = now - started_at < i64::from(check.start_period);
            let (runtime, state, http, name, wake) = (
                runtime.clone(),
                self.state.clone(),
                self.http.clone(),
                o.name.clone(),
                wake.clone(),
            );
            let target = match &check.probe {
                Probe::Http(h) => {
                    // Port 0 is the main one; a number listed as TCP and UDP is its TCP one.
                    let idx = d.plan.plan.ports.iter().position(|p| {
                        p.number == h.port
                            && p.protocol == crate::plugin::bindings::types::Protocol::Tcp
                    });
                    o.host_ports.get(idx.unwrap_or(0)).map(|port| {
                        (
                            format!("{}:{port}", runtime.host_address(&i.key.node)),
                            h.path.clone(),
                        )
                    })
                }
                Probe::Command(_) => None,
            };
            tokio::spawn(async move {
                let timeout = Duration::from_secs(u64::from(check.timeout.max(1)));
                let ok = match (&check.probe, target) {
                    (Probe::Http(_), Some((authority, path))) => {
                        http.alive(&authority, &path, timeout).await
                    }
                    (Probe::Http(_), None) => false,
                    (Probe::Command(cmd), _) => runtime
                        .exec_probe(&name, cmd, timeout)
                        .await
                        .unwrap_or(false),
                };
                let mut probes = state.lock();
                let Some(p) = probes.get_mut(&name) else {
                    return;
                };
                p.in_flight = false;
                let before = p.health;
                if ok {
                    p.failures = 0;
                    p.health = Some(Health::Healthy);
                } else if !in_start_period {
                    p.failures += 1;
                    if p.failures >= check.retries.max(1) {
                        p.health = Some(Health::Unhealthy);
                    }
                }
                // A pass that ran meanwhile did not count this check in its next due time.
                let overdue = p.next_check().is_some_and(|due| due <= Instant::now());
                if p.health != before || overdue {
                    wake.notify_one();
                }
            });
        }
    }

    /// Notes which instances of desired procs run since when ([`MIN_UP`]) and forgets the
    /// instances that are gone or not running (a restarted one starts its count again).
    pub fn track(&self, desired: &BTreeMap<String, Desired>, instances: &[Instance]) {
        let mut probes = self.state.lock();
        probes.retain(|name, _| instances.iter().any(|i| i.name() == name.as_str()));
        for i in instances {
            if desired.contains_key(&i.key.proc) && i.seen.state.is_running() {
                probes
                    .entry(i.seen.name.clone())
                    .or_default()
                    .up_since
                    .get_or_insert_with(Instant::now);
            } else {
                probes.remove(&i.seen.name);
            }
        }
    }

    /// The earliest moment an instance running without a health check becomes ready by
    /// [`MIN_UP`] / `setup_time`, if one is still waiting: the reconciler passes again then
    /// rather than on its next tick.
    pub fn next_ready_at(
        &self,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) -> Option<Instant> {
        let probes = self.state.lock();
        let now = Instant::now();
        instances
            .iter()
            .filter_map(|i| {
                let d = desired.get(&i.key.proc)?;
                if d.plan.plan.health.is_some() || d.plan.completes() {
                    return None;
                }
                let at = probes.get(i.name())?.up_since? + up_for(d);
                (at > now).then_some(at)
            })
            .min()
    }

    /// Counts the instances `views` says are healthy (what the previous leader published) as
    /// healthy until a check of this prober says otherwise; they are checked again at their
    /// interval, and forgotten as usual when they are gone or not running.
    pub fn seed<'a>(
        &self,
        views: impl IntoIterator<Item = &'a crate::lifecycle::view::InstanceView>,
    ) {
        let mut probes = self.state.lock();
        for v in views {
            if v.health == Health::Healthy && v.state.is_running() {
                probes.entry(v.name.clone()).or_default().health = Some(Health::Healthy);
            }
        }
    }

    /// When the next health check is due (gathered as [`GATHER`] says), if one is waiting; a
    /// check still in flight when its next one is due notifies the reconciler when it ends.
    pub fn next_check_at(&self) -> Option<Instant> {
        let now = Instant::now();
        self.state
            .lock()
            .values()
            .filter_map(|p| {
                let due = p.next_check()?;
                let at = if p.in_flight {
                    due
                } else {
                    due.checked_sub(gather(p.every())).unwrap_or(due)
                };
                (due > now).then_some(at)
            })
            .min()
    }

    /// What the checks found so far.
    pub fn results(&self) -> Results<'_> {
        Results(self.state.lock())
    }
}

/// How long an instance of `d` without a health check runs before it is ready.
fn up_for(d: &Desired) -> Duration {
    Duration::from_secs(u64::from(d.plan.plan.setup_time)).max(MIN_UP)
}

/// The checks' results, read under their lock.
pub struct Results<'a>(parking_lot::MutexGuard<'a, HashMap<String, Probing>>);

impl Results<'_> {
    /// The health of instance `i` of `d` as `lain ps` shows it.
    pub fn health(&self, i: &Instance, d: Option<&Desired>) -> Health {
        match (d.and_then(|d| d.plan.plan.health.as_ref()), i.seen.health) {
            (None, _) => Health::None,
            (Some(_), Some(runtime)) => runtime,
            (Some(_), None) => self
                .0
                .get(i.name())
                .and_then(|p| p.health)
                .unwrap_or(Health::Starting),
        }
    }

    /// Whether `i` serves as its instance number should: healthy, or running `setup_time`
    /// without a health check; for a run-to-completion proc, only an instance that exited 0 (one
    /// still running has not completed yet).
    pub fn ready(&self, i: &Instance, d: &Desired, now: i64) -> bool {
        match &i.seen.state {
            RunState::Running { .. } if d.plan.completes() => false,
            RunState::Running { started_at, .. } => match &d.plan.plan.health {
                None => {
                    self.0
                        .get(i.name())
                        .and_then(|p| p.up_since)
                        .is_some_and(|t| t.elapsed() >= up_for(d))
                        || now - started_at >= i64::from(d.plan.plan.setup_time).max(MIN_UP_SECS)
                }
                Some(_) => self.health(i, Some(d)) == Health::Healthy,
            },
            RunState::Exited { code, .. } => *code == Some(0) && !d.plan.restarts_after(*code),
            RunState::Created => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::reconcile::identity::InstanceKey;
    use crate::runtime::Observed;

    fn desired() -> Desired {
        let plan = serde_json::from_value(serde_json::json!({
            "name": "worker", "full_name": "a.worker.worker", "proc_type": "worker",
            "num_instances": 1, "filters": [], "labels": [], "stateful": false, "env": [],
            "plan_stamp": "",
            "plan": {
                "image": "", "entrypoint": null, "cmd": ["sleep", "1"], "user": null, "workdir": null,
                "env": [], "ports": [], "cpu": 0, "memory": 33554432, "health": null,
                "restart": {"policy": "Always", "max_restarts": 0, "backoff_initial": 0, "backoff_max": 0},
                "schedule": null, "placement": "Spread", "routes": [], "portal": null, "labels": [],
                "volumes": [], "kill_timeout": 10, "setup_time": 0
            }
        }))
        .expect("plan");
        Desired {
            app: "a".into(),
            release: "r".into(),
            deployed_at: 0,
            image: String::new(),
            plan,
            grants: Vec::new(),
            runs: None,
            restarts: Default::default(),
        }
    }

    fn instance(state: RunState) -> Instance {
        let key = InstanceKey {
            app: "a".into(),
            proc: "a.worker.worker".into(),
            number: Some(1),
            release: "r".into(),
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

    #[test]
    fn without_a_health_check_ready_after_min_up_seen_running_not_before() {
        let desired: BTreeMap<String, Desired> =
            [("a.worker.worker".to_string(), desired())].into();
        let d = &desired["a.worker.worker"];
        let now = crate::clock::unix_secs();
        let running = [instance(RunState::Running {
            pid: None,
            started_at: now,
        })];
        let prober = Prober::default();
        prober.track(&desired, &running);
        assert!(
            !prober.results().ready(&running[0], d, now),
            "ready at once"
        );
        let due = prober
            .next_ready_at(&desired, &running)
            .expect("a pass is due");
        assert!(due <= Instant::now() + MIN_UP, "{due:?}");
        std::thread::sleep(MIN_UP + Duration::from_millis(20));
        prober.track(&desired, &running);
        // Well under the two whole seconds of the rule it replaces.
        assert!(
            prober.results().ready(&running[0], d, now),
            "not ready after {MIN_UP:?}"
        );
        assert_eq!(prober.next_ready_at(&desired, &running), None);
        // An instance seen exited starts its count again when it runs again: a command that
        // exits at once never adds up to MIN_UP.
        let exited = [instance(RunState::Exited {
            code: Some(3),
            signal: None,
            finished_at: Some(now),
        })];
        prober.track(&desired, &exited);
        prober.track(&desired, &running);
        assert!(!prober.results().ready(&running[0], d, now));
    }
}

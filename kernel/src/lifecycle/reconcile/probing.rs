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

/// Without a health check, an instance counts as ready only after it has run this long
/// (whole seconds, so at least one real second): a command that exits at once must not pass for
/// a ready instance and retire the old release's during a rollout.
const MIN_UP_SECS: i64 = 2;

/// One instance's checks so far.
#[derive(Default)]
struct Probing {
    health: Option<Health>,
    failures: u32,
    last: Option<Instant>,
    in_flight: bool,
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
    pub fn start_due(
        &self,
        runtime: &Arc<dyn Runtime>,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) {
        let now = crate::clock::unix_secs();
        let mut probes = self.state.lock();
        probes.retain(|name, _| instances.iter().any(|i| i.name() == name.as_str()));
        for i in instances {
            let o = &i.seen;
            let (Some(d), RunState::Running { started_at, .. }) =
                (desired.get(&i.key.proc), &o.state)
            else {
                probes.remove(&o.name);
                continue;
            };
            let Some(check) = d.plan.plan.health.clone() else {
                continue;
            };
            if o.health.is_some() {
                // The runtime checks it itself (Docker's HEALTHCHECK).
                continue;
            }
            let p = probes.entry(o.name.clone()).or_default();
            let every = if p.health == Some(Health::Healthy) {
                Duration::from_secs(u64::from(check.interval.max(1)))
            } else {
                Duration::from_secs(1)
            };
            if p.in_flight || p.last.is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            p.in_flight = true;
            p.last = Some(Instant::now());
            let in_start_period = now - started_at < i64::from(check.start_period);
            let (runtime, state, http, name) = (
                runtime.clone(),
                self.state.clone(),
                self.http.clone(),
                o.name.clone(),
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
                if ok {
                    p.failures = 0;
                    p.health = Some(Health::Healthy);
                } else if !in_start_period {
                    p.failures += 1;
                    if p.failures >= check.retries.max(1) {
                        p.health = Some(Health::Unhealthy);
                    }
                }
            });
        }
    }

    /// What the checks found so far.
    pub fn results(&self) -> Results<'_> {
        Results(self.state.lock())
    }
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
                None => now - started_at >= i64::from(d.plan.plan.setup_time).max(MIN_UP_SECS),
                Some(_) => self.health(i, Some(d)) == Health::Healthy,
            },
            RunState::Exited { code, .. } => *code == Some(0) && !d.plan.restarts_after(*code),
            RunState::Created => false,
        }
    }
}

//! What a pass publishes: the instances by app, as `lain ps` and the router see them, and the
//! problems that keep procs from converging (the board and the store are written by the
//! reconciler, see [`crate::lifecycle::published`]).

use super::backoff::{Backoff, failed_run};
use super::context::Context;
use super::desired::Desired;
use super::identity::Instance;
use super::probing::Results;
use crate::lifecycle::view::{AppStatus, InstanceView, app_of};
use crate::plugin::bindings::types::Protocol;
use crate::runtime::RunState;
use std::collections::{BTreeMap, HashSet};

/// Why procs cannot converge: one problem for every proc (the scheduler cannot be built), and
/// problems of single procs (by full name), which take precedence.
#[derive(Default)]
pub struct Problems {
    /// A problem every proc shares.
    pub all: Option<String>,
    /// Problems by proc full name.
    pub by_proc: BTreeMap<String, String>,
}

impl Problems {
    /// Records a problem of proc `full`.
    pub fn proc(&mut self, full: &str, problem: String) {
        self.by_proc.insert(full.to_string(), problem);
    }

    /// The problem of every desired proc that has one.
    fn resolve(&self, desired: &BTreeMap<String, Desired>) -> BTreeMap<String, String> {
        let mut out = self.by_proc.clone();
        if let Some(all) = &self.all {
            for full in desired.keys() {
                out.entry(full.clone()).or_insert_with(|| all.clone());
            }
        }
        out
    }
}

/// What a pass publishes from.
pub struct Seen<'a> {
    /// Procs that should run.
    pub desired: &'a BTreeMap<String, Desired>,
    /// Instances the runtime lists.
    pub instances: &'a [Instance],
    /// Instances being retired.
    pub retiring: &'a HashSet<String>,
    /// Health checks so far.
    pub checks: &'a Results<'a>,
    /// Restart histories.
    pub backoff: &'a Backoff,
    /// Problems found.
    pub problems: &'a Problems,
    /// Instances wanted by proc full name where the placement mode decides it.
    pub wanted: &'a BTreeMap<String, u32>,
    /// What scheduled procs show, by proc full name.
    pub schedules: &'a BTreeMap<String, crate::lifecycle::runs::ScheduleView>,
}

/// What a pass saw, by app, for the API and the router (every app with instances, problems or
/// schedules).
pub fn statuses(ctx: &Context, seen: &Seen<'_>) -> BTreeMap<String, AppStatus> {
    let now = crate::clock::unix_secs();
    let mut by_app: BTreeMap<String, Vec<InstanceView>> = BTreeMap::new();
    for i in seen.instances {
        let (o, key) = (&i.seen, &i.key);
        let d = seen.desired.get(&key.proc);
        let restart_in = seen
            .backoff
            .wait(&o.name)
            .filter(|_| matches!(o.state, RunState::Exited { .. }));
        by_app
            .entry(key.app.clone())
            .or_default()
            .push(InstanceView {
                name: o.name.clone(),
                proc: d.map_or_else(|| key.proc_name().to_string(), |d| d.plan.name.clone()),
                instance: key.number.unwrap_or(0),
                release: key.release.clone(),
                plan_stamp: key.plan.clone(),
                secrets_stamp: key.secrets.clone(),
                restart: key.restart,
                node: key.node.clone(),
                state: o.state.clone(),
                health: seen.checks.health(i, d),
                ready: d.is_some_and(|d| seen.checks.ready(i, d, now)),
                // A proc without `port` has no main port: a stream destination is not one.
                url: o
                    .host_ports
                    .first()
                    .filter(|_| d.is_none_or(|d| !d.plan.plan.ports.is_empty()))
                    .map(|port| {
                        let scheme = match d.and_then(|d| d.plan.plan.ports.first()) {
                            Some(p) if p.protocol == Protocol::Udp => "udp",
                            _ => "http",
                        };
                        format!("{scheme}://{}:{port}", ctx.runtime.host_address(&key.node))
                    }),
                streams: d
                    .map(|d| streams(ctx, &key.node, d, &o.host_ports))
                    .unwrap_or_default(),
                memory: o.memory,
                restarts: key.attempt.saturating_sub(1),
                attempt: key.attempt,
                labels: o
                    .labels
                    .iter()
                    .filter(|(k, _)| !k.starts_with("lain."))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                restart_in,
                retiring: seen.retiring.contains(&o.name),
                failed: d.and_then(|d| failed_run(&d.plan, &o.state, key.attempt)),
            });
    }
    let mut apps: BTreeMap<String, AppStatus> = BTreeMap::new();
    for (app, mut list) in by_app {
        list.sort_by(|a, b| (&a.proc, a.instance, &a.name).cmp(&(&b.proc, b.instance, &b.name)));
        apps.entry(app).or_default().instances = list;
    }
    for (full, problem) in seen.problems.resolve(seen.desired) {
        if let Some(s) = of_proc(&mut apps, seen.desired, &full) {
            s.problems.insert(full, problem);
        }
    }
    for (full, n) in seen.wanted {
        if let Some(s) = of_proc(&mut apps, seen.desired, full) {
            s.wanted.insert(full.clone(), *n);
        }
    }
    for (full, view) in seen.schedules {
        if let Some(s) = of_proc(&mut apps, seen.desired, full) {
            s.schedules.insert(full.clone(), view.clone());
        }
    }
    apps
}

/// The status of the app proc `full` belongs to (created if needed).
fn of_proc<'a>(
    apps: &'a mut BTreeMap<String, AppStatus>,
    desired: &BTreeMap<String, Desired>,
    full: &str,
) -> Option<&'a mut AppStatus> {
    let app = desired
        .get(full)
        .map(|d| d.app.as_str())
        .or_else(|| app_of(full))?;
    Some(apps.entry(app.to_string()).or_default())
}

/// `host:port` of each stream destination (`7000/tcp`, `5353/udp`) of `d`'s instance on `node`
/// with `host_ports`.
fn streams(ctx: &Context, node: &str, d: &Desired, host_ports: &[u16]) -> BTreeMap<String, String> {
    if d.plan.stream_ports.is_empty() {
        return BTreeMap::new();
    }
    let host = ctx.runtime.host_address(node);
    let ports = super::instance::ports(&d.plan);
    d.plan
        .stream_ports
        .iter()
        .filter_map(|s| {
            let want = super::instance::stream_destination(s);
            let at = ports.iter().position(|p| *p == want)?;
            let port = host_ports.get(at)?;
            Some((want.to_string(), format!("{host}:{port}")))
        })
        .collect()
}

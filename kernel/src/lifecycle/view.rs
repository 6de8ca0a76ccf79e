//! What `lain ps` and `lain app show` see: the leader's reconciler's last observation, per app.

use super::records::AppRecord;
pub use crate::runtime::Health;
use crate::runtime::RunState;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InstanceView {
    /// Runtime name.
    pub name: String,
    /// Proc name.
    pub proc: String,
    /// Instance number.
    pub instance: u32,
    /// Release it runs.
    pub release: String,
    /// The plan stamp of the deploy that created it (empty if it has none).
    #[serde(default)]
    pub plan_stamp: String,
    /// The secrets stamp of the deploy that created it (empty without secret files).
    #[serde(default)]
    pub secrets_stamp: String,
    /// The restart generation it runs (`lain restart`; 0 before any).
    #[serde(default)]
    pub restart: u64,
    /// Node it is on.
    pub node: String,
    /// Run state.
    #[schema(value_type = Object)]
    pub state: RunState,
    /// Health.
    pub health: Health,
    /// Ready to serve: healthy, or running for `setup_time` without a health check, or a
    /// run-to-completion instance that succeeded.
    pub ready: bool,
    /// URL of its main port, if it has one: `http://host:port`, or `udp://host:port` when the
    /// main port is UDP.
    pub url: Option<String>,
    /// `host:port` reaching each stream-port destination of the instance, by destination port
    /// and protocol (`7000/tcp`, `5353/udp`): what the router forwards stream ports to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub streams: BTreeMap<String, String>,
    /// Memory limit, bytes.
    pub memory: u64,
    /// Restarts so far: its attempt minus one (kept on the instance, so across kernel restarts).
    pub restarts: u32,
    /// Which run this is (1, 2, ...): `LAIN_ATTEMPT` in its environment.
    #[serde(default)]
    pub attempt: u32,
    /// Its labels other than the kernel's own (`lain.*`): the user's and the plan's.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Seconds until the next restart attempt, while it backs off.
    pub restart_in: Option<u64>,
    /// Being stopped and removed (replaced, scaled down, or its node drained): takes no traffic.
    #[serde(default)]
    pub retiring: bool,
    /// How its run failed (`exit status 7`, `after 3 restarts: exit status 1`), when no restart
    /// is left: it is not run again until the next deploy.
    #[serde(default)]
    pub failed: Option<String>,
}

/// One proc of an app.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProcView {
    /// Proc name.
    pub name: String,
    /// Proc type.
    pub proc_type: String,
    /// Whether it runs to completion (restart policy other than `always`): its instances are
    /// ready once they exited 0.
    #[serde(default)]
    pub completes: bool,
    /// Instances wanted.
    pub desired: u32,
    /// Instances of the deployed release and plan that are ready.
    pub ready: u32,
    /// Memory per instance, bytes.
    pub memory: u64,
    /// Whether it runs exactly as deployed (nothing to start, replace or remove).
    pub converged: bool,
    /// Why it cannot converge, if the reconciler knows (no node fits, a plugin failed, ...).
    pub problem: Option<String>,
    /// For a scheduled proc: its next tick and last run (it has instances only while runs run,
    /// and is converged whatever they do).
    #[serde(default)]
    pub schedule: Option<crate::lifecycle::runs::ScheduleView>,
    /// Its stream ports as `source:destination/protocol` (`lain router streams` shows where
    /// they go).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_ports: Vec<String>,
}

/// An app with what runs of it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppView {
    /// The record.
    pub app: AppRecord,
    /// Deployed release, if any.
    pub release: Option<String>,
    /// Procs of the deployed release.
    pub procs: Vec<ProcView>,
    /// Every instance, of any release.
    pub instances: Vec<InstanceView>,
    /// Whether everything runs as deployed (and nothing runs when undeployed).
    pub converged: bool,
    /// Passes of this kernel's reconciler so far (0 on a kernel that never led: its view is
    /// the leader's, as published in the store).
    pub pass: u64,
    /// How the app's volume backups stand (`GET /api/v1/apps/{app}` fills it; absent when no
    /// backup of the app ended, and elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<crate::backup::BackupState>,
}

/// What the leader's reconciler saw of one app, as the API and the router show it: the record
/// each kernel's [`StatusBoard`] holds per app, and the one the leader publishes in the store
/// (`crate::lifecycle::published`) for the other kernels.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// Every instance of the app, of any release, sorted by proc, number and name.
    pub instances: Vec<InstanceView>,
    /// Why procs cannot converge, by proc full name.
    #[serde(default)]
    pub problems: BTreeMap<String, String>,
    /// Instances wanted by proc full name, when the placement mode decides it (per-node,
    /// singleton) rather than `num_instances`.
    #[serde(default)]
    pub wanted: BTreeMap<String, u32>,
    /// What scheduled procs show, by proc full name.
    #[serde(default)]
    pub schedules: BTreeMap<String, crate::lifecycle::runs::ScheduleView>,
}

/// The app a proc full name `<app>.<type>.<name>` belongs to (app names may contain dots, as
/// resource instances' `resource.<res>.<client>` do; proc types and names do not).
pub fn app_of(full: &str) -> Option<&str> {
    full.rsplitn(3, '.').nth(2)
}

/// The last observation of the instances, shared with the API and the router: published by
/// this kernel's reconciler while it leads, else followed from what the leader published in
/// the store.
#[derive(Clone)]
pub struct StatusBoard(Arc<RwLock<Board>>, Arc<Signals>);

/// What the board's users wait on.
struct Signals {
    /// Counts publications (the router rebuilds its table, the watch API compares views).
    changed: tokio::sync::watch::Sender<u64>,
    /// Counts the times this kernel's reconciler stopped publishing (the follower reloads).
    released: tokio::sync::watch::Sender<u64>,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard(
            Arc::default(),
            Arc::new(Signals {
                changed: tokio::sync::watch::channel(0).0,
                released: tokio::sync::watch::channel(0).0,
            }),
        )
    }
}

#[derive(Default)]
struct Board {
    /// Passes of this kernel's reconciler.
    pass: u64,
    /// Whether this kernel's reconciler publishes here (it leads): stored changes are not
    /// followed meanwhile.
    local: bool,
    apps: BTreeMap<String, AppStatus>,
}

impl StatusBoard {
    /// Replaces the observation with a pass of this kernel's reconciler (which from now on is
    /// the source of the board, until [`StatusBoard::release`]).
    pub fn publish(&self, apps: BTreeMap<String, AppStatus>) {
        {
            let mut board = self.0.write();
            board.pass += 1;
            board.local = true;
            board.apps = apps;
        }
        self.changed();
    }

    /// This kernel's reconciler stopped (it no longer leads): the board follows the store again.
    pub fn release(&self) {
        self.0.write().local = false;
        self.1.released.send_modify(|n| *n += 1);
    }

    /// How many times [`StatusBoard::release`] was called.
    pub fn releases(&self) -> u64 {
        *self.1.released.borrow()
    }

    /// Replaces every app's status with the published ones, unless this kernel's reconciler
    /// publishes; returns whether it did.
    pub fn follow_all(&self, apps: BTreeMap<String, AppStatus>) -> bool {
        {
            let mut board = self.0.write();
            if board.local {
                return false;
            }
            board.apps = apps;
        }
        self.changed();
        true
    }

    /// Sets (`Some`) or removes (`None`) the published status of `app`, unless this kernel's
    /// reconciler publishes; returns whether it did.
    pub fn follow(&self, app: &str, status: Option<AppStatus>) -> bool {
        {
            let mut board = self.0.write();
            if board.local {
                return false;
            }
            match status {
                Some(s) => board.apps.insert(app.to_string(), s),
                None => board.apps.remove(app),
            };
        }
        self.changed();
        true
    }

    /// Tells the board's users to look again (apps or route claims changed) while the board
    /// follows the store; this kernel's reconciler does so with its passes.
    pub fn touch(&self) {
        if !self.0.read().local {
            self.changed();
        }
    }

    fn changed(&self) {
        self.1.changed.send_modify(|n| *n += 1);
    }

    /// Notified after every change of the board (the router rebuilds its table).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.changed.subscribe()
    }

    /// The number of this kernel's reconciler passes and every app's instances.
    pub fn snapshot(&self) -> (u64, BTreeMap<String, Vec<InstanceView>>) {
        let board = self.0.read();
        let instances = board
            .apps
            .iter()
            .map(|(app, s)| (app.clone(), s.instances.clone()))
            .collect();
        (board.pass, instances)
    }

    /// Every app's status as the board holds it.
    pub fn apps(&self) -> BTreeMap<String, AppStatus> {
        self.0.read().apps.clone()
    }

    /// Number of passes this kernel's reconciler completed.
    pub fn pass(&self) -> u64 {
        self.0.read().pass
    }

    /// Instances of any app on `node`.
    pub fn instances_on(&self, node: &str) -> usize {
        let board = self.0.read();
        board
            .apps
            .values()
            .flat_map(|s| &s.instances)
            .filter(|i| i.node == node)
            .count()
    }

    /// The view of `app`.
    pub fn view(&self, app: AppRecord) -> AppView {
        let board = self.0.read();
        let empty = AppStatus::default();
        let status = board.apps.get(&app.name).unwrap_or(&empty);
        let instances = status.instances.clone();
        let mut procs = Vec::new();
        let mut converged = true;
        let release = app.deployed.as_ref().map(|d| d.release.clone());
        if let Some(deployed) = &app.deployed {
            for plan in &deployed.procs {
                let plan = app.effective(plan);
                let wanted = status
                    .wanted
                    .get(&plan.full_name)
                    .copied()
                    .unwrap_or(plan.num_instances);
                let mine: Vec<_> = instances.iter().filter(|i| i.proc == plan.name).collect();
                let restarts = app.restarts.get(&plan.name).cloned().unwrap_or_default();
                let ready = mine
                    .iter()
                    .filter(|i| {
                        i.release == deployed.release
                            && i.plan_stamp == plan.plan_stamp
                            && i.secrets_stamp == plan.secrets_stamp
                            && i.restart == restarts.of(i.instance)
                            && i.ready
                    })
                    .count() as u32;
                let scheduled = plan.plan.schedule.is_some();
                let ok = scheduled
                    || (ready == wanted
                        && mine.len() == wanted as usize
                        && mine.iter().all(|i| i.memory == plan.plan.memory));
                converged &= ok;
                procs.push(ProcView {
                    name: plan.name.clone(),
                    proc_type: plan.proc_type.clone(),
                    completes: plan.completes(),
                    desired: if scheduled { 0 } else { wanted },
                    ready,
                    memory: plan.plan.memory,
                    converged: ok,
                    problem: status.problems.get(&plan.full_name).cloned(),
                    schedule: status.schedules.get(&plan.full_name).cloned(),
                    stream_ports: plan
                        .stream_ports
                        .iter()
                        .map(|s| {
                            let proto = match s.protocol {
                                crate::plugin::bindings::types::Protocol::Tcp => "tcp",
                                crate::plugin::bindings::types::Protocol::Udp => "udp",
                            };
                            format!("{}:{}/{proto}", s.source, s.destination)
                        })
                        .collect(),
                });
            }
            let known: Vec<_> = deployed.procs.iter().map(|p| p.name.as_str()).collect();
            converged &= instances.iter().all(|i| known.contains(&i.proc.as_str()));
        } else {
            converged = instances.is_empty();
        }
        AppView {
            app,
            release,
            procs,
            instances,
            converged,
            pass: board.pass,
            last_backup: None,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_proc_full_name_names_its_app_even_when_the_app_name_has_dots() {
        assert_eq!(super::app_of("hello.web.web"), Some("hello"));
        assert_eq!(
            super::app_of("resource.redis.shop.worker.redis"),
            Some("resource.redis.shop")
        );
        assert_eq!(super::app_of("web.web"), None);
    }
}

//! What `lain ps` and `lain app show` see: the reconciler's last observation, per app.

use super::records::AppRecord;
pub use crate::runtime::Health;
use crate::runtime::RunState;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One instance.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// Number of the reconciler pass this view comes from.
    pub pass: u64,
    /// How the app's volume backups stand (`GET /api/v1/apps/{app}` fills it; absent when no
    /// backup of the app ended, and elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<crate::backup::BackupState>,
}

/// The reconciler's last observation, shared with the API and the router.
#[derive(Clone)]
pub struct StatusBoard(Arc<RwLock<Board>>, Arc<tokio::sync::watch::Sender<u64>>);

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard(Arc::default(), Arc::new(tokio::sync::watch::channel(0).0))
    }
}

#[derive(Default)]
struct Board {
    pass: u64,
    instances: BTreeMap<String, Vec<InstanceView>>,
    problems: BTreeMap<String, String>,
    /// Instances wanted by proc full name, when the placement mode decides it (per-node,
    /// singleton) rather than `num_instances`.
    wanted: BTreeMap<String, u32>,
    schedules: BTreeMap<String, crate::lifecycle::runs::ScheduleView>,
}

impl StatusBoard {
    /// Replaces the observation (instances by app; problems and, where the placement mode
    /// decides it, the number of instances wanted, by proc full name).
    pub fn publish(
        &self,
        instances: BTreeMap<String, Vec<InstanceView>>,
        problems: BTreeMap<String, String>,
        wanted: BTreeMap<String, u32>,
    ) {
        let pass = {
            let mut board = self.0.write();
            board.pass += 1;
            board.instances = instances;
            board.problems = problems;
            board.wanted = wanted;
            board.pass
        };
        self.1.send_replace(pass);
    }

    /// Replaces what scheduled procs show (by proc full name); published with the next pass.
    pub fn publish_schedules(
        &self,
        schedules: BTreeMap<String, crate::lifecycle::runs::ScheduleView>,
    ) {
        self.0.write().schedules = schedules;
    }

    /// Notified after every publication (the router rebuilds its table).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.1.subscribe()
    }

    /// The number of passes and every app's instances.
    pub fn snapshot(&self) -> (u64, BTreeMap<String, Vec<InstanceView>>) {
        let board = self.0.read();
        (board.pass, board.instances.clone())
    }

    /// Number of completed passes.
    pub fn pass(&self) -> u64 {
        self.0.read().pass
    }

    /// Instances of any app on `node`.
    pub fn instances_on(&self, node: &str) -> usize {
        let board = self.0.read();
        board
            .instances
            .values()
            .flatten()
            .filter(|i| i.node == node)
            .count()
    }

    /// The view of `app`.
    pub fn view(&self, app: AppRecord) -> AppView {
        let board = self.0.read();
        let instances = board.instances.get(&app.name).cloned().unwrap_or_default();
        let mut procs = Vec::new();
        let mut converged = true;
        let release = app.deployed.as_ref().map(|d| d.release.clone());
        if let Some(deployed) = &app.deployed {
            for plan in &deployed.procs {
                let plan = app.effective(plan);
                let wanted = board
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
                    problem: board.problems.get(&plan.full_name).cloned(),
                    schedule: board.schedules.get(&plan.full_name).cloned(),
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

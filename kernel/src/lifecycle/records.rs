//! What the lifecycle keeps in the state store, and under which keys.
//!
//! | key | value |
//! |---|---|
//! | `kernel/id` | this kernel's id, the label that marks its instances |
//! | `apps/<app>` | [`AppRecord`]: the deployed release, its history, scale overrides |
//! | `releases/<app>/<version>` | [`ReleaseRecord`]: a built release |
//! | `nodes/<name>` | [`NodeRecord`] |
//! | `volumes/<app>/<proc>/<no>` | [`VolumeHome`]: the node that holds an instance number's volumes |
//!
//! Instances are not stored: the runtime holds them, labelled, and the reconciler rebuilds its
//! view from it (as LAIN's deployd did from Swarm), so the store can never disagree with what
//! runs.

use crate::plugin::bindings::proc_rendering::{ContainerPlan, RestartPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Key of the kernel id.
pub const KERNEL_ID: &str = "kernel/id";
/// Prefix of app records.
pub const APPS: &str = "apps/";
/// Prefix of release records.
pub const RELEASES: &str = "releases/";
/// Prefix of node records.
pub const NODES: &str = "nodes/";

/// Prefix of volume homes.
pub const VOLUMES: &str = "volumes/";

/// Key of the volume home of instance `no` of proc `proc` (full name) of `app`.
pub fn volume_key(app: &str, proc: &str, no: u32) -> String {
    format!("{VOLUMES}{app}/{proc}/{no}")
}

/// Key of app `app`.
pub fn app_key(app: &str) -> String {
    format!("{APPS}{app}")
}

/// Key of release `version` of `app`.
pub fn release_key(app: &str, version: &str) -> String {
    format!("{RELEASES}{app}/{version}")
}

/// Key of node `name`.
pub fn node_key(name: &str) -> String {
    format!("{NODES}{name}")
}

/// An app known to the kernel.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppRecord {
    /// App name.
    pub name: String,
    /// Unix seconds of the first build or deploy.
    pub created_at: i64,
    /// What should run; none when undeployed.
    #[schema(value_type = Option<Object>)]
    pub deployed: Option<Deployment>,
    /// Earlier deployments, oldest first (at most [`HISTORY`]).
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Deployment>,
    /// Runtime scale per proc name; survives redeploys (LAIN's "autopatch").
    #[schema(value_type = Object)]
    pub scale: BTreeMap<String, Scale>,
    /// The last failure of a deploy or rollout.
    pub last_error: Option<String>,
    /// Restarts asked per proc name (`lain restart`): an instance whose restart generation
    /// differs from its number's is replaced, one instance number at a time.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub restarts: BTreeMap<String, Restarts>,
}

/// The restarts asked of one proc: each raises a generation, and an instance runs the sum of
/// the proc's and its number's (carried as its `lain.restart` label, absent at 0).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restarts {
    /// Restarts of every instance of the proc.
    #[serde(default)]
    pub all: u64,
    /// Restarts of one instance number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub numbers: BTreeMap<u32, u64>,
}

impl Restarts {
    /// The restart generation instance number `no` should run.
    pub fn of(&self, no: u32) -> u64 {
        self.all
            .saturating_add(self.numbers.get(&no).copied().unwrap_or(0))
    }
}

/// How many earlier deployments are kept for rollback.
pub const HISTORY: usize = 10;

impl AppRecord {
    /// A new, undeployed app.
    pub fn new(name: &str, now: i64) -> AppRecord {
        AppRecord {
            name: name.into(),
            created_at: now,
            deployed: None,
            history: Vec::new(),
            scale: BTreeMap::new(),
            last_error: None,
            restarts: BTreeMap::new(),
        }
    }

    /// Makes `deployment` the deployed one, keeping the current one in the history.
    pub fn deploy(&mut self, deployment: Deployment) {
        if let Some(previous) = self.deployed.take() {
            self.history.push(previous);
            if self.history.len() > HISTORY {
                self.history.remove(0);
            }
        }
        self.deployed = Some(deployment);
        self.last_error = None;
    }

    /// The proc `name` of the deployed release with the scale overrides applied.
    pub fn effective(&self, plan: &ProcPlan) -> ProcPlan {
        let mut plan = plan.clone();
        if let Some(scale) = self.scale.get(&plan.name) {
            if let Some(n) = scale.num_instances {
                plan.num_instances = n;
            }
            if let Some(m) = scale.memory {
                plan.plan.memory = m;
            }
            if let Some(c) = scale.cpu {
                plan.plan.cpu = c;
            }
        }
        plan
    }
}

/// One deployment of a release.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    /// The release version.
    pub release: String,
    /// Unix seconds.
    pub deployed_at: i64,
    /// The procs as their proc types rendered them.
    pub procs: Vec<ProcPlan>,
    /// Whether a failed rollout goes back to the previous deployment by itself (false for a
    /// rollback, so a failing rollback does not bounce).
    pub auto_rollback: bool,
    /// Services of other apps this deployment uses: service app -> service names. Their
    /// portals are connected to this app's network.
    #[serde(default)]
    pub use_services: BTreeMap<String, Vec<String>>,
    /// Resources this deployment uses: resource app -> the parameters its instance
    /// `resource.<res>.<app>` is rendered with. The instance's portals are connected through
    /// `use_services` (under the instance's name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub use_resources: BTreeMap<String, BTreeMap<String, String>>,
}

/// A proc ready to run: what its proc type rendered, plus what the scheduler needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcPlan {
    /// Proc name (`web`, `mailer`).
    pub name: String,
    /// `<app>.<type>.<name>`.
    pub full_name: String,
    /// Proc type.
    pub proc_type: String,
    /// Instances wanted.
    pub num_instances: u32,
    /// Scheduling filters.
    pub filters: Vec<String>,
    /// Labels offered to scheduler plugins, as `key=value`.
    pub labels: Vec<String>,
    /// Never moved off its node automatically.
    pub stateful: bool,
    /// Per-instance persistent directories (container paths, `/lain/logs` included).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// Directories shared by the proc's instances (`single`) or one per instance number
    /// (`multi`), under the cloud-volume root (process runtime) or as Docker named volumes.
    /// Absent when the proc has none (so plans without them stamp as before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_volumes: Option<crate::spec::model::CloudVolumes>,
    /// Log files its instances write under `/lain/logs` (relative names) that are collected
    /// into the log store (`lain logs PROC --file NAME`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
    /// DNS search domains of its instances (`dns_search`, the app's `<app>.lain` last), which
    /// Docker writes into their `resolv.conf`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_search: Vec<String>,
    /// Stream ports (LAIN's `ports`, `src:dst/proto`): the router forwards the node's port
    /// `source` to port `destination` of the proc's ready instances. Absent when the proc has
    /// none (so plans without them stamp as before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stream_ports: Vec<crate::plugin::bindings::types::StreamPort>,
    /// Environment of every instance: the user's, the type's, LAIN's.
    pub env: Vec<(String, String)>,
    /// Absolute paths of the secret files placed into every instance (contents in the vault).
    #[serde(default)]
    pub secret_files: Vec<String>,
    /// Run even when a secret file is missing from the vault.
    #[serde(default)]
    pub secret_files_bypass: bool,
    /// Which versions of the secret files the deploy saw (a digest of their paths and write
    /// times, empty without secret files): instances labelled otherwise are replaced, so a
    /// changed secret rolls out with the next deploy, as a changed image did in LAIN.
    #[serde(default)]
    pub secrets_stamp: String,
    /// A digest of the plan as deployed ([`ProcPlan::stamp_plan`]): instances labelled with
    /// another one are replaced one instance number at a time, so a plugin upgrade or a config
    /// change rolls out with the next deploy of the same release. Empty in deployments recorded
    /// by a kernel that did not stamp plans (their instances carry no stamp either).
    #[serde(default)]
    pub plan_stamp: String,
    /// How every instance runs. Plans stored by a kernel of the `lain:plugin@0.1.0` era (a bare
    /// restart policy) are read as their 0.2.0 equivalent.
    #[serde(deserialize_with = "stored_plan")]
    pub plan: ContainerPlan,
}

/// Reads a stored [`ContainerPlan`], upgrading one written before `lain:plugin@0.2.0`.
fn stored_plan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<ContainerPlan, D::Error> {
    let mut value = serde_json::Value::deserialize(d)?;
    crate::plugin::legacy::upgrade_stored_plan(&mut value);
    serde_json::from_value(value).map_err(serde::de::Error::custom)
}

impl ProcPlan {
    /// Whether the proc runs to completion (its restart policy is not `always`): an instance is
    /// ready only once it exited 0, and a failed run fails the deploy.
    pub fn completes(&self) -> bool {
        self.plan.restart.policy != RestartPolicy::Always
    }

    /// Sets [`ProcPlan::plan_stamp`]: a digest of everything an instance is created from, except
    /// what changes without a new instance (memory and cpu, set in place; the number of instances) and
    /// the secrets stamp (its own label). Computed once, at deploy: a kernel that renders or
    /// serialises plans differently does not change the stamps of deployments already recorded.
    pub fn stamp_plan(&mut self) -> Result<(), serde_json::Error> {
        use sha2::Digest as _;
        let mut plain = self.clone();
        plain.num_instances = 0;
        plain.plan.memory = 0;
        plain.plan.cpu = 0;
        plain.secrets_stamp.clear();
        plain.plan_stamp.clear();
        let bytes = serde_json::to_vec(&plain)?;
        self.plan_stamp = hex::encode(&sha2::Sha256::digest(&bytes)[..6]);
        Ok(())
    }

    /// Whether the proc's instances own their node: it is `stateful`, or it has a volume other
    /// than `/lain/logs` (the user's or its type's), which lives on the node the instance first
    /// ran on (LAIN's "soft stateful"). Such an instance is upgraded in place (stopped first,
    /// recreated on the same node) and never started on another node on an empty volume.
    pub fn keeps_node(&self) -> bool {
        self.stateful
            || self
                .volumes
                .iter()
                .chain(&self.plan.volumes)
                .any(|v| v != LOGS_VOLUME)
    }

    /// Whether an instance that exited with `code` is started again.
    pub fn restarts_after(&self, code: Option<i32>) -> bool {
        match self.plan.restart.policy {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != Some(0),
            RestartPolicy::Never => false,
        }
    }
}

/// The volume every instance has for its log files (LAIN appended it to every proc); alone it
/// does not tie an instance to its node.
pub const LOGS_VOLUME: &str = "/lain/logs";

/// Where the volumes of one instance number of a proc live: recorded when the kernel first
/// creates it on a node (or finds it running there), so that a missing instance comes back on
/// that node, or is reported, and never starts elsewhere on an empty volume. Kept after an
/// undeploy or a scale down, as the directories are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VolumeHome {
    /// App name.
    pub app: String,
    /// Proc full name `<app>.<type>.<name>`.
    pub proc: String,
    /// Instance number.
    pub number: u32,
    /// The node holding the directories.
    pub node: String,
    /// The volumes (paths in the instance) when it was recorded.
    pub volumes: Vec<String>,
    /// When it was recorded (Unix seconds).
    pub since: i64,
    /// A move to another node under way (`lain volume migrate`): while it is recorded the
    /// reconciler keeps the instance stopped, also across kernel restarts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<Migration>,
}

/// A deliberate move of an instance number's volumes to another node, through a backup and a
/// restore (`lain volume migrate`), as far as it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Migration {
    /// The node the volumes move to.
    pub to: String,
    /// The step it is at.
    pub step: MigrationStep,
    /// The backups restored on `to`, one per volume: given by the operator, or the final
    /// backups once taken. Empty until known.
    pub backups: Vec<u64>,
    /// When it began (Unix seconds).
    pub started_at: i64,
}

/// The steps of a migration, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MigrationStep {
    /// The instance is being stopped.
    Stopping,
    /// The final backup of each volume is being taken.
    Backing,
    /// The backups are being restored into the volumes on the target node (a volume may
    /// already hold its restored tree).
    Restoring,
}

impl MigrationStep {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            MigrationStep::Stopping => "stopping the instance",
            MigrationStep::Backing => "taking the final backup",
            MigrationStep::Restoring => "restoring",
        }
    }
}

/// Scale set at runtime (`lain scale`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scale {
    /// Instances.
    pub num_instances: Option<u32>,
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// Milli-cores.
    pub cpu: Option<u32>,
}

/// A built release.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseRecord {
    /// App name.
    pub app: String,
    /// `<unix seconds>-<first 12 hex of the context's sha256>`.
    pub version: String,
    /// sha256 of the uploaded build context.
    pub digest: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Milliseconds since the epoch when it was recorded: orders releases built within one
    /// second (the newest is what `lain deploy` deploys by default).
    #[serde(default)]
    pub built_ms: i64,
    /// The release's `lain.yaml`.
    pub lain_yaml: String,
    /// What instances run: a directory (process runtime) or an image (Docker).
    pub image: String,
}

/// A node instances are scheduled on.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeRecord {
    /// Node name.
    pub name: String,
    /// Where its runtime is reached; `local` is this host.
    pub address: String,
    /// Labels matched by scheduling filters.
    pub labels: BTreeMap<String, String>,
    /// Memory for instances, bytes.
    pub memory: u64,
    /// CPU for instances, milli-cores.
    pub cpu: u32,
    /// `ready`, `maintenance` (drained: nothing new, stateless instances moved off) or `down`.
    pub state: NodeState,
    /// Unix seconds.
    pub added_at: i64,
}

/// A node's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Takes instances.
    Ready,
    /// Being drained.
    Maintenance,
    /// Not answering.
    Down,
}

/// Whether `name` is usable as an app, proc or node name in keys and instance names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
        && !name.starts_with(['.', '-'])
}

//! What the reconciler may reach: the runtime, the status board it publishes to, the records it
//! reads (and the few it writes: a failed rollout, a lost node), secret files read-only, and its
//! own settings. Built in one place ([`Context::new`]) from the lifecycle and the configuration.

use crate::config::KernelConfig;
use crate::lifecycle::records::NodeRecord;
use crate::lifecycle::state::Records;
use crate::lifecycle::view::StatusBoard;
use crate::lifecycle::{LifecycleError, component};
use crate::plugin::registry::Registry;
use crate::runtime::Runtime;
use crate::secrets::vault::{SecretError, Vault};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The reconciler's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// How long an instance that served traffic takes none before it stops (the router's drain).
    pub drain: Duration,
    /// How long a new instance may take to get ready before its rollout fails (plus its
    /// `setup_time` and health-check window).
    pub rollout_timeout: Duration,
    /// Where instances' log files go: `<logs>/<app>/<proc>/<no>.log`.
    pub logs: PathBuf,
    /// Where instances' volumes live: `<volumes>/<app>/<proc>/<no>`.
    pub volumes: PathBuf,
    /// Where the process runtime keeps cloud volumes (`[process] cloud_volumes_root`).
    pub cloud_volumes: PathBuf,
    /// The engine of node address `local` (the configured Docker socket).
    pub local_engine: String,
    /// How many instances are created and started at once (`[lifecycle] parallel_starts`).
    pub parallel_starts: usize,
}

impl Settings {
    /// The settings `config` gives.
    pub fn new(config: &KernelConfig) -> Settings {
        Settings {
            drain: Duration::from_millis(config.router.drain_ms),
            rollout_timeout: Duration::from_secs(config.lifecycle.rollout_timeout_secs),
            parallel_starts: config.lifecycle.parallel_starts(),
            logs: config.data_dir.join("logs"),
            volumes: config.data_dir.join("volumes"),
            cloud_volumes: config
                .process
                .cloud_volumes_root
                .clone()
                .unwrap_or_else(|| config.data_dir.join("cloud-volumes")),
            local_engine: config.docker.local.clone(),
        }
    }

    /// The log file of instance `no` of proc `proc` of `app`, always inside [`Settings::logs`]:
    /// a name that is not one plain path component is refused.
    pub fn log_file(&self, app: &str, proc: &str, no: u32) -> Result<PathBuf, LifecycleError> {
        Ok(self
            .logs
            .join(component("app", app)?)
            .join(component("proc", proc)?)
            .join(format!("{no}.log")))
    }

    /// Where the runtime reaches `node`: `local` means this host's engine (the configured
    /// Docker socket) or this host itself (process runtime).
    pub fn engine_address(&self, node: &NodeRecord) -> String {
        match node.address.as_str() {
            "local" => self.local_engine.clone(),
            other => other.to_string(),
        }
    }
}

/// Reads secret files; cannot write or rotate them.
#[derive(Clone)]
pub struct SecretReader(Arc<Vault>);

impl SecretReader {
    /// Reads through `vault`.
    pub fn new(vault: Arc<Vault>) -> SecretReader {
        SecretReader(vault)
    }

    /// The content of secret file `path` of proc `proc` of `app`.
    pub fn get(&self, app: &str, proc: &str, path: &str) -> Result<Vec<u8>, SecretError> {
        self.0.get(app, proc, path)
    }
}

/// Everything the reconciler reaches.
#[derive(Clone)]
pub struct Context {
    /// Where instances run.
    pub runtime: Arc<dyn Runtime>,
    /// Where each pass publishes what it saw.
    pub status: StatusBoard,
    /// Apps, releases and nodes.
    pub records: Records,
    /// Secret files, placed into instances as they are created.
    pub secrets: SecretReader,
    /// Plugins: a new generation rebuilds the scheduling pipeline.
    pub plugins: Arc<Registry>,
    /// This kernel's id: the label of its instances.
    pub kernel_id: String,
    /// The reconciler's settings.
    pub settings: Settings,
    /// Instances it leaves alone for now ([`crate::lifecycle::held`]).
    pub held: crate::lifecycle::held::Held,
    /// The leadership's fence, asked before every runtime call
    /// ([`crate::cluster::fence::Fence::may_act`]); open (always acting) unless
    /// [`Context::fenced`].
    pub fence: Arc<crate::cluster::fence::Fence>,
}

impl Context {
    /// The reconciler's view of `lc`.
    pub fn new(lc: &crate::lifecycle::Lifecycle) -> Context {
        Context {
            runtime: lc.runtime.clone(),
            status: lc.status.clone(),
            records: lc.records.clone(),
            secrets: SecretReader::new(lc.vault.clone()),
            plugins: lc.registry.clone(),
            kernel_id: lc.kernel_id.clone(),
            settings: Settings::new(&lc.config),
            held: lc.held.clone(),
            fence: Arc::default(),
        }
    }

    /// The same, making runtime calls only while `fence` allows them (the kernel's cluster
    /// fence: a leader paused past its lease makes none when it resumes).
    pub fn fenced(self, fence: Arc<crate::cluster::fence::Fence>) -> Context {
        Context { fence, ..self }
    }
}

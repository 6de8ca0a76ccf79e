//! Assembling a kernel from its configuration: state store, plugin engine, registry, chains.

use crate::api::AppState;
use crate::auth::Access;
use crate::cluster::Cluster;
use crate::cluster::fence::{Fence, FencedStore};
use crate::cluster::identity::{self, DataDirLock};
use crate::config::KernelConfig;
use crate::lifecycle::Lifecycle;
use crate::lifecycle::reconcile::{self, Reconciler};
use crate::monitor::Monitor;
use crate::plugin::engine::PluginEngine;
use crate::plugin::kinds::scheduler::LiveScheduler;
use crate::plugin::registry::Registry;
use crate::plugin::{CallError, Cause, Kind, LoadedPlugin};
use crate::router::WebRouter;
use crate::runtime::docker::DockerRuntime;
use crate::runtime::process::ProcessRuntime;
use crate::runtime::process::sandbox::Sandbox;
use crate::runtime::{Runtime, RuntimeKind};
use crate::schedule::{self, Backend, Live, MemberSpec};
use crate::store::embedded::EmbeddedStore;
use crate::store::{self, Store};
use anyhow::Context;
use std::sync::Arc;

/// A kernel's long-lived parts.
pub struct Kernel {
    /// The configuration it runs with.
    pub config: KernelConfig,
    /// The state store.
    pub store: Arc<dyn Store>,
    /// Installed and built-in plugins.
    pub registry: Arc<Registry>,
    /// Apps, releases, nodes and the runtime.
    pub lifecycle: Arc<Lifecycle>,
    /// The web router's state (its sockets are started by `serve`).
    pub router: Arc<WebRouter>,
    /// Who may do what through the API, and the audit log.
    pub access: Arc<Access>,
    /// Volume backups.
    pub backups: Arc<crate::backup::Backups>,
    /// This kernel's identity, leadership and fence.
    pub cluster: Arc<Cluster>,
    /// The exclusive hold on the data dir, for the kernel's life.
    _lock: DataDirLock,
}

impl Kernel {
    /// Opens the data dir (creating it), the state store, the plugin engine, the registry with
    /// `builtins` and the runtime; the process runtime's shim is this executable.
    pub fn open(config: KernelConfig, builtins: &[(&str, &[u8])]) -> anyhow::Result<Kernel> {
        let shim = std::env::current_exe().context("cannot find the lain executable")?;
        Kernel::open_with_shim(config, builtins, &shim)
    }

    /// [`Kernel::open`] with the `lain` executable the process runtime's shims run (tests pass
    /// the built binary, since their own executable is the test harness).
    pub fn open_with_shim(
        config: KernelConfig,
        builtins: &[(&str, &[u8])],
        shim: &std::path::Path,
    ) -> anyhow::Result<Kernel> {
        config
            .check()
            .map_err(|e| anyhow::anyhow!("kernel config: {e}"))?;
        private_data_dir(&config.data_dir)?;
        let lock = DataDirLock::take(&config.data_dir)?;
        let kernel_id = identity::kernel_id(&config.data_dir)?;
        let fence = Arc::new(Fence::default());
        let store = open_store(&config, &fence)?;
        Live::new(store.clone())
            .seed(&config.scheduler)
            .context("cannot seed the scheduler pipeline")?;
        let engine = PluginEngine::new(config.plugins.limits.clone(), Some(config.cache_dir()))
            .context("cannot start the plugin engine")?;
        let registry = Arc::new(
            Registry::open(
                engine,
                store.clone(),
                builtins,
                config.plugins.config.clone(),
            )
            .context("cannot load plugins")?
            .with_proc_types(config.proc_types.clone()),
        );
        let shim = shim.to_path_buf();
        let runtime_config = config.clone();
        let make_runtime = move |kernel_id: &str, wake| -> Result<Arc<dyn Runtime>, _> {
            Ok(match runtime_config.runtime {
                RuntimeKind::Process => Arc::new(
                    ProcessRuntime::open(
                        &runtime_config.data_dir.join("runtime").join("process"),
                        &shim,
                        Sandbox::new(&runtime_config.process, &runtime_config.kernel_paths())
                            .map_err(|e| crate::runtime::RuntimeError::Failed(e.to_string()))?,
                    )?
                    .with_exit_events(wake),
                ),
                RuntimeKind::Docker => Arc::new(
                    DockerRuntime::new(kernel_id, runtime_config.docker.tls.clone(), wake)
                        .with_registry(runtime_config.docker.registry.clone())
                        .with_cloud_volumes(runtime_config.docker.cloud_volumes.clone())
                        .with_network(runtime_config.docker.network),
                ),
            })
        };
        let lifecycle = Lifecycle::new(
            store.clone(),
            registry.clone(),
            config.clone(),
            make_runtime,
        )?;
        lifecycle.register_local_node()?;
        lifecycle
            .claim_existing_routes()
            .context("cannot claim the routes of existing deployments")?;
        let router = WebRouter::new(&config.router, &config.data_dir.join("logs"))
            .context("cannot start the web router's access log")?;
        let access = Access::new(
            &config.auth,
            config.bootstrap_token_file().as_deref(),
            store.clone(),
            registry.clone(),
        )
        .context("cannot set up API access")?;
        let cluster = Arc::new(Cluster::new(
            kernel_id,
            lifecycle.kernel_id().to_string(),
            match config.store.backend {
                store::Backend::Embedded => "embedded",
                store::Backend::Etcd => "etcd",
            },
            fence,
        ));
        tracing::info!(kernel = %cluster.kernel_id(), cluster = %lifecycle.kernel_id(), "kernel identity");
        let lifecycle = Arc::new(lifecycle);
        let backups = Arc::new(
            crate::backup::Backups::new(lifecycle.clone()).context("cannot set up backups")?,
        );
        Ok(Kernel {
            config,
            store,
            registry,
            backups,
            lifecycle,
            router: Arc::new(router),
            access: Arc::new(access),
            cluster,
            _lock: lock,
        })
    }

    /// The loops only the leader runs: log-file collection, the reconciler (with its run
    /// ticker) and the backup scheduler.
    pub fn leader_loops(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let logs = tokio::spawn(self.lifecycle.clone().collect_log_files());
        let registry = self.registry.clone();
        let source = reconcile::Source {
            live: Live::new(self.store.clone()),
            members: Box::new(move |config| scheduler_members(config, &registry)),
        };
        let reconciler = tokio::spawn(Reconciler::new(self.reconciler_context(), source).run());
        vec![logs, reconciler, self.start_backups()]
    }

    /// What this kernel's reconciler reaches, its runtime calls fenced by the leadership.
    fn reconciler_context(&self) -> reconcile::Context {
        reconcile::Context::new(&self.lifecycle).fenced(self.cluster.fence().clone())
    }

    /// How this kernel campaigns on etcd (`[store]`: endpoints, prefix, lease TTL).
    #[cfg(feature = "etcd")]
    pub fn election_settings(&self) -> crate::cluster::election::Settings {
        crate::cluster::election::Settings {
            endpoints: self.config.store.endpoints.clone(),
            prefix: self.config.store.prefix.clone(),
            ttl: std::time::Duration::from_secs(self.config.store.lease_ttl_secs),
        }
    }

    /// Joins the cluster and runs the leader's loops whenever this kernel leads: on the
    /// embedded store at once and for good; on etcd after winning the election (see
    /// [`crate::cluster::election`]). Fails when this kernel may not join (a second kernel
    /// with the process runtime on one etcd prefix).
    pub async fn start_leadership(
        self: &Arc<Self>,
    ) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
        let kernel = self.clone();
        let lead = tokio::spawn(self.cluster.clone().lead(move || kernel.leader_loops()));
        match self.config.store.backend {
            store::Backend::Embedded => {
                self.cluster.become_leader();
                Ok(vec![lead])
            }
            #[cfg(feature = "etcd")]
            store::Backend::Etcd => {
                let settings = self.election_settings();
                let process = self.config.runtime == RuntimeKind::Process;
                if let Err(e) =
                    crate::cluster::election::join(&self.cluster, &settings, process).await
                {
                    lead.abort();
                    return Err(e);
                }
                let election = tokio::spawn(crate::cluster::election::run(
                    self.cluster.clone(),
                    settings,
                ));
                Ok(vec![lead, election])
            }
            #[cfg(not(feature = "etcd"))]
            store::Backend::Etcd => anyhow::bail!("this lain was built without the `etcd` feature"),
        }
    }

    /// Starts the reconciler on the current tokio runtime.
    pub fn start_reconciler(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let source = reconcile::Source {
            live: Live::new(self.store.clone()),
            members: Box::new(move |config| scheduler_members(config, &registry)),
        };
        // Declared log files are collected beside the instances' output as long as it runs.
        tokio::spawn(self.lifecycle.clone().collect_log_files());
        tokio::spawn(Reconciler::new(self.reconciler_context(), source).run())
    }

    /// Starts the backup scheduler on the current tokio runtime (it first marks backups a
    /// previous kernel left running as interrupted).
    pub fn start_backups(&self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(crate::backup::scheduler::run(self.backups.clone()))
    }

    /// The scheduling pipeline's members as the stored pipeline (seeded from `[scheduler]`,
    /// changed with `lain scheduler set`) configures them: in order, with their weights and each
    /// plugin's current failure policy. A configured plugin that is missing, disabled or of
    /// another kind is an error naming it. When [`Registry::generation`] or the stored pipeline
    /// changes, the reconciler builds them again into a new pipeline.
    pub fn scheduler_members(&self) -> Result<Vec<MemberSpec>, CallError> {
        let config = Live::new(self.store.clone())
            .current()
            .map_err(|e| CallError {
                plugin: "scheduler".into(),
                version: String::new(),
                function: "pipeline",
                cause: Cause::Host(e.to_string()),
            })?;
        scheduler_members(&config, &self.registry)
    }

    /// What the API handlers share.
    pub fn app_state(&self) -> AppState {
        AppState {
            registry: self.registry.clone(),
            access: self.access.clone(),
            monitor: Monitor::new(self.registry.clone(), self.config.monitor.exporters.clone())
                .with_lifecycle(self.lifecycle.status().clone())
                .with_backups(self.backups.clone())
                .with_router(self.router.clone())
                .with_cluster(self.cluster.clone()),
            domains: self.config.domains.clone(),
            lifecycle: self.lifecycle.clone(),
            backups: self.backups.clone(),
            router: self.router.clone(),
            cluster: self.cluster.clone(),
        }
    }
}

/// Creates the data dir if needed and makes it the kernel's alone (0700): state, logs,
/// releases, keys and instances are reached through it.
fn private_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data dir {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make data dir {} private (0700)", dir.display()))
}

/// Makes every file and directory the kernel process (and its shims) create the owner's alone
/// (umask 077). Files meant for sandboxes get their modes explicitly.
pub fn private_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// The state store the configuration names; on etcd, fenced by `fence` (see
/// [`crate::cluster::fence`]).
fn open_store(config: &KernelConfig, fence: &Arc<Fence>) -> anyhow::Result<Arc<dyn Store>> {
    match config.store.backend {
        store::Backend::Embedded => {
            let path = config.data_dir.join("state.redb");
            Ok(Arc::new(EmbeddedStore::open(&path).with_context(|| {
                format!("cannot open the state store {}", path.display())
            })?))
        }
        #[cfg(feature = "etcd")]
        store::Backend::Etcd => {
            let etcd = crate::store::etcd::EtcdStore::connect(
                &config.store.endpoints,
                &config.store.prefix,
            )
            .with_context(|| {
                format!("cannot reach etcd at {}", config.store.endpoints.join(","))
            })?;
            Ok(Arc::new(FencedStore::new(Arc::new(etcd), fence.clone())))
        }
        #[cfg(not(feature = "etcd"))]
        store::Backend::Etcd => anyhow::bail!("this lain was built without the `etcd` feature"),
    }
}

/// See [`Kernel::scheduler_members`].
fn scheduler_members(
    config: &schedule::Config,
    registry: &Arc<Registry>,
) -> Result<Vec<MemberSpec>, CallError> {
    let mut specs = Vec::new();
    for name in &config.plugins {
        let plugin = resolve(registry, name, Kind::SchedulerFilter)?;
        specs.push(MemberSpec {
            name: name.clone(),
            weight: config.weights.get(name).copied().unwrap_or(1),
            policy: plugin.policy(),
            factory: Box::new(move || {
                Ok(Box::new(LiveScheduler::start(plugin.clone())?) as Box<dyn Backend>)
            }),
        });
    }
    Ok(specs)
}

/// The enabled plugin `name` of `kind`, or an error naming it.
fn resolve(registry: &Registry, name: &str, kind: Kind) -> Result<Arc<LoadedPlugin>, CallError> {
    let error = |cause| CallError {
        plugin: name.to_string(),
        version: String::new(),
        function: crate::plugin::error::LOADING,
        cause,
    };
    let plugin = match registry.get(name) {
        None => {
            return Err(error(Cause::Host(format!(
                "no {kind} plugin named `{name}` is installed"
            ))));
        }
        Some(Err(cause)) => return Err(error(cause)),
        Some(Ok(plugin)) => plugin,
    };
    if plugin.kind() != kind {
        let actual = plugin.kind();
        return Err(error(Cause::Host(format!(
            "`{name}` is a {actual} plugin, not a {kind} plugin"
        ))));
    }
    Ok(plugin)
}

//! The app lifecycle: builds, deployments, scale, rollback, nodes, and the reconciler that
//! makes the runtime match them (LAIN's console + deployd in one).
//!
//! API handlers change records in the state store through [`Lifecycle`] and wake the reconciler
//! ([`reconcile`]), which creates, starts, stops and removes instances; besides it, only
//! [`Lifecycle::stop_all`] (when `lain up` ends) stops them. Both sides are level-triggered:
//! whatever was interrupted (a `kill -9` of the kernel included) is finished by the next pass
//! from what the store wants and what the runtime runs.

pub mod build;
pub mod claims;
mod config;
pub mod context;
pub mod environment;
pub mod held;
pub mod logs;
pub mod maintainers;
pub mod nodes;
pub mod plan;
pub mod procs;
pub mod published;
pub mod reconcile;
pub mod records;
pub mod resources;
pub mod route_claims;
pub mod runs;
pub mod state;
pub mod stream_claims;
pub mod view;
pub mod volumes;

pub use config::Config;

use crate::config::KernelConfig;
use crate::plugin::CallError;
use crate::plugin::registry::Registry;
use crate::runtime::Runtime;
use crate::spec::Diagnostic;
use crate::store::{Op, Store, StoreError};
use records::{AppRecord, Deployment, ProcPlan, ReleaseRecord, Scale};
use std::path::PathBuf;
use std::sync::Arc;

/// Why a lifecycle operation was refused or failed. Nothing was changed when it is returned.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// No such app, release, proc or node.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The `lain.yaml` has errors.
    #[error("lain.yaml has {} error(s)", .0.iter().filter(|d| d.severity == crate::spec::Severity::Error).count())]
    Spec(Vec<Diagnostic>),
    /// A build step failed.
    #[error("build failed: {0}")]
    Build(String),
    /// A plugin failed.
    #[error("{0}")]
    Plugin(#[from] CallError),
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// Anything else (I/O of the data dir, ...).
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The lifecycle's shared handle: records in the store, the runtime, and a way to wake the
/// reconciler. Its parts are reached through methods; the reconciler gets its own narrow
/// [`reconcile::Context`].
pub struct Lifecycle {
    /// Apps, releases and nodes in the state store (and the reconciler's wake-up).
    records: state::Records,
    /// Plugins (proc types render procs; scheduler plugins place instances).
    registry: Arc<Registry>,
    /// The kernel's configuration.
    config: KernelConfig,
    /// Where instances run.
    runtime: Arc<dyn Runtime>,
    /// This kernel's id: the label of its instances.
    kernel_id: String,
    /// What the reconciler saw last.
    status: view::StatusBoard,
    /// Secret files, placed into instances as they are created.
    vault: Arc<crate::secrets::vault::Vault>,
    /// The build contexts being built.
    builds: build::InFlight,
    /// Instances taken out of the reconciler's hands for a moment (a restore in place).
    held: held::Held,
}

impl Lifecycle {
    /// A lifecycle over `store` and the runtime `runtime` makes from the kernel id and the
    /// reconciler's wake-up (reads or creates the kernel id).
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        config: KernelConfig,
        runtime: impl FnOnce(&str, Arc<tokio::sync::Notify>) -> Result<Arc<dyn Runtime>, LifecycleError>,
    ) -> Result<Lifecycle, LifecycleError> {
        // Created once per store, even by two kernels starting at once.
        let kernel_id = crate::store::transact(&*store, records::KERNEL_ID, |txn| {
            Ok::<_, LifecycleError>(match txn.get(records::KERNEL_ID)? {
                Some(id) => String::from_utf8_lossy(&id).into_owned(),
                None => {
                    let id = new_kernel_id();
                    txn.write(Op::Put(records::KERNEL_ID.into(), id.clone().into_bytes()));
                    id
                }
            })
        })?;
        // Builds of a kernel that died (kill -9) left their staging directories; no build of
        // this process runs yet, and one kernel holds a data dir.
        build::sweep_staging(&config.data_dir.join("releases"));
        let wake = Arc::new(tokio::sync::Notify::new());
        let runtime = runtime(&kernel_id, wake.clone())?;
        let vault = crate::secrets::vault::Vault::open(store.clone(), &config.key_file())
            .map_err(|e| LifecycleError::Internal(anyhow::anyhow!("cannot open the vault: {e}")))?;
        Ok(Lifecycle {
            vault: Arc::new(vault),
            records: state::Records::new(store, wake),
            registry,
            config,
            runtime,
            kernel_id,
            status: view::StatusBoard::default(),
            builds: build::InFlight::default(),
            held: held::Held::default(),
        })
    }

    /// Takes instance `name` out of the reconciler's hands until the guard drops (see
    /// [`held`]).
    pub fn hold_instance(&self, name: &str) -> held::HeldGuard {
        self.held.hold(name)
    }

    /// The state store.
    pub fn store(&self) -> &dyn Store {
        &*self.records.store
    }

    /// A handle on the state store, to keep.
    pub fn store_handle(&self) -> Arc<dyn Store> {
        self.records.store.clone()
    }

    /// The kernel's configuration.
    pub fn config(&self) -> &KernelConfig {
        &self.config
    }

    /// What the reconciler saw last.
    pub fn status(&self) -> &view::StatusBoard {
        &self.status
    }

    /// The secret files' vault.
    pub fn vault(&self) -> &crate::secrets::vault::Vault {
        &self.vault
    }

    /// Where instances run (backups run their `pre_run`/`post_run` in instances and stop and
    /// start an instance around an in-place restore).
    pub fn runtime(&self) -> Arc<dyn Runtime> {
        self.runtime.clone()
    }

    /// This kernel's id: the [`crate::runtime::labels::KERNEL`] label of its instances.
    pub fn kernel_id(&self) -> &str {
        &self.kernel_id
    }

    /// The installed and built-in plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Wakes the reconciler (after a change it should act on).
    pub fn wake(&self) {
        self.records.wake();
    }

    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<AppRecord>, LifecycleError> {
        self.records.apps()
    }

    /// App `name`.
    pub fn app(&self, name: &str) -> Result<AppRecord, LifecycleError> {
        self.records.app(name)
    }

    /// The releases of `app`, oldest first.
    pub fn releases(&self, app: &str) -> Result<Vec<ReleaseRecord>, LifecycleError> {
        self.records.releases(app)
    }

    /// Release `version` of `app`.
    pub fn release(&self, app: &str, version: &str) -> Result<ReleaseRecord, LifecycleError> {
        self.records.release(app, version)
    }

    /// Deploys `version` (default: the newest release) of `app`: renders every proc through its
    /// proc type and makes it the deployed release. The reconciler then rolls it out.
    ///
    /// A client's deploy also deploys (or updates) the instance `resource.<res>.<app>` of every
    /// resource it uses, in the same write ([`resources`]); deploying an instance renders it
    /// again from its resource's `version` (default: newest) release.
    pub fn deploy(&self, app: &str, version: Option<&str>) -> Result<AppRecord, LifecycleError> {
        if let Some((res, client)) = crate::spec::template::instance_of(app) {
            return self.deploy_instance(app, res, client, version);
        }
        self.app(app)?;
        let release = match version {
            Some(v) => self.release(app, v)?,
            None => self.releases(app)?.pop().ok_or_else(|| {
                LifecycleError::NotFound(format!("app `{app}` has no release: run `lain build`"))
            })?,
        };
        let plan::Rendered {
            procs,
            mut use_services,
            use_resources,
        } = plan::render(self, &release)?;
        let mut procs = procs;
        self.check_runtime(&procs)?;
        self.check_names(&procs, &use_services, &use_resources)?;
        self.check_secrets(app, &mut procs)?;
        for proc in &mut procs {
            proc.stamp_plan()
                .map_err(|e| LifecycleError::Internal(anyhow::anyhow!("plan stamp: {e}")))?;
        }
        let routes = claims::routes_of(&procs)?;
        let instances = self.instances_for(app, &use_resources)?;
        // The client reaches its instances' portals as it reaches services' portals.
        for (res, used) in &use_resources {
            use_services.insert(
                crate::spec::template::instance_name(res, app),
                used.services.clone(),
            );
        }
        let params: std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> =
            use_resources
                .into_iter()
                .map(|(res, used)| (res, used.context))
                .collect();
        self.update_app_claiming(
            app,
            |_| Ok(routes.clone()),
            |record| {
                record.deploy(Deployment {
                    release: release.version.clone(),
                    deployed_at: crate::clock::unix_secs(),
                    procs: procs.clone(),
                    use_services: use_services.clone(),
                    use_resources: params.clone(),
                    auto_rollback: true,
                });
                Ok(())
            },
            &instances,
        )
    }

    /// Fails when the app needs service names (`use_services`, a service's portal, the services
    /// of a resource it uses) on a runtime that gives none: the process runtime has no network
    /// namespace, so a client could not reach a portal by its service name. Nothing is deployed
    /// then.
    fn check_names(
        &self,
        procs: &[ProcPlan],
        use_services: &std::collections::BTreeMap<String, Vec<String>>,
        use_resources: &std::collections::BTreeMap<String, crate::spec::model::UseResource>,
    ) -> Result<(), LifecycleError> {
        if self.runtime.name() != "process" {
            return Ok(());
        }
        let mut refused: Vec<String> = procs
            .iter()
            .filter(|p| p.plan.portal.is_some())
            .map(|p| {
                format!(
                    "proc `{}`: a portal serves its clients by service name",
                    p.name
                )
            })
            .collect();
        if !use_services.is_empty() {
            let used: Vec<&str> = use_services.keys().map(String::as_str).collect();
            refused.push(format!(
                "use_services ({}): a client reaches a service by its name",
                used.join(", ")
            ));
        }
        for (res, used) in use_resources.iter().filter(|(_, u)| !u.services.is_empty()) {
            refused.push(format!(
                "use_resources.{res}.services ({}): a client reaches a resource's portals by \
                 their service names (a resource used with `services: []` runs here)",
                used.services.join(", ")
            ));
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(LifecycleError::Invalid(format!(
            "cannot deploy on the process runtime, which gives instances no service names (no \
             network namespace; use the docker runtime):\n  {}",
            refused.join("\n  ")
        )))
    }

    /// Fails, naming each proc and why, when a proc asks for what the runtime cannot give: its
    /// own `image` or a `user` on the process runtime (which runs release directories, every
    /// proc of an app as the app's own identity); nothing is deployed then.
    fn check_runtime(&self, procs: &[ProcPlan]) -> Result<(), LifecycleError> {
        let process = self.runtime.name() == "process";
        let mut refused: Vec<String> = Vec::new();
        for p in procs {
            if !p.plan.image.is_empty()
                && let Err(why) = self.runtime.own_image(&p.plan.image)
            {
                refused.push(format!("proc `{}`: {why}", p.name));
            }
            if process && let Some(user) = &p.plan.user {
                refused.push(format!(
                    "proc `{}`: user `{user}` cannot be honoured on the process runtime, which \
                     runs every proc of an app as the app's own unprivileged identity; remove \
                     `user` or use the docker runtime",
                    p.name
                ));
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(LifecycleError::Invalid(format!(
            "cannot deploy on the {} runtime:\n  {}",
            self.runtime.name(),
            refused.join("\n  ")
        )))
    }

    /// Fails when a proc declares a secret file the vault lacks (unless `secret_files_bypass`),
    /// naming every missing file and how to add it (LAIN checked the same before deploying);
    /// stamps each proc with the versions of its secret files.
    fn check_secrets(&self, app: &str, procs: &mut [ProcPlan]) -> Result<(), LifecycleError> {
        let mut missing = Vec::new();
        for proc in procs.iter_mut().filter(|p| !p.secret_files.is_empty()) {
            let versions: std::collections::BTreeMap<String, i64> = self
                .vault
                .list(app, Some(&proc.name))
                .map_err(|e| LifecycleError::Internal(anyhow::anyhow!("{e}")))?
                .into_iter()
                .filter(|s| proc.secret_files.contains(&s.path))
                .map(|s| (s.path, s.updated_ms))
                .collect();
            proc.secrets_stamp = secrets_stamp(&versions);
            let have = &versions;
            for path in proc.secret_files.iter().filter(|p| !have.contains_key(*p)) {
                if proc.secret_files_bypass {
                    tracing::warn!(app, proc = %proc.name, path, "secret file missing; deploying without it (secret_files_bypass)");
                } else {
                    missing.push(format!(
                        "proc `{}`: {path} (lain secret add {} {path} -a {app} -f FILE)",
                        proc.name, proc.name
                    ));
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(LifecycleError::Conflict(format!(
            "secret files declared in lain.yaml are missing from the vault:\n  {}\n(or set secret_files_bypass: true to deploy without them)",
            missing.join("\n  ")
        )))
    }

    /// Goes back to the deployment before the current one (its routes are claimed again, so a
    /// route an admin gave to another app meanwhile refuses the rollback).
    pub fn rollback(&self, app: &str) -> Result<AppRecord, LifecycleError> {
        let routes = |record: &AppRecord| match record.history.last() {
            Some(previous) => claims::routes_of(&previous.procs),
            None => Ok(Vec::new()),
        };
        self.update_app_claiming(
            app,
            routes,
            |record| {
                let Some(mut previous) = record.history.pop() else {
                    return Err(LifecycleError::Conflict(format!(
                        "app `{app}` has no earlier deployment to roll back to"
                    )));
                };
                previous.deployed_at = crate::clock::unix_secs();
                previous.auto_rollback = false;
                record.deployed = Some(previous);
                record.last_error = None;
                Ok(())
            },
            &[],
        )
    }

    /// Sets instances, memory or cpu of proc `proc` of `app` (kept across redeploys).
    pub fn scale(&self, app: &str, proc: &str, scale: Scale) -> Result<AppRecord, LifecycleError> {
        if scale.num_instances.is_none() && scale.memory.is_none() && scale.cpu.is_none() {
            return Err(LifecycleError::Invalid(
                "give num_instances, memory or cpu".into(),
            ));
        }
        if scale.num_instances.is_some_and(|n| n > 1000) {
            return Err(LifecycleError::Invalid(
                "num_instances is at most 1000".into(),
            ));
        }
        if scale.memory.is_some_and(|m| m < 4 << 20) {
            return Err(LifecycleError::Invalid("memory is at least 4 MiB".into()));
        }
        self.update_app(app, |record| {
            let Some(deployed) = &record.deployed else {
                return Err(LifecycleError::Conflict(format!(
                    "app `{app}` is not deployed"
                )));
            };
            if !deployed.procs.iter().any(|p| p.name == proc) {
                let names: Vec<_> = deployed.procs.iter().map(|p| p.name.as_str()).collect();
                return Err(LifecycleError::NotFound(format!(
                    "app `{app}` has no proc `{proc}` (procs: {})",
                    names.join(", ")
                )));
            }
            let entry = record.scale.entry(proc.to_string()).or_default();
            entry.num_instances = scale.num_instances.or(entry.num_instances);
            entry.memory = scale.memory.or(entry.memory);
            entry.cpu = scale.cpu.or(entry.cpu);
            Ok(())
        })
    }

    /// Stops every instance of `app`; its releases and history stay.
    pub fn undeploy(&self, app: &str) -> Result<AppRecord, LifecycleError> {
        self.update_app(app, |record| {
            if let Some(current) = record.deployed.take() {
                record.history.push(current);
                if record.history.len() > records::HISTORY {
                    record.history.remove(0);
                }
            }
            Ok(())
        })
    }

    /// Reads app `app`, lets `change` modify it, writes it back and wakes the reconciler.
    fn update_app(
        &self,
        app: &str,
        change: impl FnMut(&mut AppRecord) -> Result<(), LifecycleError>,
    ) -> Result<AppRecord, LifecycleError> {
        self.records.update_app(app, change)
    }

    /// Where releases are unpacked and built.
    pub fn releases_dir(&self) -> PathBuf {
        self.config.data_dir.join("releases")
    }

    /// The log file of instance `no` of proc `proc` of `app`, always inside `<data_dir>/logs`:
    /// a name that is not one plain path component is refused.
    pub fn log_file(&self, app: &str, proc: &str, no: u32) -> Result<PathBuf, LifecycleError> {
        Ok(logs::proc_dir(&self.logs_root(), app, proc)?.join(logs::instance_file_name(no)))
    }
}

/// `name` if it is one plain path component (not empty, `.` or `..`, no `/` or NUL), so that
/// joining it to a directory stays inside that directory; else an error naming `what`.
pub fn component<'a>(what: &str, name: &'a str) -> Result<&'a str, LifecycleError> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(LifecycleError::Invalid(format!(
            "{what} name `{}` is not one path component",
            name.escape_debug()
        )));
    }
    Ok(name)
}

/// A kernel id: random enough to tell kernels sharing a host apart.
pub(crate) fn new_kernel_id() -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(std::process::id().to_le_bytes());
    h.update(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
            .to_le_bytes(),
    );
    if let Ok(host) = std::fs::read("/proc/sys/kernel/random/uuid") {
        h.update(host);
    }
    hex::encode(&h.finalize()[..8])
}

impl Lifecycle {
    /// Stops and removes every instance of this kernel (used by `lain up` on Ctrl-C; call it
    /// after stopping the reconciler). Returns how many were stopped.
    pub async fn stop_all(&self) -> Result<usize, crate::runtime::RuntimeError> {
        use futures::StreamExt;
        let instances = self.runtime.list(&self.kernel_id).await?;
        let count = instances.len();
        let results: Vec<_> = futures::stream::iter(instances)
            .map(|o| async move {
                self.runtime
                    .stop(&o.name, std::time::Duration::from_secs(10))
                    .await?;
                self.runtime.remove(&o.name).await
            })
            .buffer_unordered(16)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(count)
    }
}

/// A short digest of secret files' paths and write times (not their contents, which the
/// reconciler does not read to compare, and not the key they are sealed under, so a key
/// rotation replaces no instance).
fn secrets_stamp(versions: &std::collections::BTreeMap<String, i64>) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for (path, updated_ms) in versions {
        h.update(path.as_bytes());
        h.update([0]);
        h.update(updated_ms.to_le_bytes());
    }
    hex::encode(&h.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::component;

    #[test]
    fn only_one_plain_path_component_names_a_log_or_volume_directory() {
        for ok in ["web", "hello.redis.resource", "a-b_c", "..."] {
            assert_eq!(component("proc", ok).ok(), Some(ok));
        }
        for bad in ["", ".", "..", "../../../canary/x", "a/b", "a\0b"] {
            let err = component("proc", bad).expect_err(bad).to_string();
            assert!(err.contains("is not one path component"), "{err}");
        }
    }
}

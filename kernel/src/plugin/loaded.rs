//! A compiled, checked, pre-linked plugin and the machinery of one call under limits.

use super::bindings::{authentication, backup, monitoring, proc_rendering, scheduling, v0_1};
use super::engine::{Compiler, PluginEngine};
use super::error::{CallError, Cause, InstallError};
use super::health::PluginHealth;
use super::limits::{Limits, PluginLimits};
use super::manifest::Manifest;
use super::state::{Identity, PluginState};
use super::world::{FailurePolicy, Kind, WitVersion};
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use wasmtime::component::{Component, Instance, InstancePre};
use wasmtime::{Store, Trap};

/// Where the functions of the plugin's exported interface are, resolved once at load: one
/// variant per kind and hosted WIT version.
pub enum Exports {
    /// A proc type.
    ProcType(proc_rendering::GuestIndices),
    /// A scheduling filter/scorer.
    SchedulerFilter(scheduling::GuestIndices),
    /// A backup hook.
    BackupHook(backup::GuestIndices),
    /// A monitoring exporter.
    MonitorExporter(monitoring::GuestIndices),
    /// An auth provider.
    AuthProvider(authentication::GuestIndices),
    /// A plugin built against `lain:plugin@0.1.0`.
    V0_1(LegacyExports),
}

/// The exports of a `lain:plugin@0.1.0` plugin.
pub enum LegacyExports {
    /// A proc type.
    ProcType(v0_1::proc_rendering::GuestIndices),
    /// A scheduling filter/scorer.
    SchedulerFilter(v0_1::scheduling::GuestIndices),
    /// A backup hook.
    BackupHook(v0_1::backup::GuestIndices),
    /// A monitoring exporter.
    MonitorExporter(v0_1::monitoring::GuestIndices),
    /// An auth provider.
    AuthProvider(v0_1::authentication::GuestIndices),
}

impl Exports {
    /// Resolves the exports of `kind` at `version`; a missing function or a wrong signature is
    /// an error naming it.
    fn new(
        kind: Kind,
        version: WitVersion,
        pre: &InstancePre<PluginState>,
    ) -> Result<Exports, InstallError> {
        let wrong = |e: wasmtime::Error| InstallError::WrongWorld {
            world: kind.world_at(version),
            reason: format!("{e:#}"),
        };
        Ok(match (version, kind) {
            (WitVersion::V0_2, Kind::ProcType) => {
                Exports::ProcType(proc_rendering::GuestIndices::new(pre).map_err(wrong)?)
            }
            (WitVersion::V0_2, Kind::SchedulerFilter) => {
                Exports::SchedulerFilter(scheduling::GuestIndices::new(pre).map_err(wrong)?)
            }
            (WitVersion::V0_2, Kind::BackupHook) => {
                Exports::BackupHook(backup::GuestIndices::new(pre).map_err(wrong)?)
            }
            (WitVersion::V0_2, Kind::MonitorExporter) => {
                Exports::MonitorExporter(monitoring::GuestIndices::new(pre).map_err(wrong)?)
            }
            (WitVersion::V0_2, Kind::AuthProvider) => {
                Exports::AuthProvider(authentication::GuestIndices::new(pre).map_err(wrong)?)
            }
            (WitVersion::V0_1, kind) => Exports::V0_1(match kind {
                Kind::ProcType => LegacyExports::ProcType(
                    v0_1::proc_rendering::GuestIndices::new(pre).map_err(wrong)?,
                ),
                Kind::SchedulerFilter => LegacyExports::SchedulerFilter(
                    v0_1::scheduling::GuestIndices::new(pre).map_err(wrong)?,
                ),
                Kind::BackupHook => {
                    LegacyExports::BackupHook(v0_1::backup::GuestIndices::new(pre).map_err(wrong)?)
                }
                Kind::MonitorExporter => LegacyExports::MonitorExporter(
                    v0_1::monitoring::GuestIndices::new(pre).map_err(wrong)?,
                ),
                Kind::AuthProvider => LegacyExports::AuthProvider(
                    v0_1::authentication::GuestIndices::new(pre).map_err(wrong)?,
                ),
            }),
        })
    }

    /// The WIT version these exports implement.
    pub fn version(&self) -> WitVersion {
        match self {
            Exports::V0_1(_) => WitVersion::V0_1,
            _ => WitVersion::V0_2,
        }
    }
}

/// Compiled code of a component, checked against its world and pre-linked: what a plugin runs,
/// without its configuration.
pub struct Build {
    pre: InstancePre<PluginState>,
    exports: Arc<Exports>,
    compiler: Compiler,
}

impl Build {
    /// Checks `component` (compiled by `engine`) against the world of `kind` and resolves its
    /// exports.
    pub fn new(
        engine: &PluginEngine,
        component: &Component,
        kind: Kind,
    ) -> Result<Build, InstallError> {
        let (pre, version) = engine.check(component, kind)?;
        let exports = Exports::new(kind, version, &pre)?;
        Ok(Build {
            pre,
            exports: Arc::new(exports),
            compiler: engine.compiler_of(component),
        })
    }

    /// Which compiler produced it.
    pub fn compiler(&self) -> Compiler {
        self.compiler
    }
}

/// Numbers each load of a component (see [`LoadedPlugin::load_id`]).
static LOADS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A plugin ready to be called: compiled once, checked against its world, pre-linked.
///
/// Proc types and backup hooks get a fresh instance per call from the `InstancePre` (about 10 µs
/// with the pooling allocator): they are called rarely, and a backup hook's instance is given one
/// volume. Auth providers and exporters run on every request or scrape, so a few warm instances
/// are kept and reused: what the plugin builds from its configuration (a JWT provider's parsed
/// keys) survives between calls. A call that faults never returns its instance, so a trap never
/// leaves a poisoned instance behind. Scheduler plugins keep one long-lived instance each instead
/// (see `crate::schedule`).
pub struct LoadedPlugin {
    /// The manifest the plugin was installed with.
    pub manifest: Manifest,
    /// SHA-256 of the component bytes, hex.
    pub sha256: String,
    /// Whether it ships inside the kernel.
    pub builtin: bool,
    engine: Arc<PluginEngine>,
    pre: InstancePre<PluginState>,
    exports: Arc<Exports>,
    compiler: Compiler,
    load_id: u64,
    identity: Arc<Identity>,
    limits: Limits,
    overrides: PluginLimits,
    health: Arc<PluginHealth>,
    policy: RwLock<Option<FailurePolicy>>,
    idle: parking_lot::Mutex<Vec<(Store<PluginState>, Instance)>>,
}

/// Warm instances kept per plugin whose kind reuses them.
const IDLE_INSTANCES: usize = 4;

impl LoadedPlugin {
    /// Compiles with Cranelift (or loads from cache), checks and pre-links a component.
    /// `operator_config` is the operator's configuration for the plugin, merged over the
    /// manifest's defaults; only its `files` grant files (a `files` key among the manifest's
    /// defaults is dropped, whatever record it came from).
    pub fn load(
        engine: &Arc<PluginEngine>,
        manifest: Manifest,
        bytes: &[u8],
        builtin: bool,
        operator_config: Option<&serde_json::Value>,
    ) -> Result<LoadedPlugin, InstallError> {
        let sha256 = sha256_hex(bytes);
        let component = engine.compile(&sha256, bytes)?;
        let build = Build::new(engine, &component, manifest.kind)?;
        LoadedPlugin::assemble(engine, manifest, sha256, builtin, build, operator_config)
    }

    /// [`LoadedPlugin::load`] on the quickest usable build ([`PluginEngine::compile_tiered`]):
    /// the cached Cranelift build, else a Winch build that [`LoadedPlugin::with_build`] later
    /// replaces by the Cranelift one ([`LoadedPlugin::compiler`] says which it runs).
    pub fn load_tiered(
        engine: &Arc<PluginEngine>,
        manifest: Manifest,
        bytes: &[u8],
        builtin: bool,
        operator_config: Option<&serde_json::Value>,
    ) -> Result<LoadedPlugin, InstallError> {
        let sha256 = sha256_hex(bytes);
        let component = engine.compile_tiered(&sha256, bytes)?;
        let build = Build::new(engine, &component, manifest.kind)?;
        LoadedPlugin::assemble(engine, manifest, sha256, builtin, build, operator_config)
    }

    /// The same compiled plugin under another operator configuration (a live configuration
    /// change): nothing is compiled again. It starts with its own health and no warm instances;
    /// see [`LoadedPlugin::adopt_health`].
    pub fn reconfigured(
        &self,
        operator_config: Option<&serde_json::Value>,
    ) -> Result<LoadedPlugin, InstallError> {
        let mut plugin = LoadedPlugin::assemble(
            &self.engine,
            self.manifest.clone(),
            self.sha256.clone(),
            self.builtin,
            self.build(),
            operator_config,
        )?;
        plugin.load_id = self.load_id;
        plugin.set_policy(self.policy_overridden());
        Ok(plugin)
    }

    /// This plugin (same configuration, limits, policy, health and [`LoadedPlugin::load_id`]) on
    /// other code of the same component: its Cranelift build in place of its Winch one. Calls in
    /// flight on `self` finish there; its warm instances are not carried over (they belong to
    /// the other engine).
    pub fn with_build(&self, build: Build) -> LoadedPlugin {
        LoadedPlugin {
            manifest: self.manifest.clone(),
            sha256: self.sha256.clone(),
            builtin: self.builtin,
            engine: self.engine.clone(),
            pre: build.pre,
            exports: build.exports,
            compiler: build.compiler,
            load_id: self.load_id,
            identity: self.identity.clone(),
            limits: self.limits.clone(),
            overrides: self.overrides.clone(),
            health: self.health.clone(),
            policy: RwLock::new(self.policy_overridden()),
            idle: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn build(&self) -> Build {
        Build {
            pre: self.pre.clone(),
            exports: self.exports.clone(),
            compiler: self.compiler,
        }
    }

    /// Which compiler produced the code this plugin runs.
    pub fn compiler(&self) -> Compiler {
        self.compiler
    }

    /// Which load of a component this is: unique per [`LoadedPlugin::load`] or
    /// [`LoadedPlugin::load_tiered`], kept by [`LoadedPlugin::reconfigured`] and
    /// [`LoadedPlugin::with_build`]. A background build is swapped in only over the load it was
    /// made for, never over a later upgrade or reinstall (even of the same bytes).
    pub fn load_id(&self) -> u64 {
        self.load_id
    }

    /// Shares `other`'s health (calls, failures, quarantine) from now on: a reconfigured plugin
    /// keeps the record of the one it replaces.
    pub fn adopt_health(&mut self, other: &LoadedPlugin) {
        self.health = other.health.clone();
    }

    /// The effective configuration and limits over a compiled, checked plugin.
    fn assemble(
        engine: &Arc<PluginEngine>,
        manifest: Manifest,
        sha256: String,
        builtin: bool,
        build: Build,
        operator_config: Option<&serde_json::Value>,
    ) -> Result<LoadedPlugin, InstallError> {
        let refused = |reason: String| InstallError::BadConfig {
            plugin: manifest.name.clone(),
            reason,
        };
        let overrides = PluginLimits::from_config(operator_config).map_err(refused)?;
        let limits = overrides.apply(engine.limits()).map_err(refused)?;
        let config = effective_config(&manifest, operator_config);
        let files = granted_files(&manifest.name, operator_config);
        let identity = Arc::new(Identity::new(
            &manifest.name,
            &manifest.version,
            &config,
            files,
            limits.log_lines_per_sec,
        ));
        Ok(LoadedPlugin {
            manifest,
            sha256,
            builtin,
            engine: engine.clone(),
            pre: build.pre,
            exports: build.exports,
            compiler: build.compiler,
            load_id: LOADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            identity,
            limits,
            overrides,
            health: Arc::new(PluginHealth::new()),
            policy: RwLock::new(None),
            idle: parking_lot::Mutex::new(Vec::new()),
        })
    }

    /// The configuration the plugin sees (`host.config()`), as JSON text.
    pub fn config_json(&self) -> &str {
        &self.identity.config_json
    }

    /// The operator's own limits of this plugin (unset: the engine-wide value).
    pub fn limit_overrides(&self) -> &PluginLimits {
        &self.overrides
    }

    /// The files the operator granted: name -> path.
    pub fn granted_files(&self) -> &BTreeMap<String, PathBuf> {
        &self.identity.files
    }

    /// Plugin name.
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// Plugin kind.
    pub fn kind(&self) -> Kind {
        self.manifest.kind
    }

    /// The resolved exports.
    pub fn exports(&self) -> &Exports {
        &self.exports
    }

    /// The WIT package version the plugin implements.
    pub fn wit_version(&self) -> WitVersion {
        self.exports.version()
    }

    /// The limits calls to this plugin run under: the engine-wide ones with the operator\x27s
    /// overrides for this plugin.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The plugin's health.
    pub fn health(&self) -> &PluginHealth {
        &self.health
    }

    /// The effective failure policy: the operator's choice, else the kind's default.
    pub fn policy(&self) -> FailurePolicy {
        self.policy
            .read()
            .unwrap_or_else(|| self.kind().default_policy())
    }

    /// Whether the operator overrode the policy.
    pub fn policy_overridden(&self) -> Option<FailurePolicy> {
        *self.policy.read()
    }

    /// Sets (or with `None` resets) the operator's failure policy.
    pub fn set_policy(&self, policy: Option<FailurePolicy>) {
        *self.policy.write() = policy;
    }

    /// A fresh store for one instance of this plugin, limits armed.
    pub fn new_store(&self, volume: Option<&Path>) -> Result<Store<PluginState>, Cause> {
        let limits = &self.limits;
        let state = PluginState::new(self.identity.clone(), limits.memory_bytes, volume)
            .map_err(|e| Cause::Host(format!("{e:#}")))?;
        // The engine that compiled the plugin: a store of the other cannot instantiate it.
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|s| &mut s.cap);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(limits.deadline_ticks());
        Ok(store)
    }

    /// Instantiates the plugin in `store`.
    pub fn instantiate(&self, store: &mut Store<PluginState>) -> Result<Instance, Cause> {
        self.pre
            .instantiate(&mut *store)
            .map_err(|e| self.cause(store, e))
    }

    /// Runs one call in a fresh instance: admission (quarantine), limits, error mapping, health
    /// accounting. `f` calls the export; `check` validates the result (e.g. its size).
    pub fn call<R>(
        &self,
        function: &'static str,
        volume: Option<&Path>,
        f: impl FnOnce(&mut Store<PluginState>, &Instance) -> wasmtime::Result<R>,
        check: impl FnOnce(&R) -> Result<(), Cause>,
    ) -> Result<R, CallError> {
        let reuse =
            volume.is_none() && matches!(self.kind(), Kind::AuthProvider | Kind::MonitorExporter);
        let result = self.health.admit(&self.limits).and_then(|()| {
            let (mut store, instance) = match self.idle.lock().pop().filter(|_| reuse) {
                Some((mut store, instance)) => {
                    store.set_epoch_deadline(self.limits.deadline_ticks());
                    (store, instance)
                }
                None => {
                    let mut store = self.new_store(volume)?;
                    let instance = self.instantiate(&mut store)?;
                    (store, instance)
                }
            };
            let value = f(&mut store, &instance).map_err(|e| self.cause(&store, e))?;
            check(&value)?;
            // A chatty instance would eventually fill its stderr buffer: let it go instead.
            if reuse && store.data().stderr.contents().len() < super::state::STDERR_CAPACITY / 2 {
                let mut idle = self.idle.lock();
                if idle.len() < IDLE_INSTANCES {
                    idle.push((store, instance));
                }
            }
            Ok(value)
        });
        self.finish(function, result)
    }

    /// Accounts for the outcome of a call and names plugin, version and function in the error.
    pub fn finish<R>(
        &self,
        function: &'static str,
        result: Result<R, Cause>,
    ) -> Result<R, CallError> {
        self.health
            .record(result.as_ref().map(|_| ()), &self.limits);
        self.identity.report_dropped_lines();
        result.map_err(|cause| self.error(function, cause))
    }

    /// A `CallError` naming this plugin.
    pub fn error(&self, function: &'static str, cause: Cause) -> CallError {
        CallError {
            plugin: self.manifest.name.clone(),
            version: self.manifest.version.clone(),
            function,
            cause,
        }
    }

    /// Maps a wasmtime error of a call in `store` to its cause.
    pub fn cause(&self, store: &Store<PluginState>, e: wasmtime::Error) -> Cause {
        let limits = &self.limits;
        if store.data().cap.hit {
            return Cause::MemoryCap {
                cap_bytes: limits.memory_bytes,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => Cause::CpuBudget {
                budget_ms: limits.cpu_ms,
            },
            Some(Trap::StackOverflow) => Cause::StackOverflow,
            Some(trap) => {
                let stderr = store.data().stderr_text();
                if stderr.contains("panicked") {
                    Cause::Panic(panic_message(&stderr))
                } else if stderr.is_empty() {
                    Cause::Trap(trap.to_string())
                } else {
                    Cause::Trap(format!("{trap}: {stderr}"))
                }
            }
            None => Cause::Host(format!("{e:#}")),
        }
    }
}

/// Extracts the useful part of a Rust panic report: `panicked at src/lib.rs:3:5:\nmessage`.
fn panic_message(stderr: &str) -> String {
    let after = stderr
        .split_once("panicked at ")
        .map_or(stderr, |(_, rest)| rest);
    let (location, rest) = after.split_once(":\n").unwrap_or(("", after));
    let message = rest.lines().next().unwrap_or(rest).trim();
    if location.is_empty() {
        message.to_string()
    } else {
        format!("{message} (at {location})")
    }
}

/// What a plugin sees as its configuration: the manifest's defaults (never a `files` key) with
/// the operator's configuration merged over them, but for the operator's `limits` table (it
/// sets the kernel's limits of the plugin, see [`PluginLimits`], and is not the plugin's to read).
pub fn effective_config(
    manifest: &Manifest,
    operator_config: Option<&serde_json::Value>,
) -> serde_json::Value {
    let mut config = manifest.config.clone();
    if let Some(defaults) = config.as_object_mut()
        && defaults.remove("files").is_some()
    {
        tracing::warn!(plugin = %manifest.name, "ignoring `files` in the manifest's configuration: only the operator grants files");
    }
    if let Some(overrides) = operator_config {
        let mut overrides = overrides.clone();
        if let Some(table) = overrides.as_object_mut() {
            table.remove("limits");
        }
        merge(&mut config, &overrides);
    }
    config
}

/// The operator's file grants in `config` (`files.<name> = "/path"`); an entry that is not a
/// string or whose name is not a file name is left out with a warning.
fn granted_files(plugin: &str, config: Option<&serde_json::Value>) -> BTreeMap<String, PathBuf> {
    let Some(files) = config.and_then(|c| c.get("files")) else {
        return BTreeMap::new();
    };
    let Some(files) = files.as_object() else {
        tracing::warn!(%plugin, "`files` in the plugin's configuration is not a table: no file granted");
        return BTreeMap::new();
    };
    files
        .iter()
        .filter_map(|(name, path)| {
            let granted = super::manifest::check_file_name(name)
                .and_then(|()| path.as_str().ok_or_else(|| "not a path".to_string()));
            match granted {
                Ok(path) => Some((name.clone(), PathBuf::from(path))),
                Err(e) => {
                    tracing::warn!(%plugin, file = %name, "file grant left out: {e}");
                    None
                }
            }
        })
        .collect()
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Merges `overrides` into `base`: objects key by key, anything else replaced.
pub fn merge(base: &mut serde_json::Value, overrides: &serde_json::Value) {
    match (base, overrides) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted() {
        let s = "thread '<unnamed>' panicked at src/lib.rs:10:9:\nboom on purpose\nnote: run with `RUST_BACKTRACE=1`";
        assert_eq!(panic_message(s), "boom on purpose (at src/lib.rs:10:9)");
    }

    #[test]
    fn merge_is_deep() {
        let mut a = serde_json::json!({"a": 1, "o": {"x": 1, "y": 2}});
        merge(&mut a, &serde_json::json!({"o": {"y": 3}, "b": true}));
        assert_eq!(
            a,
            serde_json::json!({"a": 1, "b": true, "o": {"x": 1, "y": 3}})
        );
    }
}

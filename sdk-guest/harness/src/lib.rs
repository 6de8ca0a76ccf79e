//! Run a built lain plugin under the kernel's real plugin host, from the plugin's own `cargo test`.
//!
//! The SDK's unit tests call a plugin's Rust functions directly; this harness runs the component
//! an operator would install (the `.wasm`), with the kernel's own engine, linker, install-time
//! checks, limits and result checks. What fails here fails the same way on a kernel.
//!
//! ```toml
//! # the plugin's Cargo.toml
//! [dev-dependencies]
//! lain-plugin-harness = { path = "/path/to/lain/sdk-guest/harness" }
//! ```
//!
//! ```no_run
//! // the plugin's tests/harness.rs
//! use lain_plugin_harness::{Harness, build};
//!
//! # fn main() -> Result<(), lain_plugin_harness::HarnessError> {
//! let wasm = build(env!("CARGO_MANIFEST_DIR"))?; // cargo build --release --target wasm32-wasip2
//! let plugin = Harness::new()?.load(&wasm)?;
//! assert_eq!(plugin.describe()?.name, "cron");
//! let plans = plugin.render_yaml(
//!     "appname: shop\nbuild: {base: busybox}\ncron.nightly:\n  cmd: ./report\n  schedule: \"@daily\"\n",
//! )?;
//! assert_eq!(plans[0].proc, "nightly");
//! # Ok(())
//! # }
//! ```
//!
//! [`build`] runs a nested `cargo build` of the plugin for `wasm32-wasip2` in a target directory
//! of its own (`$LAIN_GUEST_TARGET_DIR`, else `wasm-guests/` inside the test's target directory),
//! with the outer build's flags cleared: the nested cargo never waits on the lock the running
//! `cargo test` holds, and a warm build is a no-op. Scheduler plugins get a live instance
//! ([`Plugin::scheduler`]) with the kernel's typed `sync-*` and `evaluate` calls; every kind can be
//! called through [`Plugin::loaded`] and `lain::plugin::kinds`.

#![warn(missing_docs)]

mod build;

pub use build::{build, guest_target_dir};
pub use lain::cli::validate::RenderedProc;
pub use lain::plugin::bindings::proc_rendering::{
    ConcurrencyPolicy, ContainerPlan, MissedPolicy, PlacementMode, RestartPolicy, RestartRule,
    Schedule, TypeInfo,
};
pub use lain::plugin::bindings::scheduling;
pub use lain::plugin::bindings::types::{AppContext, PluginError, Problem, Proc};
pub use lain::plugin::kinds::scheduler::LiveScheduler;
pub use lain::plugin::{CallError, Cause, Kind, Limits, LoadedPlugin, Manifest};
pub use lain::spec::Diagnostic;

use lain::cli::validate::{builtin_proc_types, render_procs};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::spec::{self, PluginProcTypes, Severity};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What went wrong in the harness, naming the file or call.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Building the plugin failed (the nested cargo's output went to the test's stderr).
    #[error("building {manifest_dir} for wasm32-wasip2: {message}")]
    Build {
        /// The plugin crate's directory.
        manifest_dir: PathBuf,
        /// What failed.
        message: String,
    },
    /// The kernel would refuse to install the component (or the engine could not start).
    #[error("loading {file}: {message}")]
    Load {
        /// The component file.
        file: PathBuf,
        /// Why, with its causes.
        message: String,
    },
    /// A call into the plugin failed, as it would on a kernel (names plugin, version, function).
    #[error(transparent)]
    Call(#[from] CallError),
    /// The `lain.yaml` has errors (each with its line, column and key path).
    #[error("lain.yaml has errors:\n{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Spec(Vec<Diagnostic>),
}

/// The kernel's plugin engine, with its limits.
pub struct Harness {
    engine: Arc<PluginEngine>,
}

impl Harness {
    /// An engine with the kernel's default limits (`[plugins.limits]` unset).
    pub fn new() -> Result<Harness, HarnessError> {
        Harness::with_limits(Limits::default())
    }

    /// An engine with `limits` (as `[plugins.limits]` in a kernel configuration would set them).
    /// Compiled components are cached beside the guests' build, in `plugin-cache/`.
    pub fn with_limits(limits: Limits) -> Result<Harness, HarnessError> {
        let cache = guest_target_dir(None).join("plugin-cache");
        let engine = PluginEngine::new(limits, Some(cache)).map_err(|e| HarnessError::Load {
            file: PathBuf::from("(engine)"),
            message: format!("cannot start the plugin engine: {e:#}"),
        })?;
        Ok(Harness { engine })
    }

    /// Loads a component as `lain plugin install` would: compiled, checked against its world
    /// (imports, exports, signatures), with the manifest beside it (`FILE.toml`) or embedded.
    pub fn load(&self, wasm: &Path) -> Result<Plugin, HarnessError> {
        self.load_with_config(wasm, None)
    }

    /// [`Harness::load`] with an operator configuration merged over the manifest's defaults (as
    /// `[plugins.config.<name>]` or `lain plugin config` would set it).
    pub fn load_with_config(
        &self,
        wasm: &Path,
        config: Option<serde_json::Value>,
    ) -> Result<Plugin, HarnessError> {
        let failed = |message: String| HarnessError::Load {
            file: wasm.to_path_buf(),
            message,
        };
        let bytes = std::fs::read(wasm).map_err(|e| failed(e.to_string()))?;
        // As `lain plugin install` takes it: a manifest beside the file, else the embedded one.
        let beside = wasm.with_extension("toml");
        let manifest = if beside.is_file() {
            let text = std::fs::read_to_string(&beside)
                .map_err(|e| failed(format!("{}: {e}", beside.display())))?;
            Manifest::parse(&text).map_err(|e| failed(format!("{}: {e}", beside.display())))?
        } else {
            Manifest::embedded(&bytes)
                .map_err(|e| failed(e.to_string()))?
                .ok_or_else(|| {
                    failed("no manifest: build it with the SDK's export macro, or put one beside it as FILE.toml".into())
                })?
        };
        let loaded = LoadedPlugin::load(&self.engine, manifest, &bytes, false, config.as_ref())
            .map_err(|e| failed(e.to_string()))?;
        Ok(Plugin {
            engine: self.engine.clone(),
            loaded: Arc::new(loaded),
        })
    }
}

/// A loaded plugin, called through the kernel's typed wrappers.
pub struct Plugin {
    engine: Arc<PluginEngine>,
    loaded: Arc<LoadedPlugin>,
}

impl Plugin {
    /// The kernel's handle on the plugin (for the wrappers in `lain::plugin::kinds`).
    pub fn loaded(&self) -> &Arc<LoadedPlugin> {
        &self.loaded
    }

    /// The manifest the plugin was loaded with.
    pub fn manifest(&self) -> &Manifest {
        &self.loaded.manifest
    }

    /// A proc type's `describe`: the type it serves, its extra keys, its summary.
    pub fn describe(&self) -> Result<TypeInfo, HarnessError> {
        Ok(ProcTypePlugin(&self.loaded).describe()?)
    }

    /// A proc type's `validate`; `Ok(Err(problems))` is the plugin's list of problems. What the
    /// plugin returns is re-checked as the kernel re-checks it.
    pub fn validate(
        &self,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, HarnessError> {
        Ok(ProcTypePlugin(&self.loaded).validate(proc, ctx)?)
    }

    /// A proc type's `render`, re-checked as the kernel re-checks it.
    pub fn render(&self, proc: &Proc, ctx: &AppContext) -> Result<ContainerPlan, HarnessError> {
        Ok(ProcTypePlugin(&self.loaded).render(proc, ctx)?)
    }

    /// Parses a whole `lain.yaml` with the kernel's parser, the built-in proc types and this
    /// plugin (as `lain validate --plugin` does): the diagnostics, located.
    pub fn check_yaml(&self, yaml: &str) -> Result<Vec<Diagnostic>, HarnessError> {
        let types = self.types()?;
        Ok(spec::parse("lain.yaml", yaml, &types, &domains()).diagnostics)
    }

    /// Parses a `lain.yaml` as [`Plugin::check_yaml`] and renders every proc as `lain validate
    /// --render` does (release `local`, cluster domain `lain.local`); an error diagnostic is
    /// [`HarnessError::Spec`].
    pub fn render_yaml(&self, yaml: &str) -> Result<Vec<RenderedProc>, HarnessError> {
        let types = self.types()?;
        let parsed = spec::parse("lain.yaml", yaml, &types, &domains());
        match parsed.spec {
            Some(app) => Ok(render_procs(&app, &types, &domains(), "local")),
            None => Err(HarnessError::Spec(
                parsed
                    .diagnostics
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error)
                    .collect(),
            )),
        }
    }

    /// A live instance of a scheduler plugin, as the kernel keeps one: sync the cluster into it
    /// (`sync_labels`, `sync_nodes`, `define_proc`, ...) and call `evaluate`.
    pub fn scheduler(&self) -> Result<LiveScheduler, HarnessError> {
        Ok(LiveScheduler::start(self.loaded.clone())?)
    }

    fn types(&self) -> Result<PluginProcTypes, HarnessError> {
        let failed = |message: String| HarnessError::Load {
            file: PathBuf::from("(built-in proc types)"),
            message,
        };
        let mut plugins = builtin_proc_types(&self.engine, &BTreeMap::new())
            .map_err(|e| failed(format!("{e:#}")))?;
        plugins.push(self.loaded.clone());
        Ok(PluginProcTypes::new(plugins, &BTreeMap::new())?)
    }
}

/// A proc of `proc_type` named `name` in app `app`, with LAIN's defaults for every key, and the
/// given extra keys (a JSON object, e.g. `{"schedule": "@daily"}`).
pub fn proc(app: &str, name: &str, proc_type: &str, extra: serde_json::Value) -> Proc {
    let mut proc = Proc::with_lain_defaults(app, name, proc_type);
    proc.extra = extra.to_string();
    proc
}

/// The context the kernel renders `app` in: cluster domain `lain.local`, release `local`.
pub fn context(app: &str) -> AppContext {
    AppContext {
        app: app.into(),
        app_domain: spec::app_domain(app),
        cluster_domains: domains(),
        release: "local".into(),
    }
}

fn domains() -> Vec<String> {
    vec!["lain.local".into()]
}

//! Assembling a kernel from its configuration: state store, plugin engine, registry, chains.

use crate::api::AppState;
use crate::auth::AuthChain;
use crate::config::KernelConfig;
use crate::monitor::Monitor;
use crate::plugin::engine::PluginEngine;
use crate::plugin::kinds::scheduler::LiveScheduler;
use crate::plugin::registry::Registry;
use crate::plugin::{CallError, Cause, Kind, LoadedPlugin};
use crate::schedule::{Backend, MemberSpec};
use crate::store::Store;
use crate::store::embedded::EmbeddedStore;
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
}

impl Kernel {
    /// Opens the data dir (creating it), the plugin engine and the registry with `builtins`.
    pub fn open(config: KernelConfig, builtins: &[(&str, &[u8])]) -> anyhow::Result<Kernel> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let store_path = config.data_dir.join("state.redb");
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&store_path).with_context(|| {
                format!("cannot open the state store {}", store_path.display())
            })?);
        let engine = PluginEngine::new(config.plugins.limits.clone(), Some(config.cache_dir()))
            .context("cannot start the plugin engine")?;
        let registry = Registry::open(
            engine,
            store.clone(),
            builtins,
            config.plugins.config.clone(),
        )
        .context("cannot load plugins")?;
        Ok(Kernel {
            config,
            store,
            registry: Arc::new(registry),
        })
    }

    /// The scheduling pipeline's members as `[scheduler]` configures them: in order, with their
    /// weights and each plugin's current failure policy. A configured plugin that is missing,
    /// disabled or of another kind is an error naming it. When [`Registry::generation`] changes,
    /// build them again and hand them to `Pipeline::reconfigure`.
    pub fn scheduler_members(&self) -> Result<Vec<MemberSpec>, CallError> {
        let mut specs = Vec::new();
        for name in &self.config.scheduler.plugins {
            let plugin = resolve(&self.registry, name, Kind::SchedulerFilter)?;
            specs.push(MemberSpec {
                name: name.clone(),
                weight: self
                    .config
                    .scheduler
                    .weights
                    .get(name)
                    .copied()
                    .unwrap_or(1),
                policy: plugin.policy(),
                factory: Box::new(move || {
                    Ok(Box::new(LiveScheduler::start(plugin.clone())?) as Box<dyn Backend>)
                }),
            });
        }
        Ok(specs)
    }

    /// The plugin serving proc type `ty` (per `[proc_types]`, else the plugin of that name).
    pub fn proc_type_plugin(&self, ty: &str) -> Result<Arc<LoadedPlugin>, CallError> {
        resolve(
            &self.registry,
            self.config.proc_type_plugin(ty),
            Kind::ProcType,
        )
    }

    /// What the API handlers share.
    pub fn app_state(&self) -> AppState {
        AppState {
            registry: self.registry.clone(),
            auth: AuthChain::new(self.registry.clone(), self.config.auth.providers.clone()),
            monitor: Monitor::new(self.registry.clone(), self.config.monitor.exporters.clone()),
            proc_types: self.config.proc_types.clone(),
            domains: self.config.domains.clone(),
        }
    }
}

/// The enabled plugin `name` of `kind`, or an error naming it.
fn resolve(registry: &Registry, name: &str, kind: Kind) -> Result<Arc<LoadedPlugin>, CallError> {
    let error = |cause| CallError {
        plugin: name.to_string(),
        version: String::new(),
        function: "resolve",
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

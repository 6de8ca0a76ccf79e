//! Assembling a kernel from its configuration: state store, plugin engine, registry, chains.

use crate::api::AppState;
use crate::auth::AuthChain;
use crate::config::KernelConfig;
use crate::monitor::Monitor;
use crate::plugin::engine::PluginEngine;
use crate::plugin::registry::Registry;
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

    /// What the API handlers share.
    pub fn app_state(&self) -> AppState {
        AppState {
            registry: self.registry.clone(),
            auth: AuthChain::new(self.registry.clone(), self.config.auth.providers.clone()),
            monitor: Monitor::new(self.registry.clone(), self.config.monitor.exporters.clone()),
        }
    }
}

//! `[plugins]`: the plugin host's section of the kernel configuration.

use super::limits::{Limits, PluginLimits};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[plugins]`: the limits of every call and each plugin's own configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Limits of every plugin call.
    pub limits: Limits,
    /// Configuration per plugin name, merged over the plugin's manifest defaults. Its `files`
    /// table (`name = "/path"`) is the only way a plugin is granted a file; its `limits` table
    /// (`cpu_ms`, `wall_ms`, `memory_bytes`) sets the plugin's own limits over `limits` (see
    /// [`PluginLimits`]). `lain plugin config` replaces a plugin's table live, but for `files`.
    pub config: BTreeMap<String, serde_json::Value>,
}

impl Config {
    /// Checks each plugin's `limits` against the engine-wide ones, naming the plugin.
    pub fn check(&self) -> Result<(), String> {
        for (name, table) in &self.config {
            PluginLimits::from_config(Some(table))
                .and_then(|l| l.apply(&self.limits))
                .map_err(|e| format!("[plugins.config.{name}] {e}"))?;
        }
        Ok(())
    }
}

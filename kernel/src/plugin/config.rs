//! `[plugins]`: the plugin host's section of the kernel configuration.

use super::limits::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[plugins]`: the limits of every call and each plugin's own configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Limits of every plugin call.
    pub limits: Limits,
    /// Configuration per plugin name, merged over the plugin's manifest defaults. Its `files`
    /// table (`name = "/path"`) is the only way a plugin is granted a file.
    pub config: BTreeMap<String, serde_json::Value>,
}

//! Backups of volumes, planned by a backup-hook plugin: this module owns the `[backup]` section
//! of the kernel configuration.

use serde::{Deserialize, Serialize};

/// `[backup]`: which backup-hook plugin plans backups.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The backup-hook plugin.
    pub hook: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hook: "archive".into(),
        }
    }
}

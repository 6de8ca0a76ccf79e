//! Backups of volumes: today only the `[backup]` section of the kernel configuration. The kernel
//! runs no backups yet, so nothing calls a backup-hook plugin.

use serde::{Deserialize, Serialize};

/// `[backup]`: read and kept, but the kernel does not run backups yet, so nothing calls the hook.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The backup-hook plugin that volume backups will call (not yet run by the kernel).
    pub hook: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hook: "archive".into(),
        }
    }
}

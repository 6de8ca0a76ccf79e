//! `[lifecycle]`: the lifecycle's section of the kernel configuration.

use serde::{Deserialize, Serialize};

/// `[lifecycle]`: deploys and rollouts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seconds (beyond `setup_time` and the health check's window) a new instance has to become
    /// ready before its rollout fails and the previous deployment comes back.
    pub rollout_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rollout_timeout_secs: 120,
        }
    }
}

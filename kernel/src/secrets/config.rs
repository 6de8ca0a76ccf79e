//! `[secrets]`: the vault's section of the kernel configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[secrets]`: where the vault's master key lives.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The vault's master key file (64 hex digits; created 0600 with a random key when missing).
    /// Default `<data_dir>/vault.key`; keep it off the data dir's backups.
    pub key_file: Option<PathBuf>,
}

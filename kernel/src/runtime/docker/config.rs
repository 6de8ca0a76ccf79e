//! `[docker]`: the Docker runtime's section of the kernel configuration.

use super::engine::TlsFiles;
use serde::{Deserialize, Serialize};

/// `[docker]`: the engines and the registry of the Docker runtime.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The engine of node `local` (and of nodes added with address `local`).
    pub local: String,
    /// Client certificates for engines reached at `tcp://` addresses.
    pub tls: Option<TlsFiles>,
    /// A registry (`host:port`) releases are pushed to and nodes pull from; without one, a
    /// node's engine gets a missing image copied from an engine that has it.
    pub registry: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local: "unix:///var/run/docker.sock".into(),
            tls: None,
            registry: None,
        }
    }
}

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
    /// How cloud volumes (`cloud_volumes`) are made: each is a named volume of this driver,
    /// created by the engine of the node its instance runs on.
    pub cloud_volumes: CloudVolumes,
    /// How an app's containers are networked: `bridge` (one bridge network per app per engine:
    /// procs on different engines do not reach each other) or `overlay` (one swarm-scope
    /// attachable overlay network per app: procs reach each other by name on any engine of the
    /// swarm).
    pub network: NetworkMode,
}

/// `[docker] network`: the kind of network each app gets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// One bridge network per app on each engine; for a single-engine site.
    #[default]
    Bridge,
    /// One attachable overlay network per app across the engines of one Docker swarm: every
    /// node's engine must be a member, and one of them a manager.
    Overlay,
}

/// `[docker.cloud_volumes]`: the volume driver of cloud volumes and its options.
///
/// With the `local` driver and no options (the default) a cloud volume lives on one engine:
/// instances on the same node share it, instances on other nodes get a volume of the same name
/// there. To share one across nodes, use a driver (or `local` options, e.g. NFS) that gives
/// every engine the same storage; `{name}` in an option value is replaced by the volume's name,
/// so that each cloud volume gets its own directory of the export (which must exist there: the
/// `local` driver mounts it, it does not create it):
///
/// ```toml
/// [docker.cloud_volumes]
/// driver = "local"
/// options = { type = "nfs", o = "addr=10.0.0.5,rw,nfsvers=4", device = ":/exports/lain/{name}" }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CloudVolumes {
    /// The volume driver; none: the engine's default (`local`).
    pub driver: Option<String>,
    /// Driver options, `{name}` in values replaced by the volume name.
    pub options: std::collections::BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            local: "unix:///var/run/docker.sock".into(),
            tls: None,
            registry: None,
            cloud_volumes: CloudVolumes::default(),
            network: NetworkMode::Bridge,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Config, NetworkMode};

    #[test]
    fn network_is_bridge_unless_overlay_is_asked_for_and_other_kinds_are_refused() {
        let parse = |toml: &str| toml::from_str::<Config>(toml);
        assert_eq!(parse("").expect("empty").network, NetworkMode::Bridge);
        assert_eq!(
            parse("network = \"overlay\"").expect("overlay").network,
            NetworkMode::Overlay
        );
        let refused = parse("network = \"mesh\"").expect_err("an unknown kind");
        assert!(refused.to_string().contains("mesh"), "{refused}");
    }
}

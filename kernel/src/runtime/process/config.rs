//! `[process]`: the process runtime's section of the kernel configuration.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[process]`: how the process runtime confines builds, instances and command probes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The bubblewrap executable (a bare name is looked up in `PATH`).
    pub bwrap: PathBuf,
    /// When the kernel runs as root, app `A` runs as uid and gid
    /// `uid_base + sha256(A) % uid_count`: one unprivileged id per app, the same on every start.
    /// The default range is one systemd leaves unused (above the container ranges).
    pub uid_base: u32,
    /// How many ids apps are spread over (1: every app runs as `uid_base`).
    pub uid_count: u32,
    /// Host directories every sandbox sees read-only at the same path (symlinks stay symlinks,
    /// missing ones are skipped); anything of the kernel under them is hidden.
    pub system_dirs: Vec<PathBuf>,
    /// Where cloud volumes (`cloud_volumes`) live: a directory every instance on this host
    /// shares; mount a distributed file system here to share it with other hosts. Default
    /// `<data_dir>/cloud-volumes`.
    pub cloud_volumes_root: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bwrap: PathBuf::from("bwrap"),
            uid_base: 0x7000_0000,
            uid_count: 0x1_0000,
            system_dirs: [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc",
            ]
            .iter()
            .map(PathBuf::from)
            .collect(),
            cloud_volumes_root: None,
        }
    }
}

//! Memory limits for local processes through the kernel's cgroups (v2, or v1's memory
//! controller). Where neither is writable (an unprivileged kernel, some containers), limits are
//! recorded but not enforced, and the kernel says so once at start.

use std::path::{Path, PathBuf};

/// The cgroup tree lain's processes are put in.
#[derive(Clone, Debug)]
pub struct Cgroups {
    base: PathBuf,
    limit_file: &'static str,
}

impl Cgroups {
    /// The writable cgroup hierarchy with a memory controller, if any.
    pub fn detect() -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        let candidate = if root.join("cgroup.controllers").exists() {
            let base = root.join("lain");
            std::fs::create_dir_all(&base).ok()?;
            // Children of `lain` need the memory controller delegated to them.
            std::fs::write(root.join("cgroup.subtree_control"), "+memory").ok()?;
            std::fs::write(base.join("cgroup.subtree_control"), "+memory").ok()?;
            Cgroups {
                base,
                limit_file: "memory.max",
            }
        } else {
            let base = root.join("memory").join("lain");
            std::fs::create_dir_all(&base).ok()?;
            Cgroups {
                base,
                limit_file: "memory.limit_in_bytes",
            }
        };
        // The tree may exist (made by another user, e.g. root) without being ours to write.
        let writable = rustix::fs::access(&candidate.base, rustix::fs::Access::WRITE_OK).is_ok();
        (writable && candidate.base.join("cgroup.procs").exists()).then_some(candidate)
    }

    /// Creates the group of instance `name` with `bytes` as its limit and moves `pid` into it.
    pub fn join(&self, name: &str, bytes: u64, pid: u32) -> std::io::Result<()> {
        let dir = self.base.join(name);
        std::fs::create_dir_all(&dir)?;
        self.set_memory(name, bytes)?;
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
    }

    /// Sets the memory limit of instance `name` (0: none).
    pub fn set_memory(&self, name: &str, bytes: u64) -> std::io::Result<()> {
        let value = match bytes {
            0 if self.limit_file == "memory.max" => "max".to_string(),
            0 => "-1".to_string(),
            n => n.to_string(),
        };
        std::fs::write(self.base.join(name).join(self.limit_file), value)
    }

    /// Removes the group of instance `name` (it must be empty; a missing group is fine).
    pub fn remove(&self, name: &str) {
        let _ = std::fs::remove_dir(self.base.join(name));
    }
}

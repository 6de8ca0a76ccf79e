//! Memory and CPU limits for local processes through the kernel's cgroups: v2 (`memory.max`,
//! `cpu.max` under `/sys/fs/cgroup/lain`), or v1's memory and cpu controllers
//! (`memory.limit_in_bytes`, `cpu.cfs_quota_us` under `/sys/fs/cgroup/{memory,cpu}/lain`).
//! Where a controller is not writable (an unprivileged kernel, some containers, a v2 tree that
//! does not delegate it), its limits are recorded but not enforced, and the kernel says so once
//! at start.

use std::path::{Path, PathBuf};

/// The CFS period CPU limits are expressed in, in microseconds.
const CPU_PERIOD_US: u64 = 100_000;

/// The smallest quota the kernel accepts, in microseconds.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// One writable controller: where its `lain` group is, and which cgroup version it is.
#[derive(Clone, Debug)]
struct Controller {
    base: PathBuf,
    v2: bool,
}

/// The cgroup trees lain's processes are put in.
#[derive(Clone, Debug)]
pub struct Cgroups {
    memory: Option<Controller>,
    cpu: Option<Controller>,
}

impl Cgroups {
    /// The writable memory and cpu controllers, if any.
    pub fn detect() -> Option<Cgroups> {
        let root = Path::new("/sys/fs/cgroup");
        let found = if root.join("cgroup.controllers").exists() {
            let base = root.join("lain");
            std::fs::create_dir_all(&base).ok()?;
            // Children of `lain` need each controller delegated to them, one at a time (a
            // controller the tree does not offer must not keep the other out).
            let delegated = |name: &str| {
                let on = format!("+{name}");
                let _ = std::fs::write(root.join("cgroup.subtree_control"), &on);
                let _ = std::fs::write(base.join("cgroup.subtree_control"), &on);
                std::fs::read_to_string(base.join("cgroup.subtree_control"))
                    .is_ok_and(|s| s.split_whitespace().any(|c| c == name))
            };
            let controller = || Controller {
                base: base.clone(),
                v2: true,
            };
            Cgroups {
                memory: delegated("memory").then(controller),
                cpu: delegated("cpu").then(controller),
            }
        } else {
            let v1 = |name: &str| {
                let base = root.join(name).join("lain");
                std::fs::create_dir_all(&base)
                    .ok()
                    .map(|()| Controller { base, v2: false })
            };
            Cgroups {
                memory: v1("memory"),
                cpu: v1("cpu"),
            }
        };
        // A tree may exist (made by another user, e.g. root) without being ours to write.
        let ours = |c: Option<Controller>| {
            c.filter(|c| {
                rustix::fs::access(&c.base, rustix::fs::Access::WRITE_OK).is_ok()
                    && c.base.join("cgroup.procs").exists()
            })
        };
        let found = Cgroups {
            memory: ours(found.memory),
            cpu: ours(found.cpu),
        };
        (found.memory.is_some() || found.cpu.is_some()).then_some(found)
    }

    /// Whether memory limits are enforced.
    pub fn enforces_memory(&self) -> bool {
        self.memory.is_some()
    }

    /// Whether CPU limits are enforced.
    pub fn enforces_cpu(&self) -> bool {
        self.cpu.is_some()
    }

    /// The controllers, each group once (v2 has one group for both).
    fn groups(&self) -> Vec<&Controller> {
        let mut out: Vec<&Controller> = self.memory.iter().collect();
        if let Some(cpu) = &self.cpu
            && !out.iter().any(|c| c.base == cpu.base)
        {
            out.push(cpu);
        }
        out
    }

    /// Creates the groups of instance `name` with `bytes` of memory and `millicores` of CPU as
    /// its limits (0: none) and moves `pid` into them.
    pub fn join(&self, name: &str, bytes: u64, millicores: u32, pid: u32) -> std::io::Result<()> {
        for group in self.groups() {
            std::fs::create_dir_all(group.base.join(name))?;
        }
        self.set_memory(name, bytes)?;
        self.set_cpu(name, millicores)?;
        for group in self.groups() {
            std::fs::write(group.base.join(name).join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// Sets the memory limit of instance `name` (0: none); nothing without a memory controller.
    pub fn set_memory(&self, name: &str, bytes: u64) -> std::io::Result<()> {
        let Some(c) = &self.memory else {
            return Ok(());
        };
        let (file, value) = match (c.v2, bytes) {
            (true, 0) => ("memory.max", "max".to_string()),
            (true, n) => ("memory.max", n.to_string()),
            (false, 0) => ("memory.limit_in_bytes", "-1".to_string()),
            (false, n) => ("memory.limit_in_bytes", n.to_string()),
        };
        std::fs::write(c.base.join(name).join(file), value)
    }

    /// Sets the CPU limit of instance `name` to `millicores` thousandths of a CPU (0: none) as a
    /// quota per [`CPU_PERIOD_US`]; nothing without a cpu controller.
    pub fn set_cpu(&self, name: &str, millicores: u32) -> std::io::Result<()> {
        let Some(c) = &self.cpu else {
            return Ok(());
        };
        let dir = c.base.join(name);
        let quota = cpu_quota(millicores);
        if c.v2 {
            let quota = quota.map_or_else(|| "max".to_string(), |q| q.to_string());
            std::fs::write(dir.join("cpu.max"), format!("{quota} {CPU_PERIOD_US}"))
        } else {
            // The quota goes first when lifting a limit, the period first when setting one (the
            // kernel checks the pair against the parent at each write).
            let quota = quota.map_or_else(|| "-1".to_string(), |q| q.to_string());
            std::fs::write(dir.join("cpu.cfs_quota_us"), "-1")?;
            std::fs::write(dir.join("cpu.cfs_period_us"), CPU_PERIOD_US.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota)
        }
    }

    /// Removes the groups of instance `name` (they must be empty; a missing group is fine).
    pub fn remove(&self, name: &str) {
        for group in self.groups() {
            let _ = std::fs::remove_dir(group.base.join(name));
        }
    }
}

/// The CFS quota per [`CPU_PERIOD_US`] for `millicores` (none for 0), at least the kernel's
/// minimum.
pub fn cpu_quota(millicores: u32) -> Option<u64> {
    (millicores > 0).then(|| (u64::from(millicores) * CPU_PERIOD_US / 1000).max(CPU_MIN_QUOTA_US))
}

#[cfg(test)]
mod tests {
    #[test]
    fn millicores_become_a_quota_per_period() {
        assert_eq!(super::cpu_quota(0), None);
        assert_eq!(super::cpu_quota(500), Some(50_000));
        assert_eq!(super::cpu_quota(2000), Some(200_000));
        assert_eq!(super::cpu_quota(1), Some(1_000), "the kernel's minimum");
    }
}

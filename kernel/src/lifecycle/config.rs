//! `[lifecycle]`: the lifecycle's section of the kernel configuration.

use serde::{Deserialize, Serialize};

/// `[lifecycle]`: deploys and rollouts.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seconds (beyond `setup_time` and the health check's window) a new instance has to become
    /// ready before its rollout fails and the previous deployment comes back.
    pub rollout_timeout_secs: u64,
    /// How many instances the reconciler creates and starts at once (1 to 64); 0 (the
    /// default) is three per core, between 4 and 16. The engine does the work: a big Docker
    /// engine takes more at once than a small one (see the README's Docker benchmark).
    pub parallel_starts: usize,
}

/// The most instances started at once `parallel_starts` may ask for.
pub const MAX_PARALLEL_STARTS: usize = 64;

impl Default for Config {
    fn default() -> Self {
        Config {
            rollout_timeout_secs: 120,
            parallel_starts: 0,
        }
    }
}

impl Config {
    /// Checks `parallel_starts`.
    pub fn check(&self) -> Result<(), String> {
        if self.parallel_starts > MAX_PARALLEL_STARTS {
            return Err(format!(
                "lifecycle.parallel_starts = {}: must be 0 (three per core, 4 to 16) to {MAX_PARALLEL_STARTS}",
                self.parallel_starts
            ));
        }
        Ok(())
    }

    /// How many instances are started at once: `parallel_starts`, or three per core between
    /// 4 and 16.
    pub fn parallel_starts(&self) -> usize {
        match self.parallel_starts {
            0 => std::thread::available_parallelism().map_or(4, |n| (n.get() * 3).clamp(4, 16)),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_starts_is_three_per_core_unless_set_and_bounded() {
        let auto = Config::default();
        assert!((4..=16).contains(&auto.parallel_starts()));
        let set = Config {
            parallel_starts: 24,
            ..Config::default()
        };
        assert_eq!(set.parallel_starts(), 24);
        assert_eq!(set.check(), Ok(()));
        let err = Config {
            parallel_starts: 65,
            ..Config::default()
        }
        .check()
        .expect_err("too many");
        assert!(err.contains("lifecycle.parallel_starts = 65"), "{err}");
    }
}

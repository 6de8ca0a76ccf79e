//! The router's health checks of instances.
//!
//! - **Active** (LAIN's tengine `check`): every `interval` each backend of a route with a
//!   `healthcheck` path gets `GET <path>` through the probe the reconciler uses too
//!   ([`HttpProbe`](crate::runtime::probe::HttpProbe)); a 2xx or 3xx answer within `timeout` is
//!   alive. After
//!   `fall` consecutive failures the backend is taken out of the table; after `rise` consecutive
//!   successes it is put back. The reconciler checks health too, but slowly (it restarts
//!   instances); the router's checks are there to stop sending traffic within seconds.
//! - **Passive**: a connection error takes a backend out for [`PASSIVE_HOLD`], without waiting
//!   for a check.
//!
//! Taking out fails open: when every backend of a route is out, all of them are kept (a broken
//! health endpoint alone should not take an app offline; nginx does the same for `max_fails`).

use super::HealthConfig as RouterHealthConfig;
use crate::runtime::probe::HttpProbe;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a backend that refused a connection takes no traffic.
pub const PASSIVE_HOLD: Duration = Duration::from_secs(5);

/// Consecutive results of one backend's active checks.
#[derive(Debug, Default)]
struct Streak {
    failures: u32,
    successes: u32,
}

/// Which backends take traffic, as the checks found them.
#[derive(Debug, Default)]
pub struct Backends {
    /// Backends with a recent connection error, and when.
    passive: Mutex<HashMap<String, Instant>>,
    /// Entries in `passive`: zero on the fast path, which then takes no lock.
    passive_count: AtomicUsize,
    /// Backends the active checks took out.
    down: Mutex<HashSet<String>>,
    streaks: Mutex<HashMap<String, Streak>>,
}

impl Backends {
    /// Records a connection error to `backend`.
    pub fn connection_failed(&self, backend: &str) {
        let mut passive = self.passive.lock();
        passive.insert(backend.to_string(), Instant::now());
        self.passive_count.store(passive.len(), Ordering::Relaxed);
    }

    /// True when no backend is held out passively (the common case: no lock needed).
    pub fn all_passing(&self) -> bool {
        self.passive_count.load(Ordering::Relaxed) == 0
    }

    /// Backends held out passively right now (expired holds are forgotten).
    pub fn held(&self) -> HashSet<String> {
        let mut passive = self.passive.lock();
        passive.retain(|_, t| t.elapsed() <= PASSIVE_HOLD);
        self.passive_count.store(passive.len(), Ordering::Relaxed);
        passive.keys().cloned().collect()
    }

    /// Backends the active checks took out.
    pub fn down(&self) -> HashSet<String> {
        self.down.lock().clone()
    }

    /// Records one active check of `backend`; true when that took it out or put it back.
    pub fn checked(&self, backend: &str, alive: bool, config: &RouterHealthConfig) -> bool {
        let mut streaks = self.streaks.lock();
        let streak = streaks.entry(backend.to_string()).or_default();
        let mut down = self.down.lock();
        if alive {
            streak.failures = 0;
            streak.successes += 1;
            if streak.successes >= config.rise.max(1) && down.remove(backend) {
                tracing::info!(%backend, "router: health checks pass again, instance put back");
                return true;
            }
        } else {
            streak.successes = 0;
            streak.failures += 1;
            if streak.failures >= config.fall.max(1) && down.insert(backend.to_string()) {
                tracing::warn!(%backend, failures = streak.failures, "router: health checks fail, instance taken out");
                return true;
            }
        }
        false
    }

    /// Forgets backends not in `current` (they left the table); true when one was down.
    pub fn retain(&self, current: &HashSet<&str>) -> bool {
        self.streaks
            .lock()
            .retain(|b, _| current.contains(b.as_str()));
        let mut down = self.down.lock();
        let before = down.len();
        down.retain(|b| current.contains(b.as_str()));
        down.len() != before
    }
}

/// The probe of the router's active checks.
pub fn checker() -> HttpProbe {
    HttpProbe::new("lain-router-health-check")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_takes_out_rise_puts_back() {
        let config = RouterHealthConfig {
            interval_ms: 100,
            timeout_ms: 100,
            rise: 2,
            fall: 3,
        };
        let h = Backends::default();
        assert!(!h.checked("a:1", false, &config));
        assert!(!h.checked("a:1", false, &config));
        assert!(h.checked("a:1", false, &config), "third failure");
        assert!(h.down().contains("a:1"));
        assert!(!h.checked("a:1", false, &config), "already out");
        assert!(!h.checked("a:1", true, &config));
        assert!(!h.checked("a:1", false, &config), "streak broken");
        assert!(!h.checked("a:1", true, &config));
        assert!(h.checked("a:1", true, &config), "two successes in a row");
        assert!(h.down().is_empty());
        h.checked("b:1", false, &config);
        h.checked("b:1", false, &config);
        h.checked("b:1", false, &config);
        assert!(h.retain(&HashSet::from(["a:1"])), "b left while down");
        assert!(h.down().is_empty());
    }

    #[test]
    fn passive_holds_expire_and_keep_the_fast_path_lock_free() {
        let h = Backends::default();
        assert!(h.all_passing());
        h.connection_failed("a:1");
        assert!(!h.all_passing());
        assert_eq!(h.held(), HashSet::from(["a:1".to_string()]));
    }
}

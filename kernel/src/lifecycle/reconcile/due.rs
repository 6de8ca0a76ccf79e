//! When the next pass is due for something only time decides (a restart's backoff ending, a
//! health check, an instance becoming ready, a schedule's tick, a rollout's timeout, a retry),
//! gathered during a pass. Everything else wakes the reconciler when it happens (API calls,
//! store watches, runtime events), and [`SAFETY_NET`] bounds the wait whatever happens.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Longest wait between passes: the safety net behind the wake-ups and due times, for what no
/// event reports (an engine that stopped sending events, a lost wake-up).
pub const SAFETY_NET: Duration = Duration::from_secs(10);

/// The soonest moment a pass is due, if any.
#[derive(Clone, Copy, Debug, Default)]
pub struct Due(Option<Instant>);

impl Due {
    /// A pass is due at `at` (or earlier, if something else is).
    pub fn at(&mut self, at: Instant) {
        self.0 = Some(self.0.map_or(at, |d| d.min(at)));
    }

    /// A pass is due `after` from now.
    pub fn after(&mut self, after: Duration) {
        self.at(Instant::now() + after);
    }

    /// A pass is due once the wall clock reads `secs` (Unix seconds), as a schedule's ticks are
    /// given; a moment passed already is due now.
    pub fn at_unix(&mut self, secs: i64) {
        let Ok(secs) = u64::try_from(secs) else {
            return;
        };
        let target = UNIX_EPOCH + Duration::from_secs(secs);
        let wait = target
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        self.after(wait);
    }

    /// How long to wait from now: until the due moment, at most `limit`.
    pub fn wait(&self, limit: Duration) -> Duration {
        self.0
            .map_or(limit, |at| at.saturating_duration_since(Instant::now()))
            .min(limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soonest_moment_wins_and_the_limit_bounds_the_wait() {
        let mut due = Due::default();
        assert_eq!(due.wait(SAFETY_NET), SAFETY_NET);
        due.after(Duration::from_secs(30));
        assert_eq!(due.wait(SAFETY_NET), SAFETY_NET);
        due.after(Duration::from_secs(2));
        due.after(Duration::from_secs(5));
        let wait = due.wait(SAFETY_NET);
        assert!(
            wait <= Duration::from_secs(2) && wait > Duration::from_secs(1),
            "{wait:?}"
        );
        due.at_unix(0);
        assert_eq!(
            due.wait(SAFETY_NET),
            Duration::ZERO,
            "a moment passed is due now"
        );
    }
}

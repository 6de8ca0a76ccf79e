//! Restarting crashed instances: whether and when (exponential backoff).
//!
//! This is where run policies plug in: [`RunPolicy`] is what a proc says about being run again;
//! today it is only whether its exit calls for a restart (`restarts_after`). Restart limits,
//! schedules and one-per-node placement belong in it (and in [`Backoff::decide`]), not in the pass.

use crate::lifecycle::records::ProcPlan;
use crate::runtime::RunState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest backoff between restarts of a crashing instance.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A run this long resets the backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(600);

/// What a proc says about running its instances again.
#[derive(Clone, Copy, Debug)]
pub struct RunPolicy {
    /// Whether the exit that ended the instance calls for a restart (never for a
    /// run-to-completion proc that succeeded, for example).
    pub restart: bool,
}

/// What to do with an exited instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// Start it again now.
    Now,
    /// It backs off: not yet.
    Later,
    /// Its policy says it stays exited.
    Never,
}

/// One instance's restart history.
struct Streak {
    restarts: u32,
    streak: u32,
    next: Instant,
}

/// Restart histories by instance name (kept while the kernel runs).
#[derive(Default)]
pub struct Backoff {
    by_name: HashMap<String, Streak>,
    /// Failed runs already reported, by instance name: when each ended.
    reported: HashMap<String, Option<i64>>,
}

/// How a run ended, for people: `exit status 7`, `killed by signal 9`.
pub fn exit_text(state: &RunState) -> String {
    match state {
        RunState::Exited { code: Some(c), .. } => format!("exit status {c}"),
        RunState::Exited {
            signal: Some(s), ..
        } => format!("killed by signal {s}"),
        RunState::Exited { .. } => "exited with an unknown status".into(),
        RunState::Running { .. } => "running".into(),
        RunState::Created => "not started".into(),
    }
}

/// Why the run of an instance of `plan` in `state` failed, when it failed with no restart left:
/// a run-to-completion proc whose instance exited other than with 0 and that its policy does not
/// run again. None for anything else.
pub fn failed_run(plan: &ProcPlan, state: &RunState) -> Option<String> {
    match state {
        RunState::Exited { code, .. }
            if plan.completes() && *code != Some(0) && !plan.restarts_after(*code) =>
        {
            Some(exit_text(state))
        }
        _ => None,
    }
}

impl Backoff {
    /// Decides for exited instance `name` under `policy`; a restart now is counted.
    pub fn decide(&mut self, name: &str, policy: RunPolicy) -> Restart {
        if !policy.restart {
            return Restart::Never;
        }
        let now = Instant::now();
        let b = self.by_name.entry(name.to_string()).or_insert(Streak {
            restarts: 0,
            streak: 0,
            next: now,
        });
        if now < b.next {
            return Restart::Later;
        }
        b.restarts += 1;
        b.streak += 1;
        b.next = now + Duration::from_secs(1 << (b.streak - 1).min(9)).min(MAX_BACKOFF);
        tracing::info!(instance = %name, restarts = b.restarts, "restarting a crashed instance");
        Restart::Now
    }

    /// Instance `name` has run [`STABLE_RUN`]: its next crash restarts it at once again.
    pub fn stable(&mut self, name: &str) {
        if let Some(b) = self.by_name.get_mut(name) {
            b.streak = 0;
        }
    }

    /// Restarts of `name` since the kernel started.
    pub fn restarts(&self, name: &str) -> u32 {
        self.by_name.get(name).map_or(0, |b| b.restarts)
    }

    /// Seconds until `name` may restart, if it has a history.
    pub fn wait(&self, name: &str) -> Option<u64> {
        self.by_name
            .get(name)
            .map(|b| b.next.saturating_duration_since(Instant::now()).as_secs())
    }

    /// Whether the failed run of `name` that ended at `finished_at` is not reported yet; it
    /// counts as reported from now on.
    pub fn first_report(&mut self, name: &str, finished_at: Option<i64>) -> bool {
        self.reported.insert(name.to_string(), finished_at) != Some(finished_at)
    }

    /// Forgets instances for which `live` is false.
    pub fn retain(&mut self, live: impl Fn(&str) -> bool) {
        self.by_name.retain(|name, _| live(name));
        self.reported.retain(|name, _| live(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_back_off_and_a_policy_without_restart_never_restarts() {
        let mut b = Backoff::default();
        let again = RunPolicy { restart: true };
        assert_eq!(b.decide("a", RunPolicy { restart: false }), Restart::Never);
        assert_eq!(b.decide("a", again), Restart::Now);
        assert_eq!(
            b.decide("a", again),
            Restart::Later,
            "one second of backoff"
        );
        assert_eq!(b.restarts("a"), 1);
        assert!(b.wait("a").is_some_and(|s| s <= 1));
        b.retain(|n| n != "a");
        assert_eq!(b.restarts("a"), 0);
    }
}

//! Restarting crashed instances: whether and when (exponential backoff), and when an instance has
//! failed for good.
//!
//! This is where run policies plug in: [`RunPolicy`] is what a proc's restart rule says about
//! running an exited instance again (whether its exit calls for it, how long to back off);
//! [`failed_run`] says when no restart is left (a run to completion that failed, or the rule's
//! `max-restarts` reached, counted by the instance's attempt label so that it survives the
//! kernel).

use crate::lifecycle::records::ProcPlan;
use crate::runtime::RunState;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Longest backoff between restarts of a crashing instance, unless its rule says otherwise.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A run this long resets the backoff.
pub const STABLE_RUN: Duration = Duration::from_secs(600);

/// What a proc says about running its instances again.
#[derive(Clone, Copy, Debug)]
pub struct RunPolicy {
    /// Whether the exit that ended the instance calls for a restart (never for a
    /// run-to-completion proc that succeeded, for example).
    pub restart: bool,
    /// Wait before the first restart of a streak; each further one waits twice as long.
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl RunPolicy {
    /// What `plan`'s restart rule says about an instance that exited with `code`.
    pub fn of(plan: &ProcPlan, code: Option<i32>) -> RunPolicy {
        let rule = &plan.plan.restart;
        let secs =
            |s: u32, default: u64| Duration::from_secs(if s == 0 { default } else { s.into() });
        RunPolicy {
            restart: plan.restarts_after(code),
            initial: secs(rule.backoff_initial, 1),
            max: secs(rule.backoff_max, MAX_BACKOFF.as_secs()),
        }
    }
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

/// How the run `attempt` of an instance of `plan` in `state` failed, when no restart is left:
/// `exit status 7` for a run to completion that exited other than with 0 and that its policy does
/// not run again; `after 3 restarts: exit status 1` for an exit that calls for a restart when the
/// rule's `max-restarts` are used up. None for anything else.
pub fn failed_run(plan: &ProcPlan, state: &RunState, attempt: u32) -> Option<String> {
    let RunState::Exited { code, .. } = state else {
        return None;
    };
    if !plan.restarts_after(*code) {
        return (plan.completes() && *code != Some(0)).then(|| exit_text(state));
    }
    let max = plan.plan.restart.max_restarts?;
    let restarts = attempt.saturating_sub(1);
    (restarts >= max).then(|| {
        let s = if restarts == 1 { "" } else { "s" };
        format!("after {restarts} restart{s}: {}", exit_text(state))
    })
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
        b.next = now + (policy.initial * (1 << (b.streak - 1).min(16))).min(policy.max);
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

    /// When `name` may restart, if it has a history.
    pub fn next(&self, name: &str) -> Option<Instant> {
        self.by_name.get(name).map(|b| b.next)
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
        let again = RunPolicy {
            restart: true,
            initial: Duration::from_secs(1),
            max: MAX_BACKOFF,
        };
        assert_eq!(
            b.decide(
                "a",
                RunPolicy {
                    restart: false,
                    ..again
                }
            ),
            Restart::Never
        );
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

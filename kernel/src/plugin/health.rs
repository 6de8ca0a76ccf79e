//! Failure accounting and quarantine of one plugin.

use super::error::Cause;
use super::kind::FailurePolicy;
use super::limits::Limits;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// A plugin's health, shared by all calls to it.
#[derive(Debug)]
pub struct Health {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    calls: u64,
    failures: u64,
    consecutive: u32,
    last_error: Option<String>,
    quarantined_at: Option<Instant>,
}

/// What `lain plugin show` reports about a plugin's health.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// Calls made.
    pub calls: u64,
    /// Calls that faulted (traps, budgets, caps; not the plugin's own error answers).
    pub failures: u64,
    /// Faults in a row since the last success.
    pub consecutive_failures: u32,
    /// Whether the plugin is quarantined (not called).
    pub quarantined: bool,
    /// The last fault, if any.
    pub last_error: Option<String>,
    /// What the kernel does when the plugin fails or is quarantined.
    pub policy: FailurePolicy,
}

impl Health {
    /// A healthy plugin.
    pub fn new() -> Health {
        Health {
            state: Mutex::new(State::default()),
        }
    }

    /// Whether a call may go ahead. A quarantined plugin gets one trial call after
    /// `quarantine_secs` (while that call runs, others are refused).
    pub fn admit(&self, limits: &Limits) -> Result<(), Cause> {
        let mut s = self.state.lock();
        if let Some(at) = s.quarantined_at {
            if at.elapsed() < Duration::from_secs(limits.quarantine_secs) {
                return Err(Cause::Quarantined {
                    failures: s.consecutive,
                    last: s.last_error.clone().unwrap_or_default(),
                });
            }
            // Probation: restart the clock so concurrent calls stay refused until this one ends.
            s.quarantined_at = Some(Instant::now());
        }
        s.calls += 1;
        Ok(())
    }

    /// Records the outcome of a call.
    pub fn record(&self, outcome: Result<(), &Cause>, limits: &Limits) {
        let mut s = self.state.lock();
        match outcome {
            Err(cause) if cause.is_fault() => {
                s.failures += 1;
                s.consecutive += 1;
                s.last_error = Some(cause.to_string());
                if s.consecutive >= limits.quarantine_after {
                    if s.quarantined_at.is_none() {
                        tracing::warn!(failures = s.consecutive, "plugin quarantined: {cause}");
                    }
                    s.quarantined_at = Some(Instant::now());
                }
            }
            // Refused before reaching the plugin: says nothing about its health.
            Err(Cause::Quarantined { .. } | Cause::Disabled) => {}
            // The plugin ran and answered (possibly with its own error): it works again.
            _ => {
                s.consecutive = 0;
                s.quarantined_at = None;
            }
        }
    }

    /// Lifts a quarantine (the operator re-enabled the plugin).
    pub fn release(&self) {
        let mut s = self.state.lock();
        s.consecutive = 0;
        s.quarantined_at = None;
    }

    /// A snapshot for reports.
    pub fn report(&self, policy: FailurePolicy) -> HealthReport {
        let s = self.state.lock();
        HealthReport {
            calls: s.calls,
            failures: s.failures,
            consecutive_failures: s.consecutive,
            quarantined: s.quarantined_at.is_some(),
            last_error: s.last_error.clone(),
            policy,
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Health::new()
    }
}

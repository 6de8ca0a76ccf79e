//! Failure accounting and quarantine of one plugin.
//!
//! The common case, a healthy plugin answering, costs two atomic operations per call; the mutex
//! is only taken once something has gone wrong (a fault recorded, a quarantine in force).

use super::error::Cause;
use super::limits::Limits;
use super::world::FailurePolicy;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A plugin's health, shared by all calls to it.
#[derive(Debug, Default)]
pub struct PluginHealth {
    calls: AtomicU64,
    /// Set while faults are counted or a quarantine is in force: calls take the slow path.
    troubled: AtomicBool,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
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

impl PluginHealth {
    /// A healthy plugin.
    pub fn new() -> PluginHealth {
        PluginHealth::default()
    }

    /// Whether a call may go ahead. A quarantined plugin gets one trial call after
    /// `quarantine_secs` (while that call runs, others are refused).
    pub fn admit(&self, limits: &Limits) -> Result<(), Cause> {
        if self.troubled.load(Ordering::Acquire) {
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
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Records the outcome of a call.
    pub fn record(&self, outcome: Result<(), &Cause>, limits: &Limits) {
        match outcome {
            Err(cause) if cause.is_fault() => {
                let mut s = self.state.lock();
                s.failures += 1;
                s.consecutive += 1;
                s.last_error = Some(cause.to_string());
                if s.consecutive >= limits.quarantine_after {
                    if s.quarantined_at.is_none() {
                        tracing::warn!(failures = s.consecutive, "plugin quarantined: {cause}");
                    }
                    s.quarantined_at = Some(Instant::now());
                }
                self.troubled.store(true, Ordering::Release);
            }
            // Refused before reaching the plugin: says nothing about its health.
            Err(Cause::Quarantined { .. } | Cause::Disabled) => {}
            // The plugin ran and answered (possibly with its own error): it works again.
            _ => {
                if self.troubled.load(Ordering::Acquire) {
                    self.release();
                }
            }
        }
    }

    /// Lifts a quarantine and forgets the failure streak (the operator re-enabled the plugin, or
    /// it answered again).
    pub fn release(&self) {
        let mut s = self.state.lock();
        s.consecutive = 0;
        s.quarantined_at = None;
        self.troubled.store(false, Ordering::Release);
    }

    /// A snapshot for reports.
    pub fn report(&self, policy: FailurePolicy) -> HealthReport {
        let s = self.state.lock();
        HealthReport {
            calls: self.calls.load(Ordering::Relaxed),
            failures: s.failures,
            consecutive_failures: s.consecutive,
            quarantined: s.quarantined_at.is_some(),
            last_error: s.last_error.clone(),
            policy,
        }
    }
}

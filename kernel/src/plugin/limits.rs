//! Resource limits applied to every plugin call.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Limits for plugin calls, from `[plugins.limits]` in the kernel config.
///
/// The CPU budget is enforced with wasmtime's epoch interruption: a ticker thread advances the
/// engine's epoch every `tick_ms`, and each call gets a deadline of `cpu_ms / tick_ms` ticks, so a
/// guest is interrupted at its next loop back-edge or function entry after the budget. Epochs cost
/// a check per back-edge (fuel would cost a counter update per basic block, about twice as much),
/// and they measure elapsed time rather than instructions, which is what an operator means by "this
/// call may take 200 ms". The wall-clock bound is a second line: it covers time spent outside wasm
/// (host functions) and is enforced by the caller, which stops waiting for the call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// CPU budget per call, in milliseconds of guest execution.
    pub cpu_ms: u64,
    /// Wall-clock bound per call, in milliseconds, including host functions.
    pub wall_ms: u64,
    /// Largest linear memory of one plugin instance, in bytes.
    pub memory_bytes: u64,
    /// Largest result a call may return, in bytes (strings and lists counted).
    pub max_result_bytes: u64,
    /// Epoch tick, in milliseconds: the granularity of the CPU budget.
    pub tick_ms: u64,
    /// Consecutive failures after which a plugin is quarantined.
    pub quarantine_after: u32,
    /// Seconds a quarantined plugin waits before one call is tried again.
    pub quarantine_secs: u64,
    /// Lines a plugin may write into the kernel's log per second (all its instances together);
    /// the rest are dropped and counted.
    pub log_lines_per_sec: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpu_ms: 200,
            wall_ms: 2_000,
            memory_bytes: 64 << 20,
            max_result_bytes: 8 << 20,
            tick_ms: 5,
            quarantine_after: 5,
            quarantine_secs: 60,
            log_lines_per_sec: 100,
        }
    }
}

impl Limits {
    /// The epoch deadline, in ticks, for one call.
    pub fn deadline_ticks(&self) -> u64 {
        self.cpu_ms.div_ceil(self.tick_ms.max(1)).max(1)
    }

    /// The wall-clock bound of one call.
    pub fn wall(&self) -> Duration {
        Duration::from_millis(self.wall_ms)
    }
}

/// Runs blocking plugin work on the blocking pool and stops waiting for it after `wall`.
///
/// This is the wall-clock bound: the epoch deadline stops guest code, this stops the caller from
/// waiting on anything else (host functions, instantiation, several calls in a row). Work that
/// runs over is left to finish or trap on its own thread; its result is dropped.
pub async fn within_wall_clock<T: Send + 'static>(
    wall: Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, super::Cause> {
    let wall_ms = u64::try_from(wall.as_millis()).unwrap_or(u64::MAX);
    match tokio::time::timeout(wall, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(super::Cause::Host(format!("plugin task failed: {e}"))),
        Err(_) => Err(super::Cause::WallClock { wall_ms }),
    }
}

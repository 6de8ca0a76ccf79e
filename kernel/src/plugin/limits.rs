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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
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

/// Largest CPU budget a plugin may be given, in milliseconds.
pub const MAX_PLUGIN_CPU_MS: u64 = 60_000;
/// Largest wall-clock bound a plugin may be given, in milliseconds.
pub const MAX_PLUGIN_WALL_MS: u64 = 600_000;
/// Smallest memory cap a plugin may be given, in bytes.
pub const MIN_PLUGIN_MEMORY_BYTES: u64 = 1 << 20;

/// One plugin's own limits over the engine-wide [`Limits`]: the `limits` table of the operator's
/// configuration of the plugin (`[plugins.config.<name>.limits]` in the kernel config, or
/// `lain plugin config NAME --set limits.cpu_ms=50`). Unset fields keep the engine-wide value.
///
/// The memory cap may only be lowered: the pooling allocator's slots are sized by the
/// engine-wide `memory_bytes`. The CPU budget and the wall-clock bound may be raised or lowered
/// within [`MAX_PLUGIN_CPU_MS`] and [`MAX_PLUGIN_WALL_MS`], the CPU budget never above the
/// wall-clock bound (it could never be reached).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PluginLimits {
    /// CPU budget per call, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
    /// Wall-clock bound per call, in milliseconds: where the kernel waits on this one plugin
    /// (an exporter's push). The auth chain and a pull scrape stay bounded by the engine-wide
    /// `wall_ms`, as they may call several plugins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wall_ms: Option<u64>,
    /// Largest linear memory of one instance, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
}

impl PluginLimits {
    /// The `limits` table of an operator's configuration of a plugin (none: no override).
    pub fn from_config(config: Option<&serde_json::Value>) -> Result<PluginLimits, String> {
        match config.and_then(|c| c.get("limits")) {
            None => Ok(PluginLimits::default()),
            Some(table) => serde_json::from_value(table.clone()).map_err(|e| {
                format!(
                    "limits: {e} (expected a table of cpu_ms, wall_ms and memory_bytes, as integers)"
                )
            }),
        }
    }

    /// The limits a plugin's calls run under: `base` with these overrides, checked.
    pub fn apply(&self, base: &Limits) -> Result<Limits, String> {
        let mut limits = base.clone();
        if let Some(cpu_ms) = self.cpu_ms {
            if !(1..=MAX_PLUGIN_CPU_MS).contains(&cpu_ms) {
                return Err(format!(
                    "limits.cpu_ms = {cpu_ms}: must be 1-{MAX_PLUGIN_CPU_MS}"
                ));
            }
            limits.cpu_ms = cpu_ms;
        }
        if let Some(wall_ms) = self.wall_ms {
            if !(1..=MAX_PLUGIN_WALL_MS).contains(&wall_ms) {
                return Err(format!(
                    "limits.wall_ms = {wall_ms}: must be 1-{MAX_PLUGIN_WALL_MS}"
                ));
            }
            limits.wall_ms = wall_ms;
        }
        if let Some(memory) = self.memory_bytes {
            if memory < MIN_PLUGIN_MEMORY_BYTES || memory > base.memory_bytes {
                return Err(format!(
                    "limits.memory_bytes = {memory}: must be {MIN_PLUGIN_MEMORY_BYTES}-{} (the engine-wide \
                     `[plugins.limits] memory_bytes` sizes every instance slot; raise it there to allow more)",
                    base.memory_bytes
                ));
            }
            limits.memory_bytes = memory;
        }
        if (self.cpu_ms.is_some() || self.wall_ms.is_some()) && limits.cpu_ms > limits.wall_ms {
            return Err(format!(
                "limits.cpu_ms = {} is above the wall-clock bound of {} ms, so it could never be \
                 reached: raise limits.wall_ms too",
                limits.cpu_ms, limits.wall_ms
            ));
        }
        Ok(limits)
    }

    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == PluginLimits::default()
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

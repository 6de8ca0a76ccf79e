//! Statistics over samples: quantiles, medians, percentiles and paired ratios.

use crate::BATCH;
use serde::Serialize;
use std::time::Duration;

/// `d` in microseconds.
pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// µs per placement of a batch that took `d`.
pub fn per_placement(d: Duration) -> f64 {
    micros(d) / BATCH as f64
}

/// The `q` quantile of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

/// `values` in ascending order.
fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// The median of `values`.
pub fn median(values: Vec<f64>) -> f64 {
    quantile(&sorted(values), 0.5)
}

/// The median and the 99th percentile of timings, in µs.
#[derive(Serialize)]
pub struct Percentiles {
    pub p50_us: f64,
    pub p99_us: f64,
}

impl Percentiles {
    /// The percentiles of `samples`.
    pub fn of(samples: Vec<Duration>) -> Percentiles {
        let us = sorted(samples.into_iter().map(micros).collect());
        Percentiles {
            p50_us: quantile(&us, 0.5),
            p99_us: quantile(&us, 0.99),
        }
    }
}

/// The median and the 95th percentile of longer timings, in ms.
#[derive(Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

impl Latency {
    /// The percentiles of `samples`.
    pub fn of(samples: Vec<Duration>) -> Latency {
        let ms = sorted(samples.iter().map(|d| d.as_secs_f64() * 1e3).collect());
        Latency {
            p50_ms: quantile(&ms, 0.5),
            p95_ms: quantile(&ms, 0.95),
        }
    }
}

/// Median of per-round paired throughput ratios (baseline time / wasm time), with its quartiles.
#[derive(Serialize)]
pub struct Ratio {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
}

impl Ratio {
    /// The median and quartiles of `ratios`.
    pub fn of(ratios: Vec<f64>) -> Ratio {
        let r = sorted(ratios);
        Ratio {
            median: quantile(&r, 0.5),
            p25: quantile(&r, 0.25),
            p75: quantile(&r, 0.75),
        }
    }
}

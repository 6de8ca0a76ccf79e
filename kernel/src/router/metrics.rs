//! Request counts and latencies per web proc, as Prometheus-style families for the monitor.
//!
//! Each proc's counters are a [`RouteStats`] of plain atomics that every route of the proc shares,
//! so counting a request takes three relaxed atomic adds and no lock or lookup. The router keeps
//! one `RouteStats` per `app/proc` across table rebuilds ([`Stats::adopt`]), so counters only
//! ever go up while the kernel runs.
//!
//! The plugin interface knows counters and gauges only (WIT versions are kept forever), so the
//! latency histogram is exported the way Prometheus' text format spells one: cumulative
//! `_bucket{le}` counters, `_sum` and `_count`; `histogram_quantile()` works on them as usual.

use crate::plugin::bindings::monitoring::{MetricFamily, MetricKind, Sample};
use crate::plugin::bindings::types::Label;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in seconds (`+Inf` is implied).
pub const BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The counters of one web proc (or of requests no route matched).
#[derive(Debug)]
pub struct RouteStats {
    /// `app/proc`, or empty for requests without a route.
    pub target: String,
    /// Requests by status class: 1xx .. 5xx.
    classes: [AtomicU64; 5],
    /// Requests by latency bucket (not cumulative; the last is `+Inf`).
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum of latencies in microseconds.
    sum_micros: AtomicU64,
}

impl RouteStats {
    /// Zeroed counters for `target`.
    pub fn new(target: &str) -> RouteStats {
        RouteStats {
            target: target.to_string(),
            classes: Default::default(),
            buckets: Default::default(),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one request answered with `status` after `elapsed` (to the response head).
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from((status / 100).clamp(1, 5)) - 1;
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Requests counted so far.
    pub fn requests(&self) -> u64 {
        self.classes.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Every proc's counters, by `app/proc`.
#[derive(Debug)]
pub struct Stats {
    by_target: Mutex<HashMap<String, Arc<RouteStats>>>,
    /// Requests that matched no route (404).
    pub unrouted: Arc<RouteStats>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            by_target: Mutex::default(),
            unrouted: Arc::new(RouteStats::new("")),
        }
    }
}

impl Stats {
    /// The long-lived counters for `target` (created on first use).
    pub fn adopt(&self, target: &str) -> Arc<RouteStats> {
        self.by_target
            .lock()
            .entry(target.to_string())
            .or_insert_with(|| Arc::new(RouteStats::new(target)))
            .clone()
    }

    /// `lain_router_requests_total{app,proc,code}` and the
    /// `lain_router_request_duration_seconds` histogram; label sets are appended to `label_sets`.
    pub fn families(&self, label_sets: &mut Vec<Vec<Label>>) -> Vec<MetricFamily> {
        let mut all: Vec<Arc<RouteStats>> = self.by_target.lock().values().cloned().collect();
        all.sort_by(|a, b| a.target.cmp(&b.target));
        all.push(self.unrouted.clone());
        let label = |key: &str, value: &str| Label {
            key: key.into(),
            value: value.into(),
        };
        let (mut requests, mut buckets, mut sums, mut counts) = (vec![], vec![], vec![], vec![]);
        let push = |sets: &mut Vec<Vec<Label>>, out: &mut Vec<Sample>, set, value| {
            sets.push(set);
            out.push(Sample {
                label_set: (sets.len() - 1) as u32,
                value,
            });
        };
        for s in &all {
            let (app, proc) = s.target.split_once('/').unwrap_or(("", ""));
            let base = vec![label("app", app), label("proc", proc)];
            for (i, class) in s.classes.iter().enumerate() {
                let n = class.load(Ordering::Relaxed);
                if n > 0 {
                    let mut set = base.clone();
                    set.push(label("code", &format!("{}xx", i + 1)));
                    push(label_sets, &mut requests, set, n as f64);
                }
            }
            let mut cumulative = 0u64;
            for (i, bucket) in s.buckets.iter().enumerate() {
                cumulative += bucket.load(Ordering::Relaxed);
                let le = BUCKETS.get(i).map_or("+Inf".to_string(), f64::to_string);
                let mut set = base.clone();
                set.push(label("le", &le));
                push(label_sets, &mut buckets, set, cumulative as f64);
            }
            let sum = s.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            push(label_sets, &mut sums, base.clone(), sum);
            push(label_sets, &mut counts, base, cumulative as f64);
        }
        let family = |name: &str, help: &str, samples| MetricFamily {
            name: name.into(),
            help: help.into(),
            kind: MetricKind::Counter,
            samples,
        };
        vec![
            family(
                "lain_router_requests_total",
                "Requests the web router answered, by proc and status class (app and proc empty: no route).",
                requests,
            ),
            family(
                "lain_router_request_duration_seconds_bucket",
                "Requests answered within `le` seconds (time to the response head), cumulative.",
                buckets,
            ),
            family(
                "lain_router_request_duration_seconds_sum",
                "Total seconds to the response head.",
                sums,
            ),
            family(
                "lain_router_request_duration_seconds_count",
                "Requests timed.",
                counts,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_buckets_and_sums_add_up() {
        let stats = Stats::default();
        let s = stats.adopt("shop/web");
        assert!(Arc::ptr_eq(&s, &stats.adopt("shop/web")), "one per proc");
        s.record(200, Duration::from_micros(800));
        s.record(204, Duration::from_millis(30));
        s.record(502, Duration::from_secs(9));
        stats.unrouted.record(404, Duration::from_micros(10));
        assert_eq!(s.requests(), 3);
        let mut sets = Vec::new();
        let families = stats.families(&mut sets);
        let value = |family: &str, want: &[(&str, &str)]| -> f64 {
            let f = families.iter().find(|f| f.name == family).expect(family);
            f.samples
                .iter()
                .find(|x| {
                    let set = &sets[x.label_set as usize];
                    want.iter()
                        .all(|(k, v)| set.iter().any(|l| l.key == *k && l.value == *v))
                })
                .map_or(-1.0, |x| x.value)
        };
        let web = [("app", "shop"), ("proc", "web")];
        assert_eq!(
            value(
                "lain_router_requests_total",
                &[web[0], web[1], ("code", "2xx")]
            ),
            2.0
        );
        assert_eq!(
            value(
                "lain_router_requests_total",
                &[web[0], web[1], ("code", "5xx")]
            ),
            1.0
        );
        assert_eq!(
            value(
                "lain_router_requests_total",
                &[("app", ""), ("code", "4xx")]
            ),
            1.0
        );
        let bucket = |le| {
            value(
                "lain_router_request_duration_seconds_bucket",
                &[web[0], web[1], ("le", le)],
            )
        };
        assert_eq!(bucket("0.001"), 1.0);
        assert_eq!(bucket("0.05"), 2.0);
        assert_eq!(bucket("5"), 2.0);
        assert_eq!(bucket("+Inf"), 3.0);
        let sum = value("lain_router_request_duration_seconds_sum", &web);
        assert!((sum - 9.0308).abs() < 1e-6, "{sum}");
        assert_eq!(
            value("lain_router_request_duration_seconds_count", &web),
            3.0
        );
    }
}

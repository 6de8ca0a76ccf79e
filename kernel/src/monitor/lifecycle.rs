//! Metrics of the app lifecycle, from the reconciler's last observation.

use crate::lifecycle::view::StatusBoard;
use crate::plugin::bindings::monitoring::{MetricFamily, MetricKind, Sample};
use crate::plugin::bindings::types::Label;
use crate::runtime::RunState;
use std::collections::BTreeMap;

/// `lain_instances{app,proc,state}`, `lain_instances_ready{app,proc}`,
/// `lain_instance_restarts_total{app,proc}` and `lain_reconciler_passes_total`; label sets are
/// appended to `label_sets`.
pub fn families(board: &StatusBoard, label_sets: &mut Vec<Vec<Label>>) -> Vec<MetricFamily> {
    let (passes, apps) = board.snapshot();
    let label = |key: &str, value: &str| Label {
        key: key.into(),
        value: value.into(),
    };
    let mut by_state: BTreeMap<(String, String, &str), f64> = BTreeMap::new();
    let mut per_proc: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for (app, instances) in &apps {
        for i in instances {
            let state = match i.state {
                RunState::Created => "created",
                RunState::Running { .. } => "running",
                RunState::Exited { .. } => "exited",
            };
            *by_state
                .entry((app.clone(), i.proc.clone(), state))
                .or_default() += 1.0;
            let entry = per_proc.entry((app.clone(), i.proc.clone())).or_default();
            entry.0 += f64::from(u8::from(i.ready));
            entry.1 += f64::from(i.restarts);
        }
    }
    let mut instances = Vec::new();
    for ((app, proc, state), n) in by_state {
        label_sets.push(vec![
            label("app", &app),
            label("proc", &proc),
            label("state", state),
        ]);
        instances.push(Sample {
            label_set: (label_sets.len() - 1) as u32,
            value: n,
        });
    }
    let (mut ready, mut restarts) = (Vec::new(), Vec::new());
    for ((app, proc), (r, s)) in per_proc {
        label_sets.push(vec![label("app", &app), label("proc", &proc)]);
        let set = (label_sets.len() - 1) as u32;
        ready.push(Sample {
            label_set: set,
            value: r,
        });
        restarts.push(Sample {
            label_set: set,
            value: s,
        });
    }
    let family = |name: &str, help: &str, kind, samples| MetricFamily {
        name: name.into(),
        help: help.into(),
        kind,
        samples,
    };
    vec![
        family(
            "lain_instances",
            "Instances by app, proc and run state.",
            MetricKind::Gauge,
            instances,
        ),
        family(
            "lain_instances_ready",
            "Ready instances by app and proc.",
            MetricKind::Gauge,
            ready,
        ),
        family(
            "lain_instance_restarts_total",
            "Restarts of crashed instances since the kernel started.",
            MetricKind::Counter,
            restarts,
        ),
        family(
            "lain_reconciler_passes_total",
            "Reconciler passes since the kernel started.",
            MetricKind::Counter,
            vec![Sample {
                label_set: 0,
                value: passes as f64,
            }],
        ),
    ]
}

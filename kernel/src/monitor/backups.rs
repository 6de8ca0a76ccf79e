//! Metrics of volume backups, from their records in the store.

use crate::backup::{Backups, Outcome};
use crate::plugin::bindings::monitoring::{MetricFamily, MetricKind, Sample};
use crate::plugin::bindings::types::Label;
use std::collections::BTreeMap;

/// A volume: app, proc, instance, path.
type VolumeKey = (String, String, u32, String);

/// `lain_backups{app,outcome}` (records kept, by outcome),
/// `lain_backup_last_failed{app,proc,instance,volume}` (1 when the latest finished backup of
/// the volume failed or was interrupted) and
/// `lain_backup_last_success_timestamp_seconds{app,proc,instance,volume}`; label sets are
/// appended to `label_sets`.
pub fn families(backups: &Backups, label_sets: &mut Vec<Vec<Label>>) -> Vec<MetricFamily> {
    let records = match backups.all(None) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("backup metrics: {e}");
            return Vec::new();
        }
    };
    let label = |key: &str, value: &str| Label {
        key: key.into(),
        value: value.into(),
    };
    let mut by_outcome: BTreeMap<(String, &str), f64> = BTreeMap::new();
    // Per volume: (latest finished backup's id and whether it failed, latest success's end).
    let mut volumes: BTreeMap<VolumeKey, (u64, bool, Option<i64>)> = BTreeMap::new();
    for r in &records {
        *by_outcome
            .entry((r.app.clone(), r.outcome.name()))
            .or_default() += 1.0;
        if r.outcome == Outcome::Running {
            continue;
        }
        let v = volumes
            .entry((r.app.clone(), r.proc.clone(), r.instance, r.volume.clone()))
            .or_insert((0, false, None));
        if r.id >= v.0 {
            v.0 = r.id;
            v.1 = matches!(r.outcome, Outcome::Failed | Outcome::Interrupted);
        }
        if r.outcome == Outcome::Succeeded {
            v.2 = v.2.max(r.ended_at);
        }
    }
    let mut counts = Vec::new();
    for ((app, outcome), n) in by_outcome {
        label_sets.push(vec![label("app", &app), label("outcome", outcome)]);
        counts.push(Sample {
            label_set: (label_sets.len() - 1) as u32,
            value: n,
        });
    }
    let (mut failed, mut success) = (Vec::new(), Vec::new());
    for ((app, proc, instance, volume), (_, last_failed, last_ok)) in volumes {
        label_sets.push(vec![
            label("app", &app),
            label("proc", &proc),
            label("instance", &instance.to_string()),
            label("volume", &volume),
        ]);
        let set = (label_sets.len() - 1) as u32;
        failed.push(Sample {
            label_set: set,
            value: f64::from(u8::from(last_failed)),
        });
        if let Some(t) = last_ok {
            success.push(Sample {
                label_set: set,
                value: t as f64,
            });
        }
    }
    let family = |name: &str, help: &str, samples| MetricFamily {
        name: name.into(),
        help: help.into(),
        kind: MetricKind::Gauge,
        samples,
    };
    vec![
        family(
            "lain_backups",
            "Backup records kept, by app and outcome.",
            counts,
        ),
        family(
            "lain_backup_last_failed",
            "1 when the latest finished backup of a volume failed or was interrupted.",
            failed,
        ),
        family(
            "lain_backup_last_success_timestamp_seconds",
            "When the latest successful backup of a volume ended (Unix seconds).",
            success,
        ),
    ]
}

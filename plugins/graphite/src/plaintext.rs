//! Encoding of a sample batch in Graphite's plaintext protocol: `path value timestamp\n`.
//!
//! The path is `<prefix>.<values of the path labels, in order>.<metric name>`; a label the sample
//! does not have (or has empty) is skipped. Every component is sanitised as LAIN's collectd naming
//! was (the cluster domain `lain.local` became `lain_local`): `.`, `/`, whitespace and control
//! characters become `_`, so a component never adds levels to the tree nor breaks the line.
//! Non-finite values are skipped: Graphite cannot store them. Timestamps are whole seconds.

use crate::config::Settings;
use lain_sdk_guest::monitor::SampleBatch;
use std::fmt::Write;

/// Encodes `batch` as plaintext lines. Errors: a family without a name, or a sample referring to a
/// missing label set.
pub fn encode(batch: &SampleBatch, settings: &Settings) -> Result<String, String> {
    let seconds = batch.timestamp_ms.div_euclid(1000);
    let mut out = String::new();
    for family in &batch.families {
        let name = sanitise(&family.name);
        if name.is_empty() {
            return Err("a metric family has an empty name".into());
        }
        for sample in family.samples.iter().filter(|s| s.value.is_finite()) {
            let labels = batch
                .label_sets
                .get(sample.label_set as usize)
                .ok_or_else(|| {
                    format!(
                        "family {name}: sample refers to label set {} of {}",
                        sample.label_set,
                        batch.label_sets.len()
                    )
                })?;
            let from_labels = settings.path_labels.iter().filter_map(|key| {
                let label = labels.iter().find(|l| &l.key == key)?;
                Some(sanitise(&label.value)).filter(|v| !v.is_empty())
            });
            let path: Vec<String> = settings
                .prefix
                .iter()
                .cloned()
                .chain(from_labels)
                .chain(std::iter::once(name.clone()))
                .collect();
            let value = format_value(sample.value);
            let _ = writeln!(out, "{} {value} {seconds}", path.join("."));
        }
    }
    Ok(out)
}

/// Replaces `.`, `/`, whitespace and control characters with `_`.
pub fn sanitise(component: &str) -> String {
    component
        .chars()
        .map(|c| match c {
            '.' | '/' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// A finite value in the shortest form that reads back exactly, integers without `.0`.
fn format_value(value: f64) -> String {
    let text = format!("{value:?}");
    match text.strip_suffix(".0") {
        Some(integer) => integer.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use lain_sdk_guest::Label;
    use lain_sdk_guest::monitor::{MetricFamily, MetricKind, Sample};

    fn settings(prefix: &str, path_labels: &[&str]) -> Settings {
        Config {
            address: Some("carbon:2003".into()),
            interval: 60,
            prefix: prefix.into(),
            path_labels: path_labels.iter().map(|l| l.to_string()).collect(),
        }
        .check()
        .unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(k, v)| Label {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn family(name: &str, samples: &[(u32, f64)]) -> MetricFamily {
        MetricFamily {
            name: name.into(),
            help: "ignored".into(),
            kind: MetricKind::Gauge,
            samples: samples
                .iter()
                .map(|&(label_set, value)| Sample { label_set, value })
                .collect(),
        }
    }

    fn batch(label_sets: Vec<Vec<Label>>, families: Vec<MetricFamily>) -> SampleBatch {
        SampleBatch {
            timestamp_ms: 1_700_000_000_999,
            label_sets,
            families,
        }
    }

    #[test]
    fn one_line_per_sample_with_labels_in_configured_order() {
        let batch = batch(
            vec![
                labels(&[
                    ("instance", "1"),
                    ("proc", "hello.web.web"),
                    ("app", "hello"),
                    ("node", "n1"),
                ]),
                labels(&[("app", "hello"), ("instance", "2")]),
            ],
            vec![
                family("lain_instance_memory_bytes", &[(0, 1048576.0), (1, 0.5)]),
                family("lain_instance_cpu_seconds_total", &[(0, 12.25)]),
            ],
        );
        assert_eq!(
            encode(&batch, &settings("lain", &["app", "proc", "instance"])).unwrap(),
            "lain.hello.hello_web_web.1.lain_instance_memory_bytes 1048576 1700000000\n\
             lain.hello.2.lain_instance_memory_bytes 0.5 1700000000\n\
             lain.hello.hello_web_web.1.lain_instance_cpu_seconds_total 12.25 1700000000\n"
        );
    }

    #[test]
    fn components_are_sanitised_like_lain_collectd_did() {
        let batch = batch(
            vec![labels(&[
                ("domain", "lain.local"),
                ("app", "my app/v2"),
                ("proc", "a\nb 1e3"),
                ("empty", ""),
            ])],
            vec![family("node.load", &[(0, 1e21)])],
        );
        assert_eq!(
            encode(&batch, &settings("", &["domain", "app", "empty", "proc"])).unwrap(),
            "lain_local.my_app_v2.a_b_1e3.node_load 1e21 1700000000\n"
        );
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let batch = batch(
            vec![vec![]],
            vec![family(
                "m",
                &[
                    (0, f64::NAN),
                    (0, f64::INFINITY),
                    (0, -3.0),
                    (0, f64::NEG_INFINITY),
                ],
            )],
        );
        assert_eq!(
            encode(&batch, &settings("lain", &["app"])).unwrap(),
            "lain.m -3 1700000000\n"
        );
    }

    #[test]
    fn timestamps_round_down_to_seconds() {
        let mut early = batch(vec![vec![]], vec![family("m", &[(0, 1.0)])]);
        early.timestamp_ms = -1;
        assert_eq!(encode(&early, &settings("", &[])).unwrap(), "m 1 -1\n");
    }

    #[test]
    fn rejects_dangling_label_sets_and_empty_names() {
        let dangling = batch(vec![], vec![family("m", &[(0, 1.0)])]);
        assert_eq!(
            encode(&dangling, &settings("lain", &[])),
            Err("family m: sample refers to label set 0 of 0".into())
        );
        let unnamed = batch(vec![vec![]], vec![family("", &[])]);
        assert_eq!(
            encode(&unnamed, &settings("lain", &[])),
            Err("a metric family has an empty name".into())
        );
    }
}

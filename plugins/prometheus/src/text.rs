//! Encoding of a sample batch in the Prometheus text exposition format 0.0.4.
//!
//! Decisions beyond the format itself:
//! - Metric names are sanitised to `[a-zA-Z_:][a-zA-Z0-9_:]*` and label names to
//!   `[a-zA-Z_][a-zA-Z0-9_]*`: every other character becomes `_`, and `_` is put before a leading
//!   digit (or stands for an empty name).
//! - Families whose sanitised names are equal are merged into one (the format forbids a family
//!   twice): the first non-empty help is kept and the samples follow in batch order. They must be
//!   of the same kind; a counter and a gauge of one name are an error, since either type would
//!   misdescribe some samples.
//! - A label set in which two names are equal once sanitised is an error: a series cannot carry a
//!   label twice, and dropping either value would silently merge distinct series.
//! - `# HELP` is left out when the help is empty; `# TYPE` is always written.
//! - Values: `NaN`, `+Inf`, `-Inf`, integers without a fractional part (`3`, not `3.0`), other
//!   numbers in the shortest form that reads back exactly (`0.25`, `1e-7`).

use lain_sdk_guest::Label;
use lain_sdk_guest::monitor::{MetricKind, Sample, SampleBatch};
// B-tree collections: a `HashMap` would make the component import `wasi:random` for its seed.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// A family to write: sanitised name, help, kind and the samples of every merged family.
struct Family<'a> {
    name: String,
    help: &'a str,
    kind: MetricKind,
    samples: Vec<&'a Sample>,
}

/// Encodes `batch`; with `timestamps`, every sample line ends with the batch's timestamp.
/// Errors: a sample refers to a missing label set, or a conflict described in the module docs.
pub fn encode(batch: &SampleBatch, timestamps: bool) -> Result<String, String> {
    let label_sets = batch
        .label_sets
        .iter()
        .enumerate()
        .map(|(index, labels)| render_labels(labels).map_err(|e| format!("label set {index}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let suffix = if timestamps {
        format!(" {}", batch.timestamp_ms)
    } else {
        String::new()
    };
    let mut out = String::new();
    for family in merge_families(batch)? {
        if !family.help.is_empty() {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape(family.help, false));
        }
        let kind = match family.kind {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for sample in family.samples {
            let labels = label_sets.get(sample.label_set as usize).ok_or_else(|| {
                format!(
                    "family {}: sample refers to label set {} of {}",
                    family.name,
                    sample.label_set,
                    label_sets.len()
                )
            })?;
            let value = format_value(sample.value);
            let _ = writeln!(out, "{}{labels} {value}{suffix}", family.name);
        }
    }
    Ok(out)
}

/// The batch's families under their sanitised names, those of equal names merged, in order of
/// first appearance.
fn merge_families(batch: &SampleBatch) -> Result<Vec<Family<'_>>, String> {
    let mut families: Vec<Family> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for family in &batch.families {
        let name = sanitise(&family.name, true);
        let merged = by_name.get(&name).and_then(|&i| families.get_mut(i));
        match merged {
            Some(merged) if merged.kind != family.kind => {
                return Err(format!(
                    "metric `{}` is both a counter and a gauge (as `{name}`)",
                    family.name
                ));
            }
            Some(merged) => {
                if merged.help.is_empty() {
                    merged.help = &family.help;
                }
                merged.samples.extend(&family.samples);
            }
            None => {
                by_name.insert(name.clone(), families.len());
                families.push(Family {
                    name,
                    help: &family.help,
                    kind: family.kind,
                    samples: family.samples.iter().collect(),
                });
            }
        }
    }
    Ok(families)
}

/// `{name="value",...}` for a label set, `""` for an empty one.
fn render_labels(labels: &[Label]) -> Result<String, String> {
    if labels.is_empty() {
        return Ok(String::new());
    }
    let mut seen = BTreeSet::new();
    let mut pairs = Vec::with_capacity(labels.len());
    for label in labels {
        let name = sanitise(&label.key, false);
        if !seen.insert(name.clone()) {
            return Err(format!("label `{}` appears twice (as `{name}`)", label.key));
        }
        pairs.push(format!("{name}=\"{}\"", escape(&label.value, true)));
    }
    Ok(format!("{{{}}}", pairs.join(",")))
}

/// Replaces what a metric (`colon`) or label name may not hold with `_`.
fn sanitise(name: &str, colon: bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
            ':' if colon => c,
            _ => '_',
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Escapes `\` and newline (help text), and `"` too in label values.
fn escape(text: &str, quote: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            _ => out.push(c),
        }
    }
    out
}

/// A sample value as Prometheus reads it (see the module docs).
fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        let text = format!("{value:?}");
        match text.strip_suffix(".0") {
            Some(integer) => integer.to_string(),
            None => text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::monitor::MetricFamily;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs
            .iter()
            .map(|(k, v)| Label {
                key: k.to_string(),
                value: v.to_string(),
            })
            .collect()
    }

    fn family(name: &str, help: &str, kind: MetricKind, samples: &[(u32, f64)]) -> MetricFamily {
        MetricFamily {
            name: name.into(),
            help: help.into(),
            kind,
            samples: samples
                .iter()
                .map(|&(label_set, value)| Sample { label_set, value })
                .collect(),
        }
    }

    fn batch(label_sets: Vec<Vec<Label>>, families: Vec<MetricFamily>) -> SampleBatch {
        SampleBatch {
            timestamp_ms: 1_700_000_000_123,
            label_sets,
            families,
        }
    }

    #[test]
    fn encodes_families_with_help_type_and_labels() {
        let batch = batch(
            vec![
                labels(&[
                    ("app", "hello"),
                    ("proc", "hello.web.web"),
                    ("instance", "1"),
                ]),
                labels(&[
                    ("app", "hello"),
                    ("proc", "hello.web.web"),
                    ("instance", "2"),
                ]),
                vec![],
            ],
            vec![
                family(
                    "lain_instance_memory_bytes",
                    "Memory in use.",
                    MetricKind::Gauge,
                    &[(0, 1048576.0), (1, 2.5e9)],
                ),
                family(
                    "lain_requests_total",
                    "",
                    MetricKind::Counter,
                    &[(0, 17.0), (2, 0.25)],
                ),
            ],
        );
        assert_eq!(
            encode(&batch, false).unwrap(),
            "# HELP lain_instance_memory_bytes Memory in use.\n\
             # TYPE lain_instance_memory_bytes gauge\n\
             lain_instance_memory_bytes{app=\"hello\",proc=\"hello.web.web\",instance=\"1\"} 1048576\n\
             lain_instance_memory_bytes{app=\"hello\",proc=\"hello.web.web\",instance=\"2\"} 2500000000\n\
             # TYPE lain_requests_total counter\n\
             lain_requests_total{app=\"hello\",proc=\"hello.web.web\",instance=\"1\"} 17\n\
             lain_requests_total 0.25\n"
        );
    }

    #[test]
    fn timestamps_are_appended_when_configured() {
        let batch = batch(
            vec![vec![]],
            vec![family("up", "", MetricKind::Gauge, &[(0, 1.0)])],
        );
        assert_eq!(
            encode(&batch, true).unwrap(),
            "# TYPE up gauge\nup 1 1700000000123\n"
        );
    }

    #[test]
    fn escapes_help_and_label_values() {
        let batch = batch(
            vec![labels(&[("path", "C:\\dir \"x\"\nnext")])],
            vec![family(
                "m",
                "a \\ b\nc \"q\"",
                MetricKind::Gauge,
                &[(0, 1.0)],
            )],
        );
        assert_eq!(
            encode(&batch, false).unwrap(),
            "# HELP m a \\\\ b\\nc \"q\"\n# TYPE m gauge\nm{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n"
        );
    }

    #[test]
    fn sanitises_metric_and_label_names() {
        let batch = batch(
            vec![labels(&[
                ("node.name", "n1"),
                ("9lives", "x"),
                ("a:b", "y"),
                ("", "z"),
            ])],
            vec![
                family(
                    "lain.cpu-seconds:total",
                    "",
                    MetricKind::Counter,
                    &[(0, 3.0)],
                ),
                family("2xx", "", MetricKind::Counter, &[]),
            ],
        );
        assert_eq!(
            encode(&batch, false).unwrap(),
            "# TYPE lain_cpu_seconds:total counter\n\
             lain_cpu_seconds:total{node_name=\"n1\",_9lives=\"x\",a_b=\"y\",_=\"z\"} 3\n\
             # TYPE _2xx counter\n"
        );
    }

    #[test]
    fn formats_special_and_extreme_values() {
        let values = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            -3.0,
            1e21,
            1.5e-7,
            0.1,
            123456.789,
        ];
        let formatted: Vec<String> = values.into_iter().map(format_value).collect();
        assert_eq!(
            formatted,
            [
                "NaN",
                "+Inf",
                "-Inf",
                "0",
                "-0",
                "-3",
                "1e21",
                "1.5e-7",
                "0.1",
                "123456.789"
            ]
        );
    }

    #[test]
    fn merges_families_of_one_sanitised_name() {
        let batch = batch(
            vec![labels(&[("instance", "1")]), labels(&[("instance", "2")])],
            vec![
                family("lain.up", "", MetricKind::Gauge, &[(0, 1.0)]),
                family("other", "Other.", MetricKind::Gauge, &[(0, 5.0)]),
                family("lain_up", "Instance is up.", MetricKind::Gauge, &[(1, 0.0)]),
            ],
        );
        assert_eq!(
            encode(&batch, false).unwrap(),
            "# HELP lain_up Instance is up.\n# TYPE lain_up gauge\n\
             lain_up{instance=\"1\"} 1\nlain_up{instance=\"2\"} 0\n\
             # HELP other Other.\n# TYPE other gauge\nother{instance=\"1\"} 5\n"
        );
    }

    #[test]
    fn rejects_conflicts_and_dangling_label_sets() {
        let kinds = batch(
            vec![vec![]],
            vec![
                family("x", "", MetricKind::Gauge, &[]),
                family("x", "", MetricKind::Counter, &[]),
            ],
        );
        assert_eq!(
            encode(&kinds, false),
            Err("metric `x` is both a counter and a gauge (as `x`)".into())
        );

        let twice = batch(vec![labels(&[("a.b", "1"), ("a_b", "2")])], vec![]);
        assert_eq!(
            encode(&twice, false),
            Err("label set 0: label `a_b` appears twice (as `a_b`)".into())
        );

        let dangling = batch(
            vec![vec![]],
            vec![family("x", "", MetricKind::Gauge, &[(1, 1.0)])],
        );
        assert_eq!(
            encode(&dangling, false),
            Err("family x: sample refers to label set 1 of 1".into())
        );
    }
}

//! The keys only a `cron` proc has (`schedule`, `timezone`, `concurrency`, `missed`, `retries`,
//! `history`), read from the proc's `extra` object.

use crate::schedule;
use lain_sdk_guest::Problem;
use lain_sdk_guest::proc_type::{ConcurrencyPolicy, MissedPolicy};
use serde_json::{Map, Value};

/// When a cron proc runs.
#[derive(Debug, PartialEq)]
pub struct CronSpec {
    /// The schedule in canonical form (see [`schedule::normalize`]).
    pub schedule: String,
    /// The time zone the schedule is read in.
    pub timezone: String,
    /// A tick while the previous run still runs (`concurrency`: forbid, allow, replace; forbid).
    pub concurrency: ConcurrencyPolicy,
    /// Ticks that fell while the kernel was down (`missed`: skip, run-once; skip).
    pub missed: MissedPolicy,
    /// Restarts of a failed run within its tick (`retries`, 0-100; 0).
    pub retries: u32,
    /// Runs kept in the history (`history`, 1-1000; the kernel's 20 when absent).
    pub history: u32,
}

/// The value of key `key` among `choices` (`default` when absent); a problem otherwise.
fn choice<T: Copy>(
    extra: &Map<String, Value>,
    key: &str,
    choices: &[(&str, T)],
    default: T,
    problems: &mut Vec<Problem>,
) -> T {
    let Some(value) = extra.get(key) else {
        return default;
    };
    if let Some((_, v)) = choices
        .iter()
        .find(|(name, _)| value.as_str() == Some(name))
    {
        return *v;
    }
    let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
    problems.push(
        Problem::at(
            &[key],
            format!("{key} {value} is not one of {}", names.join(", ")),
        )
        .with_hint(format!("write `{key}: {}`", names[0])),
    );
    default
}

/// The number under key `key` within `range` (`default` when absent); a problem otherwise.
fn number(
    extra: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<u32>,
    default: u32,
    problems: &mut Vec<Problem>,
) -> u32 {
    let Some(value) = extra.get(key) else {
        return default;
    };
    match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
        Some(n) if range.contains(&n) => n,
        _ => {
            problems.push(Problem::at(
                &[key],
                format!(
                    "{key} {value} is not a number from {} to {}",
                    range.start(),
                    range.end()
                ),
            ));
            default
        }
    }
}

/// Reads and checks `schedule` (required) and `timezone` (`default_timezone` when absent) from a
/// proc's `extra` JSON object; reports every problem found.
pub fn read(extra: &str, default_timezone: &str) -> Result<CronSpec, Vec<Problem>> {
    let extra: Map<String, Value> = serde_json::from_str(extra).map_err(|e| {
        vec![Problem::at(
            &[],
            format!("extra keys are not a JSON object: {e}"),
        )]
    })?;
    let mut problems = Vec::new();
    let schedule =
        match extra.get("schedule") {
            None => {
                problems.push(
                    Problem::at(&[], "a cron proc needs a schedule")
                        .with_hint("add `schedule: \"30 2 * * *\"` (02:30 every day)"),
                );
                None
            }
            Some(Value::String(text)) => match schedule::normalize(text) {
                Ok(schedule) => Some(schedule),
                Err(faults) => {
                    problems.extend(faults.into_iter().map(|fault| {
                        Problem::at(&["schedule"], fault).with_hint(schedule::SYNTAX)
                    }));
                    None
                }
            },
            Some(other) => {
                problems.push(
                    Problem::at(&["schedule"], format!("schedule {other} is not a string"))
                        .with_hint("quote it: `schedule: \"30 2 * * *\"`"),
                );
                None
            }
        };
    let timezone = match extra.get("timezone") {
        None => Some(default_timezone.to_string()),
        Some(Value::String(name)) if is_timezone(name) => Some(name.clone()),
        Some(other) => {
            problems.push(
                Problem::at(
                    &["timezone"],
                    format!("timezone {other} is not a time zone name"),
                )
                .with_hint("use an IANA time zone name such as `UTC` or `Europe/Paris`"),
            );
            None
        }
    };
    let concurrency = choice(
        &extra,
        "concurrency",
        &[
            ("forbid", ConcurrencyPolicy::Forbid),
            ("allow", ConcurrencyPolicy::Allow),
            ("replace", ConcurrencyPolicy::Replace),
        ],
        ConcurrencyPolicy::Forbid,
        &mut problems,
    );
    let missed = choice(
        &extra,
        "missed",
        &[
            ("skip", MissedPolicy::Skip),
            ("run-once", MissedPolicy::RunOnce),
        ],
        MissedPolicy::Skip,
        &mut problems,
    );
    let retries = number(&extra, "retries", 0..=100, 0, &mut problems);
    let history = number(&extra, "history", 1..=1000, 0, &mut problems);
    match (schedule, timezone) {
        (Some(schedule), Some(timezone)) if problems.is_empty() => Ok(CronSpec {
            schedule,
            timezone,
            concurrency,
            missed,
            retries,
            history,
        }),
        _ => Err(problems),
    }
}

/// Whether `name` has the form of an IANA time zone name (`UTC`, `America/Argentina/Buenos_Aires`,
/// `Etc/GMT+3`): `/`-separated parts starting with a letter, made of letters, digits, `_`, `-` and
/// `+`. Only the form is checked: the time zone database is where the job runs, not here.
pub fn is_timezone(name: &str) -> bool {
    name.len() <= 64
        && name.split('/').all(|part| {
            part.starts_with(|c: char| c.is_ascii_alphabetic())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-+".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(extra: &str) -> Vec<(String, String)> {
        read(extra, "UTC")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.path.join("."), p.message))
            .collect()
    }

    #[test]
    fn timezone_defaults_to_the_configured_one() {
        assert_eq!(
            read(r#"{"schedule": " 0  3 * * * "}"#, "Asia/Shanghai").map_err(|p| p.len()),
            Ok(CronSpec {
                schedule: "0 3 * * *".into(),
                timezone: "Asia/Shanghai".into(),
                concurrency: ConcurrencyPolicy::Forbid,
                missed: MissedPolicy::Skip,
                retries: 0,
                history: 0,
            })
        );
        let spec = read(r#"{"schedule": "@daily", "timezone": "Etc/GMT+3"}"#, "UTC");
        let timezone = spec.map(|s| s.timezone).map_err(|p| p.len());
        assert_eq!(timezone, Ok("Etc/GMT+3".to_string()));
    }

    #[test]
    fn schedule_is_required() {
        assert_eq!(
            problems("{}"),
            [(String::new(), "a cron proc needs a schedule".to_string())]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let found = problems(r#"{"schedule": "61 25 * * *", "timezone": "../etc/passwd"}"#);
        let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["schedule", "schedule", "timezone"]);
        let found = problems(r#"{"schedule": 5, "timezone": 1}"#);
        assert_eq!(
            found,
            [
                (
                    "schedule".to_string(),
                    "schedule 5 is not a string".to_string()
                ),
                (
                    "timezone".to_string(),
                    "timezone 1 is not a time zone name".to_string()
                ),
            ]
        );
        assert_eq!(problems("[]").len(), 1);
        let found = problems(
            r#"{"schedule": "@daily", "concurrency": "sometimes", "missed": "all", "retries": -1, "history": 0}"#,
        );
        let paths: Vec<&str> = found.iter().map(|(path, _)| path.as_str()).collect();
        assert_eq!(paths, ["concurrency", "missed", "retries", "history"]);
    }

    #[test]
    fn timezone_names() {
        for good in [
            "UTC",
            "Europe/Paris",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT-14",
            "EST5EDT",
        ] {
            assert!(is_timezone(good), "{good}");
        }
        for bad in [
            "",
            "/UTC",
            "Europe//Paris",
            "Europe/",
            "../x",
            "UTC 1",
            "+3",
        ] {
            assert!(!is_timezone(bad), "{bad}");
        }
    }
}

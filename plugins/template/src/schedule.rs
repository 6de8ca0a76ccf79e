//! Cron schedules: five fields `minute hour day-of-month month day-of-week`, or a descriptor
//! (`@hourly`, `@daily`, `@every 1h30m`, ...).
//!
//! The accepted syntax is the common ground of Vixie cron and robfig/cron (which LAIN used,
//! LAIN reference §backups): a field is `*`, a value, a range `a-b`, any of these with a step `/n`,
//! or a comma-separated list of them; months and days of the week may be written as names (`jan`,
//! `mon`), day of month and day of week may be `?` (same as `*`). Seconds are not supported.

/// How to write a schedule, for problem hints.
pub const SYNTAX: &str = "write five fields `minute hour day-of-month month day-of-week` (e.g. `30 2 * * *` for 02:30 every day), or one of @hourly, @daily, @weekly, @monthly, @yearly, @every <duration>";

/// One field of a five-field schedule.
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names of the values from `min` on, lower case.
    names: &'static [&'static str],
    /// Whether `?` stands for `*`.
    question: bool,
}

/// The five fields, in order.
const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        question: false,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        question: false,
    },
    Field {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
        question: true,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
        question: false,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
        question: true,
    },
];

/// Descriptors that stand for a fixed five-field schedule.
const DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Checks a schedule and returns it in canonical form (fields separated by one space), or what is
/// wrong with it: one message per faulty field.
pub fn normalize(schedule: &str) -> Result<String, Vec<String>> {
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return descriptor(schedule).map_err(|fault| vec![fault]);
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Err(vec![format!(
            "schedule `{schedule}` has {} fields, not 5",
            fields.len()
        )]);
    }
    let faults: Vec<String> = FIELDS
        .iter()
        .zip(&fields)
        .filter_map(|(field, text)| field.check(text).err())
        .collect();
    if faults.is_empty() {
        Ok(fields.join(" "))
    } else {
        Err(faults)
    }
}

/// Checks a descriptor (`@daily`, `@every 90m`, ...).
fn descriptor(schedule: &str) -> Result<String, String> {
    if DESCRIPTORS.contains(&schedule) {
        return Ok(schedule.to_string());
    }
    match schedule.strip_prefix("@every") {
        Some(rest) if rest.starts_with(char::is_whitespace) => {
            let duration = rest.trim();
            every_seconds(duration)?;
            Ok(format!("@every {duration}"))
        }
        _ => Err(format!("unknown schedule descriptor `{schedule}`")),
    }
}

/// Seconds of an `@every` duration: numbers with the units `h`, `m` and `s` (`1h30m`), at least 1 s.
fn every_seconds(duration: &str) -> Result<u64, String> {
    let bad = || format!("`{duration}` is not a duration such as `90s`, `15m` or `1h30m`");
    let mut total: u64 = 0;
    let mut rest = duration;
    while !rest.is_empty() {
        let digits_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (digits, after) = rest.split_at(digits_end);
        let mut chars = after.chars();
        let unit = match chars.next() {
            Some('h') => 3600,
            Some('m') => 60,
            Some('s') => 1,
            _ => return Err(bad()),
        };
        let amount: u64 = digits.parse().map_err(|_| bad())?;
        total = amount
            .checked_mul(unit)
            .and_then(|seconds| total.checked_add(seconds))
            .ok_or_else(bad)?;
        rest = chars.as_str();
    }
    if total == 0 {
        return Err(format!(
            "@every needs a duration of at least 1s, not `{duration}`"
        ));
    }
    Ok(total)
}

impl Field {
    /// Checks the text of this field: a comma-separated list of `*`, `a`, `a-b`, each with an
    /// optional `/step`.
    fn check(&self, text: &str) -> Result<(), String> {
        text.split(',').try_for_each(|item| self.check_item(item))
    }

    /// Checks one item of the list.
    fn check_item(&self, item: &str) -> Result<(), String> {
        let name = self.name;
        if item.is_empty() {
            return Err(format!("{name} has an empty list item"));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if range == "*" || (self.question && range == "?") {
            // Every value.
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (self.value(low)?, self.value(high)?);
            if low > high {
                return Err(format!("{name} range `{range}` goes backwards"));
            }
        } else {
            self.value(range)?;
        }
        if let Some(step) = step {
            let widest = self.max - self.min;
            match step.parse::<u32>() {
                Ok(n) if (1..=widest).contains(&n) => {}
                _ => {
                    return Err(format!(
                        "{name} step `{step}` is not a number from 1 to {widest}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The value of a number or name in this field.
    fn value(&self, text: &str) -> Result<u32, String> {
        let (name, min, max) = (self.name, self.min, self.max);
        if let Ok(n) = text.parse::<u32>() {
            return if (min..=max).contains(&n) {
                Ok(n)
            } else {
                Err(format!("{name} `{text}` is out of range {min}-{max}"))
            };
        }
        let lower = text.to_ascii_lowercase();
        match self.names.iter().zip(min..).find(|(n, _)| **n == lower) {
            Some((_, value)) => Ok(value),
            None if self.names.is_empty() => Err(format!("{name} `{text}` is not a number")),
            None => Err(format!(
                "{name} `{text}` is neither a number from {min} to {max} nor a name ({}-{})",
                self.names.first().unwrap_or(&""),
                self.names.last().unwrap_or(&""),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_schedules_are_normalized() {
        for (written, canonical) in [
            ("30 2 * * *", "30 2 * * *"),
            (
                "  */15   0-6,22,23 * * mon-fri ",
                "*/15 0-6,22,23 * * mon-fri",
            ),
            ("0 3 1,15 JAN-jun/2 ?", "0 3 1,15 JAN-jun/2 ?"),
            ("5/10 * ? * SUN", "5/10 * ? * SUN"),
            ("59 23 31 12 6", "59 23 31 12 6"),
            ("@daily", "@daily"),
            ("@every   1h30m ", "@every 1h30m"),
            ("@every 1s", "@every 1s"),
        ] {
            assert_eq!(normalize(written), Ok(canonical.to_string()), "{written}");
        }
    }

    #[test]
    fn every_field_range_is_checked() {
        for (schedule, fault) in [
            ("60 * * * *", "minute `60` is out of range 0-59"),
            ("* 24 * * *", "hour `24` is out of range 0-23"),
            ("* * 0 * *", "day of month `0` is out of range 1-31"),
            ("* * 32 * *", "day of month `32` is out of range 1-31"),
            ("* * * 13 *", "month `13` is out of range 1-12"),
            ("* * * * 7", "day of week `7` is out of range 0-6"),
            (
                "* * * * sunday",
                "day of week `sunday` is neither a number from 0 to 6 nor a name (sun-sat)",
            ),
            ("? * * * *", "minute `?` is not a number"),
            ("10-5 * * * *", "minute range `10-5` goes backwards"),
            (
                "*/0 * * * *",
                "minute step `0` is not a number from 1 to 59",
            ),
            (
                "* */24 * * *",
                "hour step `24` is not a number from 1 to 23",
            ),
            ("1,,2 * * * *", "minute has an empty list item"),
            ("-1 * * * *", "minute `` is not a number"),
        ] {
            assert_eq!(
                normalize(schedule),
                Err(vec![fault.to_string()]),
                "{schedule}"
            );
        }
    }

    #[test]
    fn every_faulty_field_is_reported() {
        assert_eq!(
            normalize("61 25 * * *").map_err(|faults| faults.len()),
            Err(2)
        );
    }

    #[test]
    fn field_count_and_descriptors_are_checked() {
        for (schedule, fault) in [
            ("0 3 * *", "schedule `0 3 * *` has 4 fields, not 5"),
            ("0 0 3 * * *", "schedule `0 0 3 * * *` has 6 fields, not 5"),
            ("@fortnightly", "unknown schedule descriptor `@fortnightly`"),
            ("@everyday", "unknown schedule descriptor `@everyday`"),
            (
                "@every 1.5h",
                "`1.5h` is not a duration such as `90s`, `15m` or `1h30m`",
            ),
            (
                "@every 500ms",
                "`500ms` is not a duration such as `90s`, `15m` or `1h30m`",
            ),
            (
                "@every 90",
                "`90` is not a duration such as `90s`, `15m` or `1h30m`",
            ),
            (
                "@every 0s",
                "@every needs a duration of at least 1s, not `0s`",
            ),
            (
                "@every 99999999999999999999h",
                "`99999999999999999999h` is not a duration such as `90s`, `15m` or `1h30m`",
            ),
        ] {
            assert_eq!(
                normalize(schedule),
                Err(vec![fault.to_string()]),
                "{schedule}"
            );
        }
    }

    #[test]
    fn durations_add_up() {
        assert_eq!(every_seconds("1h30m15s"), Ok(5415));
        assert_eq!(every_seconds("90m"), Ok(5400));
    }
}

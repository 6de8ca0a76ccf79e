//! Schedules: when a scheduled proc's ticks fall (the `schedule` of a proc type's plan).
//!
//! A schedule is five cron fields (minute hour day-of-month month day-of-week), six with seconds
//! first, a descriptor (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`, `@annually`,
//! `@midnight`), or `@every <duration>` (`90s`, `1h30m`, `2d`; at least one second), read in an
//! IANA time zone. Cron patterns are parsed and walked by the `croner` crate over `jiff` zoned
//! times, so a tick at a local time that a daylight-saving change skips or repeats falls once;
//! `@every` ticks are counted from the Unix epoch (`@every 1h` ticks on the hour in UTC whatever
//! the zone), so every kernel computes the same ticks.
//!
//! The parser is independent of the reconciler: the run history (`lifecycle::runs`) and the
//! backup scheduler both use [`Schedule`].

#[cfg(test)]
mod tests;

use croner::parser::{CronParser, Seconds, Year};
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// Why a schedule was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CronError {
    /// The cron text is not a pattern, descriptor or `@every` this parser reads.
    #[error("schedule `{cron}`: {why}")]
    Pattern {
        /// The text as given.
        cron: String,
        /// What is wrong with it.
        why: String,
    },
    /// The time zone is not an IANA name.
    #[error("time zone `{0}` is not an IANA time zone name (e.g. `UTC`, `Europe/Paris`)")]
    TimeZone(String),
}

/// A parsed schedule with its time zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    kind: Kind,
    tz: TimeZone,
    text: String,
}

#[derive(Clone, Debug)]
enum Kind {
    Cron(Box<croner::Cron>),
    Every(u64),
}

impl Schedule {
    /// Parses `cron` read in time zone `timezone` (an empty zone is `UTC`).
    pub fn parse(cron: &str, timezone: &str) -> Result<Schedule, CronError> {
        let text = cron.trim();
        let bad = |why: String| CronError::Pattern {
            cron: cron.to_string(),
            why,
        };
        let tz = if timezone.is_empty() {
            TimeZone::UTC
        } else {
            TimeZone::get(timezone).map_err(|_| CronError::TimeZone(timezone.to_string()))?
        };
        let kind = if let Some(rest) = text.strip_prefix("@every") {
            let secs = parse_duration(rest.trim()).map_err(bad)?;
            Kind::Every(secs)
        } else {
            if text.starts_with('@') && !DESCRIPTORS.contains(&text.to_ascii_lowercase().as_str()) {
                return Err(bad(format!(
                    "unknown descriptor; use one of {} or `@every <duration>`",
                    DESCRIPTORS.join(", ")
                )));
            }
            let fields = text.split_whitespace().count();
            if !text.starts_with('@') && !(5..=6).contains(&fields) {
                return Err(bad(format!(
                    "{fields} fields; a cron pattern has 5 (minute hour day-of-month month \
                     day-of-week) or 6 (seconds first)"
                )));
            }
            let parsed = CronParser::builder()
                .seconds(Seconds::Optional)
                .year(Year::Disallowed)
                .build()
                .parse(text)
                .map_err(|e| bad(e.to_string()))?;
            Kind::Cron(Box::new(parsed))
        };
        Ok(Schedule {
            kind,
            tz,
            text: text.to_string(),
        })
    }

    /// The schedule as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after` (Unix seconds), or `None` when the pattern never
    /// matches again (e.g. February 30th).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every(secs) => {
                let secs = i64::try_from(*secs).ok()?;
                Some((after.div_euclid(secs) + 1) * secs)
            }
            Kind::Cron(cron) => {
                let start = Timestamp::from_second(after).ok()?;
                let zoned = Zoned::new(start, self.tz.clone());
                cron.find_next_occurrence(&zoned, false)
                    .ok()
                    .map(|z| z.timestamp().as_second())
            }
        }
    }

    /// The ticks in `(after, until]`, oldest first, and how many there were: at most `limit` are
    /// listed (the newest ones), the count covers them all up to `count_limit`.
    pub fn ticks_between(&self, after: i64, until: i64, limit: usize) -> (Vec<i64>, u64) {
        let mut out = std::collections::VecDeque::with_capacity(limit.min(16));
        let mut count = 0u64;
        let mut t = after;
        while let Some(next) = self.next_after(t) {
            if next > until || count >= COUNT_LIMIT {
                break;
            }
            count += 1;
            out.push_back(next);
            if out.len() > limit {
                out.pop_front();
            }
            t = next;
        }
        (out.into(), count)
    }
}

/// Ticks counted at most when a kernel was down a long time (counting stops there).
pub const COUNT_LIMIT: u64 = 100_000;

/// The descriptors a cron schedule may be.
const DESCRIPTORS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Seconds in `text`, a sequence of `<number><unit>` with units `d`, `h`, `m`, `s` (`1h30m`).
fn parse_duration(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("`@every` needs a duration, e.g. `@every 90s` or `@every 1h30m`".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => {
                return Err(format!(
                    "`{text}` is not a duration: `{c}` is no unit (use d, h, m, s: `1h30m`)"
                ));
            }
        };
        let n: u64 = digits.parse().map_err(|_| {
            format!("`{text}` is not a duration: a unit without a number before it")
        })?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("`{text}` is too long a duration"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "`{text}` is not a duration: `{digits}` has no unit (use d, h, m, s: `{digits}s`)"
        ));
    }
    if total == 0 {
        return Err("`@every` needs at least one second".into());
    }
    Ok(total)
}

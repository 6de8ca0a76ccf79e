//! The host `log` function's defences: what a plugin writes into the kernel's log is bounded,
//! escaped so it cannot forge or split lines, and rate-limited per plugin.

use parking_lot::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Longest message kept, in bytes; the rest is cut and the cut is said.
pub const MAX_MESSAGE: usize = 8 << 10;
/// Most fields kept per record.
pub const MAX_FIELDS: usize = 32;
/// Longest field key kept, in bytes.
pub const MAX_KEY: usize = 64;
/// Longest field value kept, in bytes.
pub const MAX_VALUE: usize = 1 << 10;

/// `text` cut to at most `max` bytes (on a character boundary), with every control character,
/// line or paragraph separator and bidirectional override written as an escape (`\n`,
/// `\u{1b}`, `\u{202e}`), so one record is always one line that reads as what it is.
pub fn escape(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end + 16);
    for c in text[..end].chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else if matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    if end < text.len() {
        out.push_str(&format!("... ({} bytes cut)", text.len() - end));
    }
    out
}

/// A field key as it is logged: letters, digits, `_`, `.` and `-`, the rest replaced by `_`;
/// at most [`MAX_KEY`] bytes; never empty.
pub fn key(k: &str) -> String {
    let mut out: String = k
        .chars()
        .take(MAX_KEY)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// The fields as one line: `key="value" ...`, values escaped and cut, at most [`MAX_FIELDS`].
pub fn fields(fields: &[(String, String)]) -> String {
    let mut out = String::new();
    for (k, v) in fields.iter().take(MAX_FIELDS) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&format!(
            "{}=\"{}\"",
            key(k),
            escape(v, MAX_VALUE).replace('"', "\\\"")
        ));
    }
    if fields.len() > MAX_FIELDS {
        out.push_str(&format!(
            " ({} more fields dropped)",
            fields.len() - MAX_FIELDS
        ));
    }
    out
}

/// A plugin's log budget: a token bucket of `per_sec` lines, refilled continuously, shared by
/// every instance of the plugin. Lines over it are dropped and counted.
pub struct LogBudget {
    per_sec: u32,
    bucket: Mutex<(f64, Instant)>,
    dropped: AtomicU64,
}

impl LogBudget {
    /// A budget of `per_sec` lines per second (0 drops every line), full at the start.
    pub fn new(per_sec: u32) -> LogBudget {
        LogBudget {
            per_sec,
            bucket: Mutex::new((f64::from(per_sec), Instant::now())),
            dropped: AtomicU64::new(0),
        }
    }

    /// The configured rate.
    pub fn per_sec(&self) -> u32 {
        self.per_sec
    }

    /// Takes one line from the budget: `false` (and the line counted as dropped) when it is
    /// spent.
    pub fn admit(&self) -> bool {
        let mut bucket = self.bucket.lock();
        let now = Instant::now();
        let rate = f64::from(self.per_sec);
        bucket.0 = (bucket.0 + now.duration_since(bucket.1).as_secs_f64() * rate).min(rate);
        bucket.1 = now;
        if bucket.0 >= 1.0 {
            bucket.0 -= 1.0;
            true
        } else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            false
        }
    }

    /// The lines dropped since the last call, reset to zero.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_forge_or_split_a_line() {
        let forged = "ok\n2025-01-01T00:00:00Z  INFO lain::auth: admin login ok\r\x1b[2K\u{202e}";
        let line = escape(forged, MAX_MESSAGE);
        assert!(!line.chars().any(|c| c.is_control()), "{line}");
        assert_eq!(
            line,
            "ok\\n2025-01-01T00:00:00Z  INFO lain::auth: admin login ok\\r\\u{1b}[2K\\u{202e}"
        );
        let cut = escape(&"é".repeat(10), 5);
        assert_eq!(cut, "éé... (16 bytes cut)");
    }

    #[test]
    fn fields_are_bounded_and_quoted() {
        let many: Vec<(String, String)> = (0..40)
            .map(|i| (format!("k {i}\n"), "v\"\nx".repeat(1000)))
            .collect();
        let line = fields(&many);
        assert!(line.ends_with("(8 more fields dropped)"), "{line}");
        assert!(line.starts_with("k_0_=\"v\\\"\\nxv"), "{line}");
        assert!(!line.contains('\n'));
        assert!(
            line.len() < 32 * (MAX_KEY + MAX_VALUE * 2 + 40),
            "{}",
            line.len()
        );
    }

    #[test]
    fn the_budget_drops_and_counts_what_is_over_it() {
        let budget = LogBudget::new(10);
        let admitted = (0..100).filter(|_| budget.admit()).count();
        assert!((10..=11).contains(&admitted), "{admitted}");
        assert!(budget.take_dropped() >= 89);
        assert_eq!(budget.take_dropped(), 0);
        assert!(!LogBudget::new(0).admit());
    }
}

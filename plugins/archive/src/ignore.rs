//! The per-volume ignore file (`.lainbackupignore` by default): more exclude patterns.

use crate::glob::Pattern;
use std::io::ErrorKind;
use std::path::Path;

/// Parses an ignore file: one pattern per line; blank lines and lines starting with `#` are
/// skipped, surrounding whitespace is trimmed. Errors name the line (1-based).
pub fn parse(text: &str) -> Result<Vec<Pattern>, String> {
    text.lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
        .map(|(n, line)| Pattern::parse(line).map_err(|e| format!("line {n}: {e}")))
        .collect()
}

/// Reads and parses the ignore file `name` at the volume `root`; none (or an empty `name`) adds
/// no pattern.
pub fn load(root: &Path, name: &str) -> Result<Vec<Pattern>, String> {
    if name.is_empty() {
        return Ok(Vec::new());
    }
    match std::fs::read_to_string(root.join(name)) {
        Ok(text) => parse(&text).map_err(|e| format!("{name}: {e}")),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_comments_and_blank_lines() {
        let patterns = parse("# caches\n\ncache/\r\n  *.pid  \n#*.log\n");
        let expected: Result<Vec<Pattern>, String> = ["cache/", "*.pid"]
            .into_iter()
            .map(Pattern::parse)
            .collect();
        assert_eq!(patterns, expected);
        assert_eq!(patterns.map(|p| p.len()), Ok(2));
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            parse("a\n# b\n!c\n"),
            Err("line 3: `!c`: negation (`!`) is not supported".into())
        );
    }

    #[test]
    fn a_missing_file_adds_nothing() {
        let dir = std::env::temp_dir().join(format!("lain-archive-ignore-{}", std::process::id()));
        assert_eq!(load(&dir, ".lainbackupignore"), Ok(Vec::new()));
        assert_eq!(load(&dir, ""), Ok(Vec::new()));
    }
}

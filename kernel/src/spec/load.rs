//! From text to a marked YAML tree, bounded before anything recursive runs.
//!
//! yaml-rust2's event parser is iterative, but the `load` that marked-yaml drives recurses once
//! per nesting level, and so do the tree it builds, the tree's `Drop` and lain's validation walk:
//! a 10 KB `- - - ... v` nested 5,000 deep overflowed the stack and aborted the kernel. yaml-rust2
//! bounds only flow nesting. So the events are read once first, counting the depth of every kind
//! of nesting (block and flow sequences and mappings, explicit keys), and a document nested deeper
//! than [`MAX_DEPTH`] is refused where it passes the limit, before any tree exists. Every place
//! that parses YAML from users goes through [`load`] (or [`appname`], which uses it).

use super::diagnostic::{Diagnostic, Report};
use marked_yaml::loader::{LoadError, LoaderOptions};
use marked_yaml::{Marker, Node, Span};
use std::io::Read;
use yaml_rust2::parser::{Event, Parser};

/// The largest `lain.yaml` read (a real one is a few KiB).
pub const MAX_BYTES: usize = 1 << 20;

/// The deepest nesting accepted (the document's mapping is level 1; real files stay under 10).
pub const MAX_DEPTH: usize = 64;

/// Why a `lain.yaml` could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Longer than [`MAX_BYTES`] (the read stopped there).
    #[error("it is larger than {MAX_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8.
    #[error("it is not UTF-8 text")]
    NotUtf8,
    /// The read failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Reads a `lain.yaml` from `source`, at most [`MAX_BYTES`] (one byte more tells it is too
/// large; the rest is never read, so a device or a FIFO cannot exhaust memory).
pub fn read(source: impl Read) -> Result<String, ReadError> {
    let mut bytes = Vec::new();
    source.take(MAX_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BYTES {
        return Err(ReadError::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// Loads `text` as a mapping: size and depth bounded first, then parsed with duplicate keys
/// refused; every problem is recorded in `report`, located.
pub fn load(text: &str, report: &mut Report) -> Option<Node> {
    if text.len() > MAX_BYTES {
        report.error(
            &Span::new_blank(),
            "",
            format!("the file is larger than {MAX_BYTES} bytes"),
        );
        return None;
    }
    if let Some(at) = too_deep(text) {
        report
            .error(
                &Span::new_start(at),
                "",
                format!("nested deeper than {MAX_DEPTH} levels"),
            )
            .hint("lain.yaml needs only a few levels of nesting");
        return None;
    }
    let options = LoaderOptions::default().error_on_duplicate_keys(true);
    // The loader asserts on states its parser should never produce; a malformed input must
    // still end in a located error, never a panic of the kernel.
    let loaded =
        std::panic::catch_unwind(|| marked_yaml::parse_yaml_with_options(0, text, options));
    match loaded {
        Ok(Ok(node)) => Some(node),
        Ok(Err(e)) => {
            load_error(&e, report);
            None
        }
        Err(_) => {
            report.error(
                &Span::new_blank(),
                "",
                "the YAML parser failed on this input",
            );
            None
        }
    }
}

/// The YAML tree of the lain.yaml `text` (named `file` in problems), loaded through [`load`]
/// (bounded) without validating it: for reading one key before the kernel validates it all.
pub fn tree(file: &str, text: &str) -> Result<Node, Diagnostic> {
    let mut report = Report::new(file);
    let node = load(text, &mut report);
    match (node, report.into_diagnostics().into_iter().next()) {
        (Some(node), None) => Ok(node),
        (_, Some(problem)) => Err(problem),
        (None, None) => Err(Diagnostic {
            severity: super::Severity::Error,
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "the YAML could not be loaded".into(),
            hint: None,
        }),
    }
}

/// The `appname` of the lain.yaml `text` (named `file` in problems), read through [`load`]
/// without validating the rest: for deciding who may build before the build validates it all.
pub fn appname(file: &str, text: &str) -> Result<String, Diagnostic> {
    let node = tree(file, text)?;
    match node.as_mapping().and_then(|m| m.get_scalar("appname")) {
        Some(name) => Ok(name.as_str().to_string()),
        None => Err(Diagnostic {
            severity: super::Severity::Error,
            file: file.to_string(),
            line: 1,
            column: 1,
            path: String::new(),
            message: "no appname".into(),
            hint: Some("add `appname: <name>` at the top".into()),
        }),
    }
}

/// Where `text` first nests deeper than [`MAX_DEPTH`], if it does.
fn too_deep(text: &str) -> Option<Marker> {
    match count(text) {
        Count::Over(at) => Some(at),
        Count::Within => None,
        // yaml-rust2 refuses flow nesting past 255 levels while it scans ahead, before it has
        // produced an event of that collection: counting again the text before that point finds
        // where lain's (lower) limit is passed.
        Count::FlowLimit(index) => {
            let end = text
                .char_indices()
                .nth(index)
                .map_or(text.len(), |(i, _)| i);
            match count(&text[..end]) {
                Count::Over(at) => Some(at),
                _ => None,
            }
        }
    }
}

enum Count {
    Within,
    Over(Marker),
    /// The scanner's own flow limit, at this character index.
    FlowLimit(usize),
}

/// Counts nesting on the parser's events. Another scan error ends the count: the loader stops
/// there too, and reports it.
fn count(text: &str) -> Count {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return Count::Within,
            Err(e) if e.info() == "recursion limit exceeded" => {
                return Count::FlowLimit(e.marker().index());
            }
            Err(_) => return Count::Within,
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark)) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    // yaml-rust2 counts lines from 1 and columns from 0 (as marked-yaml converts).
                    return Count::Over(Marker::new(0, mark.index(), mark.line(), mark.col() + 1));
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            Ok(_) => {}
        }
    }
}

fn load_error(e: &LoadError, report: &mut Report) {
    let at = |m: &Marker| Span::new_start(*m);
    match e {
        LoadError::TopLevelMustBeMapping(m) => {
            report.error(&at(m), "", "lain.yaml must be a mapping of keys");
        }
        LoadError::UnexpectedAnchor(m) => {
            report
                .error(
                    &at(m),
                    "",
                    "YAML anchors and aliases are not supported in lain.yaml",
                )
                .hint("write the values out");
        }
        LoadError::UnexpectedTag(m) => {
            report.error(&at(m), "", "YAML tags are not supported in lain.yaml");
        }
        LoadError::MappingKeyMustBeScalar(m) => {
            report.error(&at(m), "", "mapping keys must be plain scalars");
        }
        LoadError::DuplicateKey(inner) => {
            let line = inner.prev_key.span().start().map_or(0, |m| m.line());
            report.error(
                inner.key.span(),
                inner.key.as_str(),
                format!(
                    "duplicate key {} (first on line {line})",
                    inner.key.as_str()
                ),
            );
        }
        LoadError::ScanError(m, scan) => {
            report.error(&at(m), "", format!("invalid YAML: {scan}"));
        }
        other => {
            report.error(&Span::new_blank(), "", format!("invalid YAML: {other}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hostile::{ONE_LINE_KINDS, deep_yaml as deep};

    fn first_error(text: &str) -> Diagnostic {
        let mut report = Report::new("lain.yaml");
        assert!(load(text, &mut report).is_none(), "refused");
        report.into_diagnostics().remove(0)
    }

    #[test]
    fn every_kind_of_deep_nesting_is_refused_where_it_passes_the_limit() {
        for kind in ONE_LINE_KINDS {
            for n in [5_000, 200_000] {
                let d = first_error(&deep(kind, n));
                assert_eq!(
                    d.message,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                    "{kind} x{n}: {d}"
                );
                // Level 1 is the document, level 2 `a`'s value: the 65th level is the 64th
                // opener on line 2.
                assert_eq!(d.line, 2, "{kind} x{n}: {d}");
            }
        }
        let d = first_error(&deep("block-seq", 5_000));
        assert_eq!((d.line, d.column), (2, 3 + 2 * (MAX_DEPTH - 1)), "{d}");
        // Indented nesting reaches the size limit long before 5,000 levels; 1,000 fit.
        // (yaml-rust2 places a block mapping's start at its first key's colon.)
        let d = first_error(&deep("indented-map", 1_000));
        assert_eq!((d.line, d.column), (MAX_DEPTH + 1, MAX_DEPTH + 2), "{d}");
        let d = first_error(&deep("indented-map", 5_000));
        assert!(d.message.contains("larger than"), "{d}");
    }

    #[test]
    fn nesting_up_to_the_limit_loads() {
        // The document is level 1, `a` holds the rest.
        let text = deep("block-seq", MAX_DEPTH - 1);
        let mut report = Report::new("lain.yaml");
        assert!(load(&text, &mut report).is_some(), "{report:?}");
        assert!(load(&deep("block-seq", MAX_DEPTH), &mut report).is_none());
    }

    #[test]
    fn reads_are_bounded() {
        let zeros = std::io::repeat(0);
        assert!(
            matches!(read(zeros), Err(ReadError::TooLarge)),
            "an endless source stops"
        );
        let exact = "a".repeat(MAX_BYTES);
        assert_eq!(
            read(exact.as_bytes()).map(|s| s.len()).ok(),
            Some(MAX_BYTES)
        );
        assert!(matches!(read(&b"\xff"[..]), Err(ReadError::NotUtf8)));
    }

    #[test]
    fn appname_goes_through_the_same_bounds() {
        assert_eq!(
            appname("f", "appname: shop\nx: [1]\n").as_deref(),
            Ok("shop")
        );
        let deep = format!("appname: shop\nx: {}", "[".repeat(5_000));
        let e = appname("f", &deep).expect_err("too deep");
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("nested deeper"), "{e}");
        let e = appname("f", "name: x\n").expect_err("no appname");
        assert_eq!(e.message, "no appname");
    }
}

//! Typed reading of marked YAML nodes, recording a located problem instead of failing.
//!
//! Scalars arrive untyped (strings with their quoting); lain decides per key what they mean. This
//! is where lain's reading of YAML differs from LAIN's PyYAML (YAML 1.1), on purpose:
//! - booleans: `true`/`false` in any case, and YAML 1.1's `yes`/`no`/`on`/`off` for LAIN's files;
//! - integers: decimal only; `9506:53` is a string (YAML 1.2), not the sexagesimal 570413;
//! - a quoted number is accepted where a number is expected (`port: "8080"`), as users mean it.

use super::diagnostic::{Report, did_you_mean};
use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedSequenceNode};

/// Whether a scalar is YAML's null (`~`, `null`, or nothing), unquoted.
pub fn is_null(node: &Node) -> bool {
    node.as_scalar().is_some_and(|s| {
        s.may_coerce() && matches!(s.as_str(), "" | "~" | "null" | "Null" | "NULL")
    })
}

/// What a node is, for messages.
pub fn kind(node: &Node) -> &'static str {
    match node {
        Node::Scalar(_) => "a scalar",
        Node::Mapping(_) => "a mapping",
        Node::Sequence(_) => "a list",
    }
}

/// A scalar as a string; null is `None` without a problem.
pub fn string(node: &Node, path: &str, report: &mut Report) -> Option<String> {
    if is_null(node) {
        return None;
    }
    match node {
        Node::Scalar(s) => Some(s.as_str().to_string()),
        other => {
            report.error(
                other.span(),
                path,
                format!("expected a string, found {}", kind(other)),
            );
            None
        }
    }
}

/// A required non-empty string.
pub fn required_string(node: &Node, path: &str, report: &mut Report) -> Option<String> {
    match string(node, path, report) {
        Some(s) if !s.trim().is_empty() => Some(s),
        Some(_) | None if node.as_scalar().is_some() => {
            report.error(node.span(), path, "must not be empty");
            None
        }
        _ => None,
    }
}

/// A boolean (see the module docs for the accepted spellings).
pub fn boolean(node: &Node, path: &str, report: &mut Report) -> Option<bool> {
    if is_null(node) {
        return None;
    }
    let value = node.as_scalar().map(|s| s.as_str().to_ascii_lowercase());
    match value.as_deref() {
        Some("true" | "yes" | "on") => Some(true),
        Some("false" | "no" | "off") => Some(false),
        _ => {
            report.error(
                node.span(),
                path,
                format!("expected true or false, found {}", show(node)),
            );
            None
        }
    }
}

/// A non-negative integer.
pub fn integer(node: &Node, path: &str, report: &mut Report) -> Option<u64> {
    if is_null(node) {
        return None;
    }
    match node.as_scalar().map(|s| s.as_str().trim().parse::<u64>()) {
        Some(Ok(v)) => Some(v),
        _ => {
            report.error(
                node.span(),
                path,
                format!("expected a whole number, found {}", show(node)),
            );
            None
        }
    }
}

/// A list of strings. A single string is taken as a list of one (LAIN accepted both for
/// `filters` and `labels`; for other keys the caller decides); null is an empty list.
pub fn strings(node: &Node, path: &str, report: &mut Report, single_ok: bool) -> Vec<String> {
    if is_null(node) {
        return Vec::new();
    }
    match node {
        Node::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                let item_path = format!("{path}[{i}]");
                match item {
                    Node::Scalar(s) if !is_null(item) => Some(s.as_str().to_string()),
                    _ => {
                        report.error(
                            item.span(),
                            &item_path,
                            format!("expected a string, found {}", show(item)),
                        );
                        None
                    }
                }
            })
            .collect(),
        Node::Scalar(s) if single_ok => vec![s.as_str().to_string()],
        other => {
            report.error(
                other.span(),
                path,
                format!("expected a list of strings, found {}", kind(other)),
            );
            Vec::new()
        }
    }
}

/// A mapping, or a problem.
pub fn mapping<'n>(
    node: &'n Node,
    path: &str,
    report: &mut Report,
) -> Option<&'n MarkedMappingNode> {
    match node {
        Node::Mapping(m) => Some(m),
        _ if is_null(node) => None,
        other => {
            report.error(
                other.span(),
                path,
                format!("expected a mapping, found {}", kind(other)),
            );
            None
        }
    }
}

/// A sequence, or a problem.
pub fn sequence<'n>(
    node: &'n Node,
    path: &str,
    report: &mut Report,
) -> Option<&'n MarkedSequenceNode> {
    match node {
        Node::Sequence(s) => Some(s),
        _ if is_null(node) => None,
        other => {
            report.error(
                other.span(),
                path,
                format!("expected a list, found {}", kind(other)),
            );
            None
        }
    }
}

/// Reports every key of `map` not in `allowed`, suggesting the closest allowed one.
pub fn unknown_keys(map: &MarkedMappingNode, allowed: &[&str], path: &str, report: &mut Report) {
    for (key, _) in map.iter() {
        if !allowed.contains(&key.as_str()) {
            let key_path = join(path, key.as_str());
            let d = report.error(
                key.span(),
                &key_path,
                format!("unknown key {}", key.as_str()),
            );
            if let Some(near) = did_you_mean(key.as_str(), allowed.iter().copied()) {
                d.hint(format!("did you mean {near}?"));
            }
        }
    }
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

/// A short rendering of a node's value for messages.
pub fn show(node: &Node) -> String {
    match node {
        Node::Scalar(s) => format!("{:?}", s.as_str()),
        other => kind(other).to_string(),
    }
}

/// Where a mapping starts, for problems about the mapping as a whole (a missing key): its first
/// key. (A block mapping's own span starts after its first key.)
pub fn start(map: &MarkedMappingNode) -> &marked_yaml::Span {
    map.iter().next().map_or(map.span(), |(k, _)| k.span())
}

//! The port keys of a proc: `port` (the ports it listens on) and `ports` (stream ports, LAIN
//! reference §proc-keys).

use super::super::diagnostic::Report;
use super::super::values;
use super::super::yaml::{self, join, strings};
use crate::plugin::bindings::types::{Port, StreamPort};
use marked_yaml::Node;

pub(super) fn ports(node: &Node, path: &str, report: &mut Report) -> Vec<Port> {
    let mut out = Vec::new();
    let mut one =
        |text: &str, span: &marked_yaml::Span, p: &str, report: &mut Report| match values::port(
            text,
        ) {
            Ok(port) => out.push(port),
            Err(e) => {
                report.error(span, p, e);
            }
        };
    match node {
        Node::Scalar(s) if !yaml::is_null(node) => one(s.as_str(), s.span(), path, report),
        Node::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item.as_scalar() {
                    Some(s) => one(s.as_str(), s.span(), &p, report),
                    None => {
                        report.error(
                            item.span(),
                            &p,
                            format!("expected a port, found {}", yaml::kind(item)),
                        );
                    }
                }
            }
        }
        // `{8080: ['type:udp']}`: the key is the port, the list may name the protocol.
        Node::Mapping(m) => {
            for (k, v) in m.iter() {
                let proto = strings(v, &join(path, k.as_str()), report, true)
                    .iter()
                    .find_map(|o| o.strip_prefix("type:").map(str::to_string))
                    .unwrap_or_else(|| "tcp".into());
                one(
                    &format!("{}:{proto}", k.as_str()),
                    k.span(),
                    &join(path, k.as_str()),
                    report,
                );
            }
        }
        _ => {}
    }
    out
}

pub(super) fn stream_ports(node: &Node, path: &str, report: &mut Report) -> Vec<StreamPort> {
    let entries: Vec<(String, &marked_yaml::Span, String)> = match node {
        Node::Scalar(s) if !yaml::is_null(node) => {
            vec![(s.as_str().to_string(), s.span(), path.to_string())]
        }
        // LAIN silently ignored the list form; it means the same, so it is read.
        Node::Sequence(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.as_scalar()
                    .map(|s| (s.as_str().to_string(), s.span(), format!("{path}[{i}]")))
            })
            .collect(),
        Node::Mapping(m) => m
            .iter()
            .map(|(k, _)| (k.as_str().to_string(), k.span(), join(path, k.as_str())))
            .collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<StreamPort> = Vec::new();
    for (text, span, p) in entries {
        match values::stream_port(&text) {
            Ok(sp) if out.iter().any(|o| o.source == sp.source) => {
                report.error(
                    span,
                    &p,
                    format!("cant bind src port {} to many dst ports", sp.source),
                );
            }
            Ok(sp) => out.push(sp),
            Err(e) => {
                report.error(span, &p, e);
            }
        }
    }
    out
}

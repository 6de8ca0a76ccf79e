//! Which top-level keys are proc sections, and what proc each one declares (LAIN reference
//! §proc-sections).
//!
//! | key | proc name | type |
//! |---|---|---|
//! | `web:` / `worker:` / `oneshot:` / `portal:` / `<plugin type>:` | the key | the key |
//! | `<type>.<name>:` | `<name>` | `<type>` (a `type:` inside is ignored, as in LAIN) |
//! | `proc.<name>:` | `<name>` | `type:` inside, default `worker` |
//! | `service.<name>:` | `<name>`, plus a portal `portal-<name>` from its `portal:` map | `type:` inside, default `worker` |
//!
//! Types are open: any type served by an installed proc-type plugin works as a prefix (`cron.nightly:`).

use super::app::TOP_LEVEL_KEYS;
use super::diagnostic::{Report, did_you_mean};
use super::proc_types::ProcTypes;
use super::values;
use super::yaml;
use marked_yaml::Node;
use marked_yaml::types::{MarkedMappingNode, MarkedScalarNode};

/// Prefixes that are section keywords but not types.
pub(crate) const KEYWORDS: &[&str] = &["proc", "service"];

/// One declared proc, before its keys are read.
pub struct Section<'a> {
    /// The top-level key that declared it.
    pub key: &'a MarkedScalarNode,
    /// Key path for diagnostics (`web`, `service.pg.portal`).
    pub path: String,
    /// Proc name.
    pub name: String,
    /// Proc type.
    pub proc_type: String,
    /// The section's body (`None` for an empty section such as `worker:`).
    pub body: Option<&'a MarkedMappingNode>,
    /// Whether a `type:` key is meaningful here (`proc.x`, `service.x`).
    pub typed: bool,
    /// For the portal of `service.<name>`: the service proc's name.
    pub service_of: Option<String>,
}

/// Finds every proc section of the document, reporting malformed ones.
pub fn sections<'a>(
    doc: &'a MarkedMappingNode,
    types: &dyn ProcTypes,
    report: &mut Report,
) -> Vec<Section<'a>> {
    let installed = types.names();
    let mut out = Vec::new();
    for (key, body) in doc.iter() {
        let k = key.as_str();
        if TOP_LEVEL_KEYS.contains(&k) {
            continue;
        }
        let (prefix, rest) = match k.split_once('.') {
            Some((p, r)) => (p, Some(r)),
            None => (k, None),
        };
        let is_type = installed.iter().any(|t| t == prefix);
        if !is_type && !KEYWORDS.contains(&prefix) {
            if rest.is_some() {
                unknown_type(key.span(), k, prefix, &installed, report);
            } else {
                let candidates = TOP_LEVEL_KEYS
                    .iter()
                    .copied()
                    .chain(installed.iter().map(String::as_str));
                let d = report.error(key.span(), k, format!("unknown key {k}"));
                if let Some(near) = did_you_mean(k, candidates) {
                    d.hint(format!("did you mean {near}?"));
                }
            }
            continue;
        }
        if rest.is_some_and(|r| r.contains('.') || r.is_empty()) {
            report.error(
                key.span(),
                k,
                format!("invalid section {k}: expected <type>.<name> with one dot"),
            );
            continue;
        }
        let body = match body {
            Node::Mapping(m) => Some(m),
            _ if yaml::is_null(body) => None,
            other => {
                report.error(
                    other.span(),
                    k,
                    format!("a proc section is a mapping, found {}", yaml::kind(other)),
                );
                continue;
            }
        };
        let name = match (prefix, rest) {
            (_, Some(name)) => name.to_string(),
            ("proc" | "service", None) => {
                report.error(
                    key.span(),
                    k,
                    format!("invalid section {k}: expected {k}.<name>"),
                );
                continue;
            }
            (ty, None) => ty.to_string(),
        };
        if let Err(e) = values::check_name(&name) {
            report.error(key.span(), k, e);
            continue;
        }
        let typed = KEYWORDS.contains(&prefix);
        let proc_type = if typed {
            declared_type(body, k, &installed, report)
        } else {
            Some(prefix.to_string())
        };
        let Some(proc_type) = proc_type else { continue };
        let mut portal = None;
        if prefix == "service" {
            match body.and_then(|b| b.get_node("portal")) {
                Some(Node::Mapping(p)) => {
                    portal = Some(Section {
                        key,
                        path: format!("{k}.portal"),
                        name: format!("portal-{name}"),
                        proc_type: "portal".into(),
                        body: Some(p),
                        typed: false,
                        service_of: Some(name.clone()),
                    })
                }
                Some(other) => {
                    let msg = format!("expected a mapping, found {}", yaml::kind(other));
                    report.error(other.span(), &format!("{k}.portal"), msg);
                }
                None => {
                    report
                        .error(
                            key.span(),
                            k,
                            format!("invalid service keyword: {k} has no portal"),
                        )
                        .hint("add `portal: {port: ...}` describing how clients reach the service");
                }
            }
        }
        // A service's proc comes before its portal, as in LAIN.
        out.push(Section {
            key,
            path: k.to_string(),
            name,
            proc_type,
            body,
            typed,
            service_of: None,
        });
        out.extend(portal);
    }
    out
}

/// The `type:` of a `proc.x`/`service.x` section (default `worker`), if installed.
fn declared_type(
    body: Option<&MarkedMappingNode>,
    path: &str,
    installed: &[String],
    report: &mut Report,
) -> Option<String> {
    let Some(node) = body.and_then(|b| b.get_node("type")) else {
        return Some("worker".into());
    };
    let ty = yaml::required_string(node, &yaml::join(path, "type"), report)?;
    if installed.contains(&ty) {
        Some(ty)
    } else {
        unknown_type(
            node.span(),
            &yaml::join(path, "type"),
            &ty,
            installed,
            report,
        );
        None
    }
}

fn unknown_type(
    span: &marked_yaml::Span,
    path: &str,
    ty: &str,
    installed: &[String],
    report: &mut Report,
) {
    let d = report.error(
        span,
        path,
        format!(
            "unknown proc type {ty}; installed proc types: {}",
            installed.join(", ")
        ),
    );
    match did_you_mean(ty, installed.iter().map(String::as_str)) {
        Some(near) => d.hint(format!("did you mean {near}?")),
        None => d.hint(format!("install a proc-type plugin serving `{ty}` (lain plugin install, or lain validate --plugin)")),
    };
}

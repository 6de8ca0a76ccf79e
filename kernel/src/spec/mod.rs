//! `lain.yaml`: from text to a typed, validated [`AppSpec`], with every problem located.
//!
//! One parser serves `lain validate` and the kernel's deploy, so the CLI and the server can
//! never disagree (LAIN had two validators that did). It reads the whole file and reports every
//! problem in one pass, each with file, line, column, key path and, where it can, a hint. The
//! keys common to all procs are read here; what differs by type is validated by the proc type's
//! plugin (see [`proc_types`]), whose problems are located the same way.
//!
//! Parser: `marked-yaml` (over `yaml-rust2`, YAML 1.2). It keeps a span on every node and key and
//! leaves scalars untyped, so lain decides per key how to read a value (see [`yaml`] for where
//! that differs from LAIN's YAML 1.1). A serde-based parser with spans stops at the first error
//! and types values before lain can decide; a marked tree does neither. Decisions on LAIN's
//! inconsistencies are listed in `docs/lain-yaml.md`.

pub mod diagnostic;
pub mod model;
pub mod proc_types;

mod app;
mod load;
mod proc_keys;
pub mod schema;
mod sections;
pub mod template;
pub(crate) mod values;
mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use load::{MAX_BYTES, MAX_DEPTH, ReadError, appname, read, tree};
pub use model::{AppSpec, AppType, ProcSpec, app_domain};
pub use proc_types::{PluginProcTypes, ProcTypes};
pub use values::memory as parse_memory;

use crate::plugin::bindings::types::{AppContext, Problem, Proc};
use diagnostic::Report;
use marked_yaml::{Node, Span};

/// The outcome of parsing: the spec if there was no error, and every problem found.
#[derive(Debug)]
pub struct Parsed {
    /// The validated spec; `None` if any error was found.
    pub spec: Option<AppSpec>,
    /// Errors and warnings, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and validates `text` (the content of `file`) against the installed proc types;
/// `cluster_domains` feed the default mountpoints of web procs.
pub fn parse(file: &str, text: &str, types: &dyn ProcTypes, cluster_domains: &[String]) -> Parsed {
    parse_as(file, text, types, cluster_domains, false)
}

/// Parses the `lain.yaml` of a resource instance ([`template::render`]'s output): its appname is
/// `resource.<res>.<client>`, and it may not be a resource or use resources itself.
pub fn parse_instance(
    file: &str,
    text: &str,
    types: &dyn ProcTypes,
    cluster_domains: &[String],
) -> Parsed {
    parse_as(file, text, types, cluster_domains, true)
}

/// Parses the `lain.yaml` of a release of app `app`: [`parse_instance`] for a resource
/// instance's, [`parse`] otherwise.
pub fn parse_release(
    app: &str,
    text: &str,
    types: &dyn ProcTypes,
    cluster_domains: &[String],
) -> Parsed {
    let instance = template::instance_of(app).is_some();
    parse_as("lain.yaml", text, types, cluster_domains, instance)
}

fn parse_as(
    file: &str,
    text: &str,
    types: &dyn ProcTypes,
    cluster_domains: &[String],
    instance: bool,
) -> Parsed {
    let mut report = Report::new(file);
    let spec = parse_into(text, types, cluster_domains, instance, &mut report);
    let failed = report.has_errors();
    Parsed {
        spec: if failed { None } else { spec },
        diagnostics: report.into_diagnostics(),
    }
}

fn parse_into(
    text: &str,
    types: &dyn ProcTypes,
    cluster_domains: &[String],
    instance: bool,
    report: &mut Report,
) -> Option<AppSpec> {
    let node = load::load(text, report)?;
    let Node::Mapping(doc) = &node else {
        report.error(node.span(), "", "lain.yaml must be a mapping of keys");
        return None;
    };

    let appname = app::appname(doc, instance, report);
    let apptype = app::apptype(doc, report);
    let build = app::build(doc, report);
    let release = app::release(doc, build.as_ref(), report);
    let test = app::test(doc, report);
    let notify = app::notify(doc, report);
    let use_services = app::use_services(doc, report);
    let use_resources = app::use_resources(doc, report);
    if instance && !use_resources.is_empty() {
        let span = doc
            .get_node("use_resources")
            .map_or(yaml::start(doc), |n| n.span());
        report.error(
            span,
            "use_resources",
            "a resource cannot use other resources",
        );
    }
    let giturl = doc
        .get_node("giturl")
        .and_then(|n| yaml::string(n, "giturl", report));
    no_effect_yet(doc, report);

    let app = appname.clone().unwrap_or_default();
    let domain = model::app_domain(&app);
    let ctx = AppContext {
        app: app.clone(),
        app_domain: domain.clone(),
        cluster_domains: cluster_domains.to_vec(),
        release: String::new(),
    };
    let mut procs: Vec<ProcSpec> = Vec::new();
    let sections = sections::sections(doc, types, report);
    let mut seen: Vec<(&str, &Span)> = Vec::new();
    for section in &sections {
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == section.name) {
            let line = first.start().map_or(0, |m| m.line());
            report.error(
                section.key.span(),
                &section.path,
                format!(
                    "duplicated proc name {} (first declared on line {line})",
                    section.name
                ),
            );
            continue;
        }
        seen.push((&section.name, section.key.span()));
        let extra = types.extra_keys(&section.proc_type).unwrap_or_default();
        let mut keys = proc_keys::read(section, &app, &domain, apptype, &extra, report);
        if let Some(service) = &section.service_of {
            service_portal(&mut keys.proc, service, &procs, section, report);
        }
        let proc = match types.validate(&section.proc_type, &keys.proc, &ctx) {
            Ok(Ok(proc)) => proc,
            Ok(Err(problems)) => {
                // What a resource renders per client is checked once rendered.
                let rendered_later =
                    |p: &Problem| p.path.first().is_some_and(|k| keys.templated.contains(k));
                for problem in problems.iter().filter(|p| !rendered_later(p)) {
                    locate(problem, section, report);
                }
                keys.proc
            }
            Err(e) => {
                report.error(
                    section.key.span(),
                    &section.path,
                    format!("proc type {} could not validate it: {e}", section.proc_type),
                );
                keys.proc
            }
        };
        let full_name = format!("{app}.{}.{}", section.proc_type, section.name);
        procs.push(ProcSpec {
            section: section.path.clone(),
            full_name,
            proc,
            dns_search: keys.dns_search,
            cloud_volumes: keys.cloud_volumes,
        });
    }
    Some(AppSpec {
        appname: appname?,
        giturl,
        apptype,
        build: build?,
        release,
        test,
        notify,
        use_services,
        use_resources,
        procs,
    })
}

/// The portal of `service.<name>`: its service name is the service's; without a port of its own
/// it takes the service proc's ports. (LAIN's docs promised that; its parser did not do it, which
/// left such portals unreachable.)
fn service_portal(
    portal: &mut Proc,
    service: &str,
    procs: &[ProcSpec],
    section: &sections::Section,
    report: &mut Report,
) {
    if let Some(given) = portal
        .service_name
        .as_ref()
        .filter(|s| s.as_str() != service)
    {
        let span = section
            .body
            .and_then(|b| b.get_node("service_name"))
            .map_or(section.key.span(), |n| n.span());
        report.warn(
            span,
            &yaml::join(&section.path, "service_name"),
            format!("{given} replaced by the service's name {service}"),
        );
    }
    portal.service_name = Some(service.to_string());
    if portal.ports.is_empty()
        && let Some(svc) = procs.iter().rev().find(|p| p.proc.name == service)
    {
        portal.ports = svc.proc.ports.clone();
    }
}

/// Reports a plugin's problem at the node its key path names (or the section key).
fn locate(problem: &Problem, section: &sections::Section, report: &mut Report) {
    let mut node: Option<&Node> = None;
    let mut map = section.body;
    let mut path = section.path.clone();
    for (i, key) in problem.path.iter().enumerate() {
        let next = match (node, map) {
            (Some(Node::Sequence(items)), _) => {
                key.parse::<usize>().ok().and_then(|i| items.get(i))
            }
            (_, Some(m)) if i == 0 || matches!(node, Some(Node::Mapping(_))) => m.get_node(key),
            _ => None,
        };
        let Some(next) = next else { break };
        path = if key.parse::<usize>().is_ok() {
            format!("{path}[{key}]")
        } else {
            yaml::join(&path, key)
        };
        node = Some(next);
        map = next.as_mapping();
    }
    let span = node.map_or(section.key.span(), |n| n.span());
    let d = report.error(span, &path, problem.message.clone());
    if let Some(hint) = &problem.hint {
        d.hint(hint.clone());
    }
}

/// Top-level keys lain accepts (real LAIN apps carry them) but does nothing with yet, and why:
/// each gets a warning where it is written, so no app believes it acts.
const NO_EFFECT_YET: &[(&str, &str)] = &[
    (
        "giturl",
        "has no effect yet: lain neither checks it nor binds the app to it",
    ),
    (
        "notify",
        "has no effect yet: lain delivers no notifications (alerting is not built)",
    ),
];

fn no_effect_yet(doc: &marked_yaml::types::MarkedMappingNode, report: &mut Report) {
    for (key, _) in doc.iter() {
        if let Some((name, why)) = NO_EFFECT_YET.iter().find(|(k, _)| *k == key.as_str()) {
            report.warn(key.span(), name, *why);
        }
    }
}

//! The app-level sections of `lain.yaml` (LAIN reference §top-level, §build): everything but the
//! procs.

use super::diagnostic::Report;
use super::model::{AppType, Build, Copy, Prepare, Release, Test, UseResource};
use super::values;
use super::yaml::{self, join, string, strings};
use marked_yaml::types::MarkedMappingNode;
use marked_yaml::{Node, Span};
use std::collections::BTreeMap;

/// Top-level keys that are not proc sections.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "appname",
    "giturl",
    "apptype",
    "build",
    "release",
    "test",
    "notify",
    "use_services",
    "use_resources",
];

/// Appnames LAIN reserved.
const RESERVED: &[&str] = &["service", "resource", "portal"];

/// `appname`: required, LAIN's name pattern, not reserved; `resource.<res>.<client>` in the
/// rendered `lain.yaml` of a resource instance (`instance`).
pub fn appname(doc: &MarkedMappingNode, instance: bool, report: &mut Report) -> Option<String> {
    let Some(node) = doc.get_node("appname") else {
        report
            .error(yaml::start(doc), "", "invalid lain conf: no appname")
            .hint("add `appname: <name>` at the top");
        return None;
    };
    let name = yaml::required_string(node, "appname", report)?;
    if instance {
        if super::template::instance_of(&name).is_none() {
            report.error(
                node.span(),
                "appname",
                format!("{name} is not a resource instance name resource.<res>.<client>"),
            );
            return None;
        }
        return Some(name);
    }
    if RESERVED.contains(&name.as_str()) {
        report.error(
            node.span(),
            "appname",
            format!("appname {name} should not be one of service, resource, portal"),
        );
        return None;
    }
    // Resource instances (`resource.<res>.<client>`) carry dots; a lain.yaml never does.
    if let Err(e) = values::check_name(&name) {
        report.error(node.span(), "appname", e);
        return None;
    }
    Some(name)
}

/// `apptype`: `app` (default) or `resource`.
pub fn apptype(doc: &MarkedMappingNode, report: &mut Report) -> AppType {
    match doc
        .get_node("apptype")
        .and_then(|n| string(n, "apptype", report).map(|s| (n, s)))
    {
        None => AppType::App,
        Some((_, s)) if s == "app" => AppType::App,
        Some((_, s)) if s == "resource" => AppType::Resource,
        Some((n, s)) => {
            report.error(
                n.span(),
                "apptype",
                format!("unknown apptype {s:?}: expected app or resource"),
            );
            AppType::App
        }
    }
}

/// `build`: required; `base` required.
pub fn build(doc: &MarkedMappingNode, report: &mut Report) -> Option<Build> {
    let Some(node) = doc.get_node("build") else {
        report
            .error(yaml::start(doc), "", "no build section in lain.yaml")
            .hint("add `build: {base: <image>, script: [...]}`");
        return None;
    };
    if yaml::is_null(node) {
        report
            .error(node.span(), "build", "build is empty")
            .hint("add `base: <image>` under build");
        return None;
    }
    let map = yaml::mapping(node, "build", report)?;
    yaml::unknown_keys(map, super::schema::BUILD_KEYS, "build", report);
    let base = match map.get_node("base") {
        Some(n) => yaml::required_string(n, "build.base", report).unwrap_or_default(),
        None => {
            report
                .error(yaml::start(map), "build", "missing key base")
                .hint("the image the build runs in, e.g. golang:1.22");
            String::new()
        }
    };
    let script = scripts(map, "build", report);
    let build_arg = build_args(map, "build", report);
    let prepare = map.get_node("prepare").and_then(|n| prepare(n, report));
    let mut volumes = Vec::new();
    if let Some(n) = map.get_node("volumes") {
        for (i, v) in strings(n, "build.volumes", report, false)
            .into_iter()
            .enumerate()
        {
            if v.starts_with('/') {
                volumes.push(v);
            } else {
                let span = item_span(n, i);
                report.error(
                    span,
                    &format!("build.volumes[{i}]"),
                    format!("invalid build.volumes: {v}, should be absolute path"),
                );
            }
        }
    }
    Some(Build {
        base,
        script,
        build_arg,
        prepare,
        volumes,
    })
}

fn prepare(node: &Node, report: &mut Report) -> Option<Prepare> {
    const PATH: &str = "build.prepare";
    if yaml::is_null(node) {
        return None;
    }
    match node {
        // The old form: a list of scripts, versioned automatically.
        Node::Sequence(_) => Some(Prepare {
            script: strings(node, PATH, report, false),
            ..Prepare::default()
        }),
        Node::Mapping(map) => {
            yaml::unknown_keys(map, super::schema::PREPARE_KEYS, PATH, report);
            let version = map.get_node("version").and_then(|v| {
                let s = string(v, "build.prepare.version", report)?;
                if s.chars().all(|c| c.is_ascii_alphanumeric()) && !s.is_empty() {
                    Some(s)
                } else {
                    report.error(
                        v.span(),
                        "build.prepare.version",
                        format!("invalid prepare version {s:?}: letters and digits only"),
                    );
                    None
                }
            });
            let keep = map
                .get_node("keep")
                .map(|k| strings(k, "build.prepare.keep", report, false))
                .unwrap_or_default();
            Some(Prepare {
                version,
                script: scripts(map, PATH, report),
                keep,
                build_arg: build_args(map, PATH, report),
            })
        }
        other => {
            report.error(
                other.span(),
                PATH,
                format!(
                    "expected a list of scripts or a mapping, found {}",
                    yaml::kind(other)
                ),
            );
            None
        }
    }
}

/// `release`: optional.
pub fn release(
    doc: &MarkedMappingNode,
    build: Option<&Build>,
    report: &mut Report,
) -> Option<Release> {
    let node = doc.get_node("release")?;
    let map = yaml::mapping(node, "release", report)?;
    yaml::unknown_keys(map, super::schema::RELEASE_KEYS, "release", report);
    let script = scripts(map, "release", report);
    if !script.is_empty() && build.is_some_and(|b| !b.volumes.is_empty()) {
        let span = map
            .get_node("script")
            .map_or(yaml::start(map), |n| n.span());
        report.error(
            span,
            "release.script",
            "invalid lain.yaml: release.script is not supported with build.volumes",
        );
    }
    let dest_base = map
        .get_node("dest_base")
        .and_then(|n| string(n, "release.dest_base", report))
        .filter(|s| !s.is_empty());
    let mut copy = Vec::new();
    if let Some(items) = map
        .get_node("copy")
        .and_then(|n| yaml::sequence(n, "release.copy", report))
    {
        for (i, item) in items.iter().enumerate() {
            let path = format!("release.copy[{i}]");
            match item {
                Node::Scalar(s) if !s.may_coerce() || s.as_str().parse::<f64>().is_err() => copy
                    .push(Copy {
                        src: s.as_str().to_string(),
                        dest: s.as_str().to_string(),
                    }),
                Node::Scalar(_) => {
                    report.warn(
                        item.span(),
                        &path,
                        "ignored: a copy item is a path or {src, dest}, not a number",
                    );
                }
                Node::Mapping(m) => {
                    yaml::unknown_keys(m, super::schema::COPY_KEYS, &path, report);
                    let src = m
                        .get_node("src")
                        .and_then(|n| yaml::required_string(n, &join(&path, "src"), report));
                    let dest = m
                        .get_node("dest")
                        .and_then(|n| yaml::required_string(n, &join(&path, "dest"), report));
                    match (src, dest) {
                        (Some(src), Some(dest)) => copy.push(Copy { src, dest }),
                        (None, _) if m.get_node("src").is_none() => {
                            report.error(yaml::start(m), &path, "missing key src");
                        }
                        (_, None) if m.get_node("dest").is_none() => {
                            report.error(yaml::start(m), &path, "missing key dest");
                        }
                        _ => {}
                    }
                }
                Node::Sequence(_) => {
                    report.error(
                        item.span(),
                        &path,
                        "expected a path or {src, dest}, found a list",
                    );
                }
            }
        }
    }
    Some(Release {
        script,
        dest_base,
        copy,
    })
}

/// `test`: optional.
pub fn test(doc: &MarkedMappingNode, report: &mut Report) -> Option<Test> {
    let node = doc.get_node("test")?;
    let map = yaml::mapping(node, "test", report)?;
    yaml::unknown_keys(map, super::schema::TEST_KEYS, "test", report);
    Some(Test {
        script: scripts(map, "test", report),
    })
}

/// `notify`: a mapping of strings, kept as written (nothing in LAIN consumed it).
pub fn notify(doc: &MarkedMappingNode, report: &mut Report) -> BTreeMap<String, String> {
    let Some(map) = doc
        .get_node("notify")
        .and_then(|n| yaml::mapping(n, "notify", report))
    else {
        return BTreeMap::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            string(v, &join("notify", k.as_str()), report).map(|s| (k.as_str().to_string(), s))
        })
        .collect()
}

/// `use_services`: service app -> service names.
pub fn use_services(doc: &MarkedMappingNode, report: &mut Report) -> BTreeMap<String, Vec<String>> {
    let Some(map) = doc
        .get_node("use_services")
        .and_then(|n| yaml::mapping(n, "use_services", report))
    else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (app, names) in map.iter() {
        let path = join("use_services", app.as_str());
        if let Err(e) = values::check_name(app.as_str()) {
            report.error(app.span(), &path, e);
        }
        out.insert(app.as_str().to_string(), named_list(names, &path, report));
    }
    out
}

/// `use_resources`: resource app -> `{services: [...], <param>: value}`.
pub fn use_resources(
    doc: &MarkedMappingNode,
    report: &mut Report,
) -> BTreeMap<String, UseResource> {
    let Some(map) = doc
        .get_node("use_resources")
        .and_then(|n| yaml::mapping(n, "use_resources", report))
    else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for (res, body) in map.iter() {
        let path = join("use_resources", res.as_str());
        let Some(body) = yaml::mapping(body, &path, report) else {
            continue;
        };
        let mut resource = UseResource::default();
        match body.get_node("services") {
            Some(s) => resource.services = named_list(s, &join(&path, "services"), report),
            None => {
                report.error(
                    res.span(),
                    &path,
                    format!(
                        "invalid resource defination: {} has no services",
                        res.as_str()
                    ),
                );
            }
        }
        for (k, v) in body.iter().filter(|(k, _)| k.as_str() != "services") {
            if let Some(s) = string(v, &join(&path, k.as_str()), report) {
                resource.context.insert(k.as_str().to_string(), s);
            }
        }
        out.insert(res.as_str().to_string(), resource);
    }
    out
}

fn named_list(node: &Node, path: &str, report: &mut Report) -> Vec<String> {
    let names = strings(node, path, report, false);
    for (i, name) in names.iter().enumerate() {
        if let Err(e) = values::check_name(name) {
            report.error(item_span(node, i), &format!("{path}[{i}]"), e);
        }
    }
    names
}

fn scripts(map: &MarkedMappingNode, parent: &str, report: &mut Report) -> Vec<String> {
    map.get_node("script")
        .map(|n| strings(n, &join(parent, "script"), report, false))
        .unwrap_or_default()
}

fn build_args(map: &MarkedMappingNode, parent: &str, report: &mut Report) -> Vec<(String, String)> {
    let Some(node) = map.get_node("build_arg") else {
        return Vec::new();
    };
    let path = join(parent, "build_arg");
    strings(node, &path, report, false)
        .into_iter()
        .enumerate()
        .filter_map(|(i, a)| match values::env(&a) {
            Ok(kv) => Some(kv),
            Err(_) => {
                report.error(
                    item_span(node, i),
                    &format!("{path}[{i}]"),
                    format!("invalid build_arg {a:?}: expected NAME=value"),
                );
                None
            }
        })
        .collect()
}

/// The span of item `i` of a sequence node (the node's own span otherwise).
pub fn item_span(node: &Node, i: usize) -> &Span {
    match node {
        Node::Sequence(items) => items.get(i).map_or(node.span(), |n| n.span()),
        other => other.span(),
    }
}

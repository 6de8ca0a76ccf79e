//! The keys of one proc section (LAIN reference §proc-keys, §mountpoints, §health) into the `proc`
//! record plugins see.

use super::app::item_span;
use super::diagnostic::Report;
use super::model::{AppType, CloudVolumes};
use super::sections::Section;
use super::values;
use super::yaml::{self, join, string, strings};
use crate::plugin::bindings::types::{EnvVar, HealthCheck, Label, Probe, Proc, Volume};
use lain_proc_defaults as defaults;
use marked_yaml::Node;
use marked_yaml::types::MarkedMappingNode;

mod ports;
mod storage;

use ports::{ports, stream_ports};
use storage::{cloud, logs, volumes};

/// Keys every proc section accepts (the type's plugin may add its own).
pub const COMMON_KEYS: &[&str] = &[
    "image",
    "entrypoint",
    "cmd",
    "user",
    "workdir",
    "working_dir",
    "dns_search",
    "num_instances",
    "cpu",
    "memory",
    "port",
    "ports",
    "mountpoint",
    "https_only",
    "healthcheck",
    "container_healthcheck",
    "env",
    "volumes",
    "persistent_dirs",
    "cloud_volumes",
    "logs",
    "secret_files",
    "secret_files_bypass",
    "stateful",
    "setup_time",
    "kill_timeout",
    "labels",
    "filters",
    "service_name",
    "allow_clients",
];

/// LAIN's health-check option minimums (interval, timeout, retries): smaller values are raised.
const HEALTH_MINIMUMS: (u32, u32, u32) = (10, 3, 3);

/// What a section's keys give besides the `proc` record.
pub struct ProcKeys {
    /// The proc record, before its type's plugin validates it.
    pub proc: Proc,
    /// DNS search domains (the app's own appended).
    pub dns_search: Vec<String>,
    /// Shared directories.
    pub cloud_volumes: Option<CloudVolumes>,
    /// Keys left unread because a resource renders them per client: its type's plugin does not
    /// see them, so what it says of them is left to the rendered instance's check.
    pub templated: Vec<String>,
}

/// Reads the keys of `section`. `extra_keys` are the keys its type's plugin accepts.
pub fn read(
    section: &Section,
    app: &str,
    app_domain: &str,
    apptype: AppType,
    extra_keys: &[String],
    report: &mut Report,
) -> ProcKeys {
    let mut proc = Proc::with_lain_defaults(app, &section.name, &section.proc_type);
    let mut dns_search = Vec::new();
    let mut cloud_volumes = None;
    let mut templated_keys = Vec::new();
    let mut extra = serde_json::Map::new();
    let empty = MarkedMappingNode::new_empty(*section.key.span());
    let body = section.body.unwrap_or(&empty);
    let mut allowed: Vec<&str> = COMMON_KEYS.to_vec();
    allowed.extend(extra_keys.iter().map(String::as_str));
    if section.typed {
        allowed.push("type");
    }
    if section.path.starts_with("service.") && section.service_of.is_none() {
        allowed.push("portal");
    }
    // A section body of a web.x / worker.x may say `type:`: LAIN ignored it.
    if !section.typed && section.service_of.is_none() && body.get_node("type").is_some() {
        allowed.push("type");
        if let Some(n) = body.get_node("type") {
            report.warn(
                n.span(),
                &join(&section.path, "type"),
                "ignored: the section prefix gives the type",
            );
        }
    }
    yaml::unknown_keys(body, &allowed, &section.path, report);

    let mut volumes_key = None;
    let mut workdir = None;
    for (key, node) in body.iter() {
        let k = key.as_str();
        let path = join(&section.path, k);
        // A resource template's values are rendered per client; only the rendering is checked
        // (a list or mapping with a template anywhere in it included: `mountpoint`, `env`).
        if apptype == AppType::Resource && templated(node, 0) {
            templated_keys.push(k.to_string());
            continue;
        }
        match k {
            "image" => proc.image = string(node, &path, report).unwrap_or_default(),
            "entrypoint" => proc.entrypoint = command(node, &path, report),
            "cmd" => proc.cmd = command(node, &path, report),
            "user" => proc.user = string(node, &path, report).filter(|s| !s.is_empty()),
            "workdir" => workdir = string(node, &path, report).filter(|s| !s.is_empty()),
            "working_dir" if body.get_node("workdir").is_none() => {
                workdir = string(node, &path, report).filter(|s| !s.is_empty())
            }
            "dns_search" => dns_search = strings(node, &path, report, false),
            "num_instances" => {
                if let Some(n) = yaml::integer(node, &path, report) {
                    match u32::try_from(n) {
                        Ok(n) if n <= 10_000 => proc.num_instances = n,
                        _ => {
                            report.error(
                                node.span(),
                                &path,
                                format!("num_instances {n} is more than 10000"),
                            );
                        }
                    }
                }
            }
            "cpu" => proc.cpu = cpu(node, &path, report).unwrap_or(0),
            "memory" => {
                if let Some(text) = string(node, &path, report) {
                    match values::memory(&text) {
                        Ok(bytes) => proc.memory = bytes,
                        Err(e) => {
                            report.error(node.span(), &path, e);
                        }
                    }
                }
            }
            "port" => proc.ports = ports(node, &path, report),
            "ports" => proc.stream_ports = stream_ports(node, &path, report),
            "mountpoint" => proc.mountpoints = strings(node, &path, report, true),
            "https_only" => proc.https_only = yaml::boolean(node, &path, report),
            "healthcheck" => {
                proc.healthcheck = string(node, &path, report).filter(|s| !s.is_empty())
            }
            "container_healthcheck" => {
                let (check, disabled) = container_healthcheck(node, &path, report);
                proc.container_healthcheck = check;
                proc.healthcheck_disabled = disabled;
            }
            "env" => proc.env = env(node, &path, report),
            // `persistent_dirs` wins when both are given, as in LAIN.
            "volumes" | "persistent_dirs"
                if k == "persistent_dirs" || body.get_node("persistent_dirs").is_none() =>
            {
                volumes_key = Some((node, path));
            }
            "volumes" | "persistent_dirs" => {}
            "cloud_volumes" => cloud_volumes = cloud(node, &path, report),
            "logs" => proc.logs = logs(node, &path, report),
            "secret_files" => {
                proc.secret_files = strings(node, &path, report, false)
                    .iter()
                    .map(|p| values::container_path(p))
                    .collect()
            }
            "secret_files_bypass" => {
                proc.secret_files_bypass = yaml::boolean(node, &path, report).unwrap_or(false)
            }
            "stateful" => proc.stateful = yaml::boolean(node, &path, report).unwrap_or(false),
            "setup_time" => {
                proc.setup_time = clamped(node, &path, defaults::SETUP_TIME_RANGE, report)
                    .unwrap_or(defaults::SETUP_TIME)
            }
            "kill_timeout" => {
                proc.kill_timeout = clamped(node, &path, defaults::KILL_TIMEOUT_RANGE, report)
                    .unwrap_or(defaults::KILL_TIMEOUT)
            }
            "labels" => proc.labels = labels(node, &path, report),
            "filters" => proc.filters = filters(node, &path, report),
            "service_name" => proc.service_name = string(node, &path, report),
            "allow_clients" => proc.allow_clients = string(node, &path, report),
            "type" | "portal" => {}
            _ if extra_keys.iter().any(|e| e == k) => {
                extra.insert(k.to_string(), to_json(node, 0));
            }
            _ => {} // reported as unknown above
        }
    }
    proc.workdir = workdir;
    proc.volumes = volumes_key
        .map(|(n, p)| volumes(n, &p, report))
        .unwrap_or_default();
    if !proc.volumes.iter().any(|v| v.path == "/lain/logs") {
        proc.volumes.push(Volume {
            path: "/lain/logs".into(),
            backup_full: None,
            backup_increment: None,
        });
    }
    if !values::has_group_filter(&proc.filters) {
        proc.filters.push(defaults::GROUP_FILTER.into());
    }
    if let Some(check) = proc.container_healthcheck.as_mut() {
        check.start_period = proc.setup_time;
    }
    let own = format!("{app_domain}.lain");
    if !dns_search.contains(&own) {
        dns_search.push(own);
    }
    proc.extra = serde_json::Value::Object(extra).to_string();
    ProcKeys {
        proc,
        dns_search,
        cloud_volumes,
        templated: templated_keys,
    }
}

fn command(node: &Node, path: &str, report: &mut Report) -> Option<Vec<String>> {
    match node {
        Node::Sequence(_) => Some(strings(node, path, report, false)),
        _ => {
            let text = string(node, path, report)?;
            match values::command_words(&text) {
                Ok(words) if words.is_empty() => None,
                Ok(words) => Some(words),
                Err(e) => {
                    report.error(node.span(), path, e);
                    None
                }
            }
        }
    }
}

/// `cpu`: LAIN's level 0-8 (a share of an 8-core reference node: level N is N/2 cores), or
/// milli-cores as `500m`.
fn cpu(node: &Node, path: &str, report: &mut Report) -> Option<u32> {
    let text = string(node, path, report)?;
    if let Some(milli) = text.strip_suffix('m') {
        return match milli.parse::<u32>() {
            Ok(m) if m > 0 => Some(m),
            _ => {
                report.error(
                    node.span(),
                    path,
                    format!("invalid cpu {text:?}: expected 0-8 or milli-cores like 500m"),
                );
                None
            }
        };
    }
    match text.parse::<u32>() {
        Ok(level) if level <= 8 => Some(level * 500),
        _ => {
            report.error(
                node.span(),
                path,
                format!("invalid cpu {text:?}: expected a level 0-8 or milli-cores like 500m"),
            );
            None
        }
    }
}

fn container_healthcheck(
    node: &Node,
    path: &str,
    report: &mut Report,
) -> (Option<HealthCheck>, bool) {
    let Some(map) = yaml::mapping(node, path, report) else {
        return (None, false);
    };
    yaml::unknown_keys(map, crate::spec::schema::HEALTHCHECK_KEYS, path, report);
    let Some(cmd) = map
        .get_node("cmd")
        .and_then(|n| yaml::required_string(n, &join(path, "cmd"), report))
    else {
        if map.get_node("cmd").is_none() {
            report
                .error(yaml::start(map), path, "missing key cmd")
                .hint("the command that exits 0 when healthy, or `none`");
        }
        return (None, false);
    };
    if cmd == "none" {
        return (None, true);
    }
    let (mut interval, mut timeout, mut retries) = HEALTH_MINIMUMS;
    if let Some(options) = map
        .get_node("options")
        .and_then(|n| yaml::mapping(n, &join(path, "options"), report))
    {
        let opath = join(path, "options");
        yaml::unknown_keys(
            options,
            crate::spec::schema::HEALTH_OPTION_KEYS,
            &opath,
            report,
        );
        for (name, slot, min) in [
            ("interval", &mut interval, HEALTH_MINIMUMS.0),
            ("timeout", &mut timeout, HEALTH_MINIMUMS.1),
            ("retries", &mut retries, HEALTH_MINIMUMS.2),
        ] {
            let Some(n) = options.get_node(name) else {
                continue;
            };
            let Some(v) = yaml::integer(n, &join(&opath, name), report) else {
                continue;
            };
            let v = u32::try_from(v).unwrap_or(u32::MAX);
            if v < min {
                report.warn(
                    n.span(),
                    &join(&opath, name),
                    format!("{v} raised to LAIN's minimum of {min}"),
                );
            }
            *slot = v.max(min);
        }
    }
    (
        Some(HealthCheck {
            probe: Probe::Command(cmd),
            interval,
            timeout,
            retries,
            start_period: 0,
        }),
        false,
    )
}

fn env(node: &Node, path: &str, report: &mut Report) -> Vec<EnvVar> {
    strings(node, path, report, false)
        .into_iter()
        .enumerate()
        .filter_map(|(i, e)| match values::env(&e) {
            Ok((name, value)) => Some(EnvVar { name, value }),
            Err(msg) => {
                report.error(item_span(node, i), &format!("{path}[{i}]"), msg);
                None
            }
        })
        .collect()
}

/// An integer clamped to `(min, max)`, with a warning when it was outside.
fn clamped(node: &Node, path: &str, range: (u32, u32), report: &mut Report) -> Option<u32> {
    let (min, max) = (u64::from(range.0), u64::from(range.1));
    let v = yaml::integer(node, path, report)?;
    let c = v.clamp(min, max);
    if c != v {
        report.warn(
            node.span(),
            path,
            format!("{v} clamped to {c} (allowed {min}-{max})"),
        );
    }
    u32::try_from(c).ok()
}

fn labels(node: &Node, path: &str, report: &mut Report) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::new();
    for (i, text) in strings(node, path, report, true).into_iter().enumerate() {
        match values::label(&text) {
            Ok((key, value)) => {
                out.retain(|l| l.key != key);
                out.push(Label { key, value });
            }
            Err(e) => {
                report.error(item_span(node, i), &format!("{path}[{i}]"), e);
            }
        }
    }
    out
}

fn filters(node: &Node, path: &str, report: &mut Report) -> Vec<String> {
    let all = strings(node, path, report, true);
    for (i, f) in all.iter().enumerate() {
        if let Err(e) = values::filter(f) {
            report.error(item_span(node, i), &format!("{path}[{i}]"), e);
        }
    }
    all.into_iter()
        .filter(|f| values::filter(f).is_ok())
        .collect()
}

/// A YAML node as JSON for a plugin's extra keys: plain scalars typed (integers, booleans), quoted
/// ones as strings. Nesting beyond 16 levels is cut (a plugin's keys do not need more).
fn to_json(node: &Node, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth > 16 {
        return Value::Null;
    }
    match node {
        Node::Scalar(s) => {
            let t = s.as_str();
            if !s.may_coerce() {
                return Value::String(t.to_string());
            }
            if yaml::is_null(node) {
                Value::Null
            } else if let Ok(i) = t.parse::<i64>() {
                Value::from(i)
            } else if let Some(b) = s.as_bool() {
                Value::Bool(b)
            } else {
                Value::String(t.to_string())
            }
        }
        Node::Sequence(items) => {
            Value::Array(items.iter().map(|n| to_json(n, depth + 1)).collect())
        }
        Node::Mapping(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.as_str().to_string(), to_json(v, depth + 1)))
                .collect(),
        ),
    }
}

/// Whether `node` holds a `{{ ... }}` template at any depth (at most [`TEMPLATE_DEPTH`] levels
/// are looked into; the loader's own depth limit is lower).
fn templated(node: &Node, depth: usize) -> bool {
    if depth > TEMPLATE_DEPTH {
        return false;
    }
    match node {
        Node::Scalar(s) => s.as_str().contains("{{"),
        Node::Sequence(items) => items.iter().any(|n| templated(n, depth + 1)),
        Node::Mapping(map) => map.values().any(|n| templated(n, depth + 1)),
    }
}

/// How deep [`templated`] looks.
const TEMPLATE_DEPTH: usize = 64;

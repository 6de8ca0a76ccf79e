//! The storage keys of a proc: `volumes` (`persistent_dirs`) with their backup policies,
//! `cloud_volumes` and `logs` (LAIN reference §proc-keys, §backups).

use super::super::app::item_span;
use super::super::diagnostic::Report;
use super::super::model::{CloudVolumeKind, CloudVolumes};
use super::super::values;
use super::super::yaml::{self, join, string, strings};
use crate::plugin::bindings::types::{BackupPolicy, Volume};
use marked_yaml::Node;

/// Volume paths a proc may not mount over.
const FORBIDDEN_VOLUMES: &[&str] = &["/", "/lain", "/lain/app"];

pub(super) fn volumes(node: &Node, path: &str, report: &mut Report) -> Vec<Volume> {
    let Some(items) = yaml::sequence(node, path, report) else {
        return Vec::new();
    };
    let mut out: Vec<Volume> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let (raw, policies) = match item {
            Node::Scalar(s) => (s.as_str().to_string(), None),
            Node::Mapping(m) if m.len() == 1 => match m.iter().next() {
                Some((k, v)) => (k.as_str().to_string(), Some((v, join(&p, k.as_str())))),
                None => continue,
            },
            other => {
                report.error(
                    other.span(),
                    &p,
                    "expected a path, or `<path>: {backup_full: ..., backup_increment: ...}`",
                );
                continue;
            }
        };
        let path_in = values::container_path(&raw);
        if FORBIDDEN_VOLUMES.contains(&path_in.as_str()) {
            report.error(
                item.span(),
                &p,
                format!("invalid volume: abs volume {path_in} should not be /, /lain or /lain/app"),
            );
            continue;
        }
        let mut volume = Volume {
            path: path_in,
            backup_full: None,
            backup_increment: None,
        };
        if let Some((v, vpath)) = policies
            && let Some(m) = yaml::mapping(v, &vpath, report)
        {
            yaml::unknown_keys(m, crate::spec::schema::VOLUME_KEYS, &vpath, report);
            if let Some(b) = m.get_node("backup") {
                report
                    .warn(
                        b.span(),
                        &join(&vpath, "backup"),
                        "ignored: LAIN never read `backup`",
                    )
                    .hint("use backup_full and/or backup_increment");
            }
            volume.backup_full = m
                .get_node("backup_full")
                .and_then(|n| backup(n, &join(&vpath, "backup_full"), report));
            volume.backup_increment = m
                .get_node("backup_increment")
                .and_then(|n| backup(n, &join(&vpath, "backup_increment"), report));
        }
        if out.iter().any(|o| o.path == volume.path) {
            report.error(
                item.span(),
                &p,
                format!("volume {} is listed twice", volume.path),
            );
            continue;
        }
        out.push(volume);
    }
    out
}

fn backup(node: &Node, path: &str, report: &mut Report) -> Option<BackupPolicy> {
    let map = yaml::mapping(node, path, report)?;
    yaml::unknown_keys(map, crate::spec::schema::BACKUP_POLICY_KEYS, path, report);
    let field = |k: &str, report: &mut Report| {
        map.get_node(k)
            .and_then(|n| string(n, &join(path, k), report))
            .filter(|s| !s.is_empty())
    };
    let schedule = field("schedule", report);
    let expire = field("expire", report);
    if let Some(e) = &expire
        && !e
            .strip_suffix(['m', 'h', 'd'])
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        report.error(
            map.get_node("expire").map_or(map.span(), |n| n.span()),
            &join(path, "expire"),
            format!("invalid expire {e:?}: expected <n>m, <n>h or <n>d"),
        );
    }
    let Some(schedule) = schedule else {
        report
            .warn(
                yaml::start(map),
                path,
                "ignored: a backup without a schedule never runs",
            )
            .hint("add schedule: \"0 3 * * *\"");
        return None;
    };
    Some(BackupPolicy {
        schedule,
        expire,
        pre_run: field("pre_run", report),
        post_run: field("post_run", report),
    })
}

pub(super) fn cloud(node: &Node, path: &str, report: &mut Report) -> Option<CloudVolumes> {
    let map = yaml::mapping(node, path, report)?;
    yaml::unknown_keys(map, crate::spec::schema::CLOUD_VOLUME_KEYS, path, report);
    let kind = match map
        .get_node("type")
        .and_then(|n| string(n, &join(path, "type"), report))
        .as_deref()
    {
        None | Some("multi") => CloudVolumeKind::Multi,
        Some("single") => CloudVolumeKind::Single,
        Some(other) => {
            let span = map.get_node("type").map_or(map.span(), |n| n.span());
            report.error(
                span,
                &join(path, "type"),
                format!("cloud volume type {other} not supported, only multi and single are valid"),
            );
            return None;
        }
    };
    let dirs = map
        .get_node("dirs")
        .map(|n| strings(n, &join(path, "dirs"), report, false))
        .unwrap_or_default();
    Some(CloudVolumes {
        kind,
        dirs: dirs.iter().map(|d| values::container_path(d)).collect(),
    })
}

pub(super) fn logs(node: &Node, path: &str, report: &mut Report) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (i, log) in strings(node, path, report, false).into_iter().enumerate() {
        if log.starts_with('/') {
            report.error(item_span(node, i), &format!("{path}[{i}]"), format!("Log in Logs section MUST be a relative path based on /lain/logs. Wrong path: {log}"));
        } else if log.split('/').any(|part| part == "..") || log.chars().any(char::is_control) {
            report.error(
                item_span(node, i),
                &format!("{path}[{i}]"),
                format!(
                    "log `{}` leaves /lain/logs: a log is a file under it, without `..`",
                    log.escape_debug()
                ),
            );
        } else if !out.contains(&log) {
            out.push(log);
        }
    }
    out
}

//! One small `lain.yaml` per rule under `tests/spec/cases/`, each with its exact expected result in
//! `<case>.expected`: every diagnostic as `lain validate` prints it (file:line:column: severity:
//! path: message (hint)), then either the procs derived or `invalid`. Run with
//! `LAIN_UPDATE_GOLDEN=1` to write the expectations, then review the diff line by line.

mod common;

use lain::plugin::bindings::types::Protocol;
use lain::spec::{self, PluginProcTypes};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

fn render(name: &str, text: &str, types: &PluginProcTypes) -> String {
    let parsed = spec::parse(name, text, types, &["lain.local".to_string()]);
    let mut out = String::new();
    for d in &parsed.diagnostics {
        let _ = writeln!(out, "{d}");
    }
    match parsed.spec {
        None => out.push_str("invalid\n"),
        Some(spec) => {
            let _ = writeln!(out, "valid: {} ({:?})", spec.appname, spec.apptype);
            for p in &spec.procs {
                let proc = &p.proc;
                let proto = |p: &Protocol| if *p == Protocol::Udp { "udp" } else { "tcp" };
                let ports: Vec<String> = proc
                    .ports
                    .iter()
                    .map(|p| format!("{}/{}", p.number, proto(&p.protocol)))
                    .collect();
                let streams: Vec<String> = proc
                    .stream_ports
                    .iter()
                    .map(|s| format!("{}:{}/{}", s.source, s.destination, proto(&s.protocol)))
                    .collect();
                let _ = writeln!(
                    out,
                    "  {} {} memory={} cpu={}m instances={} ports={ports:?} streams={streams:?} cmd={:?} entrypoint={:?}",
                    p.full_name,
                    proc.name,
                    proc.memory,
                    proc.cpu,
                    proc.num_instances,
                    proc.cmd,
                    proc.entrypoint
                );
                let _ = writeln!(
                    out,
                    "    mountpoints={:?} https_only={:?} health={} volumes={:?} logs={:?} secrets={:?}",
                    proc.mountpoints,
                    proc.https_only,
                    proc.container_healthcheck
                        .as_ref()
                        .map_or("none".to_string(), |h| format!(
                            "{:?}/{}s/{}s/{}x",
                            h.probe, h.interval, h.timeout, h.retries
                        )),
                    proc.volumes
                        .iter()
                        .map(|v| v.path.as_str())
                        .collect::<Vec<_>>(),
                    proc.logs,
                    proc.secret_files,
                );
                let _ = writeln!(
                    out,
                    "    filters={:?} env={:?} setup={} kill={} service_name={:?} dns_search={:?} extra={}",
                    proc.filters,
                    proc.env
                        .iter()
                        .map(|e| format!("{}={}", e.name, e.value))
                        .collect::<Vec<_>>(),
                    proc.setup_time,
                    proc.kill_timeout,
                    proc.service_name,
                    p.dns_search,
                    proc.extra,
                );
            }
        }
    }
    out
}

#[test]
fn every_rule_gives_its_exact_diagnostics() {
    let engine = common::engine();
    let plugins = ["web", "worker", "oneshot", "portal"].map(|n| common::builtin(&engine, n, None));
    let types = PluginProcTypes::new(plugins, &BTreeMap::new()).expect("proc types");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/spec/cases");
    let update = std::env::var_os("LAIN_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("cases")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 20, "cases missing: {}", cases.len());
    let mut failures = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&case).expect("read");
        let got = render(&name, &text, &types);
        let expected = case.with_extension("expected");
        match std::fs::read_to_string(&expected) {
            Ok(want) if want == got => {}
            _ if update => std::fs::write(&expected, &got).expect("write"),
            Ok(want) => failures.push(format!("{name}:\n--- want\n{want}--- got\n{got}")),
            Err(_) => failures.push(format!(
                "{name}: no {} (run with LAIN_UPDATE_GOLDEN=1)",
                expected.display()
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The keys of `docs/lain-yaml.md`'s "What each key does, per runtime" table, in order.
fn documented_keys() -> Vec<String> {
    let doc = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/lain-yaml.md"),
    )
    .expect("docs/lain-yaml.md");
    doc.lines()
        .skip_while(|l| *l != "## What each key does, per runtime")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once("` |").map(|(key, _)| key.to_string()))
        .collect()
}

#[test]
fn every_key_of_the_schema_has_a_row_in_the_per_runtime_table_and_no_row_is_stale() {
    let documented = documented_keys();
    let schema = spec::schema::keys();
    let missing: Vec<&String> = schema.iter().filter(|k| !documented.contains(k)).collect();
    let stale: Vec<&String> = documented.iter().filter(|k| !schema.contains(k)).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "docs/lain-yaml.md, \"What each key does, per runtime\": keys without a row {missing:?}, rows naming no key {stale:?}"
    );
    let mut seen = std::collections::BTreeSet::new();
    let twice: Vec<&String> = documented.iter().filter(|k| !seen.insert(*k)).collect();
    assert!(twice.is_empty(), "rows given twice: {twice:?}");
}

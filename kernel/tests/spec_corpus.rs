//! Compatibility with real LAIN apps: every real `lain.yaml` that LAIN's own parser accepted
//! validates, with the procs LAIN derived; the ones it refused are refused, for the same reason.
//!
//! The corpus (`tests/spec/real-lainyaml/`, unmodified public files, provenance in its
//! `SOURCES.md`) is checked against `expected/<file>.json`, the procs as lain derives them. Run with
//! `LAIN_UPDATE_GOLDEN=1` to write missing or changed expectations, then review the diff.

mod common;

use lain::spec::{self, PluginProcTypes, Severity};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Files LAIN's parser refused, with the refusal we give.
const REFUSED: &[(&str, &str)] = &[(
    "carol8421__hedwig-1__lain.yaml",
    "proc (type is web but name is not web) should have own mountpoint",
)];

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/spec/real-lainyaml")
}

/// The built-in proc types plus the template's `cron` (one real app has a `cron.useless` section).
fn proc_types() -> PluginProcTypes {
    let engine = common::engine();
    let mut plugins: Vec<_> = ["web", "worker", "oneshot", "portal"]
        .iter()
        .map(|n| common::builtin(&engine, n, None))
        .collect();
    plugins.push(common::fixture_plugin(
        &engine,
        lain_builtin_plugins::fixtures::TEMPLATE,
    ));
    PluginProcTypes::new(
        plugins.into_iter().map(|p| Arc::clone(&p)),
        &BTreeMap::new(),
    )
    .expect("proc types")
}

/// What LAIN derived for each proc, and what a reviewer checks against LAIN's rules.
fn derived(spec: &spec::AppSpec) -> Value {
    let procs: Vec<Value> = spec
        .procs
        .iter()
        .map(|p| {
            let proc = &p.proc;
            json!({
                "name": proc.name,
                "type": proc.proc_type,
                "podgroup": p.full_name,
                "image": proc.image,
                "cmd": proc.cmd,
                "entrypoint": proc.entrypoint,
                "num_instances": proc.num_instances,
                "memory": proc.memory,
                "cpu": proc.cpu,
                "ports": proc.ports.iter().map(|p| p.number).collect::<Vec<_>>(),
                "mountpoints": proc.mountpoints,
                "https_only": proc.https_only,
                "healthcheck": proc.healthcheck,
                "volumes": proc.volumes.iter().map(|v| v.path.clone()).collect::<Vec<_>>(),
                "secret_files": proc.secret_files,
                "filters": proc.filters,
                "setup_time": proc.setup_time,
                "kill_timeout": proc.kill_timeout,
                "service_name": proc.service_name,
                "dns_search": p.dns_search,
            })
        })
        .collect();
    json!({ "appname": spec.appname, "apptype": spec.apptype, "procs": procs })
}

#[test]
fn real_lain_yaml_files_are_read_as_lain_read_them() {
    let types = proc_types();
    let update = std::env::var_os("LAIN_UPDATE_GOLDEN").is_some();
    let expected_dir = corpus().join("expected");
    let mut failures = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("corpus")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 60, "corpus incomplete: {}", files.len());
    for file in files {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let text = std::fs::read_to_string(&file).expect("read");
        let parsed = spec::parse(&name, &text, &types, &["lain.local".to_string()]);
        let errors: Vec<String> = parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .map(|d| d.to_string())
            .collect();
        if let Some((_, reason)) = REFUSED.iter().find(|(f, _)| *f == name) {
            if !errors.iter().any(|e| e.contains(reason)) {
                failures.push(format!(
                    "{name}: LAIN refused it ({reason}); we said {errors:?}"
                ));
            }
            continue;
        }
        let Some(spec) = parsed.spec else {
            failures.push(format!(
                "{name}: LAIN accepted it, we refused it:\n  {}",
                errors.join("\n  ")
            ));
            continue;
        };
        let got = derived(&spec);
        let golden = expected_dir.join(format!("{name}.json"));
        match std::fs::read_to_string(&golden)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            Some(want) if want == got => {}
            _ if update => {
                std::fs::create_dir_all(&expected_dir).expect("mkdir");
                let text = serde_json::to_string_pretty(&got).expect("json") + "\n";
                std::fs::write(&golden, text).expect("write golden");
            }
            Some(want) => failures.push(format!(
                "{name}: derived procs changed:\n want {want}\n got  {got}"
            )),
            None => failures.push(format!(
                "{name}: no expectation {} (run with LAIN_UPDATE_GOLDEN=1)",
                golden.display()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} file(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

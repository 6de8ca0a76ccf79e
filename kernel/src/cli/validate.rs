//! `lain validate [PATH]`: check a `lain.yaml` offline, with the same parser the kernel deploys with.

use super::Output;
use crate::plugin::engine::PluginEngine;
use crate::plugin::{Kind, Limits, LoadedPlugin, Manifest};
use crate::spec::{self, PluginProcTypes, Severity};
use anyhow::{Context, bail};
use clap::Args;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Options of `lain validate`.
#[derive(Args)]
pub struct ValidateArgs {
    /// A lain.yaml, or a folder holding one.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// A proc-type plugin (`.wasm`) to validate with, besides the built-in ones; repeatable.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    plugins: Vec<PathBuf>,
    /// Cluster domain for web procs' default mountpoints; repeatable, the first is the main one.
    #[arg(long = "domain", default_value = "lain.local")]
    domains: Vec<String>,
}

/// Validates and prints every problem; fails (exit 1) if there is an error.
pub fn run(args: ValidateArgs, output: Output) -> anyhow::Result<()> {
    let file = if args.path.is_dir() {
        args.path.join("lain.yaml")
    } else {
        args.path.clone()
    };
    let text = std::fs::File::open(&file)
        .map_err(spec::ReadError::from)
        .and_then(spec::read)
        .with_context(|| format!("cannot read {}", file.display()))?;
    let types = proc_types(&args.plugins)?;
    let shown = file.display().to_string();
    let parsed = spec::parse(&shown, &text, &types, &args.domains);
    let errors = parsed
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    match output {
        Output::Json => {
            let report = serde_json::json!({
                "file": shown,
                "valid": errors == 0,
                "diagnostics": parsed.diagnostics,
                "spec": parsed.spec,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Output::Table => {
            for d in &parsed.diagnostics {
                eprintln!("{d}");
            }
            if let Some(spec) = &parsed.spec {
                let procs: Vec<String> = spec
                    .procs
                    .iter()
                    .map(|p| format!("{} ({})", p.proc.name, p.proc.proc_type))
                    .collect();
                println!(
                    "{shown}: valid: app {}, procs: {}",
                    spec.appname,
                    procs.join(", ")
                );
            }
        }
    }
    if errors > 0 {
        bail!(
            "{shown}: {errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// The built-in proc types plus the given plugin files, compiled with a cache in the user's cache dir.
fn proc_types(extra: &[PathBuf]) -> anyhow::Result<PluginProcTypes> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("lain/plugins"));
    let engine =
        PluginEngine::new(Limits::default(), cache).context("cannot start the plugin engine")?;
    let mut plugins = Vec::new();
    for (name, bytes) in lain_builtin_plugins::BUILTINS {
        let manifest = Manifest::embedded(bytes)?
            .with_context(|| format!("built-in {name} has no manifest"))?;
        if manifest.kind == Kind::ProcType {
            plugins.push(Arc::new(LoadedPlugin::load(
                &engine, manifest, bytes, true, None,
            )?));
        }
    }
    for path in extra {
        plugins.push(Arc::new(load_file(&engine, path)?));
    }
    Ok(PluginProcTypes::new(plugins, &BTreeMap::new())?)
}

fn load_file(engine: &Arc<PluginEngine>, path: &Path) -> anyhow::Result<LoadedPlugin> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let beside = path.with_extension("toml");
    let manifest = if beside.is_file() {
        Manifest::parse(&std::fs::read_to_string(&beside)?)?
    } else {
        Manifest::embedded(&bytes)?
            .with_context(|| format!("{} has no manifest", path.display()))?
    };
    if manifest.kind != Kind::ProcType {
        bail!(
            "{}: a {} plugin, not a proc type",
            path.display(),
            manifest.kind
        );
    }
    LoadedPlugin::load(engine, manifest, &bytes, false, None)
        .with_context(|| format!("{}", path.display()))
}

//! `lain validate [PATH]`: check a `lain.yaml` offline, with the same parser the kernel deploys with,
//! and with `--render` print the plan each proc's type renders.
//!
//! Plugins run under the kernel's own host: the same engine, linker and limits (the kernel
//! configuration's `[plugins.limits]` with `--config`), the built-in proc types from this binary,
//! others from `--plugin FILE.wasm`. Nothing is stored and no kernel is needed.

use super::Output;
use crate::config::KernelConfig;
use crate::plugin::bindings::proc_rendering::ContainerPlan;
use crate::plugin::bindings::types::AppContext;
use crate::plugin::engine::PluginEngine;
use crate::plugin::kinds::proc_type::ProcTypePlugin;
use crate::plugin::{Kind, LoadedPlugin, Manifest};
use crate::spec::{self, AppSpec, PluginProcTypes, Severity};
use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Options of `lain validate`.
#[derive(Args)]
#[command(after_help = "Examples:
  lain validate                                   # ./lain.yaml, built-in proc types
  lain validate --render                          # and print each proc's plan
  lain validate app/ --render --plugin cron.wasm  # a proc type of your own
  lain validate --render -o json | jq '.plans[0].plan'")]
pub struct ValidateArgs {
    /// A lain.yaml, or a folder holding one.
    #[arg(default_value = ".")]
    path: PathBuf,
    /// A proc-type plugin (`.wasm`) to validate with, besides the built-in ones; repeatable. Its
    /// manifest is the one the SDK embedded, unless `FILE.toml` lies beside it or `--manifest`
    /// names one.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    plugins: Vec<PathBuf>,
    /// A manifest (TOML) for a `--plugin`, instead of its embedded one; repeatable: the first
    /// `--manifest` goes with the first `--plugin`, and so on.
    #[arg(long = "manifest", value_name = "FILE.toml")]
    manifests: Vec<PathBuf>,
    /// Print the plan each proc's type renders (image, command, env added, ports, health,
    /// restart, routes, labels, ...): what the kernel would run.
    #[arg(long)]
    render: bool,
    /// The kernel's configuration file: its `[plugins.limits]`, `[plugins.config]`,
    /// `[proc_types]` and `domains` are used, as the kernel would.
    #[arg(long, value_name = "lain.toml")]
    config: Option<PathBuf>,
    /// Cluster domain for web procs' default mountpoints; repeatable, the first is the main one.
    /// Default: the `--config`'s domains, else `lain.local`.
    #[arg(long = "domain")]
    domains: Vec<String>,
    /// The release version the plans are rendered for (`--render`).
    #[arg(long, default_value = "local")]
    release: String,
}

/// A plugin file given on the command line.
#[derive(Clone, Debug)]
pub struct PluginFile {
    /// The component (`.wasm`).
    pub wasm: PathBuf,
    /// Its manifest, if not the embedded one or `<wasm>.toml` beside it.
    pub manifest: Option<PathBuf>,
}

/// The plan one proc's type rendered, or why it could not.
#[derive(Debug, Serialize)]
pub struct RenderedProc {
    /// The `lain.yaml` section (`web`, `cron.nightly`, ...).
    pub section: String,
    /// The proc's name.
    pub proc: String,
    /// Its proc type.
    pub proc_type: String,
    /// The plugin serving the type, and its version.
    pub plugin: String,
    /// The version of `plugin`.
    pub plugin_version: String,
    /// The plan, as the plugin rendered it and the kernel checked it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<ContainerPlan>,
    /// Why there is no plan (the plugin's error, naming plugin and function).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
    let config = match &args.config {
        Some(path) => KernelConfig::load(path)?,
        None => KernelConfig::default(),
    };
    let domains = if !args.domains.is_empty() {
        args.domains.clone()
    } else if args.config.is_some() && !config.domains.is_empty() {
        config.domains.clone()
    } else {
        vec!["lain.local".into()]
    };
    let files = plugin_files(&args.plugins, &args.manifests)?;
    let types = proc_types(&files, &config)?;
    let shown = file.display().to_string();
    let parsed = spec::parse(&shown, &text, &types, &domains);
    let errors = parsed
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let plans = match (&parsed.spec, args.render) {
        (Some(app), true) if errors == 0 => {
            Some(render_procs(app, &types, &domains, &args.release))
        }
        _ => None,
    };
    let failed = plans.iter().flatten().filter(|p| p.error.is_some()).count();
    match output {
        Output::Json => {
            let mut report = serde_json::json!({
                "file": shown,
                "valid": errors == 0 && failed == 0,
                "diagnostics": parsed.diagnostics,
                "spec": parsed.spec,
            });
            if let Some(plans) = &plans {
                report["plans"] = serde_json::to_value(plans)?;
            }
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
            for p in plans.iter().flatten() {
                print_plan(&shown, p)?;
            }
        }
    }
    if errors > 0 {
        bail!(
            "{shown}: {errors} error{}",
            if errors == 1 { "" } else { "s" }
        );
    }
    if failed > 0 {
        bail!(
            "{shown}: {failed} proc{} could not be rendered",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// Pairs `--plugin`s with `--manifest`s in order.
fn plugin_files(wasm: &[PathBuf], manifests: &[PathBuf]) -> anyhow::Result<Vec<PluginFile>> {
    if manifests.len() > wasm.len() {
        bail!(
            "{} --manifest for {} --plugin: each --manifest goes with the --plugin in the same position",
            manifests.len(),
            wasm.len()
        );
    }
    Ok(wasm
        .iter()
        .enumerate()
        .map(|(i, w)| PluginFile {
            wasm: w.clone(),
            manifest: manifests.get(i).cloned(),
        })
        .collect())
}

/// Renders every proc of `app` with the plugin serving its type, as the kernel does at deploy
/// (same context: app, app domain, cluster domains, `release`). A proc whose plugin fails gets its
/// error instead of a plan; the others are still rendered.
pub fn render_procs(
    app: &AppSpec,
    types: &PluginProcTypes,
    domains: &[String],
    release: &str,
) -> Vec<RenderedProc> {
    let ctx = AppContext {
        app: app.appname.clone(),
        app_domain: spec::app_domain(&app.appname),
        cluster_domains: domains.to_vec(),
        release: release.to_string(),
    };
    app.procs
        .iter()
        .map(|p| {
            let ty = &p.proc.proc_type;
            let mut rendered = RenderedProc {
                section: p.section.clone(),
                proc: p.proc.name.clone(),
                proc_type: ty.clone(),
                plugin: String::new(),
                plugin_version: String::new(),
                plan: None,
                error: None,
            };
            match types.plugin(ty) {
                Some(plugin) => {
                    rendered.plugin = plugin.name().to_string();
                    rendered.plugin_version = plugin.manifest.version.clone();
                    match ProcTypePlugin(plugin).render(&p.proc, &ctx) {
                        Ok(plan) => rendered.plan = Some(plan),
                        Err(e) => rendered.error = Some(e.to_string()),
                    }
                }
                None => rendered.error = Some(format!("no proc-type plugin serves type `{ty}`")),
            }
            rendered
        })
        .collect()
}

/// Prints one rendered proc for people: one `key: value` line per field that says something.
fn print_plan(file: &str, p: &RenderedProc) -> anyhow::Result<()> {
    println!();
    println!(
        "{} ({}, plugin {} {})",
        p.section, p.proc_type, p.plugin, p.plugin_version
    );
    if let Some(e) = &p.error {
        println!("  error: {e}");
        eprintln!("{file}: {}: cannot render: {e}", p.section);
    }
    let Some(plan) = &p.plan else { return Ok(()) };
    let serde_json::Value::Object(fields) = serde_json::to_value(plan)? else {
        return Ok(());
    };
    for (key, value) in fields {
        if key == "image" && value.as_str() == Some("") {
            println!("  image: (the release's image)");
        } else if let Some(text) = shown(&value) {
            println!("  {key}: {text}");
        }
    }
    Ok(())
}

/// A plan value on one line, or `None` for nothing to say (null, empty list).
fn shown(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::Null => None,
        Value::Array(items) if items.is_empty() => None,
        // A command (or any list of words) as a shell would read it back.
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(shell_words::join(items.iter().filter_map(Value::as_str)))
        }
        Value::Array(items) => Some(
            items
                .iter()
                .map(|v| shown(v).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => {
            // `{name, value}` (env) and `{key, value}` (labels) read best as `a=b`.
            let pair = |k: &str| match (map.get(k), map.get("value")) {
                (Some(Value::String(a)), Some(Value::String(b))) if map.len() == 2 => {
                    Some(format!("{a}={b}"))
                }
                _ => None,
            };
            pair("name").or_else(|| pair("key")).or_else(|| {
                let parts: Vec<String> = map
                    .iter()
                    .filter_map(|(k, v)| shown(v).map(|t| format!("{k}={t}")))
                    .collect();
                Some(format!("{{{}}}", parts.join(" ")))
            })
        }
        other => Some(other.to_string()),
    }
}

/// The built-in proc types plus the given plugin files, loaded under `config`'s limits, operator
/// configuration and `[proc_types]` mapping, compiled with a cache in the user's cache dir.
pub fn proc_types(extra: &[PluginFile], config: &KernelConfig) -> anyhow::Result<PluginProcTypes> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("lain/plugins"));
    let engine = PluginEngine::new(config.plugins.limits.clone(), cache)
        .context("cannot start the plugin engine")?;
    let operator = &config.plugins.config;
    let mut plugins = builtin_proc_types(&engine, operator)?;
    for file in extra {
        plugins.push(Arc::new(load_plugin(&engine, file, operator)?));
    }
    Ok(PluginProcTypes::new(plugins, &config.proc_types)?)
}

/// The proc-type plugins built into this binary, loaded in `engine` with the operator's
/// configuration `operator` (plugin name -> configuration), as the kernel loads them.
pub fn builtin_proc_types(
    engine: &Arc<PluginEngine>,
    operator: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<Vec<Arc<LoadedPlugin>>> {
    let mut plugins = Vec::new();
    for (name, bytes) in lain_builtin_plugins::BUILTINS {
        let manifest = Manifest::embedded(bytes)?
            .with_context(|| format!("built-in {name} has no manifest"))?;
        if manifest.kind == Kind::ProcType {
            let own = operator.get(&manifest.name);
            plugins.push(Arc::new(LoadedPlugin::load(
                engine, manifest, bytes, true, own,
            )?));
        }
    }
    Ok(plugins)
}

/// Loads a proc-type plugin file as `lain plugin install` would take it: the manifest named, else
/// `<file>.toml` beside it, else the one embedded by the SDK.
pub fn load_plugin(
    engine: &Arc<PluginEngine>,
    file: &PluginFile,
    operator: &BTreeMap<String, serde_json::Value>,
) -> anyhow::Result<LoadedPlugin> {
    let path = &file.wasm;
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let beside = path.with_extension("toml");
    let manifest = match &file.manifest {
        Some(m) => Some(m.clone()),
        None if beside.is_file() => Some(beside),
        None => None,
    };
    let manifest = match manifest {
        Some(m) => {
            let text = std::fs::read_to_string(&m)
                .with_context(|| format!("cannot read {}", m.display()))?;
            Manifest::parse(&text).with_context(|| format!("{}", m.display()))?
        }
        None => Manifest::embedded(&bytes)?.with_context(|| {
            format!(
                "{} has no manifest: build it with the SDK's export macro, or give --manifest",
                path.display()
            )
        })?,
    };
    if manifest.kind != Kind::ProcType {
        bail!(
            "{}: a {} plugin, not a proc type",
            path.display(),
            manifest.kind
        );
    }
    let own = operator.get(&manifest.name);
    LoadedPlugin::load(engine, manifest, &bytes, false, own)
        .with_context(|| format!("{}", path.display()))
}

//! `lain plugin ...`: manage the kernel's WebAssembly plugins.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::plugin::FailurePolicy;
use crate::plugin::engine::Compiler;
use crate::plugin::registry::{ConfigView, PluginView, TypeMapping, Upgraded};
use anyhow::Context;
use base64::Engine as _;
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Plugin commands.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// List every plugin: built-in and installed, enabled or not.
    List,
    /// Show one plugin: its world, hash, policy, limits, call and failure counts, default
    /// configuration, and what it says about itself: for a proc type the type it describes, its
    /// extra keys, summary and the types it serves now; the summary and roles or delivery of the
    /// other kinds.
    Show {
        /// Plugin name.
        name: String,
    },
    /// Install a plugin component (`.wasm` built for wasm32-wasip2).
    ///
    /// The manifest embedded by the SDK is used, unless `--manifest` is given or a file
    /// `<component>.toml` lies beside the component.
    Install {
        /// The component file.
        file: PathBuf,
        /// A manifest (TOML) to use instead of the embedded one.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Replace an installed plugin by a new version; calls in flight finish on the old one.
    ///
    /// A lower version than the one installed (both read as semver) is refused unless
    /// `--allow-downgrade`. The same version with a different component is accepted as a
    /// rebuild, and said so. The operator's configuration, policy and enabled state are kept.
    Upgrade {
        /// Plugin name.
        name: String,
        /// The new component file.
        file: PathBuf,
        /// A manifest (TOML) to use instead of the embedded one.
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// Accept a lower version than the one installed.
        #[arg(long)]
        allow_downgrade: bool,
    },
    /// Show or change a plugin's configuration, live (no restart).
    ///
    /// Without options, prints the manifest's defaults, the operator's settings and where they
    /// come from, what the plugin reads, the files granted and the limits. `--set`/`--unset`
    /// edit the operator's settings, `-f` replaces them with a file's table, `--reset` goes back
    /// to the kernel config's `[plugins.config.<name>]`. Settings changed here are kept in the
    /// store and replace that table until reset. The plugin is tried with the new settings
    /// first (its `describe`); if it refuses them, nothing changes. Keys under `limits`
    /// (`cpu_ms`, `wall_ms`, `memory_bytes`) set the plugin's own limits; `files` grants are
    /// made in the kernel config only. Admins only.
    Config {
        /// Plugin name.
        name: String,
        /// Set a key: `key=value`, the key a dotted path (`limits.cpu_ms=50`), the value read
        /// as TOML (`true`, `3`, `[1, 2]`, `"text"`), else taken as text. Repeatable.
        #[arg(long, value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a key (dotted path). Repeatable.
        #[arg(long, value_name = "KEY")]
        unset: Vec<String>,
        /// Replace the settings by the table in this file (`.toml` or `.json`).
        #[arg(short = 'f', long = "file", value_name = "FILE", conflicts_with_all = ["set", "unset", "reset"])]
        file: Option<PathBuf>,
        /// Forget the settings changed here: the kernel config's table applies again.
        #[arg(long, conflicts_with_all = ["set", "unset"])]
        reset: bool,
    },
    /// Assign a proc type to a proc-type plugin, live: deploys use that plugin for the type,
    /// over the plugin that describes itself as the type or a built-in. Kept in the store;
    /// overrides the kernel config's `[proc_types]` for that type. Admins only.
    Map {
        /// The proc type (`cron`, `worker`, ...).
        proc_type: String,
        /// The proc-type plugin to serve it.
        plugin: String,
    },
    /// Take a proc type back from the plugin it was assigned to: the plugin that describes
    /// itself as the type (the built-in for built-in types) serves it again. Admins only.
    Unmap {
        /// The proc type.
        proc_type: String,
        /// Forget the assignment made with `map` instead, so the kernel config's
        /// `[proc_types]` applies again.
        #[arg(long)]
        reset: bool,
    },
    /// List the operator's assignments of proc types to plugins and where each comes from.
    Mappings,
    /// Allow calls to a plugin again (also lifts a quarantine).
    Enable {
        /// Plugin name.
        name: String,
    },
    /// Stop calling a plugin.
    Disable {
        /// Plugin name.
        name: String,
    },
    /// Set what happens when the plugin fails: `open` skips it, `closed` fails the operation.
    Policy {
        /// Plugin name.
        name: String,
        /// The policy; `default` goes back to the kind's default.
        policy: PolicyArg,
    },
    /// Remove an installed plugin (built-ins can only be disabled).
    Remove {
        /// Plugin name.
        name: String,
    },
}

/// A failure policy on the command line.
#[derive(Clone, Copy, ValueEnum)]
pub enum PolicyArg {
    /// Skip the plugin when it fails.
    Open,
    /// Fail the operation when the plugin fails.
    Closed,
    /// The kind's default.
    Default,
}

/// Runs a plugin command against the kernel.
pub fn run(cmd: PluginCommand, client: &Client, output: Output) -> anyhow::Result<()> {
    match cmd {
        PluginCommand::List => {
            let plugins: Vec<PluginView> = client.get("/api/v1/plugins")?;
            print(output, &plugins, |plugins| {
                let outside = super::scheduler::outside(client);
                let rows: Vec<Vec<String>> = plugins
                    .iter()
                    .map(|p| {
                        let mut r = row(p);
                        if outside.contains(&p.name) {
                            r[4].push_str(", not in the scheduler pipeline");
                        }
                        r
                    })
                    .collect();
                table(
                    &[
                        "NAME", "VERSION", "KIND", "SOURCE", "STATE", "POLICY", "CALLS",
                        "FAILURES", "COMPILED",
                    ],
                    &rows,
                );
            })
        }
        PluginCommand::Show { name } => {
            let p: PluginView = client.get(&format!("/api/v1/plugins/{name}"))?;
            print(output, &p, show)?;
            if super::scheduler::outside(client).contains(&p.name) {
                eprintln!("{}", super::scheduler::outside_note(&p.name));
            }
            Ok(())
        }
        PluginCommand::Install { file, manifest } => {
            let body = install_body(&file, manifest.as_deref())?;
            eprintln!(
                "installing {} ({} KiB): compiling and checking it against its world...",
                file.display(),
                kib(&file)
            );
            let p: PluginView = client.send("POST", "/api/v1/plugins", Some(&body))?;
            print(output, &p, |p| {
                println!("installed {} {} ({}), enabled", p.name, p.version, p.kind);
                files(p);
            })?;
            winch_note(&p);
            if super::scheduler::outside(client).contains(&p.name) {
                eprintln!("{}", super::scheduler::outside_note(&p.name));
            }
            Ok(())
        }
        PluginCommand::Upgrade {
            name,
            file,
            manifest,
            allow_downgrade,
        } => {
            let body = install_body(&file, manifest.as_deref())?;
            eprintln!(
                "upgrading {name} from {} ({} KiB)...",
                file.display(),
                kib(&file)
            );
            let query = if allow_downgrade {
                "?allow-downgrade=true"
            } else {
                ""
            };
            let u: Upgraded = client.send(
                "PUT",
                &format!("/api/v1/plugins/{name}{query}"),
                Some(&body),
            )?;
            print(output, &u, upgraded)?;
            winch_note(&u.plugin);
            Ok(())
        }
        PluginCommand::Config {
            name,
            set,
            unset,
            file,
            reset,
        } => {
            let path = format!("/api/v1/plugins/{name}/config");
            let c: ConfigView = if reset {
                client.send::<(), _>("DELETE", &path, None)?
            } else if let Some(file) = file {
                let settings = read_table(&file)?;
                client.send("PUT", &path, Some(&json!({ "settings": settings })))?
            } else if !set.is_empty() || !unset.is_empty() {
                let set = set
                    .iter()
                    .map(|kv| parse_set(kv))
                    .collect::<anyhow::Result<serde_json::Map<_, _>>>()?;
                client.send("PUT", &path, Some(&json!({ "set": set, "unset": unset })))?
            } else {
                client.get(&path)?
            };
            print(output, &c, show_config)
        }
        PluginCommand::Map { proc_type, plugin } => {
            let m: Vec<TypeMapping> = client.send(
                "PUT",
                &format!("/api/v1/proc-types/{proc_type}"),
                Some(&json!({ "plugin": plugin })),
            )?;
            print(output, &m, |m| {
                println!("proc type {proc_type} is served by plugin {plugin}");
                mappings(m);
            })
        }
        PluginCommand::Unmap { proc_type, reset } => {
            let query = if reset { "?reset=true" } else { "" };
            let m: Vec<TypeMapping> = client.send::<(), _>(
                "DELETE",
                &format!("/api/v1/proc-types/{proc_type}{query}"),
                None,
            )?;
            print(output, &m, |m| {
                if reset {
                    println!(
                        "proc type {proc_type}: the kernel config's [proc_types] applies again"
                    );
                } else {
                    println!("proc type {proc_type} is no longer assigned by the operator");
                }
                mappings(m);
            })
        }
        PluginCommand::Mappings => {
            let m: Vec<TypeMapping> = client.get("/api/v1/proc-types")?;
            print(output, &m, |m| mappings(m))
        }
        PluginCommand::Enable { name } => {
            let p: PluginView =
                client.send::<(), _>("POST", &format!("/api/v1/plugins/{name}/enable"), None)?;
            print(output, &p, |p| println!("enabled {}", p.name))
        }
        PluginCommand::Disable { name } => {
            let p: PluginView =
                client.send::<(), _>("POST", &format!("/api/v1/plugins/{name}/disable"), None)?;
            print(output, &p, |p| println!("disabled {}", p.name))
        }
        PluginCommand::Policy { name, policy } => {
            let policy = match policy {
                PolicyArg::Open => Some(FailurePolicy::Open),
                PolicyArg::Closed => Some(FailurePolicy::Closed),
                PolicyArg::Default => None,
            };
            let p: PluginView = client.send(
                "PUT",
                &format!("/api/v1/plugins/{name}/policy"),
                Some(&json!({ "policy": policy })),
            )?;
            print(output, &p, |p| {
                println!("{}: fails {}", p.name, p.health.policy)
            })
        }
        PluginCommand::Remove { name } => {
            let _: serde_json::Value =
                client.send::<(), _>("DELETE", &format!("/api/v1/plugins/{name}"), None)?;
            print(output, &json!({ "removed": name }), |_| {
                println!("removed {name}")
            })
        }
    }
}

fn row(p: &PluginView) -> Vec<String> {
    vec![
        p.name.clone(),
        p.version.clone(),
        p.kind.to_string(),
        if p.builtin {
            "built-in".into()
        } else {
            "installed".into()
        },
        state(p).into(),
        format!(
            "{}{}",
            p.health.policy,
            if p.policy_overridden { "*" } else { "" }
        ),
        p.health.calls.to_string(),
        p.health.failures.to_string(),
        p.compiled.to_string(),
    ]
}

fn state(p: &PluginView) -> &'static str {
    match (p.enabled, p.health.quarantined) {
        (false, _) => "disabled",
        (true, true) => "quarantined",
        (true, false) => "enabled",
    }
}

fn show(p: &PluginView) {
    println!("name:          {}", p.name);
    println!("version:       {}", p.version);
    println!("kind:          {} ({})", p.kind, p.world);
    println!("description:   {}", p.description);
    println!(
        "source:        {}",
        if p.builtin { "built-in" } else { "installed" }
    );
    println!("state:         {}", state(p));
    println!("sha256:        {}", p.sha256);
    println!(
        "compiled:      {}{}",
        p.compiled,
        match p.compiled {
            Compiler::Winch => " (baseline; the Cranelift build replaces it when ready)",
            Compiler::Cranelift => "",
        }
    );
    println!(
        "on failure:    {} ({})",
        p.health.policy,
        if p.policy_overridden {
            "set by the operator"
        } else {
            "default for the kind"
        }
    );
    println!(
        "calls:         {} ({} failed, {} in a row)",
        p.health.calls, p.health.failures, p.health.consecutive_failures
    );
    if let Some(e) = &p.health.last_error {
        println!("last failure:  {e}");
    }
    println!(
        "limits:        cpu {} ms, wall {} ms, memory {} MiB{}",
        p.limits.cpu_ms,
        p.limits.wall_ms,
        p.limits.memory_bytes >> 20,
        if p.limits_overridden.is_empty() {
            " (engine-wide)".to_string()
        } else {
            format!(
                " (set for this plugin: {})",
                serde_json::to_string(&p.limits_overridden).unwrap_or_default()
            )
        }
    );
    println!("config from:   {}", p.config_source);
    println!("default config: {}", p.default_config);
    if let Some(d) = &p.described {
        if let Some(e) = &d.error {
            println!("describe:      failed: {e}");
        }
        if !d.summary.is_empty() {
            println!("summary:       {}", d.summary);
        }
        if let Some(ty) = &d.proc_type {
            println!("proc type:     {ty}");
            println!(
                "extra keys:    {}",
                if d.extra_keys.is_empty() {
                    "none".to_string()
                } else {
                    d.extra_keys.join(", ")
                }
            );
        }
        if let Some(serves) = &d.serves {
            println!(
                "serves:        {}",
                if serves.is_empty() {
                    "no type (taken by another plugin, or the operator assigned it elsewhere)"
                        .to_string()
                } else {
                    serves.join(", ")
                }
            );
        }
        if !d.roles.is_empty() {
            println!("roles:         {}", d.roles.join(", "));
        }
        if let Some(delivery) = &d.delivery {
            println!("delivery:      {delivery}");
        }
    }
    files(p);
}

/// Says on stderr that a plugin runs on its Winch build for now.
fn winch_note(p: &PluginView) {
    if p.compiled == Compiler::Winch {
        eprintln!(
            "{} runs on its Winch build; its Cranelift build is compiled in the background and \
             swapped in when ready (`lain plugin show {}` says `compiled: cranelift`)",
            p.name, p.name
        );
    }
}

fn upgraded(u: &Upgraded) {
    let p = &u.plugin;
    match u.change.as_str() {
        "unchanged" => println!("{} {}: the same component, unchanged", p.name, p.version),
        "rebuild" => println!(
            "replaced {} {} by another build of the same version (sha256 {} -> {})",
            p.name,
            p.version,
            short(&u.previous_sha256),
            short(&p.sha256)
        ),
        "downgrade" => println!(
            "downgraded {} from {} to {} (--allow-downgrade)",
            p.name, u.previous_version, p.version
        ),
        _ => println!(
            "upgraded {} to {} (was {})",
            p.name, p.version, u.previous_version
        ),
    }
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

fn show_config(c: &ConfigView) {
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    println!("plugin:     {}", c.plugin);
    println!(
        "source:     {}",
        match c.source.as_str() {
            "api" =>
                "set with `lain plugin config` (kept in the store; --reset goes back to the kernel config)",
            "kernel-config" => "the kernel config's [plugins.config.<name>]",
            _ => "none: the manifest's defaults",
        }
    );
    if let Some(ignored) = &c.kernel_config_ignored {
        println!("kernel config table replaced (not applied): {ignored}");
    }
    println!(
        "limits:     cpu {} ms, wall {} ms, memory {} MiB",
        c.limits.cpu_ms,
        c.limits.wall_ms,
        c.limits.memory_bytes >> 20
    );
    for (name, path) in &c.files_granted {
        let why = c.files_requested.get(name).map_or("not asked for", |s| s);
        println!("file {name}: granted {path} ({why})");
    }
    for (name, why) in &c.files_requested {
        if !c.files_granted.contains_key(name) {
            println!(
                "file {name}: asked, not granted ({why}); only the kernel config grants files"
            );
        }
    }
    println!("defaults (manifest):\n{}", pretty(&c.defaults));
    println!("operator settings:\n{}", pretty(&c.operator));
    println!(
        "effective (what the plugin reads):\n{}",
        pretty(&c.effective)
    );
}

fn mappings(m: &[TypeMapping]) {
    let rows: Vec<Vec<String>> = m
        .iter()
        .map(|t| {
            vec![
                t.ty.clone(),
                t.plugin.clone().unwrap_or_else(|| "(unassigned)".into()),
                match &t.overrides {
                    Some(o) => format!("{} (over kernel config: {o})", t.source),
                    None => t.source.clone(),
                },
            ]
        })
        .collect();
    table(&["TYPE", "PLUGIN", "SOURCE"], &rows);
}

/// `key=value` with the value read as TOML, else as text.
fn parse_set(kv: &str) -> anyhow::Result<(String, serde_json::Value)> {
    let Some((key, value)) = kv.split_once('=') else {
        anyhow::bail!("--set {kv}: expected KEY=VALUE (e.g. limits.cpu_ms=50)");
    };
    let key = key.trim();
    if key.is_empty() {
        anyhow::bail!("--set {kv}: the key is empty");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {value}")) {
        Ok(mut t) => match t.remove("v") {
            Some(v) => serde_json::to_value(v)?,
            None => serde_json::Value::String(value.to_string()),
        },
        Err(_) => serde_json::Value::String(value.to_string()),
    };
    Ok((key.to_string(), value))
}

/// The table in a `.toml` or `.json` file.
fn read_table(file: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let value = match file.extension().and_then(|e| e.to_str()) {
        Some("toml") => serde_json::to_value(
            toml::from_str::<toml::Table>(&text)
                .with_context(|| format!("{}: not TOML", file.display()))?,
        )?,
        Some("json") => {
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", file.display()))?
        }
        _ => anyhow::bail!(
            "{}: give a .toml or .json file of the plugin's settings",
            file.display()
        ),
    };
    if !value.is_object() {
        anyhow::bail!("{}: the settings must be a table", file.display());
    }
    Ok(value)
}

/// What files the plugin asks for and what the operator granted, and how to grant the rest.
fn files(p: &PluginView) {
    for (name, reason) in &p.files_requested {
        match p.files_granted.get(name) {
            Some(path) => println!("file {name}: granted {path} (asked: {reason})"),
            None => println!("file {name}: asked, not granted ({reason})"),
        }
    }
    for (name, path) in &p.files_granted {
        if !p.files_requested.contains_key(name) {
            println!("file {name}: granted {path} (not asked for)");
        }
    }
    let missing: Vec<&String> = p
        .files_requested
        .keys()
        .filter(|n| !p.files_granted.contains_key(*n))
        .collect();
    if let Some(first) = missing.first() {
        println!(
            "  only the operator grants files: in the kernel config, `[plugins.config.{}] files = {{ {first} = \"/path\" }}`, then restart the kernel",
            p.name
        );
    }
}

fn install_body(file: &Path, manifest: Option<&Path>) -> anyhow::Result<serde_json::Value> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let beside = file.with_extension("toml");
    let manifest = match manifest {
        Some(m) => Some(
            std::fs::read_to_string(m).with_context(|| format!("cannot read {}", m.display()))?,
        ),
        None if beside.is_file() => Some(std::fs::read_to_string(&beside)?),
        None => None,
    };
    Ok(json!({
        "component": base64::engine::general_purpose::STANDARD.encode(bytes),
        "manifest": manifest,
    }))
}

fn kib(file: &Path) -> u64 {
    std::fs::metadata(file)
        .map(|m| m.len().div_ceil(1024))
        .unwrap_or(0)
}

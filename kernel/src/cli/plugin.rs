//! `lain plugin ...`: manage the kernel's WebAssembly plugins.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::plugin::FailurePolicy;
use crate::plugin::registry::PluginView;
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
    /// Show one plugin: its world, hash, policy, call and failure counts, default configuration.
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
    Upgrade {
        /// Plugin name.
        name: String,
        /// The new component file.
        file: PathBuf,
        /// A manifest (TOML) to use instead of the embedded one.
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
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
                        "NAME", "VERSION", "KIND", "SOURCE", "STATE", "POLICY", "CALLS", "FAILURES",
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
            if super::scheduler::outside(client).contains(&p.name) {
                eprintln!("{}", super::scheduler::outside_note(&p.name));
            }
            Ok(())
        }
        PluginCommand::Upgrade {
            name,
            file,
            manifest,
        } => {
            let body = install_body(&file, manifest.as_deref())?;
            eprintln!(
                "upgrading {name} from {} ({} KiB)...",
                file.display(),
                kib(&file)
            );
            let p: PluginView =
                client.send("PUT", &format!("/api/v1/plugins/{name}"), Some(&body))?;
            print(output, &p, |p| {
                println!("upgraded {} to {}", p.name, p.version)
            })
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
    println!("default config: {}", p.default_config);
    files(p);
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

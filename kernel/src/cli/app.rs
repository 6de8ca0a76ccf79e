//! App commands, in LAIN's words: `build`, `deploy`, `scale`, `ps`, `logs`, `rollback`,
//! `undeploy`, `app list|show`.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::lifecycle::records::ReleaseRecord;
use crate::lifecycle::view::{AppView, Health};
use crate::runtime::RunState;
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::json;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Which app a command is about.
#[derive(Args, Clone)]
pub struct AppArg {
    /// The app; default: the `appname` of ./lain.yaml.
    #[arg(long, short)]
    pub app: Option<String>,
}

impl AppArg {
    /// The app name given, or read from `./lain.yaml`.
    pub fn resolve(&self) -> anyhow::Result<String> {
        match &self.app {
            Some(app) => Ok(app.clone()),
            None => appname(Path::new(".")),
        }
    }
}

/// How long and whether to wait for a rollout.
#[derive(Args, Clone)]
pub struct WaitArgs {
    /// Return once the kernel accepted the change, without waiting for the rollout.
    #[arg(long)]
    pub no_wait: bool,
    /// Seconds to wait for the rollout.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// `lain app ...`.
#[derive(Subcommand)]
pub enum AppCommand {
    /// List every app with its deployed release and state.
    List,
    /// Show an app: releases, procs and instances.
    Show(AppArg),
}

/// Reads `appname` from the `lain.yaml` in `dir` (bounded and depth-checked like every
/// `lain.yaml` lain reads).
pub fn appname(dir: &Path) -> anyhow::Result<String> {
    let file = dir.join("lain.yaml");
    let text = std::fs::File::open(&file)
        .map_err(crate::spec::ReadError::from)
        .and_then(crate::spec::read)
        .with_context(|| {
            format!(
                "cannot read {} (give --app, or run in the app's directory)",
                file.display()
            )
        })?;
    crate::spec::appname(&file.display().to_string(), &text).map_err(|d| anyhow!("{d}"))
}

/// `lain build [PATH]`: sends the directory as a build context and prints the build's progress.
pub fn build(client: &Client, dir: &Path, output: Output) -> anyhow::Result<ReleaseRecord> {
    let context = pack(dir)?;
    if output == Output::Table {
        eprintln!(
            "==> sending {} ({} KiB)",
            dir.display(),
            context.len() / 1024
        );
    }
    let args = build_arg_values(dir)?;
    let header = crate::runtime::build_args::encode(&args).map_err(|e| anyhow!("{e}"))?;
    let stream = client.post_stream(
        "/api/v1/builds",
        "application/x-tar",
        &[(crate::runtime::build_args::HEADER, &header)],
        &context,
    )?;
    for line in stream.lines() {
        let line = line.context("reading the build's progress")?;
        let v: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("the kernel sent something unexpected: {line}"))?;
        let text = |key: &str| v[key].as_str().unwrap_or_default().to_string();
        match v["event"].as_str() {
            Some("done") => {
                let release: ReleaseRecord = serde_json::from_value(v["release"].clone())?;
                print(output, &release, |r| {
                    eprintln!("==> release {} of {}", r.version, r.app)
                })?;
                return Ok(release);
            }
            Some("failed") => {
                for d in v["diagnostics"].as_array().into_iter().flatten() {
                    eprintln!("{}", render_diagnostic(d));
                }
                bail!("{}", text("message"));
            }
            Some("step") if output == Output::Table => eprintln!("==> {}", text("message")),
            Some("output") if output == Output::Table => eprintln!("    {}", text("line")),
            Some("warning") if output == Output::Table => eprintln!("warning: {}", text("message")),
            _ => {}
        }
    }
    bail!("the kernel ended the build without a result")
}

/// The values, from this environment, of the variables the `build_arg`s of `dir/lain.yaml` name
/// (`$VAR`): the build gets these and nothing else (see `runtime::build_args`). An unset one is
/// left out (the build warns that it is empty).
fn build_arg_values(dir: &Path) -> anyhow::Result<crate::runtime::build_args::Sent> {
    // Read and loaded with the kernel's bounds (size, nesting); a file they refuse sends no
    // values, and the build itself then says what is wrong with it.
    let file = dir.join("lain.yaml");
    let Ok(text) = std::fs::File::open(&file)
        .map_err(crate::spec::ReadError::from)
        .and_then(crate::spec::read)
    else {
        return Ok(Default::default());
    };
    let Ok(node) = crate::spec::tree(&file.display().to_string(), &text) else {
        return Ok(Default::default());
    };
    let build = node.as_mapping().and_then(|m| m.get_mapping("build"));
    let lists = build
        .and_then(|b| b.get_sequence("build_arg"))
        .into_iter()
        .chain(
            build
                .and_then(|b| b.get_mapping("prepare"))
                .and_then(|p| p.get_sequence("build_arg")),
        );
    let mut sent = crate::runtime::build_args::Sent::new();
    for item in lists.flat_map(|l| l.iter()) {
        let Some((name, value)) = item.as_scalar().and_then(|s| s.as_str().split_once('=')) else {
            continue;
        };
        let Some(var) = crate::runtime::build_args::variable(value) else {
            continue;
        };
        match std::env::var(var) {
            Ok(v) => {
                sent.insert(var.to_string(), v);
            }
            Err(_) => eprintln!(
                "warning: build_arg {name}={value}: ${var} is not set here, so the build gets an empty value"
            ),
        }
    }
    Ok(sent)
}

fn render_diagnostic(d: &serde_json::Value) -> String {
    format!(
        "{}:{}:{}: {}: {}{}",
        d["file"].as_str().unwrap_or("lain.yaml"),
        d["line"],
        d["column"],
        d["severity"].as_str().unwrap_or("error"),
        d["message"].as_str().unwrap_or(""),
        d["hint"]
            .as_str()
            .map(|h| format!(" ({h})"))
            .unwrap_or_default()
    )
}

/// A tar of `dir` without version-control and lain's own data directories.
fn pack(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    add_dir(&mut builder, dir, Path::new(""))?;
    let bytes = builder
        .into_inner()
        .context("cannot pack the build context")?;
    if bytes.len() > crate::api::MAX_BODY_BYTES {
        bail!(
            "the build context is {} MiB, more than the {} MiB the kernel accepts",
            bytes.len() >> 20,
            crate::api::MAX_BODY_BYTES >> 20
        );
    }
    Ok(bytes)
}

fn add_dir(b: &mut tar::Builder<Vec<u8>>, root: &Path, rel: &Path) -> anyhow::Result<()> {
    let dir = root.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        if [".git", ".lain", ".lain-data", "target"].contains(&name.to_string_lossy().as_ref()) {
            continue;
        }
        let path = rel.join(&name);
        let kind = entry.file_type()?;
        if kind.is_dir() {
            b.append_dir(&path, entry.path())?;
            add_dir(b, root, &path)?;
        } else {
            b.append_path_with_name(entry.path(), &path)
                .with_context(|| format!("cannot pack {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// `lain deploy`: deploys a release and follows the rollout.
pub fn deploy(
    client: &Client,
    app: &str,
    release: Option<&str>,
    wait: &WaitArgs,
    output: Output,
) -> anyhow::Result<AppView> {
    let view: AppView = client.send(
        "POST",
        &format!("/api/v1/apps/{app}/deploy"),
        Some(&json!({ "release": release })),
    )?;
    finish(client, view, wait, output)
}

/// Waits for the rollout unless told not to, then prints the app.
pub fn finish(
    client: &Client,
    view: AppView,
    wait: &WaitArgs,
    output: Output,
) -> anyhow::Result<AppView> {
    let view = if wait.no_wait {
        view
    } else {
        wait_converged(
            client,
            &view.app.name,
            view.release.clone(),
            wait.timeout,
            output,
        )?
    };
    print(output, &view, print_app)?;
    Ok(view)
}

/// Follows the app through the watch until it runs as deployed, printing each proc's progress
/// as it changes.
pub fn wait_converged(
    client: &Client,
    app: &str,
    release: Option<String>,
    timeout: u64,
    output: Output,
) -> anyhow::Result<AppView> {
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut last = String::new();
    let converged = super::watch::until(client, app, deadline, |view| {
        if view.release != release {
            let error = view.app.last_error.clone().unwrap_or_default();
            bail!(
                "the deployment changed to {} while waiting: {error}",
                view.release.as_deref().unwrap_or("nothing")
            );
        }
        let progress = progress_line(&view);
        if output == Output::Table && progress != last {
            eprintln!("==> {progress}");
            last = progress;
        }
        if view.converged {
            return Ok(Some(view));
        }
        // Set only by a failed rollout of this deployment (a deploy clears it).
        if let Some(error) = &view.app.last_error {
            bail!("{error}");
        }
        Ok(None)
    })?;
    match converged {
        Some(view) => Ok(view),
        None => bail!("not converged after {timeout}s: {last} (see `lain ps`)"),
    }
}

fn progress_line(view: &AppView) -> String {
    if view.procs.is_empty() {
        return format!("{} instance(s) left", view.instances.len());
    }
    view.procs
        .iter()
        .map(|p| {
            let problem = p
                .problem
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            if !p.completes {
                return format!("{} {}/{} ready{problem}", p.name, p.ready, p.desired);
            }
            let running = view
                .instances
                .iter()
                .filter(|i| i.proc == p.name && view.release.as_ref() == Some(&i.release))
                .any(|i| i.state.is_running());
            if running {
                format!(
                    "{}.{}: running, waiting for it to complete{problem}",
                    p.proc_type, p.name
                )
            } else {
                format!(
                    "{}.{}: {}/{} completed{problem}",
                    p.proc_type, p.name, p.ready, p.desired
                )
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Prints procs and instances for people.
pub fn print_app(view: &AppView) {
    println!(
        "app {}: release {}{}",
        view.app.name,
        view.release.as_deref().unwrap_or("(not deployed)"),
        if view.converged { "" } else { " (converging)" }
    );
    if let Some(e) = &view.app.last_error {
        println!("last error: {e}");
    }
    if let Some(b) = &view.last_backup {
        let error = b
            .error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        println!("last backup: {}{error}", crate::cli::backup::state_text(b));
    }
    let rows: Vec<Vec<String>> = view
        .instances
        .iter()
        .map(|i| {
            vec![
                i.proc.clone(),
                i.instance.to_string(),
                match &i.failed {
                    Some(how) => format!("failed ({how})"),
                    None => state_text(&i.state),
                },
                match i.health {
                    Health::None => "-".into(),
                    h => format!("{h:?}").to_lowercase(),
                },
                i.release.clone(),
                i.node.clone(),
                format!("{}M", i.memory >> 20),
                i.restarts.to_string(),
                i.url.clone().unwrap_or_default(),
                i.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ]
        })
        .collect();
    table(
        &[
            "PROC", "#", "STATE", "HEALTH", "RELEASE", "NODE", "MEMORY", "RESTARTS", "URL",
            "LABELS",
        ],
        &rows,
    );
    crate::cli::runs::print_scheduled(view);
    for p in view.procs.iter().filter(|p| !p.stream_ports.is_empty()) {
        println!(
            "stream ports of {}: {} (lain router streams)",
            p.name,
            p.stream_ports.join(", ")
        );
    }
}

fn state_text(state: &RunState) -> String {
    match state {
        RunState::Created => "created".into(),
        RunState::Running { pid, .. } => match pid {
            Some(pid) => format!("running (pid {pid})"),
            None => "running".into(),
        },
        RunState::Exited { code: Some(c), .. } => format!("exited ({c})"),
        RunState::Exited {
            signal: Some(s), ..
        } => format!("killed (signal {s})"),
        RunState::Exited { .. } => "exited".into(),
    }
}

/// `lain logs PROC [-f] [--access | --file NAME]`; `what` is the query naming the log
/// (`access=...` or `file=...`, encoded).
pub fn logs(
    client: &Client,
    app: &str,
    proc: &str,
    follow: bool,
    tail: u64,
    what: &str,
) -> anyhow::Result<()> {
    let stream = client.get_stream(&format!(
        "/api/v1/apps/{app}/procs/{proc}/logs?follow={follow}&tail={tail}&{what}"
    ))?;
    let stdout = std::io::stdout();
    for line in stream.lines() {
        let line = line.context("reading logs")?;
        let mut out = stdout.lock();
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// `lain app list`.
pub fn list(client: &Client, output: Output) -> anyhow::Result<()> {
    let apps: Vec<serde_json::Value> = client.get("/api/v1/apps")?;
    print(output, &apps, |apps| {
        let rows: Vec<Vec<String>> = apps
            .iter()
            .map(|a| {
                vec![
                    a["name"].as_str().unwrap_or("").into(),
                    a["release"].as_str().unwrap_or("-").into(),
                    a["instances"].to_string(),
                    if a["converged"] == true { "yes" } else { "no" }.into(),
                    serde_json::from_value::<crate::backup::BackupState>(a["last_backup"].clone())
                        .map_or_else(|_| "-".into(), |b| crate::cli::backup::state_text(&b)),
                    a["last_error"].as_str().unwrap_or("").into(),
                ]
            })
            .collect();
        table(
            &[
                "APP",
                "RELEASE",
                "INSTANCES",
                "CONVERGED",
                "BACKUP",
                "LAST ERROR",
            ],
            &rows,
        );
    })
}

/// The directory argument of `build`, `deploy` and `up`.
pub fn dir_arg(path: Option<PathBuf>) -> PathBuf {
    path.unwrap_or_else(|| PathBuf::from("."))
}

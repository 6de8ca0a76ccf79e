//! `lain up [PATH]`: the main job on the embedded default. Starts a kernel (embedded store,
//! process runtime) with its data in `PATH/.lain`, builds and deploys the app in PATH, prints
//! each web proc's URL, reports changes while it serves, and on Ctrl-C stops the app's instances
//! and the kernel.

use super::Output;
use super::app::{self, WaitArgs};
use super::client::Client;
use super::serve::{LogFormat, Running, init_tracing, shutdown};
use crate::config::KernelConfig;
use crate::lifecycle::view::AppView;
use anyhow::Context;
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;

/// Options of `lain up`.
#[derive(Args)]
pub struct UpArgs {
    /// The app's directory (with its lain.yaml).
    path: Option<PathBuf>,
    /// Where the kernel keeps its state; default `PATH/.lain`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address of the platform API.
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Configuration file (TOML).
    #[arg(long, env = "LAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Seconds to wait for the app to run.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

/// Runs `lain up`.
pub fn run(args: UpArgs, output: Output) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text, "warn");
    let dir = app::dir_arg(args.path);
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no app directory {}", dir.display()))?;
    let appname = app::appname(&dir)?;
    let mut config = match &args.config {
        Some(path) => KernelConfig::load(path)?,
        None => KernelConfig::default(),
    };
    if args.config.is_none() {
        // `*.localhost` names reach this machine in browsers and curl, so the web procs' default
        // mountpoints (`<app>.localhost`) work without any DNS set-up.
        config.domains = vec!["localhost".into()];
    }
    config.apply_env()?;
    config.data_dir = args.data_dir.unwrap_or_else(|| dir.join(".lain"));
    config.listen = args.listen;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let kernel = Running::start(config).await?;
        let url = kernel.url();
        eprintln!(
            "==> lain kernel at {url} (data dir {})",
            kernel.kernel.config.data_dir.display()
        );
        let client_url = url.clone();
        // `lain up` is the local bootstrap's user: it holds the kernel's admin token.
        let token = kernel
            .kernel
            .access
            .bootstrap_file()
            .and_then(|f| std::fs::read_to_string(f).ok());
        let timeout = args.timeout;
        let work = tokio::task::spawn_blocking(move || {
            let client = Client::new(&client_url, token);
            let release = app::build(&client, &dir, Output::Table)?;
            let wait = WaitArgs {
                no_wait: false,
                timeout,
            };
            let view: AppView = client.send(
                "POST",
                &format!("/api/v1/apps/{}/deploy", release.app),
                Some(&serde_json::json!({ "release": release.version })),
            )?;
            app::wait_converged(
                &client,
                &view.app.name,
                view.release,
                wait.timeout,
                Output::Table,
            )
        });
        let outcome = tokio::select! {
            r = work => Some(r.context("the deploy task failed")?),
            () = shutdown() => None,
        };
        let result = match outcome {
            Some(Ok(view)) => {
                report(&view, output)?;
                kernel.router.refresh(&kernel.kernel.lifecycle);
                print_routes(&kernel, &view.app.name);
                eprintln!("==> {appname} is up; Ctrl-C stops it");
                tokio::select! {
                    () = shutdown() => {},
                    () = watch(&kernel, &appname) => {},
                }
                Ok(())
            }
            Some(Err(e)) => Err(e),
            None => Ok(()),
        };
        eprintln!("==> stopping");
        let lifecycle = kernel.kernel.lifecycle.clone();
        kernel.stop().await?;
        let stopped = lifecycle.stop_all().await?;
        eprintln!("==> stopped {stopped} instance(s); state kept in the data dir");
        result
    })
}

/// Prints the app and each web proc's URLs.
fn report(view: &AppView, output: Output) -> anyhow::Result<()> {
    if output == Output::Json {
        println!("{}", serde_json::to_string_pretty(view)?);
        return Ok(());
    }
    app::print_app(view);
    for proc in view.procs.iter().filter(|p| p.proc_type == "web") {
        for i in view.instances.iter().filter(|i| i.proc == proc.name) {
            if let Some(url) = &i.url {
                println!("{} (instance {}): {url}", proc.name, i.instance);
            }
        }
    }
    Ok(())
}

/// Prints the router URL of each web route of `app`.
fn print_routes(kernel: &Running, app: &str) {
    let port = kernel.router_addr.port();
    let https = kernel.router_https_addr.map(|a| a.port());
    let table = kernel.router.table();
    let mut urls: Vec<String> = table
        .hosts()
        .flat_map(|(host, routes)| {
            routes
                .iter()
                .filter(|r| r.target.starts_with(&format!("{app}/")))
                .map(move |r| match https {
                    Some(tls) if r.https_only => {
                        format!("{} -> https://{host}:{tls}{}", r.target, r.prefix)
                    }
                    _ => format!("{} -> http://{host}:{port}{}", r.target, r.prefix),
                })
        })
        .collect();
    urls.sort();
    for url in urls {
        println!("{url}");
    }
}

/// Reports changes of the app's state (crashes, restarts) while it serves.
async fn watch(kernel: &Running, app: &str) {
    let mut last = String::new();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let lc = kernel.kernel.lifecycle.clone();
        let Ok(record) = lc.app(app) else { continue };
        let view = lc.status().view(record);
        let line: Vec<String> = view
            .instances
            .iter()
            .map(|i| {
                format!(
                    "{}#{} {}",
                    i.proc,
                    i.instance,
                    if i.ready { "ready" } else { "not ready" }
                )
            })
            .collect();
        let line = line.join(", ");
        if !last.is_empty() && line != last {
            eprintln!("==> {line}");
        }
        last = line;
    }
}

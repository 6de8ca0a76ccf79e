//! `lain up [PATH]`: the main job on the embedded default. Starts a kernel (embedded store,
//! process runtime) with its data in `PATH/.lain`, builds and deploys the app in PATH, prints
//! each web proc's URL, reports changes while it serves, and on Ctrl-C stops the app's instances
//! and the kernel. `--plugin FILE.wasm` installs (or upgrades) plugins before the app is built, so
//! an app whose procs use a proc type of one's own comes up in the same command.

use super::Output;
use super::app::{self, WaitArgs};
use super::client::Client;
use super::serve::{LogFormat, Running, Shutdown, init_tracing};
use crate::config::KernelConfig;
use crate::lifecycle::view::AppView;
use crate::plugin::Manifest;
use crate::plugin::loaded::sha256_hex;
use crate::plugin::registry::PluginView;
use anyhow::{Context, bail};
use base64::Engine as _;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Options of `lain up`.
#[derive(Args)]
#[command(after_help = "Examples:
  lain up examples/hello
  lain up myapp --plugin target/wasm32-wasip2/release/lain_plugin_cron.wasm")]
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
    /// A plugin (`.wasm`) to install before the app is built, or to upgrade if a plugin of that
    /// name is installed (plugins are kept in the data dir) with other bytes or another version;
    /// repeatable. Its manifest is the
    /// one the SDK embedded, unless `FILE.toml` lies beside it.
    #[arg(long = "plugin", value_name = "FILE.wasm")]
    plugins: Vec<PathBuf>,
}

/// A plugin file read for `--plugin`, before the kernel starts.
struct Upload {
    /// The file, for messages.
    file: PathBuf,
    /// Plugin name, from its manifest.
    name: String,
    /// Plugin version, from its manifest.
    version: String,
    /// SHA-256 of the component, hex.
    sha256: String,
    /// The body of the install or upgrade request.
    body: serde_json::Value,
}

impl Upload {
    /// Reads `file` and its manifest (`FILE.toml` beside it, else the embedded one).
    fn read(file: &Path) -> anyhow::Result<Upload> {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let beside = file.with_extension("toml");
        let text = if beside.is_file() {
            Some(
                std::fs::read_to_string(&beside)
                    .with_context(|| format!("cannot read {}", beside.display()))?,
            )
        } else {
            None
        };
        let manifest = match &text {
            Some(t) => Manifest::parse(t).with_context(|| format!("{}", beside.display()))?,
            None => Manifest::embedded(&bytes)
                .with_context(|| format!("{}", file.display()))?
                .with_context(|| {
                    format!(
                        "{} has no manifest: build it with the SDK's export macro, or put one in {}",
                        file.display(),
                        beside.display()
                    )
                })?,
        };
        Ok(Upload {
            file: file.to_path_buf(),
            name: manifest.name,
            version: manifest.version,
            sha256: sha256_hex(&bytes),
            body: serde_json::json!({
                "component": base64::engine::general_purpose::STANDARD.encode(&bytes),
                "manifest": text,
            }),
        })
    }
}

/// Installs each plugin, or upgrades the installed one of its name when the bytes differ.
fn install_plugins(client: &Client, uploads: &[Upload]) -> anyhow::Result<()> {
    if uploads.is_empty() {
        return Ok(());
    }
    let installed: Vec<PluginView> = client.get("/api/v1/plugins")?;
    for up in uploads {
        let shown = up.file.display();
        let view: PluginView = match installed.iter().find(|p| p.name == up.name) {
            Some(p) if p.builtin => bail!(
                "{shown}: `{}` is the name of a built-in plugin; give the plugin another `name` in its manifest",
                up.name
            ),
            Some(p) if p.sha256 == up.sha256 && p.version == up.version => {
                eprintln!("==> plugin {} {}: already installed", p.name, p.version);
                continue;
            }
            Some(p) => {
                eprintln!("==> upgrading plugin {} {} from {shown}", p.name, p.version);
                client
                    .send(
                        "PUT",
                        &format!("/api/v1/plugins/{}", up.name),
                        Some(&up.body),
                    )
                    .with_context(|| format!("{shown}: cannot upgrade plugin {}", up.name))?
            }
            None => {
                eprintln!("==> installing plugin {} from {shown}", up.name);
                client
                    .send("POST", "/api/v1/plugins", Some(&up.body))
                    .with_context(|| format!("{shown}: cannot install plugin {}", up.name))?
            }
        };
        eprintln!(
            "==> plugin {} {} ({}) enabled",
            view.name, view.version, view.kind
        );
    }
    Ok(())
}

/// Runs `lain up`.
pub fn run(args: UpArgs, output: Output) -> anyhow::Result<()> {
    init_tracing(LogFormat::Text, "warn");
    let dir = app::dir_arg(args.path);
    let dir = dir
        .canonicalize()
        .with_context(|| format!("no app directory {}", dir.display()))?;
    let appname = app::appname(&dir)?;
    let uploads = args
        .plugins
        .iter()
        .map(|f| Upload::read(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
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
        // From here on a Ctrl-C is never lost, whatever `lain up` is doing when it comes.
        let mut shutdown = Shutdown::listen()?;
        let kernel = tokio::select! {
            kernel = Running::start(config) => kernel?,
            () = shutdown.wait() => return Ok(()),
        };
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
            install_plugins(&client, &uploads)?;
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
            () = shutdown.wait() => None,
        };
        let result = match outcome {
            Some(Ok(view)) => {
                report(&view, output)?;
                kernel.router.refresh(&kernel.kernel.lifecycle);
                print_routes(&kernel, &view.app.name);
                eprintln!("==> {appname} is up; Ctrl-C stops it");
                tokio::select! {
                    () = shutdown.wait() => {},
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

//! `lain serve`: run a kernel.

use crate::config::KernelConfig;
use crate::kernel::Kernel;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// Options of `lain serve`; each overrides the configuration file.
#[derive(Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); every key is optional.
    #[arg(long, env = "LAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Where the state store and caches live.
    #[arg(long, env = "LAIN_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the platform API, e.g. 127.0.0.1:7070.
    #[arg(long, env = "LAIN_LISTEN")]
    listen: Option<String>,
    /// Log format; the level comes from LAIN_LOG (e.g. `info`, `lain=debug`).
    #[arg(long, env = "LAIN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How logs are written to stderr.
#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the kernel until Ctrl-C or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format);
    let mut config = match &args.config {
        Some(path) => KernelConfig::load(path)?,
        None => KernelConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: KernelConfig) -> anyhow::Result<()> {
    let listen = config.listen.clone();
    let data_dir = config.data_dir.clone();
    let kernel =
        tokio::task::spawn_blocking(move || Kernel::open(config, lain_builtin_plugins::BUILTINS))
            .await??;
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    let state = kernel.app_state();
    let monitor = state.monitor.clone();
    tokio::spawn(async move {
        let mut tick = 0u64;
        let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            interval.tick().await;
            tick += 1;
            monitor.push_due(tick).await;
        }
    });
    tracing::info!(%addr, data_dir = %data_dir.display(), plugins = kernel.registry.list().len(), "kernel started");
    eprintln!(
        "lain kernel listening on http://{addr} (data dir {})",
        data_dir.display()
    );
    axum::serve(listener, crate::api::app(state))
        .with_graceful_shutdown(shutdown())
        .await
        .context("API server failed")?;
    tracing::info!("kernel stopped");
    Ok(())
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

//! `lain serve`: run a kernel.

use crate::config::KernelConfig;
use crate::kernel::Kernel;
use anyhow::Context;
use clap::{Args, ValueEnum};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::sync::Arc;

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
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Runs the kernel until Ctrl-C or SIGTERM. Instances keep running; the next start adopts them.
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(args.log_format, "info");
    let mut config = match &args.config {
        Some(path) => KernelConfig::load(path)?,
        None => KernelConfig::default(),
    };
    config.apply_env()?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut shutdown = Shutdown::listen()?;
        let kernel = Running::start(config).await?;
        let https = kernel
            .router_https_addr
            .map(|a| format!(" and https://{a}"))
            .unwrap_or_default();
        eprintln!(
            "lain kernel listening on {} (web router on http://{}{https}, data dir {})",
            kernel.url(),
            kernel.router_addr,
            kernel.kernel.config.data_dir.display()
        );
        match kernel.kernel.access.bootstrap_file() {
            Some(f) => eprintln!(
                "local bootstrap: the admin token is in {} (`lain` uses it with LAIN_DATA_DIR={}; see docs/permissions.md)",
                f.display(),
                kernel.kernel.config.data_dir.display()
            ),
            None => eprintln!("access: auth providers {:?} only (no local bootstrap)", kernel.kernel.config.auth.providers),
        }
        shutdown.wait().await;
        kernel.stop().await
    })
}

/// A kernel serving its API, with its reconciler running.
pub struct Running {
    /// The kernel.
    pub kernel: Arc<Kernel>,
    /// Where the API listens.
    pub addr: std::net::SocketAddr,
    /// Where the web router listens.
    pub router_addr: std::net::SocketAddr,
    /// Where the web router serves HTTPS, if it does.
    pub router_https_addr: Option<std::net::SocketAddr>,
    /// The web router.
    pub router: Arc<crate::router::WebRouter>,
    routing: crate::router::server::RouterServer,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The leader's loop runner, then (on etcd) the election.
    leadership: Vec<tokio::task::JoinHandle<()>>,
    stop: tokio::sync::oneshot::Sender<()>,
    /// Keeps the follower of the published instances running (see
    /// [`crate::lifecycle::published::follow`]).
    _published: Arc<()>,
}

impl Running {
    /// Opens the kernel (the process's files private from here on, see
    /// [`crate::kernel::private_files`]), binds its API and starts the reconciler and the
    /// exporters' pushes.
    pub async fn start(config: KernelConfig) -> anyhow::Result<Running> {
        crate::kernel::private_files();
        let listen = config.listen.clone();
        let kernel = tokio::task::spawn_blocking(move || {
            Kernel::open(config, lain_builtin_plugins::BUILTINS)
        })
        .await??;
        let kernel = Arc::new(kernel);
        let listener = tokio::net::TcpListener::bind(&listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let addr = listener.local_addr()?;
        let state = kernel.app_state();
        let monitor = state.monitor.clone();
        let pushes = tokio::spawn(async move {
            let mut tick = 0u64;
            let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                interval.tick().await;
                tick += 1;
                monitor.push_due(tick).await;
            }
        });
        // Before the leadership: the board starts from what the leader published, whoever leads.
        let published = Arc::new(());
        crate::lifecycle::published::follow(
            kernel.lifecycle.store_handle(),
            kernel.lifecycle.status().clone(),
            Arc::downgrade(&published),
        );
        let leadership = kernel.start_leadership().await?;
        let router = kernel.router.clone();
        let routing = crate::router::server::serve(router.clone(), router_listen(&kernel.config)?)?;
        let follow = tokio::spawn(router.clone().follow(kernel.lifecycle.clone()));
        let checks = tokio::spawn(router.clone().check_health());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            axum::serve(listener, crate::api::app(state))
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .into_future(),
        );
        tracing::info!(%addr, kernel = %kernel.cluster.kernel_id(), data_dir = %kernel.config.data_dir.display(), plugins = kernel.registry.list().len(), "kernel started");
        Ok(Running {
            kernel,
            addr,
            router_addr: routing.http,
            router_https_addr: routing.https,
            router,
            routing,
            server,
            tasks: vec![pushes, follow, checks],
            leadership,
            stop,
            _published: published,
        })
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the reconciler and the API (instances keep running).
    pub async fn stop(self) -> anyhow::Result<()> {
        // The election first (no new term), then the leader's loops, stopped and awaited.
        for task in self.leadership.iter().skip(1) {
            task.abort();
        }
        self.kernel.cluster.step_down("the kernel stops").await;
        #[cfg(feature = "etcd")]
        if self.kernel.config.store.backend == crate::store::Backend::Etcd {
            let settings = self.kernel.election_settings();
            let resign = crate::cluster::election::resign(&self.kernel.cluster, &settings);
            match tokio::time::timeout(settings.ttl, resign).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!("cannot hand the leadership over: {e:#}"),
                Err(_) => tracing::warn!("cannot hand the leadership over: etcd did not answer"),
            }
        }
        for task in self.tasks.iter().chain(&self.leadership) {
            task.abort();
        }
        let _ = self.stop.send(());
        let routing = self.routing;
        tokio::task::spawn_blocking(move || routing.stop()).await?;
        self.server.await?.context("API server failed")?;
        tracing::info!("kernel stopped");
        Ok(())
    }
}

/// The router's listeners as `[router]` configures them (certificates loaded and checked).
fn router_listen(config: &KernelConfig) -> anyhow::Result<crate::router::server::Listen> {
    let r = &config.router;
    let https = match (&r.https_listen, r.certificates.is_empty()) {
        (None, _) => None,
        (Some(address), false) => Some((
            address.clone(),
            crate::router::tls::server_config(&r.certificates)?,
        )),
        (Some(address), true) => anyhow::bail!(
            "router.https_listen = {address:?} needs at least one [[router.certificates]] entry"
        ),
    };
    Ok(crate::router::server::Listen {
        http: r.listen.clone(),
        https,
        workers: r.workers,
    })
}

/// Ctrl-C (SIGINT) and SIGTERM, listened to from [`Shutdown::listen`] on.
///
/// One listener serves a command's whole life: a signal that arrives while nothing awaits it
/// (between two `select!`s, say) is kept and ends the next [`Shutdown::wait`]. A fresh
/// `tokio::signal::ctrl_c()` per wait would miss it, and with tokio's handler installed for good
/// the process would then ignore that Ctrl-C altogether.
pub struct Shutdown {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    /// Starts listening (needs a tokio runtime with I/O enabled).
    pub fn listen() -> std::io::Result<Shutdown> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Shutdown {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for a signal received since [`Shutdown::listen`] and not yet waited for.
    pub async fn wait(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {},
            _ = self.terminate.recv() => {},
        }
    }
}

/// Logs to stderr; the level comes from `LAIN_LOG`, else `default`.
pub fn init_tracing(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LAIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::Shutdown;
    use rustix::process::{Signal, getpid, kill_process};
    use std::time::Duration;

    /// Whether `shutdown` ends within `within`.
    async fn ends(shutdown: &mut Shutdown, within: Duration) -> bool {
        tokio::time::timeout(within, shutdown.wait()).await.is_ok()
    }

    #[tokio::test]
    async fn a_signal_that_comes_while_nothing_waits_is_kept_for_the_next_wait() {
        let mut shutdown = Shutdown::listen().expect("listen");
        kill_process(getpid(), Signal::TERM).expect("SIGTERM");
        assert!(ends(&mut shutdown, Duration::from_secs(10)).await);
        // Received, and not waited for yet: `lain up` between its deploy and its serving loop.
        kill_process(getpid(), Signal::INT).expect("SIGINT");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(ends(&mut shutdown, Duration::from_secs(10)).await);
        // Each signal ends one wait.
        assert!(!ends(&mut shutdown, Duration::from_millis(200)).await);
    }
}

//! The `lain` command line: `lain serve` runs a kernel; the other commands talk to one over the
//! platform API (found with `--kernel URL` or `LAIN_KERNEL`), with the credentials
//! [`credentials`] finds.

mod access;
mod app;
mod backup;
mod client;
mod credentials;
mod node;
mod output;
mod plugin;
mod procs;
mod router;
mod runs;
mod scheduler;
mod secret;
mod serve;
mod terminal;
mod up;
pub mod validate;
mod volume;
mod watch;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// lain: a PaaS whose site-specific behaviour lives in sandboxed WebAssembly plugins.
#[derive(Parser)]
#[command(name = "lain", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// URL of the kernel's platform API.
    #[arg(
        long,
        global = true,
        env = "LAIN_KERNEL",
        default_value = "http://127.0.0.1:7070"
    )]
    kernel: String,
    /// Bearer token; default: the one `lain login` stored for the kernel, else the local
    /// bootstrap token in $LAIN_DATA_DIR (or .lain-data).
    #[arg(long, global = true, env = "LAIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format: `table` for people, `json` for scripts.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns and key: value lines.
    Table,
    /// One JSON document on stdout.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run an app on this machine: start a kernel (embedded store, process runtime), build and
    /// deploy the app in PATH, print its URLs; Ctrl-C stops it.
    Up(up::UpArgs),
    /// Run a kernel: the platform API, the reconciler, the plugin host and the state store.
    Serve(serve::ServeArgs),
    /// Build a release of the app in PATH (default `.`) on the kernel, printing its progress.
    Build {
        /// The app's directory (with its lain.yaml).
        path: Option<PathBuf>,
    },
    /// Deploy a release (default: the newest) and wait until it runs; with `-p PROC`, deploy
    /// that proc alone from the deployed release (bringing it back after `undeploy -p`). An app
    /// that uses resources deploys their instances `resource.<res>.<app>` first; `-a
    /// resource.<res>.<app>` renders that instance again from the resource's newest release.
    Deploy {
        #[command(flatten)]
        app: app::AppArg,
        /// Release version; default the newest (with `-p`: the deployed one).
        #[arg(long)]
        release: Option<String>,
        /// Deploy only this proc; the others are left as they are.
        #[arg(long, short)]
        proc: Option<String>,
        #[command(flatten)]
        wait: app::WaitArgs,
    },
    /// Change a proc's instances, memory or cpu (kept across deploys; memory and cpu apply in
    /// place).
    Scale {
        /// Proc name (`web`, `worker`, ...).
        proc: String,
        #[command(flatten)]
        app: app::AppArg,
        /// Instances.
        #[arg(long)]
        num_instances: Option<u32>,
        /// Memory per instance, e.g. `64M`.
        #[arg(long)]
        memory: Option<String>,
        /// CPU per instance, milli-cores.
        #[arg(long)]
        cpu: Option<u32>,
        #[command(flatten)]
        wait: app::WaitArgs,
    },
    /// Show the runs of an app's scheduled procs (start, end, exit status, outcome) or one
    /// run's log.
    Runs(runs::RunsArgs),
    /// Run a command in a running instance of a proc (`lain exec web -- env`) and exit with
    /// its exit status.
    Exec(procs::ExecArgs),
    /// Restart a proc's instances (or one, `-i N`), one instance number at a time, and wait
    /// until the new ones are ready.
    Restart(procs::RestartArgs),
    /// Show an app's instances: state, health, release, node, URL. With `-w`, keep showing
    /// them as they change (through `GET /api/v1/watch`; with `--output json`, one JSON event a
    /// line), reconnecting from the last event seen until interrupted.
    Ps {
        #[command(flatten)]
        app: app::AppArg,
        /// Follow changes instead of printing once.
        #[arg(long, short)]
        watch: bool,
    },
    /// Print a proc's logs (every instance, prefixed `[n]`).
    Logs {
        /// Proc name.
        proc: String,
        #[command(flatten)]
        app: app::AppArg,
        /// Keep printing new lines.
        #[arg(long, short)]
        follow: bool,
        /// Bytes of each instance's log to print first.
        #[arg(long, default_value_t = 65536)]
        tail: u64,
        /// Print the web router's access log of the proc instead.
        #[arg(long, conflicts_with = "file")]
        access: bool,
        /// Print a log file the proc declares (`logs`, relative to /lain/logs), collected from
        /// each instance, instead of its output.
        #[arg(long, value_name = "NAME")]
        file: Option<String>,
    },
    /// Go back to the previous deployment and wait until it runs.
    Rollback {
        #[command(flatten)]
        app: app::AppArg,
        #[command(flatten)]
        wait: app::WaitArgs,
    },
    /// Stop every instance of an app (releases and history stay); with `-p PROC`, only that
    /// proc's (the next deploy of the whole app runs it again).
    Undeploy {
        #[command(flatten)]
        app: app::AppArg,
        /// Undeploy only this proc; the others are left as they are.
        #[arg(long, short)]
        proc: Option<String>,
        #[command(flatten)]
        wait: app::WaitArgs,
    },
    /// Apps known to the kernel.
    #[command(subcommand)]
    App(app::AppCommand),
    /// Nodes instances are scheduled on.
    #[command(subcommand)]
    Node(node::NodeCommand),
    /// Volumes of instances: where they live, how large they are, moving them to another node.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// The scheduling pipeline (members, order, weights), changed live; instances that no
    /// longer fit it, and moving them.
    #[command(subcommand)]
    Scheduler(scheduler::SchedulerCommand),
    /// The web router: route claims (which app each host and path belongs to), nginx export.
    #[command(subcommand)]
    Router(router::RouterCommand),
    /// Manage WebAssembly plugins (proc types, scheduling, backup hooks, exporters, auth).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Secret files of an app's procs, encrypted at rest and placed into instances.
    #[command(subcommand)]
    Secret(secret::SecretCommand),
    /// Volume backups: list, run now, restore (verified), delete (maintainers).
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Store a token for the kernel in your config file (0600), after checking it; reads the
    /// token from standard input unless --token-file.
    Login(access::LoginArgs),
    /// Forget the token stored for the kernel.
    Logout,
    /// Who the kernel takes you for.
    Whoami,
    /// This kernel's id, the cluster's, and which kernel leads (`role`, `leader`).
    Status,
    /// An app's maintainers: who may read and operate it and manage its secrets.
    #[command(subcommand)]
    Maintainer(access::MaintainerCommand),
    /// The audit log: who changed what, when, with which result (cluster admins).
    Audit(access::AuditArgs),
    /// Check a lain.yaml offline: every problem with file, line, column and a hint; exit 1 on error.
    Validate(validate::ValidateArgs),
}

/// Runs the command line; the exit code is 0 on success, 1 on any error (printed to stderr).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = client::Client::new(
        &cli.kernel,
        credentials::token_for(cli.token.clone(), &cli.kernel),
    );
    let out = cli.output;
    let result = match cli.command {
        Command::Up(args) => up::run(args, out),
        Command::Serve(args) => serve::run(args),
        Command::Build { path } => app::build(&client, &app::dir_arg(path), out).map(drop),
        Command::Deploy {
            app: a,
            release,
            proc: None,
            wait,
        } => a
            .resolve()
            .and_then(|name| app::deploy(&client, &name, release.as_deref(), &wait, out))
            .map(drop),
        Command::Deploy {
            app: a,
            release,
            proc: Some(proc),
            wait,
        } => (|| {
            let view = client.send(
                "POST",
                &format!(
                    "/api/v1/apps/{}/procs/{}/deploy",
                    a.resolve()?,
                    encode(&proc)
                ),
                Some(&serde_json::json!({ "release": release })),
            )?;
            app::finish(&client, view, &wait, out).map(drop)
        })(),
        Command::Exec(args) => {
            return match procs::exec(&client, &args, out) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Restart(args) => procs::restart(&client, &args, out),
        Command::Scale {
            proc,
            app: a,
            num_instances,
            memory,
            cpu,
            wait,
        } => (|| {
            let name = a.resolve()?;
            let memory = memory
                .map(|m| {
                    crate::spec::parse_memory(&m).map_err(|e| anyhow::anyhow!("--memory: {e}"))
                })
                .transpose()?;
            let body =
                serde_json::json!({ "num_instances": num_instances, "memory": memory, "cpu": cpu });
            let view = client.send(
                "PATCH",
                &format!("/api/v1/apps/{name}/procs/{proc}"),
                Some(&body),
            )?;
            app::finish(&client, view, &wait, out).map(drop)
        })(),
        Command::Runs(args) => runs::run(&client, &args, out),
        Command::Ps {
            app: a,
            watch: true,
        } => a
            .resolve()
            .and_then(|name| watch::follow(&client, &name, out)),
        Command::Ps {
            app: a,
            watch: false,
        } => (|| {
            let view: crate::lifecycle::view::AppView =
                client.get(&format!("/api/v1/apps/{}", a.resolve()?))?;
            output::print(out, &view, app::print_app)
        })(),
        Command::Logs {
            proc,
            app: a,
            follow,
            tail,
            access,
            file,
        } => a.resolve().and_then(|name| {
            let what = match &file {
                Some(file) => format!("file={}", encode(file)),
                None => format!("access={access}"),
            };
            app::logs(&client, &name, &proc, follow, tail, &what)
        }),
        Command::Rollback { app: a, wait } => (|| {
            let view = client.send::<(), _>(
                "POST",
                &format!("/api/v1/apps/{}/rollback", a.resolve()?),
                None,
            )?;
            app::finish(&client, view, &wait, out).map(drop)
        })(),
        Command::Undeploy { app: a, proc, wait } => (|| {
            let path = match &proc {
                Some(proc) => format!("/api/v1/apps/{}/procs/{}", a.resolve()?, encode(proc)),
                None => format!("/api/v1/apps/{}", a.resolve()?),
            };
            let view = client.send::<(), _>("DELETE", &path, None)?;
            app::finish(&client, view, &wait, out).map(drop)
        })(),
        Command::App(app::AppCommand::List) => app::list(&client, out),
        Command::App(app::AppCommand::Show(a)) => (|| {
            let view: crate::lifecycle::view::AppView =
                client.get(&format!("/api/v1/apps/{}", a.resolve()?))?;
            output::print(out, &view, app::print_app)
        })(),
        Command::Node(cmd) => node::run(cmd, &client, out),
        Command::Volume(cmd) => volume::run(cmd, &client, out),
        Command::Router(cmd) => router::run(cmd, &client, out),
        Command::Scheduler(cmd) => scheduler::run(cmd, &client, out),
        Command::Plugin(cmd) => plugin::run(cmd, &client, out),
        Command::Validate(args) => validate::run(args, out),
        Command::Secret(cmd) => secret::run(cmd, &client, out),
        Command::Backup(cmd) => backup::run(cmd, &client, out),
        Command::Login(args) => access::login(&cli.kernel, args, out),
        Command::Logout => access::logout(&cli.kernel),
        Command::Whoami => access::whoami(&client, out),
        Command::Status => access::status(&client, out),
        Command::Maintainer(cmd) => access::maintainer(cmd, &client, out),
        Command::Audit(args) => access::audit(args, &client, out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Percent-encodes `s` for a URL path segment or query value (RFC 3986 unreserved kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

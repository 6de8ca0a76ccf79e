//! The `lain` command line: `lain serve` runs a kernel; the other commands talk to one over the
//! platform API (found with `--kernel URL` or `LAIN_KERNEL`).

mod client;
mod output;
mod plugin;
mod serve;
mod validate;

use clap::{Parser, Subcommand, ValueEnum};
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
    /// Run a kernel: the platform API, the plugin host and the state store.
    Serve(serve::ServeArgs),
    /// Manage WebAssembly plugins (proc types, scheduling, backup hooks, exporters, auth).
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Check a lain.yaml offline: every problem with file, line, column and a hint; exit 1 on error.
    Validate(validate::ValidateArgs),
}

/// Runs the command line; the exit code is 0 on success, 1 on any error (printed to stderr).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Plugin(cmd) => plugin::run(cmd, &client::Client::new(&cli.kernel), cli.output),
        Command::Validate(args) => validate::run(args, cli.output),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

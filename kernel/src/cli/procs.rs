//! Commands on one proc: `lain exec` (a command in an instance) and `lain restart`; `lain
//! deploy -p` and `lain undeploy -p` are in `mod.rs` beside the whole-app ones.

use super::Output;
use super::app::{AppArg, WaitArgs, finish};
use super::client::Client;
use super::output::print;
use crate::api::procs::ExecResult;
use clap::Args;
use serde_json::json;
use std::io::Write as _;
use std::process::ExitCode;

/// `lain exec`.
#[derive(Args)]
#[command(after_help = "\
The command runs as the instance runs: its user, environment, /lain/app and volumes. It gets no \
terminal and no input; its output (the last 16 KiB of stdout, then of stderr) is printed once it \
ends, and its exit status is lain's. A command killed at its timeout exits lain with 124, one \
killed by a signal with 137. An interactive terminal (-t/-i) is not available.

Examples:
  lain exec web -- env
  lain exec worker -a myapp -i 2 -- sh -c 'ls -l /lain/app/data'")]
pub struct ExecArgs {
    /// Proc name (`web`, `worker`, ...).
    pub proc: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Instance number; default the lowest-numbered running instance.
    #[arg(long, short)]
    pub instance: Option<u32>,
    /// Seconds before the command is killed (at most 3600).
    #[arg(long, default_value_t = crate::api::procs::EXEC_TIMEOUT_DEFAULT)]
    pub timeout: u64,
    /// The command and its arguments, after `--` (no shell: give `sh -c '...'` for one).
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

/// `lain restart`.
#[derive(Args)]
#[command(after_help = "\
Each instance is replaced by a new one, one instance number at a time: the next once the new \
one is ready, so a proc with several instances keeps serving. Procs with volumes (or `stateful`) \
are stopped first and started again on their node, as in an upgrade.")]
pub struct RestartArgs {
    /// Proc name.
    pub proc: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Restart only this instance number.
    #[arg(long, short)]
    pub instance: Option<u32>,
    #[command(flatten)]
    pub wait: WaitArgs,
}

/// Runs `lain exec`; the exit code is the command's.
pub fn exec(client: &Client, args: &ExecArgs, output: Output) -> anyhow::Result<ExitCode> {
    let app = args.app.resolve()?;
    let result: ExecResult = client.post_slow(
        &format!(
            "/api/v1/apps/{app}/procs/{}/exec",
            super::encode(&args.proc)
        ),
        &json!({
            "command": args.command,
            "instance": args.instance,
            "timeout": args.timeout,
        }),
    )?;
    let code = match (result.code, result.timed_out) {
        (_, true) => 124,
        (Some(code), false) => u8::try_from(code).unwrap_or(1),
        (None, false) => 137,
    };
    if output == Output::Json {
        print(output, &result, |_| {})?;
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(result.output.as_bytes())?;
        stdout.flush()?;
        if result.timed_out {
            eprintln!(
                "error: the command was killed after {}s in instance {} ({})",
                args.timeout, result.instance, result.name
            );
        } else if result.code.is_none() {
            eprintln!(
                "error: the command was killed by a signal in instance {} ({})",
                result.instance, result.name
            );
        }
    }
    Ok(ExitCode::from(code))
}

/// Runs `lain restart`, then waits for the new instances unless told not to.
pub fn restart(client: &Client, args: &RestartArgs, output: Output) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    let view = client.send(
        "POST",
        &format!(
            "/api/v1/apps/{app}/procs/{}/restart",
            super::encode(&args.proc)
        ),
        Some(&json!({ "instance": args.instance })),
    )?;
    finish(client, view, &args.wait, output).map(drop)
}

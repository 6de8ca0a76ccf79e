//! Commands on one proc: `lain exec` (a command in an instance) and `lain restart`; `lain
//! deploy -p` and `lain undeploy -p` are in `mod.rs` beside the whole-app ones.

use super::Output;
use super::app::{AppArg, WaitArgs, finish};
use super::client::Client;
use super::output::print;
use crate::api::procs::ExecEvent;
use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;
use std::io::{BufRead as _, Write as _};
use std::process::ExitCode;

/// `lain exec`.
#[derive(Args)]
#[command(after_help = "\
The command runs as the instance runs: its user, environment, /lain/app and volumes. Without -t \
it gets no terminal and no input; its output is printed as it is written (stdout to stdout, \
stderr to stderr; with -o json, the end of each in one document once it ends). With -t it runs \
on a terminal of your window's size, with your keys as its input (Ctrl-C reaches it; resizes \
follow), until it exits: lain's own terminal must be one. Its exit status is lain's; a command \
killed at its timeout exits lain with 124, one killed by a signal with 137.

Examples:
  lain exec web -- env
  lain exec worker -a myapp -i 2 -- sh -c 'ls -l /lain/app/data'
  lain exec -t web -- sh")]
pub struct ExecArgs {
    /// Proc name (`web`, `worker`, ...).
    pub proc: String,
    #[command(flatten)]
    pub app: AppArg,
    /// Instance number; default the lowest-numbered running instance.
    #[arg(long, short)]
    pub instance: Option<u32>,
    /// Run it on a terminal, with this terminal's input (an interactive shell: `-t -- sh`).
    #[arg(long, short)]
    pub tty: bool,
    /// Seconds before the command is killed (at most 3600; default 60, or 3600 with -t).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// The command and its arguments, after `--` (no shell: give `sh -c '...'` for one).
    #[arg(last = true, required = true, num_args = 1..)]
    pub command: Vec<String>,
}

impl ExecArgs {
    /// The timeout asked for, or the default for the kind of exec.
    pub fn timeout(&self) -> u64 {
        self.timeout.unwrap_or(if self.tty {
            crate::api::procs::EXEC_TIMEOUT_MAX
        } else {
            crate::api::procs::EXEC_TIMEOUT_DEFAULT
        })
    }
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

/// What `lain exec -o json` prints once the command ended.
#[derive(serde::Serialize)]
struct ExecSummary {
    name: String,
    instance: u32,
    code: Option<i32>,
    timed_out: bool,
    /// The end of its standard output (at most [`JSON_OUTPUT_MAX`] bytes, invalid UTF-8
    /// replaced).
    stdout: String,
    /// The end of its standard error, likewise.
    stderr: String,
}

/// Bytes of each output stream `lain exec -o json` keeps (the end).
const JSON_OUTPUT_MAX: usize = 1 << 20;

/// Runs `lain exec`, printing the command's output as it comes; the exit code is the command's.
pub fn exec(client: &Client, args: &ExecArgs, output: Output) -> anyhow::Result<ExitCode> {
    use base64::Engine as _;
    if args.tty {
        if output == Output::Json {
            bail!("-t shows the command on your terminal: -o json is not available with it");
        }
        return super::terminal::exec_tty(client, args);
    }
    let app = args.app.resolve()?;
    let body = serde_json::to_vec(&json!({
        "command": args.command,
        "instance": args.instance,
        "timeout": args.timeout(),
    }))?;
    let stream = client.post_stream(
        &format!(
            "/api/v1/apps/{app}/procs/{}/exec",
            super::encode(&args.proc)
        ),
        "application/json",
        &[],
        &body,
    )?;
    let mut summary = ExecSummary {
        name: String::new(),
        instance: 0,
        code: None,
        timed_out: false,
        stdout: String::new(),
        stderr: String::new(),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let keep = |kept: &mut Vec<u8>, bytes: &[u8]| {
        kept.extend_from_slice(bytes);
        if kept.len() > JSON_OUTPUT_MAX {
            kept.drain(..kept.len() - JSON_OUTPUT_MAX);
        }
    };
    let mut ended = false;
    for line in stream.lines() {
        let line = line.context("reading the command's output")?;
        let event: ExecEvent = serde_json::from_str(&line)
            .with_context(|| format!("the kernel sent something unexpected: {line}"))?;
        let decode = |data: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .with_context(|| format!("the kernel sent output that is not base64: {data}"))
        };
        match event {
            ExecEvent::Started { name, instance } => {
                summary.name = name;
                summary.instance = instance;
            }
            ExecEvent::Stdout { data } if output == Output::Json => keep(&mut out, &decode(&data)?),
            ExecEvent::Stderr { data } if output == Output::Json => keep(&mut err, &decode(&data)?),
            ExecEvent::Stdout { data } => {
                let mut stdout = std::io::stdout().lock();
                stdout.write_all(&decode(&data)?)?;
                stdout.flush()?;
            }
            ExecEvent::Stderr { data } => {
                let mut stderr = std::io::stderr().lock();
                stderr.write_all(&decode(&data)?)?;
                stderr.flush()?;
            }
            ExecEvent::Exited { code, timed_out } => {
                summary.code = code;
                summary.timed_out = timed_out;
                ended = true;
                break;
            }
            ExecEvent::Failed { message } => bail!("{message}"),
        }
    }
    if !ended {
        bail!("the kernel ended the command's output without its exit status");
    }
    if output == Output::Json {
        summary.stdout = String::from_utf8_lossy(&out).into_owned();
        summary.stderr = String::from_utf8_lossy(&err).into_owned();
        print(output, &summary, |_| {})?;
    } else {
        return Ok(say_how_it_ended(
            &summary.name,
            summary.instance,
            args.timeout(),
            summary.code,
            summary.timed_out,
        ));
    }
    Ok(exit_code(summary.code, summary.timed_out))
}

/// lain's exit code for a command that ended so: its own status, 124 when it was killed at
/// its timeout, 137 when a signal killed it.
fn exit_code(code: Option<i32>, timed_out: bool) -> ExitCode {
    ExitCode::from(match (code, timed_out) {
        (_, true) => 124,
        (Some(code), false) => u8::try_from(code).unwrap_or(1),
        (None, false) => 137,
    })
}

/// Says on stderr how a command was killed (if it was), and returns lain's exit code.
pub(super) fn say_how_it_ended(
    name: &str,
    instance: u32,
    timeout: u64,
    code: Option<i32>,
    timed_out: bool,
) -> ExitCode {
    if timed_out {
        eprintln!("error: the command was killed after {timeout}s in instance {instance} ({name})");
    } else if code.is_none() {
        eprintln!("error: the command was killed by a signal in instance {instance} ({name})");
    }
    exit_code(code, timed_out)
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

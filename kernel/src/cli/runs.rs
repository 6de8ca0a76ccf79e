//! `lain runs`: the history of an app's scheduled procs, and the log of one run.

use super::Output;
use super::client::Client;
use super::output::{print, table};
use crate::lifecycle::runs::{Outcome, RunRecord};
use std::io::Write;

/// Arguments of `lain runs`.
#[derive(clap::Args)]
#[command(
    after_help = "Each tick of a scheduled proc is a run (or an entry saying why none \
started: skipped under `concurrency: forbid`, missed while the kernel was down). \
Examples:\n  lain runs -a myapp\n  lain runs -a myapp -p tick --output json\n  lain runs -a myapp -p tick --log 12"
)]
pub struct RunsArgs {
    #[command(flatten)]
    app: super::app::AppArg,
    /// Only the runs of this proc (needed with `--log`).
    #[arg(long, short)]
    proc: Option<String>,
    /// Print the log of this run instead (its last MiB).
    #[arg(long, value_name = "RUN_ID", requires = "proc")]
    log: Option<u32>,
}

/// Runs `lain runs`.
pub fn run(client: &Client, args: &RunsArgs, output: Output) -> anyhow::Result<()> {
    let app = args.app.resolve()?;
    if let (Some(id), Some(proc)) = (args.log, &args.proc) {
        let bytes = client.get_bytes(&format!("/api/v1/apps/{app}/procs/{proc}/runs/{id}/log"))?;
        std::io::stdout().write_all(&bytes)?;
        return Ok(());
    }
    let path = match &args.proc {
        Some(p) => format!("/api/v1/apps/{app}/runs?proc={p}"),
        None => format!("/api/v1/apps/{app}/runs"),
    };
    let runs: Vec<RunRecord> = client.get(&path)?;
    print(output, &runs, |runs| {
        let rows: Vec<Vec<String>> = runs.iter().map(row).collect();
        table(
            &[
                "PROC",
                "RUN",
                "SCHEDULED",
                "STARTED",
                "ENDED",
                "EXIT",
                "ATTEMPTS",
                "OUTCOME",
                "NOTE",
            ],
            &rows,
        );
    })
}

fn row(r: &RunRecord) -> Vec<String> {
    let time = |t: Option<i64>| {
        t.and_then(|t| jiff::Timestamp::from_second(t).ok())
            .map_or_else(
                || "-".to_string(),
                |t| t.strftime("%Y-%m-%d %H:%M:%S").to_string(),
            )
    };
    let outcome = match r.outcome {
        Outcome::Missed => format!("missed ({})", r.missed),
        o => o.name().to_string(),
    };
    vec![
        r.proc.clone(),
        r.id.to_string(),
        time(Some(r.scheduled_at)),
        time(r.started_at),
        time(r.ended_at),
        r.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
        r.attempts.to_string(),
        outcome,
        r.note.clone(),
    ]
}

/// The scheduled procs of `view` as `lain ps` shows them: schedule, next tick, last run.
pub fn print_scheduled(view: &crate::lifecycle::view::AppView) {
    for p in &view.procs {
        let Some(s) = &p.schedule else {
            continue;
        };
        let time = |t: i64| {
            jiff::Timestamp::from_second(t).map_or_else(
                |_| t.to_string(),
                |t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
            )
        };
        let next = s.next_tick.map_or_else(|| "never".to_string(), time);
        let last = s.last.as_ref().map_or_else(
            || "none yet".to_string(),
            |r| match r.exit_code {
                Some(code) => format!("run {} {} (exit {code})", r.id, r.outcome.name()),
                None => format!("run {} {}", r.id, r.outcome.name()),
            },
        );
        println!(
            "{} scheduled `{}` ({}): next tick {next}, {} running, last: {last} (lain runs -p {})",
            p.name, s.cron, s.timezone, s.running, p.name
        );
    }
}

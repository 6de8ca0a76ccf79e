//! Scheduled procs: their runs and the history of runs.
//!
//! A proc whose plan has a `schedule` has no instances between runs. On each tick (computed by
//! [`crate::cron::Schedule`]) the reconciler starts a run ([`ticker`]): an instance whose number
//! is the run's id, run to completion under the plan's restart rule, with `LAIN_RUN_ID` and
//! `LAIN_SCHEDULED_AT` in its environment and its own log file (`<logs>/<app>/<proc>/<id>.log`).
//! Every run, and every tick that did not start one (skipped under `forbid`, missed while the
//! kernel was down), is a [`RunRecord`] in the store; the last `history` records of a proc are
//! kept, older ones are deleted with their logs.
//!
//! | key | value |
//! |---|---|
//! | `runs/<app>/<proc>/<id, 10 digits>` | [`RunRecord`] |
//! | `run-state/<app>/<proc>` | [`TickState`]: the last tick considered, the next run id |
//!
//! The run records are what survives a kernel restart: a run still `running` in the store is
//! the instance of that number, adopted by the next kernel and recorded when it ends; the last
//! tick considered tells which ticks fell while the kernel was down.

#[cfg(test)]
mod tests;
pub mod ticker;

use super::{Lifecycle, LifecycleError};
use crate::store::{Store, StoreError, get_json};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Prefix of run records.
pub const RUNS: &str = "runs/";
/// Prefix of tick states.
pub const RUN_STATE: &str = "run-state/";

/// Key of run `id` of proc `proc` of `app`.
pub fn run_key(app: &str, proc: &str, id: u32) -> String {
    format!("{RUNS}{app}/{proc}/{id:010}")
}

/// Key of the tick state of proc `proc` of `app`.
pub fn state_key(app: &str, proc: &str) -> String {
    format!("{RUN_STATE}{app}/{proc}")
}

/// How a run ended, or why a tick started none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Started and not ended yet.
    Running,
    /// Ended with exit status 0.
    Succeeded,
    /// Ended otherwise, after the retries its restart rule allows.
    Failed,
    /// Stopped because the next tick replaced it (`concurrency: replace`).
    Replaced,
    /// Not started: the previous run still ran (`concurrency: forbid`).
    Skipped,
    /// Ticks that fell while the kernel was down (or while a pass was late), counted in `missed`.
    Missed,
}

impl Outcome {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Replaced => "replaced",
            Outcome::Skipped => "skipped",
            Outcome::Missed => "missed",
        }
    }
}

/// One run of a scheduled proc, or one history entry for ticks that started none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RunRecord {
    /// Run id, increasing per proc (`LAIN_RUN_ID`; the instance number of the run).
    pub id: u32,
    /// Proc name.
    pub proc: String,
    /// The tick it is for (Unix seconds; `LAIN_SCHEDULED_AT`); for `missed`, the latest one.
    pub scheduled_at: i64,
    /// When its instance was first seen running (Unix seconds).
    pub started_at: Option<i64>,
    /// When it ended (Unix seconds).
    pub ended_at: Option<i64>,
    /// Exit status of its last attempt; none while it runs, or when killed by a signal.
    pub exit_code: Option<i32>,
    /// Attempts so far (1 + restarts under the plan's restart rule).
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// For `missed`: how many ticks were missed.
    #[serde(default)]
    pub missed: u64,
    /// What happened, in words (`2 ticks fell while the kernel was down; run-once started run 7`).
    #[serde(default)]
    pub note: String,
    /// The release it ran.
    pub release: String,
    /// Its log file on the kernel's host; none for entries that started no run.
    pub log: Option<String>,
}

/// Per proc: the last tick considered and the next run id.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TickState {
    /// Unix seconds of the last tick considered (started, skipped or missed).
    pub last_tick: i64,
    /// The id the next run or history entry gets.
    pub next_id: u32,
}

/// What `lain ps` shows of a scheduled proc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ScheduleView {
    /// The schedule as written.
    pub cron: String,
    /// Its time zone.
    pub timezone: String,
    /// The next tick (Unix seconds), if the schedule ticks again.
    pub next_tick: Option<i64>,
    /// Runs running now.
    pub running: u32,
    /// The latest history entry that is not running.
    pub last: Option<RunRecord>,
}

/// The runs of proc `proc` of `app` in `store`, oldest first.
pub fn list_runs(store: &dyn Store, app: &str, proc: &str) -> Result<Vec<RunRecord>, StoreError> {
    let mut out = Vec::new();
    for (key, value) in store.list(&format!("{RUNS}{app}/{proc}/"))? {
        out.push(
            serde_json::from_slice(&value)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?,
        );
    }
    out.sort_by_key(|r: &RunRecord| r.id);
    Ok(out)
}

/// The tick state of proc `proc` of `app`.
pub fn tick_state(
    store: &dyn Store,
    app: &str,
    proc: &str,
) -> Result<Option<TickState>, StoreError> {
    get_json(store, &state_key(app, proc))
}

/// Removes a run's log file and its rotated predecessor (`<id>.log.1`); absent files are fine.
pub fn remove_log(log: &Path) {
    let mut rotated = log.as_os_str().to_owned();
    rotated.push(".1");
    for path in [log.to_path_buf(), PathBuf::from(rotated)] {
        if let Err(e) = std::fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove a run's log: {e}");
        }
    }
}

/// Bytes of a run's log returned at most (its end).
pub const LOG_TAIL: u64 = 1 << 20;

impl Lifecycle {
    /// The history of the scheduled procs of `app` (one proc with `proc`), oldest first per proc.
    pub fn runs(&self, app: &str, proc: Option<&str>) -> Result<Vec<RunRecord>, LifecycleError> {
        let record = self.app(app)?;
        let procs: Vec<String> = record
            .deployed
            .iter()
            .chain(record.history.iter().rev())
            .flat_map(|d| &d.procs)
            .map(|p| p.name.clone())
            .collect();
        if let Some(p) = proc
            && !procs.iter().any(|n| n == p)
        {
            return Err(LifecycleError::NotFound(format!(
                "app `{app}` has no proc `{p}`"
            )));
        }
        let mut names: Vec<&String> = procs
            .iter()
            .filter(|n| proc.is_none_or(|p| p == *n))
            .collect();
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            out.extend(list_runs(&*self.records.store, app, name)?);
        }
        Ok(out)
    }

    /// The log of run `id` of proc `proc` of `app` (its last [`LOG_TAIL`] bytes, the rotated
    /// file's end first when the live one is shorter).
    pub fn run_log(&self, app: &str, proc: &str, id: u32) -> Result<Vec<u8>, LifecycleError> {
        let run: RunRecord =
            get_json(&*self.records.store, &run_key(app, proc, id))?.ok_or_else(|| {
                LifecycleError::NotFound(format!("proc `{proc}` of app `{app}` has no run {id}"))
            })?;
        let Some(log) = run.log else {
            return Err(LifecycleError::NotFound(format!(
                "run {id} of `{app}.{proc}` started nothing ({}), so it has no log",
                run.outcome.name()
            )));
        };
        let dir = super::logs::proc_dir(&self.logs_root(), app, proc)?;
        let live = dir.join(super::logs::instance_file_name(id));
        if Path::new(&log) != live {
            return Err(LifecycleError::Invalid(format!(
                "run {id} of `{app}.{proc}`: its log `{log}` is not in the log store"
            )));
        }
        let mut rotated = live.as_os_str().to_owned();
        rotated.push(".1");
        let mut out = tail(Path::new(&rotated), LOG_TAIL)?;
        out.extend(tail(&live, LOG_TAIL)?);
        let cut = out.len().saturating_sub(LOG_TAIL as usize);
        Ok(out.split_off(cut))
    }
}

/// The last `max` bytes of `path` (nothing when it does not exist).
fn tail(path: &Path, max: u64) -> Result<Vec<u8>, LifecycleError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(anyhow::anyhow!("{}: {e}", path.display()).into()),
    };
    let io = |e: std::io::Error| LifecycleError::from(anyhow::anyhow!("{}: {e}", path.display()));
    let len = file.metadata().map_err(io)?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(max)))
        .map_err(io)?;
    let mut out = Vec::new();
    file.take(max).read_to_end(&mut out).map_err(io)?;
    Ok(out)
}

/// The environment a run adds to its instance: `LAIN_RUN_ID` and `LAIN_SCHEDULED_AT` (the tick,
/// RFC 3339 in UTC).
pub fn run_env(id: u32, tick: i64) -> [(String, String); 2] {
    let at =
        jiff::Timestamp::from_second(tick).map_or_else(|_| tick.to_string(), |t| t.to_string());
    [
        ("LAIN_RUN_ID".to_string(), id.to_string()),
        ("LAIN_SCHEDULED_AT".to_string(), at),
    ]
}

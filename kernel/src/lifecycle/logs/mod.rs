//! The logs of a proc (`lain logs`): where its log files are, and reading them (a tail, then
//! new lines as they are written).
//!
//! Each instance writes `<data>/logs/<app>/<proc>/<n>.log`; a file that grows too large is
//! renamed to `<n>.log.1` (replacing the previous one) and a new `<n>.log` starts (the process
//! runtime's shim; the router's `access.log` rotates the same way). A tail spans the rotated
//! file and the live one, so it is never empty right after a rotation. Following holds every
//! file it has seen open, so a file renamed (or replaced) while it is read is still read to its
//! end before the next one. Lines it cannot deliver are named by a marker line in their place:
//! [`skipped`] when it knows how many bytes it dropped (it fell more than [`reader::KEPT`] files
//! behind), [`MAYBE_SKIPPED`] when the log rotated more than once between two reads and a whole
//! file may have come and gone unseen, and [`TRUNCATED`] when a file was cut shorter. Instance
//! logs prefix every line, markers included, with `[<n>] `.

pub mod files;
mod reader;
#[cfg(test)]
mod tests;

pub use reader::Reader;

use super::{Lifecycle, LifecycleError, component};
use std::path::{Path, PathBuf};

/// The marker line of a rotation between two reads that may have lost a whole file.
pub const MAYBE_SKIPPED: &str =
    "-- lain: the log rotated more than once between two reads; lines may be missing --";

/// The marker line of a file that became shorter than what was read of it.
pub const TRUNCATED: &str = "-- lain: the log was truncated; reading on from its start --";

/// The marker line of `bytes` bytes that were rotated away before they were read.
pub fn skipped(bytes: u64) -> String {
    format!("-- lain: {bytes} bytes skipped (the log rotated before they were read) --")
}

/// The directory of the logs of proc `proc` of `app` under the log store `logs_root`; a name
/// that is not one plain path component is refused.
pub fn proc_dir(logs_root: &Path, app: &str, proc: &str) -> Result<PathBuf, LifecycleError> {
    Ok(logs_root
        .join(component("app", app)?)
        .join(component("proc", proc)?))
}

/// The log file instance `no` writes in its proc's directory.
pub fn instance_file_name(no: u32) -> String {
    format!("{no}.log")
}

/// What to read of a proc's logs.
#[derive(Clone, Copy, Debug)]
pub struct LogRequest {
    /// Keep reading new lines as they are written.
    pub follow: bool,
    /// Bytes of each instance's log read first.
    pub tail: u64,
    /// The router's access log of the proc instead of its instances' output.
    pub access: bool,
}

impl Lifecycle {
    /// The log store: `<data>/logs`.
    pub fn logs_root(&self) -> PathBuf {
        self.config.data_dir.join("logs")
    }

    /// A reader of the collected copies of log file `file` that proc `proc` of `app` declares
    /// (`logs`, in its deployment or an earlier one), one per instance.
    pub fn proc_file_logs(
        &self,
        app: &str,
        proc: &str,
        file: &str,
        request: LogRequest,
    ) -> Result<Reader, LifecycleError> {
        let record = self.app(app)?;
        let procs: Vec<_> = record
            .deployed
            .iter()
            .chain(record.history.iter().rev())
            .flat_map(|d| &d.procs)
            .filter(|p| p.name == proc)
            .collect();
        if procs.is_empty() {
            return Err(LifecycleError::NotFound(format!(
                "app `{app}` has no proc `{proc}`"
            )));
        }
        if !procs.iter().any(|p| p.logs.iter().any(|l| l == file)) {
            return Err(LifecycleError::NotFound(format!(
                "proc `{proc}` of `{app}` declares no log file `{}` (its `logs`)",
                file.escape_debug()
            )));
        }
        Ok(Reader::new(
            files::file_dir(&self.logs_root(), app, proc, file)?,
            LogRequest {
                access: false,
                ..request
            },
        ))
    }

    /// Collects the log files procs declare into the log store (see [`files`]), a pass every
    /// second, until the task is dropped.
    pub async fn collect_log_files(self: std::sync::Arc<Self>) {
        let collector = std::sync::Arc::new(parking_lot::Mutex::new(files::Collector::default()));
        loop {
            let (lc, collector) = (self.clone(), collector.clone());
            let pass = tokio::task::spawn_blocking(move || {
                let procs: Vec<(String, crate::lifecycle::records::ProcPlan)> = lc
                    .apps()?
                    .into_iter()
                    .filter_map(|a| Some((a.name.clone(), a.deployed?)))
                    .flat_map(|(app, d)| d.procs.into_iter().map(move |p| (app.clone(), p)))
                    .filter(|(_, p)| !p.logs.is_empty())
                    .collect();
                let volumes = lc.config.data_dir.join("volumes");
                Ok::<_, LifecycleError>(collector.lock().pass(&lc.logs_root(), &volumes, &procs))
            })
            .await;
            match pass {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("log files: {e}"),
                Err(e) => tracing::warn!("log files: the collector failed: {e}"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// A reader of the logs of proc `proc` of `app` (a proc of its deployment or of an earlier
    /// one, so the logs of a removed proc stay readable).
    pub fn proc_logs(
        &self,
        app: &str,
        proc: &str,
        request: LogRequest,
    ) -> Result<Reader, LifecycleError> {
        let record = self.app(app)?;
        let known = record
            .deployed
            .iter()
            .chain(record.history.iter().rev())
            .flat_map(|d| &d.procs)
            .any(|p| p.name == proc);
        if !known {
            return Err(LifecycleError::NotFound(format!(
                "app `{app}` has no proc `{proc}`"
            )));
        }
        Ok(Reader::new(
            proc_dir(&self.logs_root(), app, proc)?,
            request,
        ))
    }
}

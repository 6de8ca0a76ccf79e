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

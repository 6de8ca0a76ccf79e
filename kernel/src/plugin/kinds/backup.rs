//! Calls into backup-hook plugins.

use super::{call_fallible, within_limit};
use crate::plugin::bindings::backup::{BackupJob, BackupOutcome, BackupPlan, Guest};
use crate::plugin::error::CallError;
use crate::plugin::loaded::LoadedPlugin;
use std::path::Path;

/// A backup-hook plugin.
pub struct BackupPlugin<'a>(pub &'a LoadedPlugin);

impl BackupPlugin<'_> {
    /// Plans a backup of `job`'s volume, whose host directory `volume` the plugin sees read-only
    /// at `/volume` (and nothing else of the host).
    pub fn plan(&self, job: &BackupJob, volume: &Path) -> Result<BackupPlan, CallError> {
        call_fallible(
            self.0,
            "plan",
            Some(volume),
            |g: &Guest, s| g.call_plan(s, job),
            |r| within_limit(self.0, r),
        )
    }

    /// Tells the plugin how a backup ended.
    pub fn finished(&self, job: &BackupJob, outcome: &BackupOutcome) -> Result<(), CallError> {
        call_fallible(
            self.0,
            "finished",
            None,
            |g: &Guest, s| g.call_finished(s, job, outcome),
            |r| within_limit(self.0, r),
        )
    }
}

//! Calls into backup-hook plugins.

use super::{within_limit, wrong_kind};
use crate::plugin::bindings::backup::{BackupJob, BackupOutcome, BackupPlan};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::{Exports, LoadedPlugin};
use std::path::Path;

/// A backup-hook plugin.
pub struct BackupPlugin<'a>(pub &'a LoadedPlugin);

impl BackupPlugin<'_> {
    /// Plans a backup of `job`'s volume, whose host directory `volume` the plugin sees read-only
    /// at `/volume` (and nothing else of the host).
    pub fn plan(&self, job: &BackupJob, volume: &Path) -> Result<BackupPlan, CallError> {
        let Exports::BackupHook(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "plan"));
        };
        let answer = self.0.call(
            "plan",
            Some(volume),
            |store, instance, _| idx.load(&mut *store, instance)?.call_plan(&mut *store, job),
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("plan", Cause::Guest(e)))
    }

    /// Tells the plugin how a backup ended.
    pub fn finished(&self, job: &BackupJob, outcome: &BackupOutcome) -> Result<(), CallError> {
        let Exports::BackupHook(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "finished"));
        };
        let answer = self.0.call(
            "finished",
            None,
            |store, instance, _| {
                idx.load(&mut *store, instance)?
                    .call_finished(&mut *store, job, outcome)
            },
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("finished", Cause::Guest(e)))
    }
}

//! Calls into backup-hook plugins.

use super::{arg_v0_1, call_fallible, converted, is_v0_1, within_limit};
use crate::plugin::bindings::backup::{BackupJob, BackupOutcome, BackupPlan, Guest};
use crate::plugin::bindings::v0_1::backup::Guest as GuestV0_1;
use crate::plugin::error::CallError;
use crate::plugin::loaded::LoadedPlugin;
use std::path::Path;

/// A backup-hook plugin.
pub struct BackupPlugin<'a>(pub &'a LoadedPlugin);

impl BackupPlugin<'_> {
    /// Plans a backup of `job`'s volume, whose host directory `volume` the plugin sees read-only
    /// at `/volume` (and nothing else of the host).
    pub fn plan(&self, job: &BackupJob, volume: &Path) -> Result<BackupPlan, CallError> {
        if is_v0_1(self.0) {
            let old = arg_v0_1(self.0, "plan", job)?;
            return call_fallible(
                self.0,
                "plan",
                Some(volume),
                |g: &GuestV0_1, s| converted(g.call_plan(s, &old)),
                |r| within_limit(self.0, r),
            );
        }
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
        if is_v0_1(self.0) {
            let old_job = arg_v0_1(self.0, "finished", job)?;
            let old_outcome = arg_v0_1(self.0, "finished", outcome)?;
            return call_fallible(
                self.0,
                "finished",
                None,
                |g: &GuestV0_1, s| converted(g.call_finished(s, &old_job, &old_outcome)),
                |r| within_limit(self.0, r),
            );
        }
        call_fallible(
            self.0,
            "finished",
            None,
            |g: &Guest, s| g.call_finished(s, job, outcome),
            |r| within_limit(self.0, r),
        )
    }
}

//! What the pipeline needs from one member: a scheduler plugin instance or a native equivalent.

use crate::plugin::CallError;
use crate::plugin::bindings::scheduling::{
    LabelDef, Node, NodeUsage, Placement, ProcRequirements, SchedulerInfo, Verdict,
};
use crate::plugin::bindings::scheduling_levels::LevelsVerdict;
use crate::plugin::kinds::scheduler::LiveScheduler;

/// One member of a scheduling pipeline, mirroring the WIT `scheduling` interface.
///
/// [`LiveScheduler`] implements it for plugins; the benchmark implements it natively over the same
/// algorithms, so both run through the identical pipeline.
pub trait Backend: Send {
    /// See WIT `describe`.
    fn describe(&mut self) -> Result<SchedulerInfo, CallError>;
    /// See WIT `sync-labels`.
    fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError>;
    /// See WIT `sync-nodes`.
    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError>;
    /// See WIT `sync-usage`.
    fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError>;
    /// See WIT `define-proc`.
    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError>;
    /// See WIT `forget-proc`.
    fn forget_proc(&mut self, proc: u32) -> Result<(), CallError>;
    /// See WIT `record-placements`.
    fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError>;
    /// See WIT `evaluate`.
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError>;
    /// Whether [`Backend::evaluate_levels`] can answer at all (a plugin exporting
    /// `scheduling-levels`). Without it the pipeline places instance by instance.
    fn has_levels(&self) -> bool {
        false
    }
    /// See WIT `evaluate-levels`.
    fn evaluate_levels(
        &mut self,
        _proc: u32,
        _candidates: &[u64],
        _placed: &[Placement],
        _levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        Ok(None)
    }
    /// Whether the backend can no longer be called and must be replaced.
    fn is_dead(&self) -> bool {
        false
    }
}

impl Backend for LiveScheduler {
    fn describe(&mut self) -> Result<SchedulerInfo, CallError> {
        LiveScheduler::describe(self)
    }
    fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        LiveScheduler::sync_labels(self, labels)
    }
    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        LiveScheduler::sync_nodes(self, upsert, remove)
    }
    fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        LiveScheduler::sync_usage(self, usage)
    }
    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        LiveScheduler::define_proc(self, req)
    }
    fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        LiveScheduler::forget_proc(self, proc)
    }
    fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        LiveScheduler::record_placements(self, placed)
    }
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        LiveScheduler::evaluate(self, proc, candidates, placed)
    }
    fn has_levels(&self) -> bool {
        LiveScheduler::has_levels(self)
    }
    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        LiveScheduler::evaluate_levels(self, proc, candidates, placed, levels)
    }
    fn is_dead(&self) -> bool {
        LiveScheduler::is_dead(self)
    }
}

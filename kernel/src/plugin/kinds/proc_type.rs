//! Calls into proc-type plugins.

use super::{within_limit, wrong_kind};
use crate::plugin::bindings::proc_rendering::{ContainerPlan, TypeInfo};
use crate::plugin::bindings::types::{AppContext, PluginError, Problem, Proc};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::{Exports, LoadedPlugin};

/// A proc-type plugin.
pub struct ProcTypePlugin<'a>(pub &'a LoadedPlugin);

impl ProcTypePlugin<'_> {
    /// The type the plugin serves and its extra keys.
    pub fn describe(&self) -> Result<TypeInfo, CallError> {
        let Exports::ProcType(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "describe"));
        };
        self.0.call(
            "describe",
            None,
            |store, instance, _| idx.load(&mut *store, instance)?.call_describe(&mut *store),
            |info| within_limit(self.0, info),
        )
    }

    /// Validates a proc and fills in the type's defaults; `Ok(Err(problems))` lists every problem.
    pub fn validate(
        &self,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, CallError> {
        let Exports::ProcType(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "validate"));
        };
        self.0.call(
            "validate",
            None,
            |store, instance, _| {
                idx.load(&mut *store, instance)?
                    .call_validate(&mut *store, proc, ctx)
            },
            |r| within_limit(self.0, r),
        )
    }

    /// Renders the plan every instance of the proc runs by.
    pub fn render(&self, proc: &Proc, ctx: &AppContext) -> Result<ContainerPlan, CallError> {
        let Exports::ProcType(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "render"));
        };
        let answer: Result<ContainerPlan, PluginError> = self.0.call(
            "render",
            None,
            |store, instance, _| {
                idx.load(&mut *store, instance)?
                    .call_render(&mut *store, proc, ctx)
            },
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("render", Cause::Guest(e)))
    }
}

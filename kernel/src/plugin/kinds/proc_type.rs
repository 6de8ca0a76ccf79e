//! Calls into proc-type plugins.

use super::{call, call_fallible, converted, is_v0_1, proc_checks, within_limit};
use crate::plugin::bindings::proc_rendering::{ContainerPlan, Guest, TypeInfo};
use crate::plugin::bindings::types::{AppContext, Problem, Proc};
use crate::plugin::bindings::v0_1::proc_rendering::Guest as GuestV0_1;
use crate::plugin::error::{CallError, Cause};
use crate::plugin::legacy::{error_from_v0_1, plan_from_v0_1, transcode};
use crate::plugin::loaded::LoadedPlugin;

/// A proc-type plugin.
pub struct ProcTypePlugin<'a>(pub &'a LoadedPlugin);

impl ProcTypePlugin<'_> {
    /// The type the plugin serves and its extra keys.
    pub fn describe(&self) -> Result<TypeInfo, CallError> {
        if is_v0_1(self.0) {
            return call(
                self.0,
                "describe",
                None,
                |g: &GuestV0_1, s| converted(g.call_describe(s)),
                |info| within_limit(self.0, info),
            );
        }
        call(
            self.0,
            "describe",
            None,
            |g: &Guest, s| g.call_describe(s),
            |info| within_limit(self.0, info),
        )
    }

    /// The arguments of a call, as a 0.1.0 plugin takes them.
    fn args_v0_1(
        &self,
        function: &'static str,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<
        (
            crate::plugin::bindings::v0_1::types::Proc,
            crate::plugin::bindings::v0_1::types::AppContext,
        ),
        CallError,
    > {
        let host = |e: String| self.0.error(function, Cause::Host(e));
        Ok((
            transcode(proc).map_err(host)?,
            transcode(ctx).map_err(host)?,
        ))
    }

    /// Validates a proc and fills in the type's defaults; `Ok(Err(problems))` lists every problem.
    /// The completed proc is re-checked like user input ([`proc_checks::validated`]).
    pub fn validate(
        &self,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, CallError> {
        let check = |r: &Result<Proc, Vec<Problem>>| {
            within_limit(self.0, r)?;
            match r {
                Ok(out) => proc_checks::validated(proc, out),
                Err(problems) => problems_ok(problems),
            }
        };
        let answer = if is_v0_1(self.0) {
            let (old_proc, old_ctx) = self.args_v0_1("validate", proc, ctx)?;
            call(
                self.0,
                "validate",
                None,
                |g: &GuestV0_1, s| converted(g.call_validate(s, &old_proc, &old_ctx)),
                check,
            )?
        } else {
            call(
                self.0,
                "validate",
                None,
                |g: &Guest, s| g.call_validate(s, proc, ctx),
                check,
            )?
        };
        Ok(answer.map_err(|problems| problems.into_iter().map(shown).collect()))
    }

    /// Renders the plan every instance of the proc runs by, re-checked like user input
    /// ([`proc_checks::rendered`]).
    pub fn render(&self, proc: &Proc, ctx: &AppContext) -> Result<ContainerPlan, CallError> {
        let check = |r: &Result<ContainerPlan, _>| {
            within_limit(self.0, r)?;
            match r {
                Ok(plan) => proc_checks::rendered(proc, plan),
                Err(_) => Ok(()),
            }
        };
        if is_v0_1(self.0) {
            let (old_proc, old_ctx) = self.args_v0_1("render", proc, ctx)?;
            return call_fallible(
                self.0,
                "render",
                None,
                |g: &GuestV0_1, s| {
                    let answer = g.call_render(s, &old_proc, &old_ctx)?;
                    Ok(match answer {
                        Ok(plan) => Ok(plan_from_v0_1(&plan).map_err(wasmtime::Error::msg)?),
                        Err(e) => Err(error_from_v0_1(e)),
                    })
                },
                check,
            );
        }
        call_fallible(
            self.0,
            "render",
            None,
            |g: &Guest, s| g.call_render(s, proc, ctx),
            check,
        )
    }
}

/// Problems are shown to the user: at most 1,000, each message on one line.
/// Longest problem message or hint shown, in bytes.
const MAX_PROBLEM_TEXT: usize = 1024;

/// A plugin's problem as users see it: message, hint and key path cut and escaped like the
/// plugin's log records, so no control character or terminal escape reaches a terminal, a
/// JSON consumer or the kernel's log through a diagnostic.
fn shown(problem: Problem) -> Problem {
    use crate::plugin::guest_log::escape;
    Problem {
        path: problem
            .path
            .iter()
            .map(|k| escape(k, MAX_PROBLEM_TEXT))
            .collect(),
        message: escape(&problem.message, MAX_PROBLEM_TEXT),
        hint: problem.hint.map(|h| escape(&h, MAX_PROBLEM_TEXT)),
    }
}

fn problems_ok(problems: &[Problem]) -> Result<(), Cause> {
    if problems.len() > 1000 {
        return Err(Cause::BadResult(format!(
            "{} problems, more than 1000",
            problems.len()
        )));
    }
    Ok(())
}

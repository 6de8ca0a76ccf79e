//! Calls into proc-type plugins.

use super::{call, call_fallible, proc_checks, within_limit};
use crate::plugin::bindings::proc_rendering::{ContainerPlan, Guest, TypeInfo};
use crate::plugin::bindings::types::{AppContext, Problem, Proc};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::LoadedPlugin;

/// A proc-type plugin.
pub struct ProcTypePlugin<'a>(pub &'a LoadedPlugin);

impl ProcTypePlugin<'_> {
    /// The type the plugin serves and its extra keys.
    pub fn describe(&self) -> Result<TypeInfo, CallError> {
        call(
            self.0,
            "describe",
            None,
            |g: &Guest, s| g.call_describe(s),
            |info| within_limit(self.0, info),
        )
    }

    /// Validates a proc and fills in the type's defaults; `Ok(Err(problems))` lists every problem.
    /// The completed proc is re-checked like user input ([`proc_checks::validated`]).
    pub fn validate(
        &self,
        proc: &Proc,
        ctx: &AppContext,
    ) -> Result<Result<Proc, Vec<Problem>>, CallError> {
        let answer = call(
            self.0,
            "validate",
            None,
            |g: &Guest, s| g.call_validate(s, proc, ctx),
            |r| {
                within_limit(self.0, r)?;
                match r {
                    Ok(out) => proc_checks::validated(proc, out),
                    Err(problems) => problems_ok(problems),
                }
            },
        )?;
        Ok(answer.map_err(|problems| problems.into_iter().map(shown).collect()))
    }

    /// Renders the plan every instance of the proc runs by, re-checked like user input
    /// ([`proc_checks::rendered`]).
    pub fn render(&self, proc: &Proc, ctx: &AppContext) -> Result<ContainerPlan, CallError> {
        call_fallible(
            self.0,
            "render",
            None,
            |g: &Guest, s| g.call_render(s, proc, ctx),
            |r| {
                within_limit(self.0, r)?;
                match r {
                    Ok(plan) => proc_checks::rendered(proc, plan),
                    Err(_) => Ok(()),
                }
            },
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

//! The built-in `worker` proc type (LAIN reference §proc-sections): a long-running process with no
//! HTTP routes, restarted whatever its exit status.

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{PluginError, Problem};

struct Worker;

impl ProcType for Worker {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, PluginError> {
        Ok(Worker)
    }

    fn describe(&self) -> TypeInfo {
        TypeInfo {
            name: "worker".into(),
            extra_keys: vec![],
            summary: "long-running process, always restarted, no HTTP routes".into(),
        }
    }

    /// Accepts and ignores `mountpoint`, `https_only` and `healthcheck` as LAIN did; refuses the
    /// portal-only keys.
    fn validate(&self, proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        let problems = portal_key_problems(&proc);
        if problems.is_empty() {
            Ok(proc)
        } else {
            Err(problems)
        }
    }

    fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
        Ok(plan_from(&proc, RestartPolicy::Always))
    }
}

lain_sdk_guest::export_proc_type!(Worker);

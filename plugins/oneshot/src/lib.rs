//! The built-in `oneshot` proc type: a run-to-completion job.
//!
//! LAIN parsed `oneshot` but never finished it: every podgroup got `RestartPolicy = Always`, so a
//! oneshot was restarted when it exited (LAIN reference §proc-sections, lain#56). Here a oneshot is
//! never restarted and the kernel keeps its exit status. Like LAIN, `mountpoint`, `https_only` and
//! `healthcheck` are accepted and ignored (LAIN reference §proc-keys, §mountpoints); `service_name`
//! and `allow_clients` are problems, since only portals have them.

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{PluginError, Problem};

/// The `oneshot` proc type. It has no configuration.
struct Oneshot;

impl ProcType for Oneshot {
    type Config = serde_json::Value;

    fn new(_config: serde_json::Value) -> Result<Self, PluginError> {
        Ok(Oneshot)
    }

    fn describe(&self) -> TypeInfo {
        TypeInfo {
            name: "oneshot".into(),
            extra_keys: vec![],
            summary: "run-to-completion job, never restarted, no routes".into(),
        }
    }

    /// Reports `service_name` and `allow_clients`; returns the proc unchanged otherwise.
    fn validate(&self, proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        let problems = portal_key_problems(&proc);
        if problems.is_empty() {
            Ok(proc)
        } else {
            Err(problems)
        }
    }

    /// A plan that is never restarted, with no routes and no health check.
    ///
    /// A oneshot has no health check even when `container_healthcheck` is set: a job is not a
    /// service, and a probe failing after its work is done would only mark a finished job unhealthy.
    fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
        if proc.proc_type != "oneshot" {
            return Err(PluginError::InvalidInput(format!(
                "proc {} is of type {}, not oneshot",
                proc.name, proc.proc_type
            )));
        }
        let mut plan = plan_from(&proc, RestartPolicy::Never);
        plan.health = None;
        Ok(plan)
    }
}

lain_sdk_guest::export_proc_type!(Oneshot);

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::{HealthCheck, Probe};

    /// A oneshot proc as the kernel hands it over.
    fn proc() -> Proc {
        Proc {
            app: "bookshelf".into(),
            name: "migrate".into(),
            proc_type: "oneshot".into(),
            image: "registry.lain.local/bookshelf:release-1".into(),
            cmd: Some(vec!["/usr/local/bin/migrate".into(), "up".into()]),
            mountpoints: vec!["ignored.example.org".into()],
            https_only: Some(true),
            healthcheck: Some("/ignored".into()),
            container_healthcheck: Some(HealthCheck {
                probe: Probe::Command("true".into()),
                interval: 10,
                timeout: 3,
                retries: 3,
                start_period: 0,
            }),
            ..Default::default()
        }
    }

    fn ctx() -> AppContext {
        AppContext {
            app: "bookshelf".into(),
            app_domain: "bookshelf".into(),
            cluster_domains: vec!["lain.local".into()],
            release: "1".into(),
        }
    }

    #[test]
    fn web_keys_are_accepted_and_ignored() {
        let validated = Oneshot.validate(proc(), ctx());
        assert!(validated.is_ok());
        let plan = Oneshot.render(proc(), ctx());
        let Ok(plan) = plan else {
            panic!("render failed: {plan:?}");
        };
        assert!(plan.routes.is_empty());
        assert_eq!(plan.restart.policy, RestartPolicy::Never);
        assert!(plan.health.is_none());
        assert_eq!(plan.cmd, proc().cmd);
    }

    #[test]
    fn portal_keys_are_problems() {
        let mut job = proc();
        job.service_name = Some("jobs".into());
        job.allow_clients = Some("**".into());
        let problems = Oneshot.validate(job, ctx()).err().unwrap_or_default();
        let paths: Vec<String> = problems.iter().map(|p| p.path.join(".")).collect();
        assert_eq!(paths, ["service_name", "allow_clients"]);
        assert_eq!(problems[1].message, "only portal procs have allow_clients");
        assert!(problems.iter().all(|p| p.hint.is_some()));
    }

    #[test]
    fn render_refuses_other_types() {
        let mut web = proc();
        web.proc_type = "web".into();
        assert!(matches!(
            Oneshot.render(web, ctx()),
            Err(PluginError::InvalidInput(_))
        ));
    }
}

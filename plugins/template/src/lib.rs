//! `cron`: an example proc type, and the starting point for writing your own (see `README.md`).
//!
//! A `cron.<name>:` section of `lain.yaml` declares a job run on a schedule:
//!
//! ```yaml
//! cron.nightly:
//!   cmd: /lain/app/bin/report --yesterday
//!   schedule: "30 2 * * *"      # required: five cron fields, or @daily, @every 1h30m, ...
//!   timezone: Europe/Paris      # optional; the plugin's configured `timezone` (UTC) otherwise
//!   concurrency: forbid         # optional: forbid (default), allow or replace
//!   missed: skip                # optional: skip (default) or run-once, for ticks missed while
//!                               # the kernel was down
//!   retries: 2                  # optional: restarts of a failed run within its tick (0)
//!   history: 50                 # optional: runs kept (the kernel's 20)
//! ```
//!
//! The render sets the plan's `schedule`: the kernel starts one run per tick (an instance that
//! runs to completion, with `LAIN_RUN_ID` and `LAIN_SCHEDULED_AT` in its environment), keeps
//! the history `lain runs` shows, and has no instance of the proc between runs. Everything here
//! is pure (no host call outside the SDK's export glue), so the logic is unit-tested on the host
//! with `cargo test`.

mod extra;
mod schedule;

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{PluginError, Problem};

/// The proc type name served: the `cron` of `cron.nightly:`. Rename it in your copy.
const TYPE_NAME: &str = "cron";

/// The plugin's configuration: the `[config]` of `lain-plugin.toml`, overridden by the operator.
#[derive(serde::Deserialize)]
#[serde(default)]
struct Config {
    /// Time zone of the procs that do not set `timezone`.
    timezone: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            timezone: "UTC".into(),
        }
    }
}

/// The `cron` proc type.
struct Cron {
    /// Time zone of the procs that do not set `timezone`.
    default_timezone: String,
}

impl ProcType for Cron {
    type Config = Config;

    /// Errors: the configured `timezone` is not a time zone name (`bad-config`).
    fn new(config: Config) -> Result<Self, PluginError> {
        if !extra::is_timezone(&config.timezone) {
            return Err(PluginError::BadConfig(format!(
                "timezone `{}` is not a time zone name such as `UTC` or `Europe/Paris`",
                config.timezone
            )));
        }
        Ok(Cron {
            default_timezone: config.timezone,
        })
    }

    fn describe(&self) -> TypeInfo {
        TypeInfo {
            name: TYPE_NAME.into(),
            extra_keys: [
                "schedule",
                "timezone",
                "concurrency",
                "missed",
                "retries",
                "history",
            ]
            .map(String::from)
            .to_vec(),
            summary: "runs a command on a schedule: one run per tick, kept in `lain runs`".into(),
        }
    }

    /// Checks `schedule` and `timezone`; returns the proc unchanged.
    fn validate(&self, proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        extra::read(&proc.extra, &self.default_timezone)?;
        Ok(proc)
    }

    /// A plan run on its schedule; a failed run is restarted up to `retries` times.
    fn render(&self, proc: Proc, _ctx: AppContext) -> Result<ContainerPlan, PluginError> {
        if proc.proc_type != TYPE_NAME {
            return Err(PluginError::InvalidInput(format!(
                "proc {} is of type {}, not {TYPE_NAME}",
                proc.name, proc.proc_type
            )));
        }
        let spec = extra::read(&proc.extra, &self.default_timezone).map_err(|problems| {
            let messages: Vec<String> = problems.into_iter().map(|p| p.message).collect();
            PluginError::InvalidInput(format!("not validated: {}", messages.join("; ")))
        })?;
        let policy = if spec.retries == 0 {
            RestartPolicy::Never
        } else {
            RestartPolicy::OnFailure
        };
        let mut plan = plan_from(&proc, policy);
        plan.restart.max_restarts = (spec.retries > 0).then_some(spec.retries);
        plan.schedule = Some(Schedule {
            cron: spec.schedule,
            timezone: spec.timezone,
            concurrency: spec.concurrency,
            missed: spec.missed,
            history: spec.history,
        });
        Ok(plan)
    }
}

lain_sdk_guest::export_proc_type!(Cron);

#[cfg(test)]
mod tests {
    use super::*;

    /// A cron proc as the kernel hands it over.
    fn proc(extra: &str) -> Proc {
        Proc {
            app: "bookshelf".into(),
            name: "nightly".into(),
            proc_type: "cron".into(),
            image: "registry.lain.local/bookshelf:release-1".into(),
            cmd: Some(vec!["/lain/app/bin/report".into()]),
            extra: extra.into(),
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

    fn cron(timezone: &str) -> Result<Cron, PluginError> {
        Cron::new(Config {
            timezone: timezone.into(),
        })
    }

    #[test]
    fn config_timezone_is_checked() {
        assert!(cron("UTC").is_ok());
        assert!(matches!(cron("not a zone"), Err(PluginError::BadConfig(_))));
        let default: Result<Config, _> = serde_json::from_str("{}");
        assert_eq!(default.map(|c| c.timezone).ok(), Some("UTC".to_string()));
    }

    #[test]
    fn render_sets_the_schedule_and_maps_retries_to_the_restart_rule() -> Result<(), PluginError> {
        let plan = cron("Asia/Shanghai")?.render(proc(r#"{"schedule": "@every 1h"}"#), ctx())?;
        assert!(plan.env.is_empty(), "no CRON_* workaround: {:?}", plan.env);
        let s = plan.schedule.as_ref().expect("a schedule");
        assert_eq!(
            (
                s.cron.as_str(),
                s.timezone.as_str(),
                s.concurrency,
                s.missed,
                s.history
            ),
            (
                "@every 1h",
                "Asia/Shanghai",
                ConcurrencyPolicy::Forbid,
                MissedPolicy::Skip,
                0
            )
        );
        assert_eq!(plan.restart.policy, RestartPolicy::Never);
        let extra = r#"{"schedule": "0 3 * * *", "timezone": "UTC", "concurrency": "replace",
            "missed": "run-once", "retries": 2, "history": 7}"#;
        let plan = cron("UTC")?.render(proc(extra), ctx())?;
        assert_eq!(plan.restart.policy, RestartPolicy::OnFailure);
        assert_eq!(plan.restart.max_restarts, Some(2));
        let s = plan.schedule.expect("a schedule");
        assert_eq!(
            (s.concurrency, s.missed, s.history),
            (ConcurrencyPolicy::Replace, MissedPolicy::RunOnce, 7)
        );
        Ok(())
    }

    #[test]
    fn validate_reports_problems_and_render_refuses_them() -> Result<(), PluginError> {
        let cron = cron("UTC")?;
        let bad = proc(r#"{"schedule": "0 3 * *"}"#);
        let problems = cron.validate(bad.clone(), ctx()).err().unwrap_or_default();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, ["schedule"]);
        assert!(matches!(
            cron.render(bad, ctx()),
            Err(PluginError::InvalidInput(_))
        ));
        assert!(
            cron.validate(proc(r#"{"schedule": "0 3 * * *"}"#), ctx())
                .is_ok()
        );
        Ok(())
    }
}

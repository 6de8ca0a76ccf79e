//! `cron`: an example proc type, and the starting point for writing your own (see `README.md`).
//!
//! A `cron.<name>:` section of `lain.yaml` declares a job run on a schedule:
//!
//! ```yaml
//! cron.nightly:
//!   cmd: /lain/app/bin/report --yesterday
//!   schedule: "30 2 * * *"      # required: five cron fields, or @daily, @every 1h30m, ...
//!   timezone: Europe/Paris      # optional; the plugin's configured `timezone` (UTC) otherwise
//! ```
//!
//! The proc is never restarted by the kernel, and its containers get the schedule and time zone in
//! `CRON_SCHEDULE` and `CRON_TIMEZONE`: the image's entrypoint (e.g. a small scheduler) runs the
//! job at those times. Everything here is pure (no host call outside the SDK's export glue), so
//! the logic is unit-tested on the host with `cargo test`.

mod extra;
mod schedule;

use lain_sdk_guest::proc_type::*;
use lain_sdk_guest::{EnvVar, PluginError, Problem};

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
            extra_keys: vec!["schedule".into(), "timezone".into()],
            summary: "runs a command on a schedule, never restarted".into(),
        }
    }

    /// Checks `schedule` and `timezone`; returns the proc unchanged.
    fn validate(&self, proc: Proc, _ctx: AppContext) -> Result<Proc, Vec<Problem>> {
        extra::read(&proc.extra, &self.default_timezone)?;
        Ok(proc)
    }

    /// A plan that is never restarted, with `CRON_SCHEDULE` and `CRON_TIMEZONE` in its env.
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
        let mut plan = plan_from(&proc, RestartPolicy::Never);
        plan.env.push(EnvVar {
            name: "CRON_SCHEDULE".into(),
            value: spec.schedule,
        });
        plan.env.push(EnvVar {
            name: "CRON_TIMEZONE".into(),
            value: spec.timezone,
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
    fn render_passes_schedule_and_timezone() -> Result<(), PluginError> {
        let plan = cron("Asia/Shanghai")?.render(proc(r#"{"schedule": "@every 1h"}"#), ctx())?;
        let env: Vec<(&str, &str)> = plan
            .env
            .iter()
            .map(|e| (e.name.as_str(), e.value.as_str()))
            .collect();
        assert_eq!(
            env,
            [
                ("CRON_SCHEDULE", "@every 1h"),
                ("CRON_TIMEZONE", "Asia/Shanghai")
            ]
        );
        assert_eq!(plan.restart.policy, RestartPolicy::Never);
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

//! The built-in `dump-first` backup hook, for volumes that hold a database.
//!
//! Copying a live database's files gives a backup that may not open again (pages written
//! between two reads); a dump made by the database itself does. So the plan is:
//!
//! - `pre_run`: the configured dump `command`, run inside the instance, which writes the dump
//!   to `dump`, a file or directory in the volume's root directory;
//! - includes: `dump` only, never the live files;
//! - `post_run`: the configured `cleanup` (by default `rm -rf` of the dump), run also when the
//!   backup failed.
//!
//! The volume's own `pre_run` / `post_run` from `lain.yaml` are not run under this hook (the
//! operator's command replaces them); a plan for a policy that has them logs a warning.

mod config;

use config::Config;
use lain_sdk_guest::PluginError;
use lain_sdk_guest::backup::*;
use lain_sdk_guest::host::{self, LogLevel};

/// The plugin: its checked configuration.
struct DumpFirst {
    config: Config,
}

impl DumpFirst {
    /// The plan for `job`: dump, include the dump, clean up.
    fn plan_for(&self, job: &BackupJob) -> BackupPlan {
        let cleanup = self.config.expand(&self.config.cleanup, &job.volume);
        BackupPlan {
            pre_run: Some(self.config.expand(&self.config.command, &job.volume)),
            include_paths: vec![self.config.dump.clone()],
            exclude_paths: Vec::new(),
            post_run: (!cleanup.is_empty()).then_some(cleanup),
        }
    }
}

impl BackupHook for DumpFirst {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        config.check()?;
        Ok(DumpFirst { config })
    }

    fn plan(&mut self, job: BackupJob) -> Result<BackupPlan, PluginError> {
        let instance = job.instance.to_string();
        let fields = [
            ("proc", job.proc.as_str()),
            ("instance", &instance),
            ("volume", &job.volume),
        ];
        if job.policy.pre_run.is_some() || job.policy.post_run.is_some() {
            host::log(
                LogLevel::Warn,
                "the volume's pre_run/post_run are not run: dump-first runs its configured command instead",
                &fields,
            );
        }
        Ok(self.plan_for(&job))
    }

    fn finished(&mut self, job: BackupJob, outcome: BackupOutcome) -> Result<(), PluginError> {
        let (level, message) = if outcome.success {
            (LogLevel::Info, "dump backed up")
        } else {
            (LogLevel::Error, "dump backup failed")
        };
        let instance = job.instance.to_string();
        let bytes = outcome.bytes.to_string();
        let mut fields = vec![
            ("app", job.app.as_str()),
            ("proc", &job.proc),
            ("instance", &instance),
            ("volume", &job.volume),
            ("bytes", &bytes),
        ];
        if let Some(reason) = &outcome.message {
            fields.push(("message", reason));
        }
        host::log(level, message, &fields);
        Ok(())
    }
}

lain_sdk_guest::export_backup_hook!(DumpFirst);

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::BackupPolicy;

    fn job(pre_run: Option<&str>) -> BackupJob {
        BackupJob {
            app: "shop".into(),
            proc: "shop.worker.db".into(),
            instance: 2,
            volume: "/var/lib/db".into(),
            mode: BackupMode::Full,
            policy: BackupPolicy {
                schedule: "@daily".into(),
                expire: None,
                pre_run: pre_run.map(String::from),
                post_run: None,
            },
        }
    }

    #[test]
    fn plans_the_dump_instead_of_the_live_files() {
        let hook = DumpFirst::new(Config {
            command: ["/usr/bin/sqlite3", "{volume}/shop.db", ".backup {dump}"]
                .map(String::from)
                .to_vec(),
            dump: "shop.db.dump".into(),
            ..Config::default()
        });
        let plan = hook.unwrap().plan_for(&job(Some("flush.sh")));
        assert_eq!(
            plan.pre_run.unwrap(),
            [
                "/usr/bin/sqlite3",
                "/var/lib/db/shop.db",
                ".backup /var/lib/db/shop.db.dump"
            ]
        );
        assert_eq!(plan.include_paths, ["shop.db.dump"]);
        assert!(plan.exclude_paths.is_empty());
        assert_eq!(
            plan.post_run.unwrap(),
            ["/bin/rm", "-rf", "--", "/var/lib/db/shop.db.dump"]
        );
    }

    #[test]
    fn an_empty_cleanup_keeps_the_dump_and_a_bad_config_is_refused() {
        let keep = DumpFirst::new(Config {
            cleanup: Vec::new(),
            ..Config::default()
        });
        assert_eq!(keep.unwrap().plan_for(&job(None)).post_run, None);
        assert!(matches!(
            DumpFirst::new(Config {
                dump: ".".into(),
                ..Config::default()
            }),
            Err(PluginError::BadConfig(m)) if m.starts_with("dump: ")
        ));
    }
}

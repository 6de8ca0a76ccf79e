//! The built-in `archive` backup hook (LAIN reference §backups): decides what a volume backup
//! leaves out and which commands run around it.
//!
//! - Excludes: the `exclude` globs of the configuration plus those of the volume's ignore file
//!   (`.lainbackupignore`), matched while walking the volume (see [`glob`] for the syntax).
//! - `pre_run` / `post_run`: the job's policy, with LAIN's semantics (see [`command`]).

mod command;
mod config;
mod glob;
mod ignore;
mod walk;

use config::Config;
use glob::Pattern;
use lain_sdk_guest::backup::*;
use lain_sdk_guest::host::{self, LogLevel};
use lain_sdk_guest::{BackupPolicy, PluginError};
use std::path::Path;

/// The plugin: its configuration and its parsed `exclude` patterns.
struct Archive {
    config: Config,
    patterns: Vec<Pattern>,
}

/// A plan and what the walk found on the way.
struct Planned {
    plan: BackupPlan,
    walk: walk::Walk,
}

impl Archive {
    /// Plans the backup of the volume at `root` under `policy`.
    fn plan_at(&self, root: &Path, policy: &BackupPolicy) -> Result<Planned, PluginError> {
        let mut patterns = self.patterns.clone();
        patterns.extend(
            ignore::load(root, &self.config.ignore_file).map_err(PluginError::InvalidInput)?,
        );
        let options = walk::Options {
            follow_symlinks: self.config.follow_symlinks,
            max_entries: self.config.max_entries,
        };
        let walk = walk::walk(root, &patterns, options).map_err(PluginError::Other)?;
        let plan = BackupPlan {
            pre_run: policy.pre_run.as_deref().and_then(command::argv),
            include_paths: vec![".".into()],
            exclude_paths: walk.excluded.clone(),
            post_run: policy.post_run.as_deref().and_then(command::argv),
        };
        Ok(Planned { plan, walk })
    }
}

impl BackupHook for Archive {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let patterns = config.patterns()?;
        Ok(Archive { config, patterns })
    }

    fn plan(&mut self, job: BackupJob) -> Result<BackupPlan, PluginError> {
        let planned = self.plan_at(Path::new(VOLUME_ROOT), &job.policy)?;
        let instance = job.instance.to_string();
        let job_fields = [
            ("proc", job.proc.as_str()),
            ("instance", &instance),
            ("volume", &job.volume),
        ];
        for warning in &planned.walk.warnings {
            host::log(LogLevel::Warn, warning, &job_fields);
        }
        let entries = planned.walk.entries.to_string();
        let excluded = planned.walk.excluded.len().to_string();
        let mut fields = job_fields.to_vec();
        fields.extend([("entries", entries.as_str()), ("excluded", &excluded)]);
        host::log(LogLevel::Debug, "backup planned", &fields);
        Ok(planned.plan)
    }

    fn finished(&mut self, job: BackupJob, outcome: BackupOutcome) -> Result<(), PluginError> {
        let (level, message) = if outcome.success {
            (LogLevel::Info, "backup finished")
        } else {
            (LogLevel::Error, "backup failed")
        };
        let instance = job.instance.to_string();
        let files = outcome.files.to_string();
        let bytes = outcome.bytes.to_string();
        let mode = match job.mode {
            BackupMode::Full => "full",
            BackupMode::Increment => "increment",
        };
        let mut fields = vec![
            ("app", job.app.as_str()),
            ("proc", &job.proc),
            ("instance", &instance),
            ("volume", &job.volume),
            ("mode", mode),
            ("files", &files),
            ("bytes", &bytes),
        ];
        if let Some(reason) = &outcome.message {
            fields.push(("message", reason));
        }
        host::log(level, message, &fields);
        Ok(())
    }
}

lain_sdk_guest::export_backup_hook!(Archive);

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn plans_with_config_and_ignore_file_excludes_and_lain_commands() {
        let root = std::env::temp_dir().join(format!("lain-archive-plan-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("mysql/tmp")).unwrap();
        fs::write(root.join("mysql/ibdata1"), b"x").unwrap();
        fs::write(root.join("mysql/mysql.sock"), b"x").unwrap();
        fs::write(root.join("mysql/tmp/sort.dat"), b"x").unwrap();
        fs::write(
            root.join(".lainbackupignore"),
            "# scratch space\nmysql/tmp/\n",
        )
        .unwrap();

        let archive = Archive::new(Config::default()).unwrap();
        let policy = BackupPolicy {
            schedule: "@daily".into(),
            expire: Some("30d".into()),
            pre_run: Some("backup.sh --flush".into()),
            post_run: None,
        };
        let planned = archive.plan_at(&root, &policy);
        fs::remove_dir_all(&root).unwrap();

        let plan = planned.unwrap().plan;
        assert_eq!(
            plan.pre_run,
            Some(vec!["/lain/app/backup.sh".to_string(), "--flush".into()])
        );
        assert_eq!(plan.post_run, None);
        assert_eq!(plan.include_paths, ["."]);
        assert_eq!(plan.exclude_paths, ["mysql/mysql.sock", "mysql/tmp"]);
    }

    #[test]
    fn a_bad_ignore_file_fails_the_plan() {
        let root =
            std::env::temp_dir().join(format!("lain-archive-badignore-{}", std::process::id()));
        fs::create_dir_all(&root).unwrap();
        fs::write(root.join(".lainbackupignore"), "!important\n").unwrap();
        let archive = Archive::new(Config::default()).unwrap();
        let policy = BackupPolicy {
            schedule: "@daily".into(),
            expire: None,
            pre_run: None,
            post_run: None,
        };
        let planned = archive.plan_at(&root, &policy);
        fs::remove_dir_all(&root).unwrap();
        assert!(matches!(
            planned,
            Err(PluginError::InvalidInput(m)) if m == ".lainbackupignore: line 1: `!important`: negation (`!`) is not supported"
        ));
    }
}

//! Volume backups: LAIN's `backup_full` / `backup_increment`, run by the kernel.
//!
//! A backup covers one volume of one instance of a proc. The backup-hook plugin the kernel
//! configuration names for the proc or its app (`[backup.hooks]`), else `[backup] hook` (default
//! `archive`), plans it ([`Config::hook_for`]): it sees the volume read-only at `/volume` under
//! its budgets and returns what to include and exclude and the `pre_run` / `post_run` commands.
//! The kernel runs `pre_run` inside the instance, takes a snapshot with [`restic`] (a full
//! backup reads every file again; an incremental one names the volume's previous snapshot as
//! its parent, so unchanged files are not read and only new chunks are stored), runs
//! `post_run` (always, also after a failure), records the result and expires old backups.
//!
//! The repository is a local directory (`<data_dir>/backups/restic` unless `[backup]
//! repository` says otherwise) or, with `[backup.s3]`, a bucket of S3-compatible object storage
//! ([`s3`]; its access key is read from a 0600 file and given to restic alone). Either is
//! encrypted by restic with a password kept in a 0600 file next to the vault's master key
//! (`backup.key` beside `vault.key`; see [`Config::password_file`]).
//!
//! | key | value |
//! |---|---|
//! | `backups/<app>/<id, 16 digits>` | [`BackupRecord`] |
//! | `backup-seq` | the last id given |
//! | `backup-ticks/<app>/<proc>/<instance>/<kind>/<volume, hex>` | last tick considered (Unix s) |
//!
//! A record is written `running` before anything runs and rewritten when the backup ends; a
//! kernel killed meanwhile leaves it `running`, and the next kernel marks it `interrupted`
//! ([`Backups::recover`]) before it takes any backup: no backup is ever listed as complete
//! unless restic finished its snapshot.
//!
//! How each app's backups stand ([`BackupState`], shown by `lain app list`) is kept in memory
//! from the latest finished backup of each volume (module `latest`).

pub mod expire;
mod latest;
mod migrate;
pub mod restic;
mod run;
pub mod s3;
pub mod scheduler;
mod stage;
#[cfg(test)]
mod tests;

use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::store::{Expect, Op, Store, StoreError, get_json};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use latest::BackupState;
pub use migrate::{Migrated, MovedVolume};
pub use run::{Declared, Restored, RunRequest, Target};

/// `[backup]`: the hooks that plan volume backups and where restic keeps them.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The backup-hook plugin that plans the volume backups no entry of `hooks` names.
    pub hook: String,
    /// `[backup.hooks]`: per app (`app`) or per proc (`app.proc`), the backup-hook plugin that
    /// plans its volumes' backups instead of `hook`; a proc's entry wins over its app's.
    pub hooks: BTreeMap<String, String>,
    /// The restic repository (a local directory); default `<data_dir>/backups/restic`.
    pub repository: Option<PathBuf>,
    /// The repository in S3-compatible storage instead (`[backup.s3]`; not with `repository`).
    pub s3: Option<s3::S3Config>,
    /// The repository's password file (created 0600 with 32 random bytes when missing);
    /// default `backup.key` in the directory of the vault's key file. Keep a copy elsewhere:
    /// without it the backups cannot be read.
    pub password_file: Option<PathBuf>,
    /// The restic program.
    pub restic: PathBuf,
    /// Seconds one restic run (a backup, a restore, a prune) may take before it is killed.
    pub timeout_secs: u64,
    /// Seconds `pre_run` or `post_run` may take before it is killed (the backup then fails).
    pub command_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hook: "archive".into(),
            hooks: BTreeMap::new(),
            repository: None,
            s3: None,
            password_file: None,
            restic: PathBuf::from("restic"),
            timeout_secs: 6 * 3600,
            command_timeout_secs: 600,
        }
    }
}

impl Config {
    /// The hook that plans the backups of `proc` of `app`: its `hooks` entry, else its app's,
    /// else `hook`.
    pub fn hook_for(&self, app: &str, proc: &str) -> &str {
        self.hooks
            .get(&format!("{app}.{proc}"))
            .or_else(|| self.hooks.get(app))
            .unwrap_or(&self.hook)
    }

    /// Checks the names (`hook` and every value of `hooks` a plugin name, every key of `hooks`
    /// an app name or `app.proc`) and that the repository is either local or in S3 storage,
    /// with `[backup.s3]`'s keys. Whether each names an installed backup hook is checked when
    /// a backup runs (plugins come and go while the kernel runs): a backup whose hook is not
    /// one fails, naming it.
    pub fn check(&self) -> Result<(), String> {
        let plugin = |key: &str, name: &str| {
            crate::plugin::manifest::check_name(name).map_err(|e| format!("[backup] {key}: {e}"))
        };
        plugin("hook", &self.hook)?;
        match (&self.repository, &self.s3) {
            (Some(_), Some(_)) => return Err(
                "[backup] repository and [backup.s3] are both set: the repository is either a local directory or S3 storage; remove one".into(),
            ),
            (_, Some(s3)) => s3.check()?,
            _ => {}
        }
        for (key, name) in &self.hooks {
            let names: Vec<&str> = key.split('.').collect();
            if names.len() > 2 {
                return Err(format!(
                    "[backup.hooks] `{}`: name an app (`app`) or a proc (`app.proc`)",
                    key.escape_debug()
                ));
            }
            for name in names {
                crate::spec::values::check_name(name)
                    .map_err(|e| format!("[backup.hooks] `{}`: {e}", key.escape_debug()))?;
            }
            plugin(&format!("hooks.\"{key}\""), name)?;
        }
        Ok(())
    }

    /// The repository: in S3 storage (its credentials read now) with `[backup.s3]`, else
    /// the local directory under `data_dir` unless configured.
    pub fn storage(&self, data_dir: &Path) -> Result<restic::Repository, restic::EngineError> {
        match &self.s3 {
            Some(s3) => Ok(restic::Repository::S3(s3.open()?)),
            None => Ok(restic::Repository::Local(self.repository(data_dir))),
        }
    }

    /// The local repository directory under `data_dir` unless configured.
    pub fn repository(&self, data_dir: &Path) -> PathBuf {
        self.repository
            .clone()
            .unwrap_or_else(|| data_dir.join("backups").join("restic"))
    }

    /// The password file: configured, or `backup.key` beside the vault's `key_file`.
    pub fn password_file(&self, key_file: &Path) -> PathBuf {
        self.password_file
            .clone()
            .unwrap_or_else(|| key_file.with_file_name("backup.key"))
    }
}

/// Full or incremental.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Every file read again (`backup_full`).
    Full,
    /// Only files changed since the previous snapshot of the volume read (`backup_increment`).
    Incremental,
}

impl Kind {
    /// Its name in tables and keys.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Full => "full",
            Kind::Incremental => "incremental",
        }
    }
}

/// How a backup ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Started, not ended yet.
    Running,
    /// The snapshot is complete.
    Succeeded,
    /// Something failed (the hook, `pre_run`, restic); `error` says what.
    Failed,
    /// The kernel stopped while it ran; no snapshot is recorded.
    Interrupted,
    /// The hook planned nothing to include.
    Skipped,
}

impl Outcome {
    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Interrupted => "interrupted",
            Outcome::Skipped => "skipped",
        }
    }
}

/// What started a backup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    /// Its schedule.
    Scheduled,
    /// `lain backup run`.
    Manual,
    /// `lain volume migrate`'s final backup: the whole volume of the stopped instance, not
    /// planned by the hook (recorded with hook `-`).
    Migration,
}

/// One backup of one volume of one instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BackupRecord {
    /// Its id, unique in the kernel.
    pub id: u64,
    /// App name.
    pub app: String,
    /// Proc name.
    pub proc: String,
    /// Instance number.
    pub instance: u32,
    /// The volume's path in the instance.
    pub volume: String,
    /// Full or incremental.
    pub kind: Kind,
    /// Scheduled or manual.
    pub trigger: Trigger,
    /// How it ended (or `running`).
    pub outcome: Outcome,
    /// When it started (Unix seconds).
    pub started_at: i64,
    /// When it ended (Unix seconds).
    pub ended_at: Option<i64>,
    /// How long it took, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Files in the snapshot.
    pub files: u64,
    /// Bytes of those files.
    pub size: u64,
    /// Bytes this backup added to the repository (only what was new).
    pub added: u64,
    /// restic's snapshot id.
    pub snapshot: Option<String>,
    /// The snapshot it was taken against (incremental backups).
    pub parent: Option<String>,
    /// The backup-hook plugin that planned it.
    pub hook: String,
    /// That plugin's version.
    pub hook_version: String,
    /// What went wrong.
    pub error: Option<String>,
    /// The schedule's tick it is for (scheduled backups).
    pub scheduled_at: Option<i64>,
}

/// Why a backup operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No such app, proc, instance, volume or backup.
    #[error("{0}")]
    NotFound(String),
    /// The request cannot be carried out as given.
    #[error("{0}")]
    Invalid(String),
    /// It conflicts with what runs (a backup of that volume is running).
    #[error("{0}")]
    Conflict(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The state store failed.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The engine failed.
    #[error("{0}")]
    Engine(#[from] restic::EngineError),
    /// Anything else.
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<LifecycleError> for BackupError {
    fn from(e: LifecycleError) -> Self {
        match e {
            LifecycleError::NotFound(m) => BackupError::NotFound(m),
            LifecycleError::Invalid(m) => BackupError::Invalid(m),
            LifecycleError::Conflict(m) => BackupError::Conflict(m),
            LifecycleError::Forbidden(m) => BackupError::Forbidden(m),
            LifecycleError::Store(e) => BackupError::Store(e),
            other => BackupError::Internal(anyhow::anyhow!("{other}")),
        }
    }
}

/// Prefix of backup records.
pub const BACKUPS: &str = "backups/";
/// The id sequence.
pub const SEQUENCE: &str = "backup-seq";
/// Prefix of the scheduler's last ticks.
pub const TICKS: &str = "backup-ticks/";

/// Key of backup `id` of `app`.
pub fn record_key(app: &str, id: u64) -> String {
    format!("{BACKUPS}{app}/{id:016}")
}

/// The kernel's backups: records, the engine, the runs in flight.
pub struct Backups {
    lifecycle: Arc<Lifecycle>,
    config: Config,
    restic: restic::Restic,
    /// Where instance volumes live: `<volumes>/<app>/<proc>/<instance>/<volume path>`.
    volumes: PathBuf,
    /// Private scratch space (include/exclude lists, restore staging).
    scratch: PathBuf,
    /// Volumes with a backup or restore running: `(app, proc, instance, volume)`.
    busy: parking_lot::Mutex<HashSet<(String, String, u32, String)>>,
    /// One restic operation at a time per kernel (two cores are shared with the instances).
    gate: tokio::sync::Semaphore,
    /// How each app's backups stand.
    latest: latest::Latest,
}

/// Releases a volume's busy mark when dropped.
struct Busy<'a> {
    backups: &'a Backups,
    key: (String, String, u32, String),
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.backups.busy.lock().remove(&self.key);
    }
}

impl Backups {
    /// The backups of the kernel `lifecycle` runs, as its configuration's `[backup]` says;
    /// fails when the S3 storage's credentials file cannot be used (naming it).
    pub fn new(lifecycle: Arc<Lifecycle>) -> Result<Backups, BackupError> {
        let kc = lifecycle.config();
        let config = kc.backup.clone();
        let restic = restic::Restic::new(
            &config.restic,
            config.storage(&kc.data_dir)?,
            &config.password_file(&kc.key_file()),
            &kc.cache_dir().join("restic"),
            Duration::from_secs(config.timeout_secs.max(1)),
        );
        Ok(Backups {
            volumes: kc.data_dir.join("volumes"),
            scratch: kc.data_dir.join("backups").join("scratch"),
            lifecycle,
            config,
            restic,
            busy: Default::default(),
            gate: tokio::sync::Semaphore::new(1),
            latest: Default::default(),
        })
    }

    /// The engine.
    pub fn restic(&self) -> &restic::Restic {
        &self.restic
    }

    fn store(&self) -> &dyn Store {
        self.lifecycle.store()
    }

    /// Marks every backup left `running` by a previous kernel `interrupted`, and removes the
    /// locks its restic left (restic keeps no half snapshot: a snapshot exists only once its
    /// last write is done, and data of an unfinished one is removed by the next prune).
    pub fn recover(&self) -> Result<usize, BackupError> {
        let running: Vec<String> = self
            .all(None)?
            .into_iter()
            .filter(|r| r.outcome == Outcome::Running)
            .map(|r| record_key(&r.app, r.id))
            .collect();
        // Conditional on each record still running: one that ended meanwhile keeps its outcome.
        let interrupted = crate::store::transact(self.store(), "backups/recover", |txn| {
            let mut out = Vec::new();
            for key in &running {
                let Some(mut r) = txn.get_json::<BackupRecord>(key)? else {
                    continue;
                };
                if r.outcome != Outcome::Running {
                    continue;
                }
                r.outcome = Outcome::Interrupted;
                r.ended_at = Some(crate::clock::unix_secs());
                r.error = Some("the kernel stopped while this backup ran".into());
                txn.put_json(key, &r)?;
                out.push(r);
            }
            Ok::<_, BackupError>(out)
        })?;
        let n = interrupted.len();
        for r in &interrupted {
            tracing::warn!(app = %r.app, proc = %r.proc, instance = r.instance, volume = %r.volume, id = r.id, "backup interrupted by a kernel stop");
        }
        for r in &interrupted {
            self.latest.ended(r);
        }
        if let Err(e) = self.restic.unlock() {
            tracing::warn!("cannot remove stale restic locks: {e}");
        }
        Ok(n)
    }

    /// Every backup record (of `app` when given), oldest first.
    pub fn all(&self, app: Option<&str>) -> Result<Vec<BackupRecord>, BackupError> {
        let prefix = match app {
            Some(a) => format!("{BACKUPS}{a}/"),
            None => BACKUPS.to_string(),
        };
        let mut out = Vec::new();
        for (key, value) in self.store().list(&prefix)? {
            out.push(
                serde_json::from_slice::<BackupRecord>(&value)
                    .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?,
            );
        }
        out.sort_by_key(|r| r.id);
        Ok(out)
    }

    /// The backups of `app` (of one proc with `proc`), oldest first.
    pub fn list(&self, app: &str, proc: Option<&str>) -> Result<Vec<BackupRecord>, BackupError> {
        self.lifecycle.app(app)?;
        Ok(self
            .all(Some(app))?
            .into_iter()
            .filter(|r| proc.is_none_or(|p| r.proc == p))
            .collect())
    }

    /// How `app`'s backups stand: the latest finished backup of each of its volumes, summed up
    /// (none when no backup of it ended). Reads the app's records only the first time it is
    /// asked for, and again after one of them was deleted.
    pub fn state(&self, app: &str) -> Result<Option<BackupState>, BackupError> {
        self.latest.state(app, || self.all(Some(app)))
    }

    /// Backup `id` of `app`.
    pub fn get(&self, app: &str, id: u64) -> Result<BackupRecord, BackupError> {
        self.lifecycle.app(app)?;
        get_json(self.store(), &record_key(app, id))?
            .ok_or_else(|| BackupError::NotFound(format!("app `{app}` has no backup {id}")))
    }

    /// The next backup id.
    fn next_id(&self) -> Result<u64, BackupError> {
        for _ in 0..100 {
            let current = self.store().get(SEQUENCE)?;
            let last: u64 = current
                .as_deref()
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let next = last + 1;
            let expect = [Expect {
                key: SEQUENCE.into(),
                value: current,
            }];
            let op = Op::Put(SEQUENCE.into(), next.to_string().into_bytes());
            if self.store().apply_if(&expect, vec![op])?.is_some() {
                return Ok(next);
            }
        }
        Err(BackupError::Conflict(
            "cannot take a backup id: too much contention".into(),
        ))
    }

    /// Marks the volume busy, or says which operation holds it.
    fn hold(
        &self,
        app: &str,
        proc: &str,
        instance: u32,
        volume: &str,
    ) -> Result<Busy<'_>, BackupError> {
        let key = (
            app.to_string(),
            proc.to_string(),
            instance,
            volume.to_string(),
        );
        if !self.busy.lock().insert(key.clone()) {
            return Err(BackupError::Conflict(format!(
                "a backup or restore of volume {volume} of {app}.{proc} instance {instance} is running"
            )));
        }
        Ok(Busy { backups: self, key })
    }

    /// Whether a backup or restore of `t`'s volume runs.
    pub fn is_busy(&self, t: &Target) -> bool {
        self.busy
            .lock()
            .contains(&(t.app.clone(), t.proc.clone(), t.instance, t.volume.clone()))
    }

    /// Marks the volume busy once the operation holding it ends (polling; gives up after the
    /// restic timeout).
    async fn hold_waiting(
        &self,
        app: &str,
        proc: &str,
        instance: u32,
        volume: &str,
    ) -> Result<Busy<'_>, BackupError> {
        let deadline =
            std::time::Instant::now() + Duration::from_secs(self.config.timeout_secs.max(1));
        loop {
            match self.hold(app, proc, instance, volume) {
                Err(BackupError::Conflict(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return other,
            }
        }
    }

    /// The host directory of `volume` of instance `instance` of `proc` of `app`.
    pub fn volume_dir(
        &self,
        app: &str,
        proc: &str,
        instance: u32,
        volume: &str,
    ) -> Result<PathBuf, BackupError> {
        let rel = run::relative_volume(volume)?;
        Ok(self
            .volumes
            .join(crate::lifecycle::component("app", app)?)
            .join(crate::lifecycle::component("proc", proc)?)
            .join(instance.to_string())
            .join(rel))
    }

    /// Removes backup `id` of `app`: its snapshot (and the data only it held) and its record.
    pub async fn delete(&self, app: &str, id: u64) -> Result<BackupRecord, BackupError> {
        let record = self.get(app, id)?;
        if record.outcome == Outcome::Running {
            return Err(BackupError::Conflict(format!(
                "backup {id} is still running"
            )));
        }
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BackupError::Internal(e.into()))?;
        if let Some(snapshot) = record.snapshot.clone() {
            let restic = self.restic.clone();
            tokio::task::spawn_blocking(move || restic.forget(&[snapshot]))
                .await
                .map_err(|e| BackupError::Internal(e.into()))??;
        }
        // The record's snapshot is forgotten: its deletion depends on nothing else.
        self.store().apply(vec![Op::Delete(record_key(app, id))])?;
        self.latest.forget(app);
        tracing::info!(app, id, "backup deleted");
        Ok(record)
    }
}

//! One backup of one volume, and one restore.

use super::{
    BackupError, BackupRecord, Backups, Kind, Outcome, Trigger, expire, record_key, restic,
};
use crate::plugin::FailurePolicy;
use crate::plugin::Kind as PluginKind;
use crate::plugin::bindings::backup::{BackupJob, BackupMode, BackupOutcome, BackupPlan};
use crate::plugin::bindings::types::{BackupPolicy, Volume};
use crate::plugin::kinds::backup::BackupPlugin;
use crate::runtime::{Observed, labels};
use crate::spec::PluginProcTypes;
use crate::store::{Op, put_json};
use anyhow::Context as _;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

/// Paths a plan may list at most (includes plus excludes).
pub const MAX_PLAN_PATHS: usize = 100_000;

/// One volume of one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// App name.
    pub app: String,
    /// Proc name.
    pub proc: String,
    /// Instance number.
    pub instance: u32,
    /// The volume's path in the instance.
    pub volume: String,
}

/// A backup to take.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// Of what.
    pub target: Target,
    /// Full or incremental.
    pub kind: Kind,
    /// Why.
    pub trigger: Trigger,
    /// The schedule's tick, for scheduled backups.
    pub scheduled_at: Option<i64>,
}

/// A proc of the deployed release that has volumes.
#[derive(Clone, Debug)]
pub struct Declared {
    /// Proc name.
    pub proc: String,
    /// `<app>.<type>.<proc>`: the [`labels::PROC`] of its instances.
    pub full_name: String,
    /// Instances it runs now (scale applied).
    pub instances: u32,
    /// Its volumes, with their backup policies.
    pub volumes: Vec<Volume>,
}

/// The path of `volume` (an absolute path in the instance) relative to its instance's volume
/// root: plain components only.
pub fn relative_volume(volume: &str) -> Result<PathBuf, BackupError> {
    let rel = Path::new(volume.trim_start_matches('/'));
    let plain = volume.starts_with('/')
        && rel.components().count() > 0
        && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(BackupError::Invalid(format!(
            "volume `{}` is not an absolute path of plain components",
            volume.escape_debug()
        )));
    }
    Ok(rel.to_path_buf())
}

/// Checks one path of a plan: relative, plain components, and (for includes) no symbolic link
/// on the way to it inside `root`, so restic never reads through a link out of the volume.
fn check_plan_path(root: &Path, path: &str, include: bool) -> Result<(), String> {
    let p = Path::new(path);
    if path == "." {
        return Ok(());
    }
    if p.is_absolute()
        || path.is_empty()
        || !p
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!(
            "path `{}` is not relative to the volume without `..`",
            path.escape_debug()
        ));
    }
    if include {
        let mut at = root.to_path_buf();
        let parts: Vec<_> = p.components().collect();
        for c in &parts[..parts.len().saturating_sub(1)] {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(format!(
                        "included path `{}` goes through a symbolic link",
                        path.escape_debug()
                    ));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// Checks a plan the hook returned, naming the hook in the error.
pub(super) fn check_plan(plan: &BackupPlan, root: &Path, hook: &str) -> Result<(), String> {
    let n = plan.include_paths.len() + plan.exclude_paths.len();
    if n > MAX_PLAN_PATHS {
        return Err(format!(
            "backup hook `{hook}` planned {n} paths, more than the {MAX_PLAN_PATHS} allowed"
        ));
    }
    for (list, include) in [(&plan.include_paths, true), (&plan.exclude_paths, false)] {
        for path in list {
            check_plan_path(root, path, include)
                .map_err(|e| format!("backup hook `{hook}` planned an invalid path: {e}"))?;
        }
    }
    for argv in [&plan.pre_run, &plan.post_run].into_iter().flatten() {
        if argv.is_empty()
            || argv.len() > 1024
            || argv.iter().map(String::len).sum::<usize>() > 64 << 10
        {
            return Err(format!(
                "backup hook `{hook}` planned a command that is empty or too long"
            ));
        }
    }
    Ok(())
}

/// The backup policy a job of `kind` runs under: the volume's own, else its other one (for
/// manual backups of the other kind), else an empty one.
fn policy_for(volume: &Volume, kind: Kind) -> BackupPolicy {
    let (own, other) = match kind {
        Kind::Full => (&volume.backup_full, &volume.backup_increment),
        Kind::Incremental => (&volume.backup_increment, &volume.backup_full),
    };
    own.clone()
        .or_else(|| other.clone().map(|p| BackupPolicy { expire: None, ..p }))
        .unwrap_or(BackupPolicy {
            schedule: String::new(),
            expire: None,
            pre_run: None,
            post_run: None,
        })
}

/// The end of `bytes` as text, for error messages.
fn text_tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let cut = text.char_indices().rev().nth(500).map_or(0, |(i, _)| i);
    text[cut..].replace('\n', " | ")
}

impl Backups {
    /// The procs of `app`'s deployed release that have volumes (parsed again from its
    /// `lain.yaml` with the proc types installed now).
    pub fn declared(&self, app: &str) -> Result<Vec<Declared>, BackupError> {
        let record = self.lifecycle.app(app)?;
        let Some(deployed) = &record.deployed else {
            return Ok(Vec::new());
        };
        let release = self.lifecycle.release(app, &deployed.release)?;
        let registry = self.lifecycle.registry();
        let types = PluginProcTypes::new(
            registry.enabled(PluginKind::ProcType),
            &registry.proc_types(),
        )
        .map_err(|e| BackupError::Internal(anyhow::anyhow!("{e}")))?;
        let parsed = crate::spec::parse_release(
            app,
            &release.lain_yaml,
            &types,
            &self.lifecycle.config().domains,
        );
        let Some(spec) = parsed.spec else {
            return Err(BackupError::Invalid(format!(
                "the lain.yaml of release {} of `{app}` no longer parses",
                release.version
            )));
        };
        let mut out = Vec::new();
        for proc in &spec.procs {
            if proc.proc.volumes.is_empty() {
                continue;
            }
            let Some(plan) = deployed.procs.iter().find(|p| p.name == proc.proc.name) else {
                continue;
            };
            out.push(Declared {
                proc: plan.name.clone(),
                full_name: plan.full_name.clone(),
                instances: record.effective(plan).num_instances,
                volumes: proc.proc.volumes.clone(),
            });
        }
        Ok(out)
    }

    /// The running instance of `target`, if any.
    pub(super) async fn running_instance(
        &self,
        full_name: &str,
        target: &Target,
    ) -> Result<Option<Observed>, BackupError> {
        let runtime = self.lifecycle.runtime();
        let listed = runtime
            .list(self.lifecycle.kernel_id())
            .await
            .map_err(|e| BackupError::Internal(anyhow::anyhow!("{e}")))?;
        let number = target.instance.to_string();
        Ok(listed.into_iter().find(|o| {
            o.label(labels::APP) == target.app
                && o.label(labels::PROC) == full_name
                && o.label(labels::INSTANCE) == number
                && o.state.is_running()
        }))
    }

    /// Takes one backup and records it; a failed backup is recorded too (and returned, with
    /// `outcome: failed`). Errors are refusals: nothing was recorded.
    pub async fn run(&self, req: RunRequest) -> Result<BackupRecord, BackupError> {
        let t = req.target.clone();
        let declared = self.declared(&t.app)?;
        let proc = declared.iter().find(|d| d.proc == t.proc).ok_or_else(|| {
            BackupError::NotFound(format!(
                "proc `{}` of app `{}` has no volumes in its deployed release",
                t.proc, t.app
            ))
        })?;
        let volume = proc
            .volumes
            .iter()
            .find(|v| v.path == t.volume)
            .ok_or_else(|| {
                BackupError::NotFound(format!(
                    "proc `{}` of app `{}` has no volume {}",
                    t.proc, t.app, t.volume
                ))
            })?
            .clone();
        if t.instance == 0 || t.instance > proc.instances {
            return Err(BackupError::NotFound(format!(
                "proc `{}` of app `{}` has no instance {} (it runs {})",
                t.proc, t.app, t.instance, proc.instances
            )));
        }
        let dir = self.volume_dir(&t.app, &t.proc, t.instance, &t.volume)?;
        if !dir.is_dir() {
            return Err(BackupError::NotFound(format!(
                "volume {} of {}.{} instance {} is not on this host (no {})",
                t.volume,
                t.app,
                t.proc,
                t.instance,
                dir.display()
            )));
        }
        // A scheduled backup of a busy volume is not taken (its tick stays for the next pass);
        // one asked for waits for the running one.
        let _busy = match req.trigger {
            Trigger::Scheduled => self.hold(&t.app, &t.proc, t.instance, &t.volume)?,
            Trigger::Manual | Trigger::Migration => {
                self.hold_waiting(&t.app, &t.proc, t.instance, &t.volume)
                    .await?
            }
        };
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BackupError::Internal(e.into()))?;
        let started = Instant::now();
        let id = self.next_id()?;
        let previous = self
            .all(Some(&t.app))?
            .into_iter()
            .filter(|r| r.proc == t.proc && r.instance == t.instance && r.volume == t.volume)
            .filter(|r| r.outcome == Outcome::Succeeded && r.snapshot.is_some())
            .max_by_key(|r| (r.started_at, r.id));
        let mut record = BackupRecord {
            id,
            app: t.app.clone(),
            proc: t.proc.clone(),
            instance: t.instance,
            volume: t.volume.clone(),
            kind: req.kind,
            trigger: req.trigger,
            outcome: Outcome::Running,
            started_at: crate::clock::unix_secs(),
            ended_at: None,
            duration_ms: None,
            files: 0,
            size: 0,
            added: 0,
            snapshot: None,
            parent: None,
            hook: self.config.hook_for(&t.app, &t.proc).to_string(),
            hook_version: String::new(),
            error: None,
            scheduled_at: req.scheduled_at,
        };
        // Written first: a kernel killed from here on leaves it `running`, and the next one
        // marks it interrupted. A blind write: the id is fresh ([`Backups::next_id`], a CAS) and
        // only this run writes its record.
        self.store()
            .apply(vec![put_json(&record_key(&t.app, id), &record)?])?;
        tracing::info!(app = %t.app, proc = %t.proc, instance = t.instance, volume = %t.volume, kind = req.kind.name(), id, "backup started");
        let policy = policy_for(&volume, req.kind);
        let job = BackupJob {
            app: t.app.clone(),
            proc: proc.full_name.clone(),
            instance: t.instance,
            volume: t.volume.clone(),
            mode: match req.kind {
                Kind::Full => BackupMode::Full,
                Kind::Incremental => BackupMode::Increment,
            },
            policy: policy.clone(),
        };
        let parent = match req.kind {
            Kind::Incremental => previous.and_then(|p| p.snapshot),
            Kind::Full => None,
        };
        let result = if req.trigger == Trigger::Migration {
            self.take_whole(&t, &dir, &job, id, &mut record).await
        } else {
            self.take(&t, proc, &dir, &job, parent.as_deref(), id, &mut record)
                .await
        };
        record.ended_at = Some(crate::clock::unix_secs());
        record.duration_ms = Some(started.elapsed().as_millis() as u64);
        match result {
            Ok(Some(())) => record.outcome = Outcome::Succeeded,
            Ok(None) => record.outcome = Outcome::Skipped,
            Err(e) => {
                record.outcome = Outcome::Failed;
                record.error = Some(e);
            }
        }
        // Only this run writes its record (see above).
        self.store()
            .apply(vec![put_json(&record_key(&t.app, id), &record)?])?;
        self.latest.ended(&record);
        match record.outcome {
            Outcome::Failed => {
                tracing::error!(app = %t.app, proc = %t.proc, instance = t.instance, volume = %t.volume, id, error = record.error.as_deref().unwrap_or(""), "backup failed")
            }
            o => {
                tracing::info!(app = %t.app, proc = %t.proc, instance = t.instance, volume = %t.volume, id, outcome = o.name(), files = record.files, bytes = record.size, added = record.added, "backup ended")
            }
        }
        if req.trigger == Trigger::Migration {
            return Ok(record);
        }
        self.tell_hook(&job, &record).await;
        if record.outcome == Outcome::Succeeded
            && let Some(keep) = policy.expire.as_deref().and_then(expire::parse)
            && let Err(e) = self.expire(&t, req.kind, keep).await
        {
            tracing::warn!(app = %t.app, proc = %t.proc, volume = %t.volume, "expiring old backups failed: {e}");
        }
        Ok(record)
    }

    /// The hook's plan, `pre_run`, restic, `post_run`: the snapshot's summary, none when the
    /// hook included nothing, or what failed.
    #[allow(clippy::too_many_arguments)]
    async fn take(
        &self,
        t: &Target,
        proc: &Declared,
        dir: &Path,
        job: &BackupJob,
        parent: Option<&str>,
        id: u64,
        record: &mut BackupRecord,
    ) -> Result<Option<()>, String> {
        let hook = &record.hook.clone();
        let plugin = match self.lifecycle.registry().get(hook) {
            None => return Err(format!("backup hook plugin `{hook}` is not installed")),
            Some(Err(cause)) => return Err(format!("backup hook plugin `{hook}`: {cause}")),
            Some(Ok(p)) => p,
        };
        record.hook_version = plugin.manifest.version.clone();
        if plugin.kind() != PluginKind::BackupHook {
            return Err(format!(
                "plugin `{hook}` is a {} plugin, not a backup hook",
                plugin.kind()
            ));
        }
        let (plan_job, plan_dir) = (job.clone(), dir.to_path_buf());
        let policy = plugin.policy();
        let planned =
            tokio::task::spawn_blocking(move || BackupPlugin(&plugin).plan(&plan_job, &plan_dir))
                .await
                .map_err(|e| format!("backup hook `{hook}`: {e}"))?
                .map_err(|e| e.to_string())
                .and_then(|plan| check_plan(&plan, dir, hook).map(|()| plan));
        let plan = match (planned, policy) {
            (Ok(plan), _) => plan,
            (Err(e), FailurePolicy::Closed) => return Err(e),
            // `lain plugin policy HOOK open`: the whole volume, and no command.
            (Err(e), FailurePolicy::Open) => {
                tracing::warn!(app = %t.app, proc = %t.proc, volume = %t.volume, "{e}; failing open: backing up the whole volume without pre_run/post_run");
                record.error = Some(format!("{e} (failed open: whole volume, no commands)"));
                BackupPlan {
                    pre_run: None,
                    include_paths: vec![".".into()],
                    exclude_paths: Vec::new(),
                    post_run: None,
                }
            }
        };
        if plan.include_paths.is_empty() {
            return Ok(None);
        }
        let instance = if plan.pre_run.is_some() || plan.post_run.is_some() {
            match self.running_instance(&proc.full_name, t).await {
                Ok(Some(o)) => Some(o.name),
                Ok(None) => {
                    return Err(format!(
                        "instance {} of {}.{} is not running: its pre_run/post_run cannot run",
                        t.instance, t.app, t.proc
                    ));
                }
                Err(e) => return Err(e.to_string()),
            }
        } else {
            None
        };
        let timeout = Duration::from_secs(self.config.command_timeout_secs.max(1));
        let mut result: Result<Option<restic::Summary>, String> = match (&plan.pre_run, &instance) {
            (Some(argv), Some(name)) => self
                .exec(name, "pre_run", argv, timeout)
                .await
                .map(|()| None),
            _ => Ok(None),
        };
        let mut empty = false;
        if result.is_ok() {
            result = self.snapshot(t, dir, &plan, job, parent, id).await;
            // restic stores no snapshot of an empty selection: the backup is skipped.
            empty = matches!(result, Ok(None));
        }
        // A snapshot is recorded with its numbers even if post_run then fails the backup, so
        // that deleting or expiring the record removes it.
        if let Ok(Some(summary)) = &result {
            record.snapshot = Some(summary.snapshot_id.clone());
            record.files = summary.total_files_processed;
            record.size = summary.total_bytes_processed;
            record.added = summary.data_added;
            record.parent = parent.map(String::from);
        }
        // post_run runs whatever happened before it.
        if let (Some(argv), Some(name)) = (&plan.post_run, &instance) {
            let post = self.exec(name, "post_run", argv, timeout).await;
            if let (Ok(_), Err(e)) = (&result, post) {
                result = Err(e);
            }
        }
        if empty && result.is_ok() {
            record.error = Some("nothing to back up: the planned paths hold no file".into());
        }
        result.map(|s| s.map(drop))
    }

    /// Runs `argv` in instance `name`; fails on a non-zero exit, naming `what`.
    async fn exec(
        &self,
        name: &str,
        what: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<(), String> {
        let out = self
            .lifecycle
            .runtime()
            .exec(name, argv, timeout)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        tracing::info!(instance = name, what, code = ?out.code, "backup command ran");
        match out.code {
            Some(0) => Ok(()),
            _ if out.timed_out => Err(format!(
                "{what} `{}` did not finish within {} s and was killed",
                argv.join(" "),
                timeout.as_secs()
            )),
            code => Err(format!(
                "{what} `{}` failed ({}): {}",
                argv.join(" "),
                code.map_or_else(|| "killed".to_string(), |c| format!("exit status {c}")),
                text_tail(&out.output)
            )),
        }
    }

    /// Runs restic for `plan` and resolves the snapshot's full id.
    pub(super) async fn snapshot(
        &self,
        t: &Target,
        dir: &Path,
        plan: &BackupPlan,
        job: &BackupJob,
        parent: Option<&str>,
        id: u64,
    ) -> Result<Option<restic::Summary>, String> {
        let restic = self.restic.clone();
        let scratch = self.scratch.join(format!("b{id}"));
        let tag = |k: &str, v: &str| format!("{k}={}", v.replace(',', "_"));
        let tags = vec![
            "lain".to_string(),
            tag("app", &t.app),
            tag("proc", &t.proc),
            tag("instance", &t.instance.to_string()),
            tag("volume", &t.volume),
            tag(
                "kind",
                if job.mode == BackupMode::Full {
                    "full"
                } else {
                    "incremental"
                },
            ),
            tag("id", &id.to_string()),
        ];
        let (root, plan, parent) = (dir.to_path_buf(), plan.clone(), parent.map(String::from));
        let force = job.mode == BackupMode::Full;
        let label = format!("{}.{} instance {} {}", t.app, t.proc, t.instance, t.volume);
        tokio::task::spawn_blocking(move || -> Result<Option<restic::Summary>, String> {
            restic.ensure().map_err(|e| e.to_string())?;
            private_scratch(&scratch).map_err(|e| format!("{e:#}"))?;
            let args = restic::BackupArgs {
                root: &root,
                include: &plan.include_paths,
                exclude: &plan.exclude_paths,
                parent: parent.as_deref(),
                force,
                tags: &tags,
                scratch: &scratch,
            };
            let mut last = Instant::now();
            let result = restic.backup(&args, &mut |p| {
                if last.elapsed() >= Duration::from_secs(2) {
                    last = Instant::now();
                    tracing::info!(volume = %label, percent = format!("{:.0}", p.percent_done * 100.0), files = p.files_done, bytes = p.bytes_done, total_bytes = p.total_bytes, "backup progress");
                }
            });
            let _ = std::fs::remove_dir_all(&scratch);
            let mut summary = match result {
                Err(restic::EngineError::Failed { stderr, .. })
                    if stderr.contains("snapshot is empty") =>
                {
                    return Ok(None);
                }
                other => other.map_err(|e| e.to_string())?,
            };
            summary.snapshot_id = restic
                .snapshot_id(&summary.snapshot_id)
                .map_err(|e| e.to_string())?;
            Ok(Some(summary))
        })
        .await
        .map_err(|e| format!("backup task: {e}"))?
    }

    /// Tells the hook how the backup ended; its errors are logged.
    async fn tell_hook(&self, job: &BackupJob, record: &BackupRecord) {
        let Some(Ok(plugin)) = self.lifecycle.registry().get(&record.hook) else {
            return;
        };
        if plugin.kind() != PluginKind::BackupHook {
            return;
        }
        let outcome = BackupOutcome {
            success: record.outcome == Outcome::Succeeded,
            files: record.files,
            bytes: record.size,
            message: record.error.clone(),
        };
        let job = job.clone();
        let told =
            tokio::task::spawn_blocking(move || BackupPlugin(&plugin).finished(&job, &outcome))
                .await;
        if let Ok(Err(e)) = told {
            tracing::warn!("{e}");
        }
    }

    /// Expires the backups of `t` of `kind` older than `keep_secs` (see [`expire::due`]).
    async fn expire(&self, t: &Target, kind: Kind, keep_secs: i64) -> Result<(), BackupError> {
        let records: Vec<BackupRecord> = self
            .all(Some(&t.app))?
            .into_iter()
            .filter(|r| r.proc == t.proc && r.instance == t.instance && r.volume == t.volume)
            .collect();
        let due = expire::due(&records, kind, keep_secs, crate::clock::unix_secs());
        if due.is_empty() {
            return Ok(());
        }
        let snapshots: Vec<String> = records
            .iter()
            .filter(|r| due.contains(&r.id))
            .filter_map(|r| r.snapshot.clone())
            .collect();
        let restic = self.restic.clone();
        tokio::task::spawn_blocking(move || restic.forget(&snapshots))
            .await
            .map_err(|e| BackupError::Internal(e.into()))??;
        let ops = due
            .iter()
            .map(|id| Op::Delete(record_key(&t.app, *id)))
            .collect();
        // Deletes of expired records whose snapshots are forgotten: nothing read decides them.
        self.store().apply(ops)?;
        self.latest.forget(&t.app);
        tracing::info!(app = %t.app, proc = %t.proc, volume = %t.volume, expired = ?due, "old backups expired");
        Ok(())
    }

    /// Restores backup `id` of `app`: beside, into `to` (a new directory; cluster admins only,
    /// since it writes on the kernel's host), or in place into instance `instance` (default:
    /// the backup's own), stopping the instance around the swap and starting it again.
    pub async fn restore(
        &self,
        app: &str,
        id: u64,
        instance: Option<u32>,
        to: Option<PathBuf>,
        admin: bool,
    ) -> Result<Restored, BackupError> {
        let record = self.get(app, id)?;
        let Some(snapshot) = record
            .snapshot
            .clone()
            .filter(|_| record.outcome == Outcome::Succeeded)
        else {
            return Err(BackupError::Invalid(format!(
                "backup {id} is {}: only a succeeded backup can be restored",
                record.outcome.name()
            )));
        };
        if let Some(to) = to {
            if !admin {
                return Err(BackupError::Forbidden(
                    "restoring to a path on the kernel's host is for cluster admins; maintainers restore in place (--instance)".into(),
                ));
            }
            return self.restore_beside(&record, &snapshot, to).await;
        }
        let number = instance.unwrap_or(record.instance);
        let declared = self.declared(app)?;
        let proc = declared
            .iter()
            .find(|d| d.proc == record.proc)
            .ok_or_else(|| {
                BackupError::NotFound(format!(
                    "proc `{}` of app `{app}` has no volumes in its deployed release",
                    record.proc
                ))
            })?;
        if !proc.volumes.iter().any(|v| v.path == record.volume) {
            return Err(BackupError::NotFound(format!(
                "proc `{}` of app `{app}` no longer has volume {}",
                record.proc, record.volume
            )));
        }
        if number == 0 || number > proc.instances {
            return Err(BackupError::NotFound(format!(
                "proc `{}` of app `{app}` has no instance {number}",
                record.proc
            )));
        }
        let target = Target {
            app: app.to_string(),
            proc: record.proc.clone(),
            instance: number,
            volume: record.volume.clone(),
        };
        let _busy = self
            .hold_waiting(app, &record.proc, number, &record.volume)
            .await?;
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BackupError::Internal(e.into()))?;
        let dir = self.volume_dir(app, &record.proc, number, &record.volume)?;
        let staged = self.stage(id, Some(&snapshot), &dir).await?;
        // The restored tree is complete and verified: stop the instance, swap, start it.
        let running = self.running_instance(&proc.full_name, &target).await?;
        let runtime = self.lifecycle.runtime();
        // The reconciler would restart the instance as soon as it exits.
        let held = running
            .as_ref()
            .map(|o| self.lifecycle.hold_instance(&o.name));
        if let Some(o) = &running {
            runtime
                .stop(&o.name, Duration::from_secs(10))
                .await
                .map_err(|e| BackupError::Internal(anyhow::anyhow!("{e}")))?;
        }
        let swapped = staged.swap();
        if let Some(o) = &running
            && let Err(e) = runtime.start(&o.name).await
        {
            tracing::warn!(instance = %o.name, "cannot start the instance after a restore (the reconciler will): {e}");
        }
        drop(held);
        self.lifecycle.wake();
        swapped?;
        staged.clean().await;
        tracing::info!(app, id, instance = number, volume = %record.volume, "backup restored in place");
        Ok(Restored {
            id,
            path: dir.display().to_string(),
            instance: Some(number),
            restarted: running.is_some(),
        })
    }

    async fn restore_beside(
        &self,
        record: &BackupRecord,
        snapshot: &str,
        to: PathBuf,
    ) -> Result<Restored, BackupError> {
        if !to.is_absolute() {
            return Err(BackupError::Invalid(format!(
                "--to {}: give an absolute path",
                to.display()
            )));
        }
        if std::fs::symlink_metadata(&to).is_ok() {
            return Err(BackupError::Conflict(format!(
                "--to {}: it exists; restore into a new directory",
                to.display()
            )));
        }
        let data_dir = &self.lifecycle.config().data_dir;
        if to.starts_with(data_dir) {
            return Err(BackupError::Invalid(format!(
                "--to {}: not inside the kernel's data dir",
                to.display()
            )));
        }
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BackupError::Internal(e.into()))?;
        let restic = self.restic.clone();
        let (snapshot, target) = (snapshot.to_string(), to.clone());
        tokio::task::spawn_blocking(move || restic.restore(&snapshot, &target))
            .await
            .map_err(|e| BackupError::Internal(e.into()))??;
        std::fs::create_dir_all(&to).with_context(|| format!("cannot create {}", to.display()))?;
        tracing::info!(app = %record.app, id = record.id, to = %to.display(), "backup restored beside");
        Ok(Restored {
            id: record.id,
            path: to.display().to_string(),
            instance: None,
            restarted: false,
        })
    }
}

/// What a restore did.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Restored {
    /// The backup restored.
    pub id: u64,
    /// The directory it was restored into (on the kernel's host).
    pub path: String,
    /// The instance whose volume it replaced (in-place restores).
    pub instance: Option<u32>,
    /// Whether that instance was stopped and started again around the swap.
    pub restarted: bool,
}

/// Creates `dir` 0700 (its parents too).
fn private_scratch(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

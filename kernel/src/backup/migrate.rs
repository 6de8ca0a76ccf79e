//! `lain volume migrate`: moves the volumes of one instance number of a proc to another node,
//! through a backup and a restore, as LAIN's migrate did.
//!
//! Everything is checked before anything changes. Then the move is recorded on the volume home
//! ([`Migration`]), which keeps the instance stopped (the reconciler retires it and creates none
//! while it is recorded, also after a kernel restart); the final backup of each volume is taken
//! (the whole volume of the stopped instance: [`Trigger::Migration`]) unless the operator names
//! the backups to restore (the source node is gone); each backup is restored, verified, into the
//! volume's directory for the target node; and the home moves to the target, where the
//! reconciler starts the instance. A failure before any volume was replaced gives the move up
//! (the instance starts again where it was); after one, the move stays recorded and running the
//! command again finishes it, or `--cancel` gives it up.
//!
//! The kernel holds the volumes of the nodes at address `local` only, and on this host they
//! share one directory per instance number (`<data_dir>/volumes/<app>/<proc>/<n>`): between two
//! such nodes the data is replaced by its restored copy in place, nothing is copied to another
//! place. A node at another address (a remote Docker engine) is refused as a target, and as a
//! source without `--backup`.

use super::{BackupError, BackupRecord, Backups, Kind, Outcome, RunRequest, Target, Trigger};
use crate::lifecycle::records::{
    LOGS_VOLUME, Migration, MigrationStep, NodeRecord, NodeState, VolumeHome,
};
use crate::plugin::bindings::backup::{BackupJob, BackupPlan};
use crate::runtime::labels;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::{Duration, Instant};

/// How long the instance may take to be stopped and removed by the reconciler.
const STOP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the answer waits for the instance to run on the target node.
const START_WAIT: Duration = Duration::from_secs(60);

/// What a migration did.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Migrated {
    /// App name.
    pub app: String,
    /// Proc name.
    pub proc: String,
    /// Instance number.
    pub instance: u32,
    /// The node that held the volumes.
    pub from: String,
    /// The node that holds them now (`from` again when the move was given up).
    pub to: String,
    /// Each volume, with the backup restored into it (empty when the move was given up).
    pub volumes: Vec<MovedVolume>,
    /// Whether the instance ran on `to` before the answer was sent.
    pub running: bool,
}

/// One volume moved.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MovedVolume {
    /// Its path in the instance.
    pub volume: String,
    /// The backup restored into it.
    pub backup: u64,
    /// Whether that backup is the final one the migration took (else the operator gave it).
    pub final_backup: bool,
    /// Files restored.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Its directory on the kernel's host.
    pub path: String,
}

/// What was checked before anything changed.
struct Plan {
    full_name: String,
    volumes: Vec<String>,
    home: VolumeHome,
    /// The backups to restore, one per volume, when already known.
    backups: Vec<BackupRecord>,
}

/// Whether the kernel holds the volumes of `node`: it is on the kernel's host.
fn reachable(node: &NodeRecord) -> bool {
    node.address == "local"
}

impl Backups {
    /// Moves the volumes of instance `no` of `proc` of `app` to node `to`, restoring `given`
    /// (one backup per volume; none: the final backups are taken), or finishes an interrupted
    /// move to `to`. Refusals change nothing.
    pub async fn migrate(
        &self,
        app: &str,
        proc: &str,
        no: u32,
        to: &str,
        given: &[u64],
    ) -> Result<Migrated, BackupError> {
        let _moving = self.hold_migration(app, proc, no)?;
        let plan = self.check(app, proc, no, to, given)?;
        let from = plan.home.node.clone();
        let mut home = plan.home.clone();
        let mut backups = plan.backups.clone();
        // Whether a volume may hold its restored tree already (an earlier attempt restored):
        // from then on a failure keeps the move recorded instead of giving it up.
        let mut touched = home
            .migration
            .as_ref()
            .is_some_and(|m| m.step == MigrationStep::Restoring);
        if home.migration.is_none() {
            let moving = VolumeHome {
                migration: Some(Migration {
                    to: to.to_string(),
                    step: MigrationStep::Stopping,
                    backups: backups.iter().map(|b| b.id).collect(),
                    started_at: crate::clock::unix_secs(),
                }),
                ..home.clone()
            };
            self.lifecycle.replace_volume_home(&home, &moving)?;
            home = moving;
        }
        tracing::info!(app, proc, instance = no, from = %from, to, "volume migration started");
        if let Err(e) = self.wait_stopped(app, &plan.full_name, no).await {
            return Err(self.failed(&home, e, touched));
        }
        if backups.is_empty() {
            home = self.step(&home, MigrationStep::Backing, &[])?;
            for volume in &plan.volumes {
                match self.take_final(app, proc, no, volume).await {
                    Ok(record) => backups.push(record),
                    Err(e) => return Err(self.failed(&home, e, touched)),
                }
            }
        }
        let ids: Vec<u64> = backups.iter().map(|b| b.id).collect();
        home = self.step(&home, MigrationStep::Restoring, &ids)?;
        let mut volumes = Vec::new();
        for record in &backups {
            match self.restore_moved(app, proc, no, record).await {
                Ok(moved) => volumes.push(moved),
                Err(e) => return Err(self.failed(&home, e, touched)),
            }
            touched = true;
        }
        let moved = VolumeHome {
            node: to.to_string(),
            since: crate::clock::unix_secs(),
            migration: None,
            ..home.clone()
        };
        self.lifecycle.replace_volume_home(&home, &moved)?;
        tracing::info!(app, proc, instance = no, from = %from, to, "volume migration done");
        let running = self.wait_running(app, &plan.full_name, no, to).await;
        Ok(Migrated {
            app: app.to_string(),
            proc: proc.to_string(),
            instance: no,
            from,
            to: to.to_string(),
            volumes,
            running,
        })
    }

    /// Gives up the unfinished move of instance `no`'s volumes: the instance starts again on
    /// the node that held them (volumes already restored keep their restored tree).
    pub fn cancel_migration(
        &self,
        app: &str,
        proc: &str,
        no: u32,
    ) -> Result<Migrated, BackupError> {
        let _moving = self.hold_migration(app, proc, no)?;
        let (full_name, _, _) = self.proc_volumes(app, proc)?;
        let home = self
            .lifecycle
            .volume_home(app, &full_name, no)?
            .filter(|h| h.migration.is_some())
            .ok_or_else(|| {
                BackupError::Invalid(format!(
                    "instance {no} of {app}.{proc} has no unfinished migration"
                ))
            })?;
        let kept = VolumeHome {
            migration: None,
            ..home.clone()
        };
        self.lifecycle.replace_volume_home(&home, &kept)?;
        tracing::warn!(app, proc, instance = no, node = %home.node, "volume migration given up");
        Ok(Migrated {
            app: app.to_string(),
            proc: proc.to_string(),
            instance: no,
            from: home.node.clone(),
            to: home.node,
            volumes: Vec::new(),
            running: false,
        })
    }

    /// Marks instance `no` of `proc` as being migrated by this kernel, or says that it is.
    fn hold_migration(
        &self,
        app: &str,
        proc: &str,
        no: u32,
    ) -> Result<super::Busy<'_>, BackupError> {
        // "" is no volume's path: the mark stands for the whole instance.
        self.hold(app, proc, no, "").map_err(|_| {
            BackupError::Conflict(format!(
                "a migration of instance {no} of {app}.{proc} is running"
            ))
        })
    }

    /// The full name of `proc`, its volumes besides `/lain/logs` and the instances it runs, or
    /// why it has no such volume.
    fn proc_volumes(
        &self,
        app: &str,
        proc: &str,
    ) -> Result<(String, Vec<String>, u32), BackupError> {
        let declared = self.declared(app)?;
        let d = declared.iter().find(|d| d.proc == proc).ok_or_else(|| {
            BackupError::NotFound(format!(
                "proc `{proc}` of app `{app}` has no volumes in its deployed release"
            ))
        })?;
        let volumes: Vec<String> = d
            .volumes
            .iter()
            .map(|v| v.path.clone())
            .filter(|p| p != LOGS_VOLUME)
            .collect();
        if volumes.is_empty() {
            return Err(BackupError::Invalid(format!(
                "proc `{proc}` of app `{app}` has no volume besides {LOGS_VOLUME}: nothing to migrate"
            )));
        }
        Ok((d.full_name.clone(), volumes, d.instances))
    }

    /// Checks a migration: the proc, the instance number and its home, the target node, who
    /// holds the volumes, and the backups given.
    fn check(
        &self,
        app: &str,
        proc: &str,
        no: u32,
        to: &str,
        given: &[u64],
    ) -> Result<Plan, BackupError> {
        let (full_name, volumes, instances) = self.proc_volumes(app, proc)?;
        if no == 0 || no > instances {
            return Err(BackupError::NotFound(format!(
                "proc `{proc}` of app `{app}` has no instance {no} (it runs {instances})"
            )));
        }
        let home = self
            .lifecycle
            .volume_home(app, &full_name, no)?
            .ok_or_else(|| {
                BackupError::Invalid(format!(
                    "instance {no} of {app}.{proc} has no volumes yet (it never ran): nothing to migrate"
                ))
            })?;
        let nodes = self.lifecycle.nodes()?;
        let target = nodes
            .iter()
            .find(|n| n.name == to)
            .ok_or_else(|| BackupError::NotFound(format!("no node named `{to}`")))?;
        match &home.migration {
            Some(m) if m.to != to => {
                return Err(BackupError::Conflict(format!(
                    "instance {no} of {app}.{proc} is being moved to node {} ({}): run the \
                     migration to {} again to finish it, or give it up with --cancel",
                    m.to,
                    m.step.name(),
                    m.to
                )));
            }
            None if home.node == to => {
                return Err(BackupError::Invalid(format!(
                    "the volumes of instance {no} of {app}.{proc} are on node {to} already"
                )));
            }
            _ => {}
        }
        if target.state != NodeState::Ready {
            return Err(BackupError::Invalid(format!(
                "node {to} is {}: it takes no instance (`lain node maintain {to} --off` first)",
                match target.state {
                    NodeState::Maintenance => "in maintenance",
                    NodeState::Down => "down",
                    NodeState::Ready => "ready",
                }
            )));
        }
        if !reachable(target) {
            return Err(BackupError::Invalid(format!(
                "the kernel cannot write the volumes of node {to}: its runtime is at {}, not on \
                 the kernel's host (only nodes at address `local` are)",
                target.address
            )));
        }
        let pending: &[u64] = home.migration.as_ref().map_or(&[], |m| &m.backups);
        if !pending.is_empty() && !given.is_empty() && pending != given {
            return Err(BackupError::Conflict(format!(
                "the unfinished migration of instance {no} of {app}.{proc} restores backups {:?}; \
                 run it again without --backup, or give it up with --cancel",
                pending
            )));
        }
        let ids = if pending.is_empty() { given } else { pending };
        let backups = self.check_backups(app, proc, no, &volumes, ids)?;
        if backups.is_empty() {
            let source = nodes.iter().find(|n| n.name == home.node);
            if !source.is_some_and(reachable) {
                return Err(BackupError::Invalid(format!(
                    "the kernel cannot read the volumes of instance {no} of {app}.{proc} on node {} \
                     ({}): give the backups to restore with --backup ID",
                    home.node,
                    source.map_or_else(
                        || "no longer a node".to_string(),
                        |n| format!("its runtime is at {}", n.address)
                    )
                )));
            }
        }
        Ok(Plan {
            full_name,
            volumes,
            home,
            backups,
        })
    }

    /// The backups `ids`, in the order of `volumes`: succeeded backups of instance `no` of
    /// `proc`, one for each volume; none when no id is given.
    fn check_backups(
        &self,
        app: &str,
        proc: &str,
        no: u32,
        volumes: &[String],
        ids: &[u64],
    ) -> Result<Vec<BackupRecord>, BackupError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut records = Vec::new();
        for id in ids {
            let r = self.get(app, *id)?;
            if r.proc != proc || r.instance != no {
                return Err(BackupError::Invalid(format!(
                    "backup {id} is of {}.{} instance {}, not of instance {no} of {app}.{proc}",
                    r.app, r.proc, r.instance
                )));
            }
            let usable = match r.outcome {
                Outcome::Succeeded => r.snapshot.is_some(),
                Outcome::Skipped => r.trigger == Trigger::Migration,
                _ => false,
            };
            if !usable {
                return Err(BackupError::Invalid(format!(
                    "backup {id} is {}: only a succeeded backup can be restored",
                    r.outcome.name()
                )));
            }
            if records.iter().any(|o: &BackupRecord| o.volume == r.volume) {
                return Err(BackupError::Invalid(format!(
                    "backups {id} and another are both of volume {}: give one per volume",
                    r.volume
                )));
            }
            if !volumes.contains(&r.volume) {
                return Err(BackupError::Invalid(format!(
                    "backup {id} is of volume {}, which {app}.{proc} no longer has",
                    r.volume
                )));
            }
            records.push(r);
        }
        let mut ordered = Vec::new();
        for volume in volumes {
            let r = records
                .iter()
                .find(|r| &r.volume == volume)
                .ok_or_else(|| {
                    BackupError::Invalid(format!(
                        "no backup given for volume {volume}: give one --backup per volume"
                    ))
                })?;
            ordered.push(r.clone());
        }
        Ok(ordered)
    }

    /// Records the step the migration of `home` is at.
    fn step(
        &self,
        home: &VolumeHome,
        step: MigrationStep,
        backups: &[u64],
    ) -> Result<VolumeHome, BackupError> {
        let mut next = home.clone();
        if let Some(m) = &mut next.migration {
            m.step = step;
            m.backups = backups.to_vec();
        }
        self.lifecycle.replace_volume_home(home, &next)?;
        Ok(next)
    }

    /// The error a migration ends with after `e`: unless a volume may hold its restored tree
    /// already (`touched`), the migration is given up (the instance starts again where it
    /// was); else it stays recorded, to be finished or given up by the operator.
    fn failed(&self, home: &VolumeHome, e: BackupError, touched: bool) -> BackupError {
        if !touched {
            return self.give_up(home, e);
        }
        tracing::warn!(app = %home.app, proc = %home.proc, instance = home.number, "volume migration failed after a volume was restored: {e}");
        BackupError::Internal(anyhow::anyhow!(
            "{e}; a volume may hold its restored tree already: the move stays recorded (the \
             instance stays stopped); run it again to finish it, or give it up with --cancel"
        ))
    }

    /// Gives the migration of `home` up after `e`: the instance starts again where it was.
    /// Returns `e`, saying so.
    fn give_up(&self, home: &VolumeHome, e: BackupError) -> BackupError {
        let kept = VolumeHome {
            migration: None,
            ..home.clone()
        };
        match self.lifecycle.replace_volume_home(home, &kept) {
            Ok(()) => {
                tracing::warn!(app = %home.app, proc = %home.proc, instance = home.number, "volume migration failed and was given up: {e}");
                BackupError::Internal(anyhow::anyhow!(
                    "{e}; the migration was given up: the volumes stay on node {}",
                    home.node
                ))
            }
            Err(c) => BackupError::Internal(anyhow::anyhow!(
                "{e}; and the migration could not be given up ({c}): run it again, or --cancel"
            )),
        }
    }

    /// Waits until no instance of number `no` of `full_name` exists any more (but on nodes
    /// that do not answer: those cannot be stopped, and the reconciler retires them when they
    /// answer).
    async fn wait_stopped(&self, app: &str, full_name: &str, no: u32) -> Result<(), BackupError> {
        let runtime = self.lifecycle.runtime();
        let deadline = Instant::now() + STOP_TIMEOUT;
        let number = no.to_string();
        self.lifecycle.wake();
        loop {
            let unreachable = runtime.unreachable();
            let listed = runtime
                .list(self.lifecycle.kernel_id())
                .await
                .map_err(|e| BackupError::Internal(anyhow::anyhow!("{e}")))?;
            let left = listed.iter().any(|o| {
                o.label(labels::APP) == app
                    && o.label(labels::PROC) == full_name
                    && o.label(labels::INSTANCE) == number
                    && !unreachable.iter().any(|n| n == o.label(labels::NODE))
            });
            if !left {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BackupError::Conflict(format!(
                    "instance {no} of {full_name} was not stopped within {} s",
                    STOP_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether instance `no` of `full_name` runs on `node` within [`START_WAIT`].
    async fn wait_running(&self, app: &str, full_name: &str, no: u32, node: &str) -> bool {
        let target = Target {
            app: app.to_string(),
            proc: String::new(),
            instance: no,
            volume: String::new(),
        };
        let deadline = Instant::now() + START_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(o)) = self.running_instance(full_name, &target).await
                && o.label(labels::NODE) == node
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// The final backup of `volume`: a full one of the whole volume.
    async fn take_final(
        &self,
        app: &str,
        proc: &str,
        no: u32,
        volume: &str,
    ) -> Result<BackupRecord, BackupError> {
        let record = self
            .run(RunRequest {
                target: Target {
                    app: app.to_string(),
                    proc: proc.to_string(),
                    instance: no,
                    volume: volume.to_string(),
                },
                kind: Kind::Full,
                trigger: Trigger::Migration,
                scheduled_at: None,
            })
            .await?;
        match record.outcome {
            Outcome::Succeeded | Outcome::Skipped => Ok(record),
            o => Err(BackupError::Internal(anyhow::anyhow!(
                "the final backup of volume {volume} ({}) {}: {}",
                record.id,
                o.name(),
                record.error.as_deref().unwrap_or("no reason given")
            ))),
        }
    }

    /// Restores `record` into its volume's directory for the target node.
    async fn restore_moved(
        &self,
        app: &str,
        proc: &str,
        no: u32,
        record: &BackupRecord,
    ) -> Result<MovedVolume, BackupError> {
        let _busy = self.hold_waiting(app, proc, no, &record.volume).await?;
        let _permit = self
            .gate
            .acquire()
            .await
            .map_err(|e| BackupError::Internal(e.into()))?;
        let dir = self.volume_dir(app, proc, no, &record.volume)?;
        let staged = self
            .stage(record.id, record.snapshot.as_deref(), &dir)
            .await?;
        staged.swap()?;
        staged.clean().await;
        tracing::info!(app, proc, instance = no, volume = %record.volume, id = record.id, "backup restored for a migration");
        Ok(MovedVolume {
            volume: record.volume.clone(),
            backup: record.id,
            final_backup: record.trigger == Trigger::Migration,
            files: record.files,
            bytes: record.size,
            path: dir.display().to_string(),
        })
    }

    /// A snapshot of the whole volume `dir`, without the hook and its commands (the instance
    /// is stopped: its files are at rest); none when it holds no file.
    pub(super) async fn take_whole(
        &self,
        t: &Target,
        dir: &Path,
        job: &BackupJob,
        id: u64,
        record: &mut BackupRecord,
    ) -> Result<Option<()>, String> {
        record.hook = "-".into();
        record.hook_version = String::new();
        let plan = BackupPlan {
            pre_run: None,
            include_paths: vec![".".into()],
            exclude_paths: Vec::new(),
            post_run: None,
        };
        let summary = self.snapshot(t, dir, &plan, job, None, id).await?;
        Ok(summary.map(|s| {
            record.snapshot = Some(s.snapshot_id);
            record.files = s.total_files_processed;
            record.size = s.total_bytes_processed;
            record.added = s.data_added;
        }))
    }
}

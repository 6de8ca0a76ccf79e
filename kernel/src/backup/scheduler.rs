//! The backup scheduler: every second, the `backup_full` and `backup_increment` schedules of
//! every volume of every instance of every deployed app, read in UTC by [`crate::cron`].
//!
//! Per volume and kind the store keeps the last tick considered. A volume seen for the first
//! time starts at the present (no backup for ticks before it was deployed); ticks that fell
//! while the kernel was down, or while the previous backup of that volume still ran, are
//! taken as one backup at the next pass (a missed nightly backup runs when the kernel is back,
//! once). Backups run one at a time ([`super::Backups`]'s gate), each in its own task.

use super::{Backups, Kind, RunRequest, TICKS, Target, Trigger};
use crate::cron::Schedule;
use crate::store::{Expect, Op};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Key of the last tick considered for `kind` backups of `volume` of instance `instance` of
/// proc `proc` of `app`.
pub fn tick_key(app: &str, proc: &str, instance: u32, kind: Kind, volume: &str) -> String {
    format!(
        "{TICKS}{app}/{proc}/{instance}/{}/{}",
        kind.name(),
        hex::encode(volume)
    )
}

/// What a cached list of an app's volumes was read from: its deployed release, the registry's
/// generation and the deploy's time.
type DeclaredAs = (String, u64, i64);

/// What the scheduler remembers between passes.
#[derive(Default)]
pub struct Scheduler {
    /// Parsed schedules by their text.
    parsed: HashMap<String, Result<Schedule, String>>,
    /// Each app's volumes, by app, as of its deployed release and the registry's generation.
    declared: HashMap<String, (DeclaredAs, Vec<super::Declared>)>,
}

impl Scheduler {
    /// The backups due at `now`, with the tick each is for; records the ticks considered.
    pub fn due(&mut self, backups: &Backups, now: i64) -> Vec<RunRequest> {
        let mut out = Vec::new();
        let apps = match backups.lifecycle.apps() {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("backup scheduler: cannot list apps: {e}");
                return out;
            }
        };
        let (mut ops, mut read) = (Vec::new(), Vec::new());
        for app in apps {
            let Some(deployed) = &app.deployed else {
                continue;
            };
            let version = (
                deployed.release.clone(),
                backups.lifecycle.registry().generation(),
                deployed.deployed_at,
            );
            let fresh = self
                .declared
                .get(&app.name)
                .is_some_and(|(v, _)| *v == version);
            if !fresh {
                match backups.declared(&app.name) {
                    Ok(d) => {
                        self.declared.insert(app.name.clone(), (version, d));
                    }
                    Err(e) => {
                        tracing::warn!(app = %app.name, "backup scheduler: {e}");
                        continue;
                    }
                }
            }
            let Some((_, declared)) = self.declared.get(&app.name) else {
                continue;
            };
            for proc in declared {
                for volume in &proc.volumes {
                    for (kind, policy) in [
                        (Kind::Full, &volume.backup_full),
                        (Kind::Incremental, &volume.backup_increment),
                    ] {
                        let Some(policy) = policy else {
                            continue;
                        };
                        let schedule =
                            self.parsed
                                .entry(policy.schedule.clone())
                                .or_insert_with(|| {
                                    Schedule::parse(&policy.schedule, "UTC")
                                        .map_err(|e| e.to_string())
                                });
                        let schedule = match schedule {
                            Ok(s) => s,
                            Err(e) => {
                                tracing::warn!(app = %app.name, proc = %proc.proc, volume = %volume.path, "backup schedule: {e}");
                                continue;
                            }
                        };
                        for instance in 1..=proc.instances {
                            let key = tick_key(&app.name, &proc.proc, instance, kind, &volume.path);
                            let raw = match backups.store().get(&key) {
                                Ok(raw) => raw,
                                Err(e) => {
                                    tracing::warn!("backup scheduler: {e}");
                                    continue;
                                }
                            };
                            read.push(Expect {
                                key: key.clone(),
                                value: raw.clone(),
                            });
                            let last = raw
                                .and_then(|v| String::from_utf8(v).ok())
                                .and_then(|s| s.parse::<i64>().ok());
                            let Some(last) = last else {
                                ops.push(Op::Put(key, now.to_string().into_bytes()));
                                continue;
                            };
                            let (ticks, _) = schedule.ticks_between(last, now, 1);
                            let Some(tick) = ticks.last().copied() else {
                                continue;
                            };
                            let target = Target {
                                app: app.name.clone(),
                                proc: proc.proc.clone(),
                                instance,
                                volume: volume.path.clone(),
                            };
                            // A volume still being backed up keeps its tick for the next pass.
                            if backups.is_busy(&target) {
                                continue;
                            }
                            let dir =
                                backups.volume_dir(&app.name, &proc.proc, instance, &volume.path);
                            if !dir.is_ok_and(|d| d.is_dir()) {
                                // Not created yet, or on another node: nothing to back up here.
                                ops.push(Op::Put(key, tick.to_string().into_bytes()));
                                continue;
                            }
                            ops.push(Op::Put(key, tick.to_string().into_bytes()));
                            out.push(RunRequest {
                                target,
                                kind,
                                trigger: Trigger::Scheduled,
                                scheduled_at: Some(tick),
                            });
                        }
                    }
                }
            }
        }
        self.declared
            .retain(|name, _| backups.lifecycle.app(name).is_ok());
        if self.parsed.len() > 1024 {
            self.parsed.clear();
        }
        // Conditional on the ticks read: of two kernels passing at once, one takes the backups.
        if !ops.is_empty() {
            match backups.store().apply_if(&read, ops) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    tracing::debug!("backup scheduler: ticks recorded meanwhile by another pass");
                    return Vec::new();
                }
                Err(e) => {
                    tracing::warn!("backup scheduler: cannot record ticks: {e}");
                    return Vec::new();
                }
            }
        }
        out
    }
}

/// Runs the scheduler until the task is aborted: first marks the backups a previous kernel
/// left running as interrupted, then a pass every second.
pub async fn run(backups: Arc<Backups>) {
    let b = backups.clone();
    match tokio::task::spawn_blocking(move || b.recover()).await {
        Ok(Ok(0)) => {}
        Ok(Ok(n)) => tracing::warn!(interrupted = n, "backups left running by a stopped kernel"),
        Ok(Err(e)) => tracing::error!("backup recovery: {e}"),
        Err(e) => tracing::error!("backup recovery: {e}"),
    }
    let mut scheduler = Scheduler::default();
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let now = crate::clock::unix_secs();
        // A pass reads the store and may parse a release with the proc-type plugins: off the
        // async workers.
        let b = backups.clone();
        let passed = tokio::task::spawn_blocking(move || {
            let due = scheduler.due(&b, now);
            (scheduler, due)
        })
        .await;
        let due = match passed {
            Ok((s, due)) => {
                scheduler = s;
                due
            }
            Err(e) => {
                tracing::error!("backup scheduler pass: {e}");
                scheduler = Scheduler::default();
                continue;
            }
        };
        for req in due {
            let b = backups.clone();
            tokio::spawn(async move {
                let t = req.target.clone();
                if let Err(e) = b.run(req).await {
                    tracing::warn!(app = %t.app, proc = %t.proc, instance = t.instance, volume = %t.volume, "scheduled backup not taken: {e}");
                }
            });
        }
    }
}

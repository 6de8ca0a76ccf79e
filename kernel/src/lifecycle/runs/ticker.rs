//! The reconciler's part of scheduled procs: on each pass, record the ends of runs, start a run
//! per tick under the schedule's concurrency policy, account for ticks missed while the kernel
//! was down, trim the history, and tell the pass which runs should have an instance.

use super::{Outcome, RunRecord, ScheduleView, TickState, list_runs, remove_log};
use crate::cron::Schedule;
use crate::lifecycle::reconcile::context::Settings;
use crate::lifecycle::reconcile::desired::Desired;
use crate::lifecycle::reconcile::identity::Instance;
use crate::plugin::bindings::proc_rendering::{ConcurrencyPolicy, MissedPolicy};
use crate::runtime::RunState;
use crate::store::{Expect, Op, Store, put_json};
use anyhow::Context as _;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Runs kept per proc when the schedule says 0.
pub const DEFAULT_HISTORY: u32 = 20;

/// What the ticker remembers between passes.
pub struct Ticker {
    /// When this kernel started (Unix seconds): ticks before it fell while it was down.
    since: i64,
    /// Procs already ticked by this kernel (their first pass counts missed ticks).
    seen: HashSet<String>,
    /// Parsed schedules by their text and zone.
    parsed: HashMap<(String, String), Schedule>,
}

/// What a pass learnt of the scheduled procs.
#[derive(Default)]
pub struct Ticked {
    /// What `lain ps` shows, by proc full name.
    pub views: BTreeMap<String, ScheduleView>,
    /// Why a scheduled proc cannot tick, by proc full name.
    pub problems: BTreeMap<String, String>,
}

impl Ticker {
    /// A ticker of a kernel started at `since` (Unix seconds).
    pub fn new(since: i64) -> Ticker {
        Ticker {
            since,
            seen: HashSet::new(),
            parsed: HashMap::new(),
        }
    }

    /// One pass over every scheduled proc of `desired`: sets its `runs` (the run ids that should
    /// have an instance, with their ticks). `restarts` gives an instance's restarts so far.
    pub fn pass(
        &mut self,
        store: &dyn Store,
        settings: &Settings,
        desired: &mut BTreeMap<String, Desired>,
        instances: &[Instance],
        restarts: &dyn Fn(&str) -> u32,
        now: i64,
    ) -> Ticked {
        let mut out = Ticked::default();
        for (full, d) in desired.iter_mut() {
            let Some(s) = d.plan.plan.schedule.clone() else {
                continue;
            };
            // An unreadable schedule keeps the runs that are running, and starts none.
            d.runs = Some(BTreeMap::new());
            let key = (s.cron.clone(), s.timezone.clone());
            let schedule = match self.parsed.get(&key) {
                Some(p) => p.clone(),
                None => match Schedule::parse(&s.cron, &s.timezone) {
                    Ok(p) => {
                        self.parsed.insert(key, p.clone());
                        p
                    }
                    Err(e) => {
                        out.problems.insert(full.clone(), e.to_string());
                        continue;
                    }
                },
            };
            let first = self.seen.insert(full.clone());
            let mine: Vec<&Instance> = instances.iter().filter(|i| &i.key.proc == full).collect();
            let proc = ProcTick {
                store,
                settings,
                d,
                schedule: &schedule,
                instances: &mine,
                restarts,
                now,
                first,
                since: self.since,
            };
            match proc.tick() {
                Ok((runs, view)) => {
                    d.runs = Some(runs);
                    out.views.insert(full.clone(), view);
                }
                Err(e) => {
                    out.problems
                        .insert(full.clone(), format!("schedule: {e:#}"));
                }
            }
        }
        if self.parsed.len() > 1024 {
            self.parsed.clear();
        }
        out
    }
}

/// One scheduled proc in one pass.
struct ProcTick<'a> {
    store: &'a dyn Store,
    settings: &'a Settings,
    d: &'a Desired,
    schedule: &'a Schedule,
    instances: &'a [&'a Instance],
    restarts: &'a dyn Fn(&str) -> u32,
    now: i64,
    first: bool,
    since: i64,
}

impl ProcTick<'_> {
    fn tick(&self) -> anyhow::Result<(BTreeMap<u32, i64>, ScheduleView)> {
        let (app, name) = (&self.d.app, &self.d.plan.name);
        let s = self.d.plan.plan.schedule.as_ref().context("no schedule")?;
        let mut ops: Vec<Op> = Vec::new();
        // Every write of this pass is conditional on the tick state it starts from, so two
        // kernels never both start the run of one tick.
        let state_key = super::state_key(app, name);
        let read = Expect {
            key: state_key.clone(),
            value: self.store.get(&state_key)?,
        };
        let stored: Option<TickState> = read
            .value
            .as_deref()
            .map(serde_json::from_slice)
            .transpose()
            .with_context(|| format!("{state_key}: corrupt value"))?;
        let mut state = match stored {
            Some(state) => state,
            None => {
                // A proc seen for the first time ticks from now on.
                let state = TickState {
                    last_tick: self.now,
                    next_id: 1,
                };
                ops.push(put_json(&super::state_key(app, name), &state)?);
                state
            }
        };
        let mut runs = list_runs(self.store, app, name)?;
        for run in runs.iter_mut().filter(|r| r.outcome == Outcome::Running) {
            if self.observe(run) {
                ops.push(put_json(&super::run_key(app, name, run.id), &*run)?);
            }
        }
        let (ticks, count) = self.schedule.ticks_between(state.last_tick, self.now, 1);
        if let Some(&latest) = ticks.last() {
            let down = if self.first {
                self.schedule
                    .ticks_between(state.last_tick, self.since.min(self.now) - 1, 1)
                    .1
            } else {
                0
            };
            let late = count - down;
            let mut new = Vec::new();
            if down > 0 {
                let mut entry = self.entry(&mut state, latest.min(self.since), Outcome::Missed);
                entry.missed = down;
                entry.note = format!(
                    "{down} tick(s) fell while the kernel was down (missed: {})",
                    match s.missed {
                        MissedPolicy::Skip => "skip",
                        MissedPolicy::RunOnce => "run-once",
                    }
                );
                let run_once = s.missed == MissedPolicy::RunOnce && late == 0;
                new.push(entry);
                if run_once {
                    let tick = new[0].scheduled_at;
                    self.start(
                        &mut state,
                        &mut runs,
                        &mut new,
                        tick,
                        "run-once after missed ticks",
                    );
                    let id = new[new.len() - 1].id;
                    new[0].note.push_str(&format!("; started run {id}"));
                }
            }
            if late > 1 {
                let mut entry = self.entry(&mut state, latest, Outcome::Missed);
                entry.missed = late - 1;
                entry.note = format!("{} tick(s) passed while the kernel was busy", late - 1);
                new.push(entry);
            }
            if late > 0 {
                self.start(&mut state, &mut runs, &mut new, latest, "");
            }
            state.last_tick = latest;
            ops.push(put_json(&super::state_key(app, name), &state)?);
            for r in new {
                ops.push(put_json(&super::run_key(app, name, r.id), &r)?);
                runs.push(r);
            }
            for r in runs
                .iter()
                .filter(|r| r.outcome == Outcome::Replaced && r.ended_at == Some(self.now))
            {
                ops.push(put_json(&super::run_key(app, name, r.id), r)?);
            }
        }
        let keep = match s.history {
            0 => DEFAULT_HISTORY,
            n => n,
        } as usize;
        let mut logs = Vec::new();
        while runs.len() > keep {
            let Some(pos) = runs.iter().position(|r| r.outcome != Outcome::Running) else {
                break;
            };
            let old = runs.remove(pos);
            ops.push(Op::Delete(super::run_key(app, name, old.id)));
            if let Some(log) = old.log {
                logs.push(log);
            }
        }
        if !ops.is_empty() && self.store.apply_if(&[read], ops)?.is_none() {
            anyhow::bail!(
                "the schedule state of {app}/{name} changed during this pass (another kernel \
                 ticked it); the next pass goes on from there"
            );
        }
        // The store forgot them first: a log without a record is harmless, not the reverse.
        for log in logs {
            remove_log(std::path::Path::new(&log));
        }
        let active: BTreeMap<u32, i64> = runs
            .iter()
            .filter(|r| r.outcome == Outcome::Running)
            .map(|r| (r.id, r.scheduled_at))
            .collect();
        let view = ScheduleView {
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            next_tick: self.schedule.next_after(state.last_tick.max(self.now)),
            running: active.len() as u32,
            last: runs
                .iter()
                .rev()
                .find(|r| r.outcome != Outcome::Running)
                .cloned(),
        };
        Ok((active, view))
    }

    /// Updates running `run` from its instance; returns whether it changed.
    fn observe(&self, run: &mut RunRecord) -> bool {
        let Some(i) = self.instances.iter().find(|i| i.key.number == Some(run.id)) else {
            return false;
        };
        let before = run.clone();
        let restarts = (self.restarts)(i.name());
        run.attempts = run.attempts.max(restarts + 1);
        match &i.seen.state {
            RunState::Created => {}
            RunState::Running { started_at, .. } => {
                run.started_at.get_or_insert(*started_at);
            }
            RunState::Exited {
                code, finished_at, ..
            } => {
                let limit = self.d.plan.plan.restart.max_restarts;
                let done =
                    !self.d.plan.restarts_after(*code) || limit.is_some_and(|m| restarts >= m);
                if done {
                    let end = finished_at.unwrap_or(self.now);
                    run.started_at.get_or_insert(end);
                    run.ended_at = Some(end);
                    run.exit_code = *code;
                    run.outcome = if *code == Some(0) {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    };
                }
            }
        }
        *run != before
    }

    /// A new history entry for `tick` with the next id.
    fn entry(&self, state: &mut TickState, tick: i64, outcome: Outcome) -> RunRecord {
        let id = state.next_id.max(1);
        state.next_id = id + 1;
        RunRecord {
            id,
            proc: self.d.plan.name.clone(),
            scheduled_at: tick,
            started_at: None,
            ended_at: (outcome != Outcome::Running).then_some(self.now),
            exit_code: None,
            attempts: 0,
            outcome,
            missed: 0,
            note: String::new(),
            release: self.d.release.clone(),
            log: None,
        }
    }

    /// The tick at `tick` under the concurrency policy: a new run, or a skipped entry.
    fn start(
        &self,
        state: &mut TickState,
        runs: &mut [RunRecord],
        new: &mut Vec<RunRecord>,
        tick: i64,
        why: &str,
    ) {
        let Some(s) = &self.d.plan.plan.schedule else {
            return;
        };
        let running: Vec<u32> = runs
            .iter()
            .chain(new.iter())
            .filter(|r| r.outcome == Outcome::Running)
            .map(|r| r.id)
            .collect();
        if !running.is_empty() && s.concurrency == ConcurrencyPolicy::Forbid {
            let mut entry = self.entry(state, tick, Outcome::Skipped);
            entry.note = format!("run {} still running (concurrency: forbid)", join(&running));
            new.push(entry);
            return;
        }
        let mut run = self.entry(state, tick, Outcome::Running);
        run.note = why.to_string();
        run.log = self
            .settings
            .log_file(&self.d.app, &self.d.plan.name, run.id)
            .ok()
            .map(|p| p.display().to_string());
        if s.concurrency == ConcurrencyPolicy::Replace {
            for r in runs.iter_mut().chain(new.iter_mut()) {
                if r.outcome == Outcome::Running {
                    r.outcome = Outcome::Replaced;
                    r.ended_at = Some(self.now);
                    r.note = format!("stopped: replaced by run {} (concurrency: replace)", run.id);
                }
            }
        }
        new.push(run);
    }
}

fn join(ids: &[u32]) -> String {
    ids.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

//! The decisions of a pass for one proc: which instance keeps each instance number, which are
//! created, started, restarted, changed in place or retired, and when a rollout has failed.

use super::Reconciler;
use super::actions::Action;
use super::backoff::{self, Restart, RunPolicy, STABLE_RUN};
use super::desired::Desired;
use super::identity::{Instance, InstanceKey};
use super::{instance, portals};
use crate::lifecycle::records::{NodeRecord, NodeState, VolumeHome};
use crate::runtime::RunState;
use crate::schedule::Mode;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

impl Reconciler {
    /// Whether `i` serves as its instance number should.
    fn is_ready(&self, i: &Instance, d: &Desired, now: i64) -> bool {
        self.prober.results().ready(i, d, now)
    }

    /// Decides the steps for one desired proc.
    pub(super) fn plan_proc(
        &mut self,
        d: &Desired,
        instances: &[&Instance],
        nodes: &BTreeMap<String, NodeRecord>,
        actions: &mut Vec<Action>,
    ) {
        let now = crate::clock::unix_secs();
        let grace = Duration::from_secs(u64::from(d.plan.plan.kill_timeout));
        // Instance numbers, each with the node its placement mode pins it to; a scheduled proc's
        // numbers are its running runs (lifecycle::runs), placed anywhere.
        let numbers: BTreeMap<u32, Option<String>> = match &d.runs {
            Some(runs) => runs.keys().map(|no| (*no, None)).collect(),
            None => self.placement.numbers(d, instances, nodes),
        };
        let keeps_node = d.plan.keeps_node();
        let stop_first = keeps_node || d.mode() == Mode::Singleton;
        let node_ready = |i: &Instance| {
            nodes
                .get(&i.key.node)
                .is_some_and(|n| n.state == NodeState::Ready)
        };
        let mut by_no: BTreeMap<u32, Vec<&Instance>> = BTreeMap::new();
        for i in instances {
            match i.key.number {
                Some(no) if numbers.contains_key(&no) => by_no.entry(no).or_default().push(i),
                _ => actions.push(self.retire(i, grace)),
            }
        }
        // Split each number's instances into the one that should stay and the ones to replace.
        let mut split: BTreeMap<u32, (Option<&Instance>, Vec<&Instance>)> = BTreeMap::new();
        for (&no, pinned) in &numbers {
            let mut mine = by_no.remove(&no).unwrap_or_default();
            mine.sort_by_key(|i| {
                let rank = match (&i.seen.state, self.is_ready(i, d, now)) {
                    (_, true) => 0,
                    (RunState::Running { .. }, false) => 1,
                    (RunState::Exited { .. }, _) => 2,
                    (RunState::Created, _) => 3,
                };
                (rank, std::cmp::Reverse(i.name().to_string()))
            });
            let pos = mine.iter().position(|i| {
                i.key.release == d.release
                    && i.key.secrets == d.plan.secrets_stamp
                    && i.key.plan == d.plan.plan_stamp
                    && i.key.restart == d.restarts.of(no)
                    && pinned.as_ref().is_none_or(|n| *n == i.key.node)
                    && (keeps_node || (node_ready(i) && !self.placement.moving(i.name())))
            });
            let cur = pos.map(|p| mine.remove(p));
            split.insert(no, (cur, mine));
        }
        // A number whose volumes are being moved (`lain volume migrate`) is stopped and stays
        // so until the move ends; the other numbers go on as usual.
        for (key, m) in &self.migrating {
            if key.0 != d.plan.full_name {
                continue;
            }
            if let Some((cur, old)) = split.remove(&key.1) {
                for i in cur.into_iter().chain(old) {
                    actions.push(self.retire(i, grace));
                }
            }
            self.problems.proc(
                &d.plan.full_name,
                format!(
                    "{}.{} instance {} is stopped while `lain volume migrate` moves its volumes to \
                     node {} (at: {}); an interrupted move is finished by running it again, or \
                     given up with --cancel",
                    d.plan.proc_type,
                    d.plan.name,
                    key.1,
                    m.to,
                    m.step.name()
                ),
            );
        }
        let mut rolling = split
            .values()
            .any(|(cur, old)| !old.is_empty() && cur.is_some_and(|c| !self.is_ready(c, d, now)));
        // Stopping first, a number whose old instance is gone and whose new one is not ready yet
        // serves nothing: no other number is stopped until it is, or a rolling upgrade of a proc
        // with volumes would stop every instance at once (an earlier pass retired the first).
        if stop_first {
            rolling |= split
                .values()
                .any(|(cur, old)| old.is_empty() && cur.is_none_or(|c| !self.is_ready(c, d, now)));
        }
        // The instances created below, one after the other: numbers with nothing, and the first
        // of the numbers to roll when no roll is under way.
        let fresh = split
            .values()
            .filter(|(cur, old)| cur.is_none() && old.is_empty())
            .count();
        let rolls = !rolling
            && !stop_first
            && split
                .values()
                .any(|(cur, old)| cur.is_none() && !old.is_empty());
        if let Ok(count) = u32::try_from(fresh + usize::from(rolls)) {
            self.placement.expect(d, count);
        }
        for (no, (cur, old)) in split {
            match cur {
                None if old.is_empty() => self.create(d, no, nodes, actions),
                None if rolling => {}
                None => {
                    rolling = true;
                    if stop_first {
                        // Stateful instances own their node's volumes: stop first, same node.
                        // A singleton stops first too, wherever the new one goes.
                        if let Some(first) = old.first().filter(|_| keeps_node) {
                            self.placement.pin(&d.plan.full_name, no, &first.key.node);
                        }
                        for i in old {
                            actions.push(self.retire(i, grace));
                        }
                    } else {
                        self.create(d, no, nodes, actions);
                    }
                }
                Some(c) => {
                    if keeps_node && !node_ready(c) {
                        self.problems
                            .proc(&d.plan.full_name, stays_put(d, no, &c.key.node, nodes));
                    }
                    self.keep(d, c, now, grace, actions);
                    if self.is_ready(c, d, now) {
                        for i in old {
                            actions.push(self.retire(i, grace));
                        }
                    } else if !old.is_empty() && d.runs.is_none() {
                        // A run to completion that still runs is working, not failing to get
                        // ready: it has no rollout timeout (nor has a run of a scheduled proc).
                        if !(d.plan.completes() && c.seen.state.is_running()) {
                            // Replacing instances of the same deployment (`lain restart`) is no
                            // rollout of a release: a new one that does not get ready leaves the
                            // old one serving and says so, the deployment stays.
                            let restart_only = old.iter().all(|o| {
                                o.key.release == c.key.release
                                    && o.key.plan == c.key.plan
                                    && o.key.secrets == c.key.secrets
                            });
                            if restart_only {
                                self.check_restart(d, c);
                            } else {
                                self.check_rollout(d, c);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The steps for `c`, the instance that keeps its number.
    fn keep(
        &mut self,
        d: &Desired,
        c: &Instance,
        now: i64,
        grace: Duration,
        actions: &mut Vec<Action>,
    ) {
        let name = c.name().to_string();
        self.first_seen
            .entry(name.clone())
            .or_insert_with(Instant::now);
        match &c.seen.state {
            // Secret files go in between creation and the first start; a created instance seen
            // here may have missed them (the kernel died in between), so it is replaced rather
            // than started.
            RunState::Created if !d.plan.secret_files.is_empty() => {
                actions.push(self.retire(c, grace));
            }
            RunState::Created => actions.push(Action::Start { name }),
            RunState::Running { started_at, .. } => {
                if self.ctx.runtime.isolates_apps() {
                    portals::connect_clients(d, &c.seen, actions);
                }
                if c.seen.memory != d.plan.plan.memory {
                    actions.push(Action::SetMemory {
                        name: name.clone(),
                        bytes: d.plan.plan.memory,
                    });
                }
                if c.seen.cpu != d.plan.plan.cpu {
                    actions.push(Action::SetCpu {
                        name: name.clone(),
                        millicores: d.plan.plan.cpu,
                    });
                }
                if now - started_at > STABLE_RUN.as_secs() as i64 {
                    self.backoff.stable(&name);
                }
            }
            RunState::Exited {
                code, finished_at, ..
            } => match backoff::failed_run(&d.plan, &c.seen.state, c.key.attempt) {
                // It failed before the last deploy: the deploy runs it again, from attempt 1.
                Some(_) if finished_at.is_some_and(|t| t < d.deployed_at) => {
                    self.recreate(d, c, 1, actions);
                }
                Some(how) => self.failed_run(d, c, &how, *finished_at, now),
                None => {
                    let policy = RunPolicy::of(&d.plan, *code);
                    match self.backoff.decide(&name, policy) {
                        Restart::Now => {
                            self.recreate(d, c, c.key.attempt.saturating_add(1), actions);
                        }
                        Restart::Later => {
                            if let Some(at) = self.backoff.next(&name) {
                                self.due.at(at);
                            }
                        }
                        Restart::Never => {}
                    }
                }
            },
        }
    }

    /// The run of `c` failed with no restart left: the proc's problem, and the rollout of its
    /// release fails (reported once per run, a second after it ended so that the log has its last
    /// lines) with the exit status and the tail of the log.
    fn failed_run(
        &mut self,
        d: &Desired,
        c: &Instance,
        how: &str,
        finished_at: Option<i64>,
        now: i64,
    ) {
        let no = c.key.number.unwrap_or(0);
        let sep = if how.starts_with("after ") { " " } else { ": " };
        let what = format!(
            "{}.{} instance {no} failed{sep}{how}",
            d.plan.proc_type, d.plan.name
        );
        self.problems.proc(&d.plan.full_name, what.clone());
        if finished_at.is_some_and(|t| now - t < 1) {
            // Reported by the pass a second from now, when the log has its last lines.
            self.due.after(Duration::from_secs(1));
            return;
        }
        if !self.backoff.first_report(c.name(), finished_at) {
            return;
        }
        let tail = self
            .ctx
            .settings
            .log_file(&d.app, &d.plan.name, no)
            .map(|path| instance::log_tail(&path))
            .unwrap_or_default();
        let reason = if tail.is_empty() {
            format!("{what} (its log is empty)")
        } else {
            format!("{what}; its log ends with:\n    {}", tail.join("\n    "))
        };
        if let Err(e) = super::rollout::failed(&self.ctx.records, &d.app, &d.release, &reason) {
            tracing::warn!(app = %d.app, "{e}");
        }
    }

    /// Runs `c` again as run `attempt`: the instance is recreated under the same name (on
    /// Docker the environment of a container cannot change when it starts again), with
    /// `LAIN_ATTEMPT` and its attempt label set; it stays on its node.
    fn recreate(&mut self, d: &Desired, c: &Instance, attempt: u32, actions: &mut Vec<Action>) {
        let full = &d.plan.full_name;
        let key = InstanceKey {
            attempt,
            ..c.key.clone()
        };
        let spec = instance::spec(&self.ctx, d, &key).map_err(|e| e.to_string());
        let secrets = instance::secret_files(&self.ctx.secrets, d);
        match (spec, secrets) {
            (Ok(mut spec), Ok(secrets)) => {
                spec.secret_files = secrets;
                actions.push(Action::Recreate {
                    spec: Box::new(spec),
                    proc: full.clone(),
                });
            }
            (Err(problem), _) | (_, Err(problem)) => self.problems.proc(full, problem),
        }
    }

    /// The retirement of `i`: instances that serve ports are drained first.
    pub(super) fn retire(&self, i: &Instance, grace: Duration) -> Action {
        let drain = if i.seen.host_ports.is_empty() {
            Duration::ZERO
        } else {
            self.ctx.settings.drain
        };
        Action::Retire {
            name: i.name().to_string(),
            grace,
            drain,
        }
    }

    /// How long a new instance of `d` has to get ready.
    fn ready_limit(&self, d: &Desired) -> Duration {
        let health_window = d.plan.plan.health.as_ref().map_or(0, |h| {
            u64::from(h.start_period) + u64::from(h.interval) * u64::from(h.retries.max(1))
        });
        self.ctx.settings.rollout_timeout
            + Duration::from_secs(u64::from(d.plan.plan.setup_time) + health_window)
    }

    /// Whether `c`, new, has had longer than `limit` to get ready; if not, a pass is due when
    /// it has.
    fn past_ready_limit(&mut self, c: &Instance, limit: Duration) -> bool {
        let Some(seen) = self.first_seen.get(c.name()).copied() else {
            return false;
        };
        if seen.elapsed() > limit {
            return true;
        }
        self.due.at(seen + limit + Duration::from_millis(1));
        false
    }

    /// Reports a restarted instance that is not ready in time (the one it replaces keeps
    /// running until it is).
    fn check_restart(&mut self, d: &Desired, c: &Instance) {
        let limit = self.ready_limit(d);
        if self.past_ready_limit(c, limit) {
            self.problems.proc(
                &d.plan.full_name,
                format!(
                    "restarted instance {} was not ready within {}s; the instance it replaces \
                     keeps running",
                    c.key.number.unwrap_or(0),
                    limit.as_secs()
                ),
            );
        }
    }

    /// Fails the rollout when a new instance is not ready in time.
    fn check_rollout(&mut self, d: &Desired, c: &Instance) {
        let limit = self.ready_limit(d);
        if self.past_ready_limit(c, limit) {
            let reason = format!(
                "instance {} was not ready within {}s",
                c.key.number.unwrap_or(0),
                limit.as_secs()
            );
            if let Err(e) = super::rollout::failed(&self.ctx.records, &d.app, &d.release, &reason) {
                tracing::warn!(app = %d.app, "{e}");
            }
        }
    }

    /// Places a new instance `no` of `d` and adds its creation.
    fn create(
        &mut self,
        d: &Desired,
        no: u32,
        nodes: &BTreeMap<String, NodeRecord>,
        actions: &mut Vec<Action>,
    ) {
        let full = &d.plan.full_name;
        let secrets = match instance::secret_files(&self.ctx.secrets, d) {
            Ok(secrets) => secrets,
            Err(problem) => {
                self.problems.proc(full, problem);
                return;
            }
        };
        let home = self.homes.get(&(full.clone(), no)).cloned();
        if d.plan.keeps_node() {
            match &home {
                Some(home) if nodes.get(home).is_some_and(|n| n.state == NodeState::Ready) => {
                    self.placement.pin(full, no, home);
                }
                Some(home) => {
                    self.problems.proc(full, stays_put(d, no, home, nodes));
                    return;
                }
                None => {}
            }
        }
        let node = match self.placement.reserve(d, no, nodes) {
            Ok(Some(node)) => node,
            Ok(None) => return,
            Err(problem) => {
                self.problems.proc(full, problem);
                return;
            }
        };
        let key = instance::key(d, no, &node);
        let name = key.name();
        // An instance of this very name still exists (it is retiring, after a scale down): it
        // holds its reservation until it is gone, and creating it again would only start what
        // is being stopped. The reservation just made is given back; the retirement wakes a
        // pass that creates the instance afresh.
        // The same while another operation holds it (a restore in place).
        if self.placement.holds(&name)
            || self.retiring.contains(&name)
            || self.ctx.held.contains(&name)
        {
            self.placement.give_back(full, &node);
            return;
        }
        let mut spec = match instance::spec(&self.ctx, d, &key) {
            Ok(spec) => spec,
            Err(e) => {
                self.placement.give_back(full, &node);
                self.problems.proc(full, e.to_string());
                return;
            }
        };
        spec.secret_files = secrets;
        if d.plan.keeps_node() && home.is_none() {
            let home = VolumeHome {
                app: d.app.clone(),
                proc: full.clone(),
                number: no,
                node: node.clone(),
                volumes: spec.volumes.clone(),
                since: crate::clock::unix_secs(),
                migration: None,
            };
            match self.ctx.records.record_volume_home(&home) {
                Ok(true) => {
                    tracing::info!(proc = %full, instance = no, node = %node, "volumes placed");
                    self.homes.insert((full.clone(), no), node.clone());
                }
                // Recorded meanwhile: the next pass places it there.
                Ok(false) => {
                    self.placement.give_back(full, &node);
                    return;
                }
                Err(e) => {
                    self.placement.give_back(full, &node);
                    self.problems.proc(
                        full,
                        format!("instance {no}: cannot record where its volumes live: {e}"),
                    );
                    return;
                }
            }
        }
        self.placement.hold(&name, full, no, &node);
        actions.push(Action::Create {
            spec: Box::new(spec),
            proc: full.clone(),
        });
    }
}

/// The problem of instance `no` of `d`, whose volumes are on `node`, which is not ready: it is
/// kept there (or not started at all), never started elsewhere on an empty volume.
fn stays_put(d: &Desired, no: u32, node: &str, nodes: &BTreeMap<String, NodeRecord>) -> String {
    let state = match nodes.get(node).map(|n| n.state) {
        Some(NodeState::Maintenance) => "in maintenance",
        Some(NodeState::Down) => "down",
        Some(NodeState::Ready) => "ready",
        None => "no longer a node",
    };
    format!(
        "{}.{} instance {no} has its volumes on node {node}, which is {state}: it stays there and is \
         not started on another node on an empty volume (bring {node} back, or move its volumes: \
         `lain volume migrate {} {} {no} --to NODE`)",
        d.plan.proc_type, d.plan.name, d.app, d.plan.name
    )
}

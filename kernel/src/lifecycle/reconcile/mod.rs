//! The reconciler (LAIN's deployd): makes what runs match what is deployed.
//!
//! Every pass reads the deployed apps and the nodes from the store, lists the runtime's
//! instances (by this kernel's label), and for each proc and instance number decides one step:
//! create, start, restart after a crash (with exponential backoff; never for run-to-completion
//! procs), change memory in place, or retire (stop with `kill_timeout`, then remove). A pass runs
//! when something changed (the API, a store watch of desired state, and the runtime's events wake
//! it: an instance that ends, on either runtime), when time decides something ([`due`]: a
//! backoff ends, a health check or a schedule's tick is due, an instance becomes ready), and at
//! least every [`due::SAFETY_NET`]; it holds no state that
//! matters across kernel restarts, so a restart simply resumes: what runs is adopted, duplicates
//! are retired, what is missing is created.
//!
//! Rolling upgrade: an instance number whose instance runs another release, plan or secrets
//! version (its `lain.plan` / `lain.secrets` label differs from the deployment's stamp), or sits
//! on a node that is no longer ready, or that an operator asked to move because the scheduler
//! pipeline no longer places it there (stateless procs), gets a new instance first; the old one is
//! retired once the new one is ready (healthy, or, without a health check, seen running for
//! `setup_time`, at least [`probing::MIN_UP`]). One instance number of a proc is replaced at a time. Unlike LAIN, which stopped the old
//! instance before starting the new one, this keeps every instance number served during an
//! upgrade; procs that keep their node (`stateful`, or with volumes besides `/lain/logs`) are
//! still stopped first and recreated on the same node: the node recorded as their volume home
//! (`records::VolumeHome`), where a missing instance comes back, or is reported while that node
//! is not ready, never created elsewhere on an empty volume. A new instance that is not ready within the rollout timeout
//! fails the rollout and the previous deployment comes back (LAIN's automatic rollback).
//!
//! The parts, one job each: [`context`] (what the reconciler may reach), [`desired`] and
//! [`portals`] (what should run), [`identity`] (who an instance is, from its labels),
//! [`placement`] (the scheduler's copy of the state), [`probing`] (health and readiness),
//! [`backoff`] (restarts; where run policies plug in), [`decide`] (the steps for one proc),
//! [`due`] (when time calls for the next pass),
//! [`instance`] (a new instance's spec), [`actions`] (carrying steps out), [`rollout`] (a failed
//! rollout) and [`publish`] (what `lain ps` and the router see, on every kernel:
//! [`crate::lifecycle::published`]).

pub mod actions;
pub mod backoff;
pub mod context;
mod decide;
pub mod desired;
pub mod due;
pub mod identity;
pub mod instance;
pub mod placement;
pub mod portals;
pub mod probing;
pub mod publish;
pub mod rollout;
pub mod wakeups;

pub use context::Context;
pub use placement::{Members, Source};

use crate::lifecycle::records::{NodeRecord, NodeState};
use actions::{Action, Retiring};
use backoff::Backoff;
use desired::{Desired, Images};
use due::{Due, SAFETY_NET};
use identity::Instance;
use placement::Placement;
use probing::Prober;
use publish::Problems;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

/// How soon a pass comes again after a step failed, or while a node does not answer: the
/// retries the one-second tick used to make.
const RETRY: Duration = Duration::from_secs(1);

/// The reconciliation loop and what it remembers between passes.
pub struct Reconciler {
    ctx: Context,
    placement: Placement,
    prober: Prober,
    backoff: Backoff,
    retiring: Retiring,
    /// When each instance was first seen keeping its number (for the rollout timeout).
    first_seen: HashMap<String, Instant>,
    images: Images,
    problems: Problems,
    /// Nodes this kernel marked down because their runtime stopped answering.
    downed: HashSet<String>,
    /// Where the volumes of each instance number of procs that keep their node live: proc full
    /// name and number -> node (read from the store every pass, see [`VolumeHome`]).
    ///
    /// [`VolumeHome`]: crate::lifecycle::records::VolumeHome
    homes: HashMap<(String, u32), String>,
    /// The instance numbers whose volumes are being moved (`lain volume migrate`): kept
    /// stopped, with the move's state.
    migrating: HashMap<(String, u32), crate::lifecycle::records::Migration>,
    /// Scheduled procs: their ticks and runs (`lifecycle::runs`).
    ticker: crate::lifecycle::runs::ticker::Ticker,
    /// What scheduled procs show, from the last pass's tick.
    schedules: BTreeMap<String, crate::lifecycle::runs::ScheduleView>,
    /// Writes what each pass saw into the store, for the other kernels and the next leader.
    published: crate::lifecycle::published::Publisher,
    /// When time calls for the next pass, gathered during the last one.
    due: Due,
}

impl Reconciler {
    /// A reconciler over `ctx`, placing instances with the pipeline `source` gives.
    pub fn new(ctx: Context, source: Source) -> Reconciler {
        Reconciler {
            ctx,
            placement: Placement::new(source),
            prober: Prober::default(),
            backoff: Backoff::default(),
            retiring: Retiring::default(),
            first_seen: HashMap::new(),
            images: Images::default(),
            problems: Problems::default(),
            downed: HashSet::new(),
            homes: HashMap::new(),
            migrating: HashMap::new(),
            ticker: crate::lifecycle::runs::ticker::Ticker::new(crate::clock::unix_secs()),
            schedules: BTreeMap::new(),
            published: crate::lifecycle::published::Publisher::default(),
            due: Due::default(),
        }
    }

    /// Runs passes until the task is dropped: again at once after a pass that acted (to see and
    /// publish its effect), else on a wake-up (an API call, a change of desired state in the
    /// store, see [`wakeups`], a runtime event), when the last pass found one due ([`due`]), or
    /// after [`SAFETY_NET`].
    pub async fn run(mut self) {
        // However the loop ends (the task is aborted when the kernel stops leading), the board
        // follows the store again.
        let _release = Release(self.ctx.status.clone());
        self.start_from_published();
        let alive = std::sync::Arc::new(());
        wakeups::follow(
            self.ctx.records.store.clone(),
            self.ctx.records.wake_handle().clone(),
            std::sync::Arc::downgrade(&alive),
        );
        loop {
            match self.pass().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!("reconciler pass failed: {e:#}"),
            }
            let wake = self.ctx.records.wake_handle().clone();
            tokio::select! {
                () = wake.notified() => {},
                () = tokio::time::sleep(self.due.wait(SAFETY_NET)) => {},
            }
        }
    }

    /// Starts from what the previous leader published: the stored records are not written
    /// again unless they change, and instances it found healthy count as healthy until a check
    /// says otherwise (their routes stay while this reconciler checks them again).
    fn start_from_published(&mut self) {
        match crate::lifecycle::published::Publisher::load(&*self.ctx.records.store) {
            Ok((publisher, apps)) => {
                self.prober
                    .seed(apps.values().flat_map(|s| s.instances.iter()));
                self.published = publisher;
            }
            Err(e) => tracing::warn!(
                "cannot read the published instances (this reconciler starts from nothing): {e}"
            ),
        }
    }

    /// One pass: observe, decide, act, publish. Returns whether it started or changed anything.
    pub async fn pass(&mut self) -> anyhow::Result<bool> {
        self.problems = Problems::default();
        // A pass that fails early is tried again soon, as a failed step is.
        self.due = Due::default();
        self.due.after(RETRY);
        let nodes: BTreeMap<String, NodeRecord> = self
            .ctx
            .records
            .nodes()?
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let engines: Vec<(String, String)> = nodes
            .values()
            .map(|n| (n.name.clone(), self.ctx.settings.engine_address(n)))
            .collect();
        self.ctx.runtime.sync_nodes(&engines);
        // Resource instances no client uses any more go before `desired` is read, so their
        // instances are retired in this pass.
        if let Err(e) = crate::lifecycle::resources::collect(&self.ctx.records) {
            tracing::warn!("removing unused resource instances: {e}");
        }
        let mut desired = desired::desired(&self.ctx, &mut self.images)?;
        let instances: Vec<Instance> = self
            .ctx
            .runtime
            .list(&self.ctx.kernel_id)
            .await?
            .into_iter()
            .map(Instance::new)
            .collect();
        let ticked = self.ticker.pass(
            &*self.ctx.records.store,
            &self.ctx.settings,
            &mut desired,
            &instances,
            &|name| self.backoff.restarts(name),
            crate::clock::unix_secs(),
        );
        let mut ticks = Due::default();
        for tick in ticked.views.values().filter_map(|v| v.next_tick) {
            ticks.at_unix(tick);
        }
        if !ticked.problems.is_empty() {
            // A schedule that could not tick (its state changed meanwhile) tries again soon.
            ticks.after(RETRY);
        }
        self.schedules = ticked.views;
        let nodes = self.mark_unreachable(nodes);
        if let Err(problem) = self
            .placement
            .sync_nodes(self.ctx.plugins.generation(), &nodes)
        {
            self.problems.all = Some(problem);
        }
        self.problems
            .by_proc
            .extend(self.placement.sync_procs(&desired, &instances));
        self.problems.by_proc.extend(ticked.problems);
        self.placement.sync_reservations(&desired, &instances);
        for (full, misfit) in self
            .placement
            .check_fits(&self.ctx.kernel_id, &desired, &instances)
        {
            self.problems.by_proc.entry(full).or_insert(misfit);
        }
        self.forget_gone(&instances);
        self.sync_homes(&desired, &instances)?;
        // Past the steps that fail a pass: from here on, only what time decides calls for one.
        self.due = ticks;
        self.prober.start_due(
            &self.ctx.runtime,
            &desired,
            &instances,
            self.ctx.records.wake_handle(),
        );
        let mut busy = self.retiring.snapshot();
        // Instances another operation holds (a restore in place) are left alone meanwhile.
        busy.extend(self.ctx.held.snapshot());
        // Instances on a node that does not answer cannot be stopped; they are left until it
        // answers again (then retired if replaced meanwhile). Until it does, passes come often.
        let unreachable = self.ctx.runtime.unreachable();
        if !unreachable.is_empty() {
            self.due.after(RETRY);
        }
        busy.extend(
            instances
                .iter()
                .filter(|i| unreachable.contains(&i.key.node))
                .map(|i| i.name().to_string()),
        );
        let mut by_proc: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for i in instances.iter().filter(|i| !busy.contains(i.name())) {
            by_proc.entry(i.key.proc.as_str()).or_default().push(i);
        }
        let mut actions: Vec<Action> = Vec::new();
        for (full, mine) in &by_proc {
            if !desired.contains_key(*full) {
                for i in mine {
                    actions.push(self.retire(i, Duration::from_secs(10)));
                }
            }
        }
        for (full, d) in &desired {
            let mine = by_proc.get(full.as_str()).map_or(&[][..], Vec::as_slice);
            self.plan_proc(d, mine, &nodes, &mut actions);
        }
        let outcome = actions::carry_out(
            &self.ctx.runtime,
            self.ctx.settings.parallel_starts,
            &self.ctx.fence,
            &self.retiring,
            self.ctx.records.wake_handle(),
            actions,
            &desired,
        )
        .await;
        if outcome.failed > 0 {
            self.due.after(RETRY);
        }
        self.problems.by_proc.extend(outcome.problems);
        for at in [
            self.prober.next_ready_at(&desired, &instances),
            self.prober.next_check_at(),
        ]
        .into_iter()
        .flatten()
        {
            self.due.at(at);
        }
        self.publish(&desired, &instances);
        Ok(outcome.done > 0)
    }

    /// Marks nodes whose runtime does not answer `down` (in the store, so operators see it) and
    /// puts those it marked back to `ready` when they answer again; returns the nodes as updated.
    fn mark_unreachable(
        &mut self,
        mut nodes: BTreeMap<String, NodeRecord>,
    ) -> BTreeMap<String, NodeRecord> {
        let unreachable = self.ctx.runtime.unreachable();
        for (name, node) in nodes.iter_mut() {
            let lost = unreachable.contains(name);
            let next = match node.state {
                NodeState::Ready if lost => NodeState::Down,
                NodeState::Down if !lost && self.downed.contains(name) => NodeState::Ready,
                _ => continue,
            };
            match self.ctx.records.set_node_state(name, next) {
                Ok(()) => {
                    tracing::warn!(node = %name, state = ?next, "node state changed by the kernel");
                    node.state = next;
                    if next == NodeState::Down {
                        self.downed.insert(name.clone());
                    } else {
                        self.downed.remove(name);
                    }
                }
                Err(e) => tracing::warn!(node = %name, "{e}"),
            }
        }
        nodes
    }

    /// Reads the volume homes, and records one for every instance of a proc that keeps its node
    /// that has none yet (created by a kernel that did not record them, or before its proc had
    /// volumes): the node it runs on holds its volumes.
    fn sync_homes(
        &mut self,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) -> anyhow::Result<()> {
        use anyhow::Context as _;
        let homes = self
            .ctx
            .records
            .volume_homes(None)
            .context("reading volume homes")?;
        self.migrating = homes
            .iter()
            .filter_map(|h| Some(((h.proc.clone(), h.number), h.migration.clone()?)))
            .collect();
        self.homes = homes
            .into_iter()
            .map(|h| ((h.proc, h.number), h.node))
            .collect();
        for i in instances {
            let (Some(d), Some(no)) = (desired.get(&i.key.proc), i.key.number) else {
                continue;
            };
            if !d.plan.keeps_node() || self.homes.contains_key(&(i.key.proc.clone(), no)) {
                continue;
            }
            let home = crate::lifecycle::records::VolumeHome {
                app: d.app.clone(),
                proc: i.key.proc.clone(),
                number: no,
                node: i.key.node.clone(),
                volumes: instance::volumes(d),
                since: crate::clock::unix_secs(),
                migration: None,
            };
            if self
                .ctx
                .records
                .record_volume_home(&home)
                .context("recording a volume home")?
            {
                tracing::info!(proc = %home.proc, instance = no, node = %home.node,
                    "volumes found on their node");
                self.homes.insert((home.proc, no), home.node);
            }
        }
        Ok(())
    }

    /// Drops what is remembered about instances that no longer exist, so a long-running kernel's
    /// memory does not grow with every instance it ever ran.
    fn forget_gone(&mut self, instances: &[Instance]) {
        let live: HashSet<&str> = instances.iter().map(Instance::name).collect();
        self.first_seen
            .retain(|name, _| live.contains(name.as_str()));
        self.backoff.retain(|name| live.contains(name));
    }

    /// Publishes what this pass saw: on this kernel's board, and in the store (the records
    /// that changed) for the other kernels and the next leader.
    fn publish(&mut self, desired: &BTreeMap<String, Desired>, instances: &[Instance]) {
        let retiring = self.retiring.snapshot();
        let apps = {
            let checks = self.prober.results();
            publish::statuses(
                &self.ctx,
                &publish::Seen {
                    desired,
                    instances,
                    retiring: &retiring,
                    checks: &checks,
                    backoff: &self.backoff,
                    problems: &self.problems,
                    wanted: self.placement.wanted(),
                    schedules: &self.schedules,
                },
            )
        };
        if let Err(e) = self.published.write(&*self.ctx.records.store, &apps) {
            tracing::warn!("cannot publish the instances in the store: {e}");
        }
        self.ctx.status.publish(apps);
    }
}

/// Hands the board back to the store's records when the reconciler's loop ends.
struct Release(crate::lifecycle::view::StatusBoard);

impl Drop for Release {
    fn drop(&mut self) {
        self.0.release();
    }
}

//! The reconciler (LAIN's deployd): makes what runs match what is deployed.
//!
//! Every pass reads the deployed apps and the nodes from the store, lists the runtime's
//! instances (by this kernel's label), and for each proc and instance number decides one step:
//! create, start, restart after a crash (with exponential backoff; never for run-to-completion
//! procs), change memory in place, or retire (stop with `kill_timeout`, then remove). A pass runs
//! when something changed (the API wakes it) and at least every second; it holds no state that
//! matters across kernel restarts, so a restart simply resumes: what runs is adopted, duplicates
//! are retired, what is missing is created.
//!
//! Rolling upgrade: an instance number whose instance runs another release (or sits on a node
//! that is no longer ready, for stateless procs) gets a new instance first; the old one is
//! retired once the new one is ready (healthy, or running for `setup_time`, at least a second,
//! without a health check). One instance number of a proc is replaced at a time. Unlike LAIN, which stopped the old
//! instance before starting the new one, this keeps every instance number served during an
//! upgrade; stateful procs (which own their node's volumes) are still stopped first and
//! recreated on the same node. A new instance that is not ready within the rollout timeout
//! fails the rollout and the previous deployment comes back (LAIN's automatic rollback).

use super::Lifecycle;
use super::records::{NodeRecord, NodeState, ProcPlan};
use super::view::{Health, InstanceView};
use crate::plugin::CallError;
use crate::plugin::bindings::scheduling;
use crate::plugin::bindings::types::Probe;
use crate::runtime::{HealthStatus, InstanceSpec, Observed, RunState, SecretFile, labels};
use crate::schedule::{MemberSpec, Pipeline, ProcId};
use crate::secrets::vault::SecretError;
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Builds the scheduling pipeline's members as the kernel configures them.
pub type Members = Box<dyn Fn() -> Result<Vec<MemberSpec>, CallError> + Send>;

/// Longest wait between passes.
const TICK: Duration = Duration::from_secs(1);
/// Longest backoff between restarts of a crashing instance.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Without a health check, an instance counts as ready only after it has run this long
/// (whole seconds, so at least one real second): a command that exits at once must not pass for
/// a ready instance and retire the old release's during a rollout.
const MIN_UP_SECS: i64 = 2;
/// A run this long resets the backoff.
const STABLE_RUN: Duration = Duration::from_secs(600);
/// Instances created or started at once: three per core, between 4 and 16. The runtime's engine
/// does the work; measured on 2 cores, 6 at a time deployed 50 containers ~7% faster than 16.
fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(4, |n| (n.get() * 3).clamp(4, 16))
}

/// What one proc should be.
struct Desired {
    app: String,
    release: String,
    image: String,
    plan: ProcPlan,
    /// For a portal: the client apps whose networks it joins, with the name they reach it by.
    grants: Vec<(String, String)>,
}

/// One step decided by a pass.
enum Action {
    Create(Box<InstanceSpec>, String),
    Start(String),
    /// Stop (with this grace) and remove, after a drain period if it served traffic.
    Retire(String, Duration, Duration),
    SetMemory(String, u64),
    Connect(String, String, String),
    Disconnect(String, String),
}

#[derive(Default)]
struct Probing {
    health: Option<Health>,
    failures: u32,
    last: Option<Instant>,
    in_flight: bool,
}

struct Backoff {
    restarts: u32,
    streak: u32,
    next: Instant,
}

/// The reconciliation loop and what it remembers between passes.
pub struct Reconciler {
    lc: Arc<Lifecycle>,
    members: Members,
    pipeline: Option<Pipeline>,
    generation: u64,
    nodes: BTreeMap<String, NodeRecord>,
    defined: HashMap<String, (ProcId, String)>,
    placed: HashMap<String, (String, String)>,
    probes: Arc<Mutex<HashMap<String, Probing>>>,
    backoff: HashMap<String, Backoff>,
    busy: Arc<Mutex<HashSet<String>>>,
    first_seen: HashMap<String, Instant>,
    pins: HashMap<(String, u32), String>,
    images: HashMap<(String, String), String>,
    problems: BTreeMap<String, String>,
    /// Nodes this kernel marked down because their runtime stopped answering.
    downed: HashSet<String>,
}

impl Reconciler {
    /// A reconciler for `lc`, placing instances with the pipeline `members` builds.
    pub fn new(lc: Arc<Lifecycle>, members: Members) -> Reconciler {
        Reconciler {
            lc,
            members,
            pipeline: None,
            generation: 0,
            nodes: BTreeMap::new(),
            defined: HashMap::new(),
            placed: HashMap::new(),
            probes: Arc::default(),
            backoff: HashMap::new(),
            busy: Arc::default(),
            first_seen: HashMap::new(),
            pins: HashMap::new(),
            images: HashMap::new(),
            problems: BTreeMap::new(),
            downed: HashSet::new(),
        }
    }

    /// Runs passes until the task is dropped: again at once after a pass that acted (to see and
    /// publish its effect), else on a wake-up or after [`TICK`].
    pub async fn run(mut self) {
        loop {
            match self.pass().await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => tracing::warn!("reconciler pass failed: {e:#}"),
            }
            let wake = self.lc.wake.clone();
            tokio::select! {
                () = wake.notified() => {},
                () = tokio::time::sleep(TICK) => {},
            }
        }
    }

    /// One pass: observe, decide, act, publish. Returns whether it started or changed anything.
    pub async fn pass(&mut self) -> anyhow::Result<bool> {
        self.problems.clear();
        let nodes: BTreeMap<String, NodeRecord> = self
            .lc
            .nodes()?
            .into_iter()
            .map(|n| (n.name.clone(), n))
            .collect();
        let engines: Vec<(String, String)> = nodes
            .values()
            .map(|n| (n.name.clone(), self.lc.engine_address(n)))
            .collect();
        self.lc.runtime.sync_nodes(&engines);
        let desired = self.desired()?;
        let observed = self.lc.runtime.list(&self.lc.kernel_id).await?;
        let nodes = self.mark_unreachable(nodes);
        self.sync_pipeline(&nodes);
        self.sync_procs(&desired, &observed);
        self.sync_placements(&desired, &observed);
        self.forget_gone(&observed);
        self.probe(&desired, &observed);
        let mut busy = self.busy.lock().clone();
        // Instances on a node that does not answer cannot be stopped; they are left until it
        // answers again (then retired if replaced meanwhile).
        let unreachable = self.lc.runtime.unreachable();
        busy.extend(
            observed
                .iter()
                .filter(|o| unreachable.iter().any(|n| n == o.label(labels::NODE)))
                .map(|o| o.name.clone()),
        );
        let mut by_proc: BTreeMap<String, Vec<&Observed>> = BTreeMap::new();
        for o in observed.iter().filter(|o| !busy.contains(&o.name)) {
            by_proc
                .entry(o.label(labels::PROC).to_string())
                .or_default()
                .push(o);
        }
        let mut actions = Vec::new();
        for (full, instances) in &by_proc {
            if !desired.contains_key(full) {
                for o in instances {
                    actions.push(self.retire(o, Duration::from_secs(10)));
                }
            }
        }
        for (full, d) in &desired {
            let instances = by_proc.get(full).map_or(&[][..], Vec::as_slice);
            self.plan_proc(d, instances, &nodes, &mut actions);
        }
        let acted = self.act(actions, &desired).await;
        self.publish(&desired, &observed);
        Ok(acted > 0)
    }

    /// Marks nodes whose runtime does not answer `down` (in the store, so operators see it) and
    /// puts those it marked back to `ready` when they answer again; returns the nodes as updated.
    fn mark_unreachable(
        &mut self,
        mut nodes: BTreeMap<String, NodeRecord>,
    ) -> BTreeMap<String, NodeRecord> {
        let unreachable = self.lc.runtime.unreachable();
        for (name, node) in nodes.iter_mut() {
            let lost = unreachable.contains(name);
            let next = match node.state {
                NodeState::Ready if lost => NodeState::Down,
                NodeState::Down if !lost && self.downed.contains(name) => NodeState::Ready,
                _ => continue,
            };
            match self.lc.set_node_state(name, next) {
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

    /// Drops what is remembered about instances that no longer exist, so a long-running kernel's
    /// memory does not grow with every instance it ever ran.
    fn forget_gone(&mut self, observed: &[Observed]) {
        let live: HashSet<&str> = observed.iter().map(|o| o.name.as_str()).collect();
        self.first_seen
            .retain(|name, _| live.contains(name.as_str()));
        self.backoff.retain(|name, _| live.contains(name.as_str()));
    }

    /// (Re)builds the pipeline when plugins changed and mirrors the nodes into it.
    fn sync_pipeline(&mut self, nodes: &BTreeMap<String, NodeRecord>) {
        let generation = self.lc.registry.generation();
        if self.pipeline.is_none() || generation != self.generation {
            let built = (self.members)()
                .map_err(|e| e.to_string())
                .and_then(|m| Pipeline::new(m).map_err(|e| e.to_string()));
            match built {
                Ok(p) => {
                    self.pipeline = Some(p);
                    self.generation = generation;
                    self.nodes.clear();
                    self.defined.clear();
                    self.placed.clear();
                }
                Err(e) => {
                    self.problems.insert("*".into(), format!("scheduler: {e}"));
                    self.pipeline = None;
                    return;
                }
            }
        }
        let Some(pipeline) = self.pipeline.as_mut() else {
            return;
        };
        for (name, node) in nodes {
            let known = self.nodes.get(name);
            let changed = known.is_none_or(|k| {
                k.labels != node.labels || k.memory != node.memory || k.cpu != node.cpu
            });
            if changed {
                let labels: Vec<(String, String)> = node
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if let Err(e) = pipeline.upsert_node(name, &labels, node.memory, node.cpu) {
                    tracing::warn!(node = %name, "scheduler: {e}");
                }
            }
            if changed || known.is_some_and(|k| k.state != node.state) {
                let state = match node.state {
                    NodeState::Ready => scheduling::NodeState::Ready,
                    NodeState::Maintenance => scheduling::NodeState::Maintenance,
                    NodeState::Down => scheduling::NodeState::Down,
                };
                if let Err(e) = pipeline.set_node_state(name, state, 0, 0) {
                    tracing::warn!(node = %name, "scheduler: {e}");
                }
            }
        }
        for name in self.nodes.keys() {
            if !nodes.contains_key(name) {
                let _ = pipeline.remove_node(name);
            }
        }
        self.nodes = nodes.clone();
    }

    /// Every proc that should run, by full name.
    fn desired(&mut self) -> anyhow::Result<BTreeMap<String, Desired>> {
        let mut out = BTreeMap::new();
        let apps = self.lc.apps()?;
        for app in &apps {
            let Some(deployed) = &app.deployed else {
                continue;
            };
            let key = (app.name.clone(), deployed.release.clone());
            let image = match self.images.get(&key) {
                Some(image) => image.clone(),
                None => match self.lc.release(&app.name, &deployed.release) {
                    Ok(r) => {
                        self.images.insert(key, r.image.clone());
                        r.image
                    }
                    Err(e) => {
                        tracing::warn!(app = %app.name, "{e}");
                        continue;
                    }
                },
            };
            for plan in &deployed.procs {
                let plan = app.effective(plan);
                out.insert(
                    plan.full_name.clone(),
                    Desired {
                        app: app.name.clone(),
                        release: deployed.release.clone(),
                        image: image.clone(),
                        plan,
                        grants: Vec::new(),
                    },
                );
            }
        }
        grant_portals(&apps, &mut out);
        Ok(out)
    }

    /// Declares desired procs to the pipeline and forgets those with nothing left.
    fn sync_procs(&mut self, desired: &BTreeMap<String, Desired>, observed: &[Observed]) {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return;
        };
        for (full, d) in desired {
            let p = &d.plan;
            let key = format!(
                "{}/{}/{:?}/{:?}",
                p.plan.memory, p.plan.cpu, p.filters, p.labels
            );
            if self.defined.get(full).is_some_and(|(_, k)| *k == key) {
                continue;
            }
            match pipeline.define_proc(
                full,
                &d.app,
                p.plan.memory,
                p.plan.cpu,
                &p.filters,
                &p.labels,
            ) {
                Ok(id) => {
                    self.defined.insert(full.clone(), (id, key));
                }
                Err(e) => {
                    self.problems
                        .insert(full.clone(), format!("scheduler: {e}"));
                }
            }
        }
        let live: HashSet<&str> = observed.iter().map(|o| o.label(labels::PROC)).collect();
        let gone: Vec<String> = self
            .defined
            .keys()
            .filter(|f| !desired.contains_key(*f) && !live.contains(f.as_str()))
            .cloned()
            .collect();
        for full in gone {
            let _ = pipeline.forget_proc(&full);
            self.defined.remove(&full);
            self.placed.retain(|_, (proc, _)| *proc != full);
        }
    }

    /// Mirrors the instances that hold resources into the pipeline's placements.
    fn sync_placements(&mut self, desired: &BTreeMap<String, Desired>, observed: &[Observed]) {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return;
        };
        let mut holding = HashSet::new();
        for o in observed {
            let full = o.label(labels::PROC);
            let Some(d) = desired.get(full) else { continue };
            if let RunState::Exited { code, .. } = o.state
                && !d.plan.restarts_after(code)
            {
                continue;
            }
            holding.insert(o.name.clone());
            if !self.placed.contains_key(&o.name)
                && let (Some((proc, _)), Some(node)) = (
                    self.defined.get(full),
                    pipeline.inventory().node_id(o.label(labels::NODE)),
                )
            {
                pipeline.adopt(*proc, node);
                self.placed.insert(
                    o.name.clone(),
                    (full.to_string(), o.label(labels::NODE).to_string()),
                );
            }
        }
        let released: Vec<String> = self
            .placed
            .keys()
            .filter(|n| !holding.contains(*n))
            .cloned()
            .collect();
        for name in released {
            if let Some((full, node)) = self.placed.remove(&name)
                && let (Some((proc, _)), Some(node)) =
                    (self.defined.get(&full), pipeline.inventory().node_id(&node))
            {
                pipeline.release(*proc, node);
            }
        }
    }

    fn is_ready(&self, o: &Observed, d: &Desired, now: i64) -> bool {
        ready(o, d, now, &self.probes.lock())
    }

    /// Decides the steps for one desired proc.
    fn plan_proc(
        &mut self,
        d: &Desired,
        instances: &[&Observed],
        nodes: &BTreeMap<String, NodeRecord>,
        actions: &mut Vec<Action>,
    ) {
        let now = crate::clock::unix_secs();
        let grace = Duration::from_secs(u64::from(d.plan.plan.kill_timeout));
        let n = d.plan.num_instances;
        let node_ready = |o: &Observed| {
            nodes
                .get(o.label(labels::NODE))
                .is_some_and(|n| n.state == NodeState::Ready)
        };
        let mut by_no: BTreeMap<u32, Vec<&Observed>> = BTreeMap::new();
        for o in instances {
            match o.label(labels::INSTANCE).parse::<u32>() {
                Ok(no) if (1..=n).contains(&no) => by_no.entry(no).or_default().push(o),
                _ => actions.push(self.retire(o, grace)),
            }
        }
        // Split each number's instances into the one that should stay and the ones to replace.
        let mut split: BTreeMap<u32, (Option<&Observed>, Vec<&Observed>)> = BTreeMap::new();
        for no in 1..=n {
            let mut mine = by_no.remove(&no).unwrap_or_default();
            mine.sort_by_key(|o| {
                let rank = match (&o.state, self.is_ready(o, d, now)) {
                    (_, true) => 0,
                    (RunState::Running { .. }, false) => 1,
                    (RunState::Exited { .. }, _) => 2,
                    (RunState::Created, _) => 3,
                };
                (rank, std::cmp::Reverse(o.name.clone()))
            });
            let pos = mine.iter().position(|o| {
                o.label(labels::RELEASE) == d.release
                    && o.label(labels::SECRETS) == d.plan.secrets_stamp
                    && (d.plan.stateful || node_ready(o))
            });
            let cur = pos.map(|i| mine.remove(i));
            split.insert(no, (cur, mine));
        }
        let mut rolling = split
            .values()
            .any(|(cur, old)| !old.is_empty() && cur.is_some_and(|c| !self.is_ready(c, d, now)));
        for (no, (cur, old)) in split {
            match cur {
                None if old.is_empty() => self.create(d, no, nodes, actions),
                None if rolling => {}
                None => {
                    rolling = true;
                    if d.plan.stateful {
                        // Stateful instances own their node's volumes: stop first, same node.
                        if let Some(node) = old.first().map(|o| o.label(labels::NODE)) {
                            self.pins
                                .insert((d.plan.full_name.clone(), no), node.to_string());
                        }
                        for o in old {
                            actions.push(self.retire(o, grace));
                        }
                    } else {
                        self.create(d, no, nodes, actions);
                    }
                }
                Some(c) => {
                    self.first_seen
                        .entry(c.name.clone())
                        .or_insert_with(Instant::now);
                    let ready = self.is_ready(c, d, now);
                    match &c.state {
                        // Secret files go in between creation and the first start; a
                        // created instance seen here may have missed them (the kernel died
                        // in between), so it is replaced rather than started.
                        RunState::Created if !d.plan.secret_files.is_empty() => {
                            actions.push(self.retire(c, grace));
                        }
                        RunState::Created => actions.push(Action::Start(c.name.clone())),
                        RunState::Running { started_at, .. } => {
                            if self.lc.runtime.isolates_apps() {
                                connect_clients(d, c, actions);
                            }
                            if c.memory != d.plan.plan.memory {
                                actions.push(Action::SetMemory(c.name.clone(), d.plan.plan.memory));
                            }
                            if now - started_at > STABLE_RUN.as_secs() as i64
                                && let Some(b) = self.backoff.get_mut(&c.name)
                            {
                                b.streak = 0;
                            }
                        }
                        RunState::Exited { code, .. } => {
                            if d.plan.restarts_after(*code) {
                                self.restart(c, actions);
                            }
                        }
                    }
                    if ready {
                        for o in old {
                            actions.push(self.retire(o, grace));
                        }
                    } else if !old.is_empty() {
                        self.check_rollout(d, c);
                    }
                }
            }
        }
    }

    /// The retirement of `o`: instances that serve ports are drained first.
    fn retire(&self, o: &Observed, grace: Duration) -> Action {
        let drain = if o.host_ports.is_empty() {
            Duration::ZERO
        } else {
            Duration::from_millis(self.lc.config.router.drain_ms)
        };
        Action::Retire(o.name.clone(), grace, drain)
    }

    /// Restarts a crashed instance unless it is backing off.
    fn restart(&mut self, o: &Observed, actions: &mut Vec<Action>) {
        let now = Instant::now();
        let b = self.backoff.entry(o.name.clone()).or_insert(Backoff {
            restarts: 0,
            streak: 0,
            next: now,
        });
        if now < b.next {
            return;
        }
        b.restarts += 1;
        b.streak += 1;
        b.next = now + Duration::from_secs(1 << (b.streak - 1).min(9)).min(MAX_BACKOFF);
        tracing::info!(instance = %o.name, restarts = b.restarts, "restarting a crashed instance");
        actions.push(Action::Start(o.name.clone()));
    }

    /// Fails the rollout when a new instance is not ready in time.
    fn check_rollout(&self, d: &Desired, c: &Observed) {
        let health_window = d.plan.plan.health.as_ref().map_or(0, |h| {
            u64::from(h.start_period) + u64::from(h.interval) * u64::from(h.retries.max(1))
        });
        let limit = Duration::from_secs(
            self.lc.config.lifecycle.rollout_timeout_secs
                + u64::from(d.plan.plan.setup_time)
                + health_window,
        );
        if self
            .first_seen
            .get(&c.name)
            .is_some_and(|t| t.elapsed() > limit)
        {
            let reason = format!(
                "instance {} was not ready within {}s",
                c.label(labels::INSTANCE),
                limit.as_secs()
            );
            if let Err(e) = self.lc.rollout_failed(&d.app, &d.release, &reason) {
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
        let secrets = match secret_files(&self.lc, d) {
            Ok(secrets) => secrets,
            Err(problem) => {
                self.problems.insert(full.clone(), problem);
                return;
            }
        };
        let (Some(pipeline), Some((proc, _))) = (self.pipeline.as_mut(), self.defined.get(full))
        else {
            return;
        };
        let pinned = self
            .pins
            .get(&(full.clone(), no))
            .filter(|n| nodes.get(*n).is_some_and(|n| n.state == NodeState::Ready))
            .and_then(|n| pipeline.inventory().node_id(n));
        let node = match pinned {
            Some(node) => {
                pipeline.adopt(*proc, node);
                Some(node)
            }
            None => match pipeline.place(*proc) {
                Ok(node) => node,
                Err(e) => {
                    self.problems
                        .insert(full.clone(), format!("scheduler: {e}"));
                    return;
                }
            },
        };
        let Some(node) = node.and_then(|id| pipeline.inventory().node_name(id).map(str::to_string))
        else {
            self.problems.insert(
                full.clone(),
                format!(
                    "no ready node fits instance {no} ({} MiB, filters {:?})",
                    d.plan.plan.memory >> 20,
                    d.plan.filters
                ),
            );
            return;
        };
        self.pins.remove(&(full.clone(), no));
        let mut spec = match instance_spec(&self.lc, d, no, &node) {
            Ok(spec) => spec,
            Err(e) => {
                self.problems.insert(full.clone(), e.to_string());
                return;
            }
        };
        spec.secret_files = secrets;
        self.placed.insert(spec.name.clone(), (full.clone(), node));
        actions.push(Action::Create(Box::new(spec), full.clone()));
    }

    /// Carries out the steps: creations and starts in parallel, retirements in the background.
    /// Returns how many succeeded (or were started, for retirements); failed steps are retried
    /// by a later pass.
    async fn act(&mut self, actions: Vec<Action>, desired: &BTreeMap<String, Desired>) -> usize {
        let runtime = self.lc.runtime.clone();
        let mut quick = Vec::new();
        let mut done = 0;
        for action in actions {
            match action {
                Action::Retire(name, grace, drain) => {
                    if !self.busy.lock().insert(name.clone()) {
                        continue;
                    }
                    done += 1;
                    let (runtime, busy, wake) =
                        (runtime.clone(), self.busy.clone(), self.lc.wake.clone());
                    tokio::spawn(async move {
                        tracing::info!(instance = %name, "retiring");
                        // Published as retiring (the router stops sending to it) before it stops.
                        tokio::time::sleep(drain).await;
                        let result = match runtime.stop(&name, grace).await {
                            Ok(()) => runtime.remove(&name).await,
                            Err(e) => Err(e),
                        };
                        if let Err(e) = result {
                            tracing::warn!(instance = %name, "cannot retire: {e}");
                        }
                        busy.lock().remove(&name);
                        wake.notify_one();
                    });
                }
                other => quick.push(other),
            }
        }
        let results: Vec<(Option<String>, Result<(), String>)> = futures::stream::iter(quick)
            .map(|action| {
                let runtime = runtime.clone();
                async move {
                    match action {
                        Action::Create(spec, full) => {
                            tracing::info!(instance = %spec.name, "creating");
                            let r = match runtime.create(&spec).await {
                                Ok(()) | Err(crate::runtime::RuntimeError::Exists(_)) => {
                                    runtime.start(&spec.name).await
                                }
                                Err(e) => Err(e),
                            };
                            (Some(full), r.map_err(|e| e.to_string()))
                        }
                        Action::Start(name) => {
                            (None, runtime.start(&name).await.map_err(|e| e.to_string()))
                        }
                        Action::SetMemory(name, bytes) => (
                            None,
                            runtime
                                .set_memory(&name, bytes)
                                .await
                                .map_err(|e| e.to_string()),
                        ),
                        Action::Connect(name, app, alias) => {
                            tracing::info!(instance = %name, client = %app, "connecting a portal");
                            let r = runtime.connect(&name, &app, &[alias]).await;
                            (None, r.map_err(|e| e.to_string()))
                        }
                        Action::Disconnect(name, app) => (
                            None,
                            runtime
                                .disconnect(&name, &app)
                                .await
                                .map_err(|e| e.to_string()),
                        ),
                        Action::Retire(..) => (None, Ok(())),
                    }
                }
            })
            .buffer_unordered(parallelism())
            .collect()
            .await;
        for (full, result) in results {
            match result {
                Ok(()) => done += 1,
                Err(e) => {
                    tracing::warn!("{e}");
                    if let Some(full) = full.filter(|f| desired.contains_key(f)) {
                        self.problems.insert(full, e);
                    }
                }
            }
        }
        done
    }

    /// Starts health probes that are due.
    fn probe(&mut self, desired: &BTreeMap<String, Desired>, observed: &[Observed]) {
        let now = crate::clock::unix_secs();
        let mut probes = self.probes.lock();
        probes.retain(|name, _| observed.iter().any(|o| o.name == *name));
        for o in observed {
            let (Some(d), RunState::Running { started_at, .. }) =
                (desired.get(o.label(labels::PROC)), &o.state)
            else {
                probes.remove(&o.name);
                continue;
            };
            let Some(check) = d.plan.plan.health.clone() else {
                continue;
            };
            if o.health.is_some() {
                // The runtime checks it itself (Docker's HEALTHCHECK).
                continue;
            }
            let p = probes.entry(o.name.clone()).or_default();
            let every = if p.health == Some(Health::Healthy) {
                Duration::from_secs(u64::from(check.interval.max(1)))
            } else {
                Duration::from_secs(1)
            };
            if p.in_flight || p.last.is_some_and(|t| t.elapsed() < every) {
                continue;
            }
            p.in_flight = true;
            p.last = Some(Instant::now());
            let in_start_period = now - started_at < i64::from(check.start_period);
            let (runtime, probes_ref, name) =
                (self.lc.runtime.clone(), self.probes.clone(), o.name.clone());
            let url = match &check.probe {
                Probe::Http(h) => {
                    let idx = d.plan.plan.ports.iter().position(|p| p.number == h.port);
                    o.host_ports.get(idx.unwrap_or(0)).map(|port| {
                        format!(
                            "http://{}:{port}{}",
                            runtime.host_address(o.label(labels::NODE)),
                            h.path
                        )
                    })
                }
                Probe::Command(_) => None,
            };
            tokio::spawn(async move {
                let timeout = Duration::from_secs(u64::from(check.timeout.max(1)));
                let ok = match (&check.probe, url) {
                    (Probe::Http(_), Some(url)) => http_ok(url, timeout).await,
                    (Probe::Http(_), None) => false,
                    (Probe::Command(cmd), _) => runtime
                        .exec_probe(&name, cmd, timeout)
                        .await
                        .unwrap_or(false),
                };
                let mut probes = probes_ref.lock();
                let Some(p) = probes.get_mut(&name) else {
                    return;
                };
                p.in_flight = false;
                if ok {
                    p.failures = 0;
                    p.health = Some(Health::Healthy);
                } else if !in_start_period {
                    p.failures += 1;
                    if p.failures >= check.retries.max(1) {
                        p.health = Some(Health::Unhealthy);
                    }
                }
            });
        }
    }

    /// Publishes what this pass saw for the API.
    fn publish(&self, desired: &BTreeMap<String, Desired>, observed: &[Observed]) {
        let now = crate::clock::unix_secs();
        let busy = self.busy.lock().clone();
        let probes = self.probes.lock();
        let mut by_app: BTreeMap<String, Vec<InstanceView>> = BTreeMap::new();
        for o in observed {
            let full = o.label(labels::PROC);
            let d = desired.get(full);
            let health = match (d.and_then(|d| d.plan.plan.health.as_ref()), o.health) {
                (None, _) => Health::None,
                (Some(_), Some(HealthStatus::Healthy)) => Health::Healthy,
                (Some(_), Some(HealthStatus::Unhealthy)) => Health::Unhealthy,
                (Some(_), Some(HealthStatus::Starting)) => Health::Starting,
                (Some(_), None) => probes
                    .get(&o.name)
                    .and_then(|p| p.health)
                    .unwrap_or(Health::Starting),
            };
            let backoff = self.backoff.get(&o.name);
            let restart_in = backoff.and_then(|b| {
                matches!(o.state, RunState::Exited { .. })
                    .then(|| b.next.saturating_duration_since(Instant::now()).as_secs())
            });
            by_app
                .entry(o.label(labels::APP).to_string())
                .or_default()
                .push(InstanceView {
                    name: o.name.clone(),
                    proc: d.map_or_else(
                        || full.rsplit('.').next().unwrap_or(full).to_string(),
                        |d| d.plan.name.clone(),
                    ),
                    instance: o.label(labels::INSTANCE).parse().unwrap_or(0),
                    release: o.label(labels::RELEASE).to_string(),
                    node: o.label(labels::NODE).to_string(),
                    state: o.state.clone(),
                    health,
                    ready: d.is_some_and(|d| ready(o, d, now, &probes)),
                    url: o.host_ports.first().map(|port| {
                        format!(
                            "http://{}:{port}",
                            self.lc.runtime.host_address(o.label(labels::NODE))
                        )
                    }),
                    memory: o.memory,
                    restarts: backoff.map_or(0, |b| b.restarts),
                    restart_in,
                    retiring: busy.contains(&o.name),
                });
        }
        for list in by_app.values_mut() {
            list.sort_by(|a, b| {
                (&a.proc, a.instance, &a.name).cmp(&(&b.proc, b.instance, &b.name))
            });
        }
        let mut problems = self.problems.clone();
        if let Some(all) = problems.remove("*") {
            for full in desired.keys() {
                problems.entry(full.clone()).or_insert_with(|| all.clone());
            }
        }
        self.lc.status.publish(by_app, problems);
    }
}

/// Whether `o` serves as its instance number should: healthy, or running `setup_time` without a
/// health check, or a run-to-completion instance that succeeded.
fn ready(o: &Observed, d: &Desired, now: i64, probes: &HashMap<String, Probing>) -> bool {
    match &o.state {
        RunState::Running { started_at, .. } => match (&d.plan.plan.health, o.health) {
            (None, _) => now - started_at >= i64::from(d.plan.plan.setup_time).max(MIN_UP_SECS),
            (Some(_), Some(runtime)) => runtime == HealthStatus::Healthy,
            (Some(_), None) => probes
                .get(&o.name)
                .is_some_and(|p| p.health == Some(Health::Healthy)),
        },
        RunState::Exited { code, .. } => *code == Some(0) && !d.plan.restarts_after(*code),
        RunState::Created => false,
    }
}

/// Fills each portal's grants: every deployed app whose `use_services` names the portal's
/// service (and that its `allow_clients` admits) gets the portal on its network, reachable by the
/// service name (LAIN spec §1.7, §2.9).
fn grant_portals(apps: &[super::records::AppRecord], desired: &mut BTreeMap<String, Desired>) {
    for client in apps {
        let Some(deployed) = &client.deployed else {
            continue;
        };
        for (service_app, names) in &deployed.use_services {
            for d in desired.values_mut().filter(|d| d.app == *service_app) {
                let Some(portal) = &d.plan.plan.portal else {
                    continue;
                };
                let allowed = glob::Pattern::new(&portal.allow_clients)
                    .is_ok_and(|p| p.matches(&client.name));
                if allowed && names.contains(&portal.service_name) {
                    d.grants
                        .push((client.name.clone(), portal.service_name.clone()));
                }
            }
        }
    }
}

/// Connects a portal instance to the networks of its clients and disconnects it from former
/// clients'.
fn connect_clients(d: &Desired, o: &Observed, actions: &mut Vec<Action>) {
    for (client, alias) in &d.grants {
        if !o.networks.contains(client) {
            actions.push(Action::Connect(
                o.name.clone(),
                client.clone(),
                alias.clone(),
            ));
        }
    }
    for network in &o.networks {
        if *network != d.app && !d.grants.iter().any(|(c, _)| c == network) {
            actions.push(Action::Disconnect(o.name.clone(), network.clone()));
        }
    }
}

/// The runtime spec of instance `no` of `d` on `node`.
fn instance_spec(
    lc: &Lifecycle,
    d: &Desired,
    no: u32,
    node: &str,
) -> Result<InstanceSpec, super::LifecycleError> {
    let p = &d.plan.plan;
    let mut env = d.plan.env.clone();
    env.extend([
        ("LAIN_INSTANCE_NO".to_string(), no.to_string()),
        ("DEPLOYD_POD_INSTANCE_NO".to_string(), no.to_string()),
        ("LAIN_NODE".to_string(), node.to_string()),
    ]);
    let labels = [
        (labels::KERNEL, lc.kernel_id.as_str()),
        (labels::APP, d.app.as_str()),
        (labels::PROC, d.plan.full_name.as_str()),
        (labels::INSTANCE, &no.to_string()),
        (labels::RELEASE, d.release.as_str()),
        (labels::NODE, node),
    ]
    .into_iter()
    .chain(
        (!d.plan.secrets_stamp.is_empty())
            .then_some((labels::SECRETS, d.plan.secrets_stamp.as_str())),
    )
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Ok(InstanceSpec {
        // A new version of the secrets is a new instance, as a new release is.
        name: if d.plan.secrets_stamp.is_empty() {
            format!("{}.i{no}.{}.{node}", d.plan.full_name, d.release)
        } else {
            format!(
                "{}.i{no}.{}.s{}.{node}",
                d.plan.full_name, d.release, d.plan.secrets_stamp
            )
        },
        labels,
        image: d.image.clone(),
        entrypoint: p.entrypoint.clone(),
        cmd: p.cmd.clone(),
        user: p.user.clone(),
        env,
        workdir: p.workdir.clone(),
        ports: p.ports.iter().map(|p| p.number).collect(),
        memory: p.memory,
        cpu: p.cpu,
        log_file: lc.log_file(&d.app, &d.plan.name, no)?,
        aliases: vec![d.plan.name.clone()],
        volumes: d.plan.volumes.clone(),
        volume_root: lc
            .config
            .data_dir
            .join("volumes")
            .join(&d.app)
            .join(&d.plan.name)
            .join(no.to_string()),
        health: p.health.clone(),
        secret_files: Vec::new(),
    })
}

/// The secret files of `d`'s instances, read from the vault. A missing one is skipped with
/// `secret_files_bypass`, else it is a problem that keeps the instance from being created.
fn secret_files(lc: &Lifecycle, d: &Desired) -> Result<Vec<SecretFile>, String> {
    let mut out = Vec::with_capacity(d.plan.secret_files.len());
    for path in &d.plan.secret_files {
        match lc.vault.get(&d.app, &d.plan.name, path) {
            Ok(content) => out.push(SecretFile {
                path: path.clone(),
                content,
            }),
            Err(SecretError::NotFound { .. }) if d.plan.secret_files_bypass => {}
            Err(e) => return Err(format!("secret file {path}: {e}")),
        }
    }
    Ok(out)
}

/// Whether GET `url` answers 2xx or 3xx within `timeout`.
async fn http_ok(url: String, timeout: Duration) -> bool {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build()
            .into();
        agent
            .get(&url)
            .call()
            .is_ok_and(|r| r.status().is_success() || r.status().is_redirection())
    })
    .await
    .unwrap_or(false)
}

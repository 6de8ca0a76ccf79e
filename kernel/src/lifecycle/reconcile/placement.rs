//! The scheduler's copy of the state: the scheduling pipeline (rebuilt when plugins or the
//! stored pipeline change), the nodes and procs declared to it, and which instance holds a
//! reservation on which node. Each instance name holds at most one reservation: an instance
//! counts once however many passes see it, and a placement for a name that already holds one is
//! given back. After a rebuild, every instance holding a reservation is checked against the new
//! pipeline; those it would not place on their node are misfits (see [`crate::schedule::live`]).

use super::desired::Desired;
use super::identity::Instance;
use crate::lifecycle::records::{NodeRecord, NodeState};
use crate::plugin::CallError;
use crate::plugin::bindings::scheduling;
use crate::runtime::RunState;
use crate::schedule::{self, Live, MemberSpec, Misfit, Mode, NodeId, Pipeline, ProcId};
use std::collections::{BTreeMap, HashMap, HashSet};

/// Builds the scheduling pipeline's members from a pipeline configuration.
pub type Members = Box<dyn Fn(&schedule::Config) -> Result<Vec<MemberSpec>, CallError> + Send>;

/// Where the pipeline comes from: its configuration in the store, and how members are built.
pub struct Source {
    /// The stored pipeline, misfits and move requests.
    pub live: Live,
    /// Builds the members of a configuration.
    pub members: Members,
}

/// What the pipeline knows of a proc: a change declares it again.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ProcShape {
    memory: u64,
    cpu: u32,
    filters: Vec<String>,
    labels: Vec<String>,
}

impl ProcShape {
    fn of(d: &Desired) -> ProcShape {
        ProcShape {
            memory: d.plan.plan.memory,
            cpu: d.plan.plan.cpu,
            filters: d.plan.filters.clone(),
            labels: d.plan.labels.clone(),
        }
    }
}

/// A reservation: the proc (full name) and the node an instance holds it for.
struct Reservation {
    proc: String,
    node: String,
}

/// The pipeline and what has been declared to it.
pub struct Placement {
    source: Source,
    pipeline: Option<Pipeline>,
    generation: u64,
    /// The configuration the pipeline was built from.
    config: Option<schedule::Config>,
    /// Whether the instances placed must be checked against a new pipeline.
    recheck: bool,
    /// Instances the pipeline would not place where they are, by name.
    misfits: BTreeMap<String, Misfit>,
    /// The misfits last published, if any were.
    published: Option<Vec<Misfit>>,
    /// Instances an operator asked to move.
    moving: HashSet<String>,
    /// Instances wanted this pass, by proc, where the placement mode decides it.
    wanted: BTreeMap<String, u32>,
    nodes: BTreeMap<String, NodeRecord>,
    defined: HashMap<String, (ProcId, ProcShape)>,
    /// Reservations by instance name.
    placed: HashMap<String, Reservation>,
    /// Nodes a stateful instance number must come back on (it owns that node's volumes).
    pins: HashMap<(String, u32), String>,
}

impl Placement {
    /// A placement with the pipeline `source` gives (built on the first pass).
    pub fn new(source: Source) -> Placement {
        Placement {
            source,
            pipeline: None,
            generation: 0,
            config: None,
            recheck: false,
            misfits: BTreeMap::new(),
            published: None,
            moving: HashSet::new(),
            wanted: BTreeMap::new(),
            nodes: BTreeMap::new(),
            defined: HashMap::new(),
            placed: HashMap::new(),
            pins: HashMap::new(),
        }
    }

    /// (Re)builds the pipeline when plugins changed (`generation`) or the stored pipeline did,
    /// and mirrors the nodes into it. An error is the scheduler's problem, which every proc
    /// shares.
    pub fn sync_nodes(
        &mut self,
        generation: u64,
        nodes: &BTreeMap<String, NodeRecord>,
    ) -> Result<(), String> {
        self.wanted.clear();
        let config = match self.source.live.current() {
            Ok(config) => config,
            // The store did not answer: keep the pipeline in force, if there is one.
            Err(e) => match &self.config {
                Some(config) if self.pipeline.is_some() => {
                    tracing::warn!("scheduler: cannot read the pipeline: {e}");
                    config.clone()
                }
                _ => return Err(format!("scheduler: cannot read the pipeline: {e}")),
            },
        };
        if self.pipeline.is_none()
            || generation != self.generation
            || self.config.as_ref() != Some(&config)
        {
            let built = (self.source.members)(&config)
                .map_err(|e| e.to_string())
                .and_then(|m| Pipeline::new(m).map_err(|e| e.to_string()));
            match built {
                Ok(p) => {
                    if self.config.as_ref().is_some_and(|c| *c != config) {
                        tracing::info!(members = ?config.plugins, weights = ?config.weights,
                            "scheduler pipeline changed: rebuilt");
                    }
                    self.pipeline = Some(p);
                    self.generation = generation;
                    self.config = Some(config);
                    self.recheck = true;
                    self.nodes.clear();
                    self.defined.clear();
                    self.placed.clear();
                }
                Err(e) => {
                    self.pipeline = None;
                    self.config = None;
                    return Err(format!("scheduler: {e}"));
                }
            }
        }
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Ok(());
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
            if !nodes.contains_key(name)
                && let Err(e) = pipeline.remove_node(name)
            {
                tracing::warn!(node = %name, "scheduler: {e}");
            }
        }
        self.nodes = nodes.clone();
        Ok(())
    }

    /// Declares desired procs to the pipeline and forgets those with nothing left; returns the
    /// procs the pipeline refused, with why.
    pub fn sync_procs(
        &mut self,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) -> BTreeMap<String, String> {
        let mut problems = BTreeMap::new();
        let Some(pipeline) = self.pipeline.as_mut() else {
            return problems;
        };
        for (full, d) in desired {
            let shape = ProcShape::of(d);
            if self.defined.get(full).is_some_and(|(_, s)| *s == shape) {
                continue;
            }
            match pipeline.define_proc(
                full,
                &d.app,
                shape.memory,
                shape.cpu,
                &shape.filters,
                &shape.labels,
            ) {
                Ok(id) => {
                    self.defined.insert(full.clone(), (id, shape));
                }
                Err(e) => {
                    problems.insert(full.clone(), format!("scheduler: {e}"));
                }
            }
        }
        let live: HashSet<&str> = instances.iter().map(|i| i.key.proc.as_str()).collect();
        let gone: Vec<String> = self
            .defined
            .keys()
            .filter(|f| !desired.contains_key(*f) && !live.contains(f.as_str()))
            .cloned()
            .collect();
        for full in gone {
            if let Err(e) = pipeline.forget_proc(&full) {
                tracing::warn!(proc = %full, "scheduler: {e}");
            }
            self.defined.remove(&full);
            self.placed.retain(|_, r| r.proc != full);
        }
        problems
    }

    /// Mirrors the instances that hold resources into the pipeline's reservations: each
    /// instance name once, released when it no longer holds any.
    pub fn sync_reservations(
        &mut self,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) {
        let Some(pipeline) = self.pipeline.as_mut() else {
            return;
        };
        let mut holding = HashSet::new();
        for i in instances {
            let Some(d) = desired.get(&i.key.proc) else {
                continue;
            };
            if let RunState::Exited { code, .. } = i.seen.state
                && !d.plan.restarts_after(code)
            {
                continue;
            }
            holding.insert(i.name());
            if !self.placed.contains_key(i.name())
                && let (Some((proc, _)), Some(node)) = (
                    self.defined.get(&i.key.proc),
                    pipeline.inventory().node_id(&i.key.node),
                )
            {
                pipeline.adopt(*proc, node);
                self.placed.insert(
                    i.name().to_string(),
                    Reservation {
                        proc: i.key.proc.clone(),
                        node: i.key.node.clone(),
                    },
                );
            }
        }
        let released: Vec<String> = self
            .placed
            .keys()
            .filter(|n| !holding.contains(n.as_str()))
            .cloned()
            .collect();
        for name in released {
            if let Some(r) = self.placed.remove(&name)
                && let Some((proc, node)) = self.ids(&r.proc, &r.node)
                && let Some(pipeline) = self.pipeline.as_mut()
            {
                pipeline.release(proc, node);
            }
        }
    }

    /// After a rebuild, checks every instance holding a reservation against the new pipeline;
    /// forgets the misfits that are gone; publishes the misfits when they changed and reads the
    /// instances an operator asked to move. Returns a problem line per proc with misfits.
    pub fn check_fits(
        &mut self,
        kernel_id: &str,
        desired: &BTreeMap<String, Desired>,
        instances: &[Instance],
    ) -> BTreeMap<String, String> {
        if let Some(pipeline) = self.pipeline.as_mut()
            && std::mem::take(&mut self.recheck)
        {
            self.misfits.clear();
            for i in instances {
                let (Some(d), Some(no)) = (desired.get(&i.key.proc), i.key.number) else {
                    continue;
                };
                if !self.placed.contains_key(i.name()) {
                    continue;
                }
                let (Some((proc, _)), Some(node)) = (
                    self.defined.get(&i.key.proc),
                    pipeline.inventory().node_id(&i.key.node),
                ) else {
                    continue;
                };
                match pipeline.refit(*proc, node) {
                    Ok(None) => {}
                    Ok(Some(filter)) => {
                        self.misfits.insert(
                            i.name().to_string(),
                            Misfit {
                                instance: i.name().to_string(),
                                app: d.app.clone(),
                                proc: i.key.proc.clone(),
                                number: no,
                                node: i.key.node.clone(),
                                stateful: d.plan.keeps_node(),
                                filter,
                            },
                        );
                    }
                    Err(e) => {
                        tracing::warn!(instance = %i.name(), "scheduler: cannot re-check: {e}")
                    }
                }
            }
        }
        let live: HashSet<&str> = instances.iter().map(Instance::name).collect();
        self.misfits.retain(|name, _| live.contains(name.as_str()));
        let now: Vec<Misfit> = self.misfits.values().cloned().collect();
        if self.published.as_ref() != Some(&now) {
            match self.source.live.publish_misfits(kernel_id, &now) {
                Ok(()) => self.published = Some(now),
                Err(e) => tracing::warn!("scheduler: cannot publish misfits: {e}"),
            }
        }
        match self.source.live.moves() {
            Ok(m) if !m.instances.is_empty() => {
                if let Err(e) = self.source.live.prune_moves(|n| live.contains(n)) {
                    tracing::warn!("scheduler: cannot prune moves: {e}");
                }
                self.moving = m.instances.into_iter().collect();
            }
            Ok(_) => self.moving.clear(),
            Err(e) => tracing::warn!("scheduler: cannot read moves: {e}"),
        }
        let mut problems = BTreeMap::new();
        for m in self.misfits.values() {
            if m.stateful || !self.moving.contains(&m.instance) {
                problems
                    .entry(m.proc.clone())
                    .or_insert_with(|| m.describe());
            }
        }
        problems
    }

    /// Whether an operator asked to move instance `name` (a stateless misfit) elsewhere.
    pub fn moving(&self, name: &str) -> bool {
        self.moving.contains(name) && self.misfits.contains_key(name)
    }

    /// The instance numbers `d` should have, each with the node it must run on when its mode
    /// says so: `1..=num_instances` anywhere (spread), `1` anywhere (singleton), or one number
    /// per ready node the pipeline's filters accept for the proc (per-node; see
    /// [`schedule::mode::per_node_numbers`]). Per-node numbers are pinned to their node. Without
    /// a pipeline (or before the proc is declared), a per-node proc keeps what it has.
    pub fn numbers(
        &mut self,
        d: &Desired,
        instances: &[&Instance],
        nodes: &BTreeMap<String, NodeRecord>,
    ) -> BTreeMap<u32, Option<String>> {
        let numbers = self.numbers_of(d, instances, nodes);
        if d.mode() != Mode::Spread {
            self.wanted
                .insert(d.plan.full_name.clone(), numbers.len() as u32);
        }
        numbers
    }

    /// Instances wanted where the placement mode decides it (per-node, singleton), by proc.
    pub fn wanted(&self) -> &BTreeMap<String, u32> {
        &self.wanted
    }

    fn numbers_of(
        &mut self,
        d: &Desired,
        instances: &[&Instance],
        nodes: &BTreeMap<String, NodeRecord>,
    ) -> BTreeMap<u32, Option<String>> {
        let full = &d.plan.full_name;
        match d.mode() {
            Mode::Spread => (1..=d.plan.num_instances).map(|no| (no, None)).collect(),
            Mode::Singleton => BTreeMap::from([(1, None)]),
            Mode::PerNode => {
                let existing: Vec<(u32, &str)> = instances
                    .iter()
                    .filter_map(|i| Some((i.key.number?, i.key.node.as_str())))
                    .collect();
                let (Some(pipeline), Some((proc, _))) =
                    (self.pipeline.as_mut(), self.defined.get(full))
                else {
                    return existing
                        .iter()
                        .map(|(no, node)| (*no, Some(node.to_string())))
                        .collect();
                };
                let eligible: Vec<&str> = nodes
                    .values()
                    .filter(|n| n.state == NodeState::Ready)
                    .filter(|n| {
                        pipeline
                            .inventory()
                            .node_id(&n.name)
                            .is_some_and(|id| matches!(pipeline.refit(*proc, id), Ok(None)))
                    })
                    .map(|n| n.name.as_str())
                    .collect();
                let numbers = schedule::mode::per_node_numbers(&existing, &eligible);
                for (no, node) in &numbers {
                    self.pins.insert((full.clone(), *no), node.clone());
                }
                numbers.into_iter().map(|(no, n)| (no, Some(n))).collect()
            }
        }
    }

    /// Whether an instance of `proc` holds a reservation (a singleton waits for it to be gone).
    pub fn any_held(&self, proc: &str) -> bool {
        self.placed.values().any(|r| r.proc == proc)
    }

    /// Remembers that instance `no` of `proc` must come back on `node`.
    pub fn pin(&mut self, proc: &str, no: u32, node: &str) {
        self.pins.insert((proc.to_string(), no), node.to_string());
    }

    /// Says that `count` new instances of `d` are about to be reserved, one after the other: the
    /// pipeline may then place them as one batch (see `schedule::Pipeline::expect`).
    pub fn expect(&mut self, d: &Desired, count: u32) {
        if let (Some(pipeline), Some((proc, _))) =
            (self.pipeline.as_mut(), self.defined.get(&d.plan.full_name))
        {
            pipeline.expect(*proc, count);
        }
    }

    /// Reserves room for instance `no` of `d` and returns its node: the pinned node if it is
    /// ready, else where the pipeline places it. `Ok(None)` when there is no pipeline or the
    /// proc is not declared yet (a later pass places it); an error names why nothing fits.
    pub fn reserve(
        &mut self,
        d: &Desired,
        no: u32,
        nodes: &BTreeMap<String, NodeRecord>,
    ) -> Result<Option<String>, String> {
        let full = &d.plan.full_name;
        // A singleton never runs twice: its next instance waits until the last one is gone.
        if d.mode() == Mode::Singleton && self.any_held(full) {
            return Ok(None);
        }
        let (Some(pipeline), Some((proc, _))) = (self.pipeline.as_mut(), self.defined.get(full))
        else {
            return Ok(None);
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
            None => pipeline
                .place(*proc)
                .map_err(|e| format!("scheduler: {e}"))?,
        };
        let Some(id) = node else {
            return Err(format!(
                "no node for {full} instance {no}: {}",
                pipeline.explain_last()
            ));
        };
        match pipeline.inventory().node_name(id) {
            Some(name) => Ok(Some(name.to_string())),
            None => Err(format!("scheduler: node id {id} has no name")),
        }
    }

    /// Whether instance `name` holds a reservation.
    pub fn holds(&self, name: &str) -> bool {
        self.placed.contains_key(name)
    }

    /// Records that instance `name` (number `no` of `proc`) holds the reservation just made on
    /// `node`.
    pub fn hold(&mut self, name: &str, proc: &str, no: u32, node: &str) {
        self.pins.remove(&(proc.to_string(), no));
        self.placed.insert(
            name.to_string(),
            Reservation {
                proc: proc.to_string(),
                node: node.to_string(),
            },
        );
    }

    /// Gives back a reservation just made for `proc` on `node` that no instance will hold.
    pub fn give_back(&mut self, proc: &str, node: &str) {
        if let Some((proc, node)) = self.ids(proc, node)
            && let Some(pipeline) = self.pipeline.as_mut()
        {
            pipeline.release(proc, node);
        }
    }

    fn ids(&self, proc: &str, node: &str) -> Option<(ProcId, NodeId)> {
        let pipeline = self.pipeline.as_ref()?;
        Some((
            self.defined.get(proc)?.0,
            pipeline.inventory().node_id(node)?,
        ))
    }
}

//! Variants a and b: a `Pipeline` whose members are the wasm plugins or native backends over the
//! same algorithms, and the timing wrapper of the breakdown.

use crate::native::Native;
use crate::scheduling::{Cluster, Placer};
use crate::{APP, MEMBERS, NODE_CPU, NODE_MEMORY, PROC_CPU, PROC_MEMORY, PROCS, load, strings};
use anyhow::{Context, Result, ensure};
use lain::plugin::bindings::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, SchedulerInfo, Verdict,
};
use lain::plugin::bindings::scheduling_levels::LevelsVerdict;
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{CallError, FailurePolicy};
use lain::schedule::pipeline::Factory;
use lain::schedule::{Backend, MemberSpec, Pipeline, ProcId};
use lain_scheduling_core::{self as sched, Algorithm};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Variants a and b: a `Pipeline` holding the cluster and the procs.
pub struct PipelinePlacer {
    pipeline: Pipeline,
    /// Pipeline proc id of each of [`PROCS`].
    procs: Vec<ProcId>,
}

impl PipelinePlacer {
    /// Starts the members and syncs the cluster and the procs into them.
    pub fn new(members: Vec<MemberSpec>, cluster: &Cluster) -> Result<PipelinePlacer> {
        let mut pipeline = Pipeline::new(members)?;
        for (i, node) in cluster.nodes.iter().enumerate() {
            let id = pipeline.upsert_node(&node.name, &node.labels, NODE_MEMORY, NODE_CPU)?;
            ensure!(
                id as usize == i,
                "node {} got id {id}, expected {i}",
                node.name
            );
            if node.state != NodeState::Ready || node.memory_reserved != 0 {
                pipeline.set_node_state(&node.name, node.state, node.memory_reserved, 0)?;
            }
        }
        let procs = PROCS
            .iter()
            .map(|p| {
                pipeline.define_proc(
                    p.name,
                    APP,
                    PROC_MEMORY,
                    PROC_CPU,
                    &strings(p.filters),
                    &strings(p.labels),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PipelinePlacer { pipeline, procs })
    }

    fn proc_id(&self, proc: usize) -> Result<ProcId> {
        self.procs
            .get(proc)
            .copied()
            .with_context(|| format!("no proc #{proc}"))
    }
}

impl Placer for PipelinePlacer {
    fn place(&mut self, proc: usize) -> Result<Option<u32>> {
        let id = self.proc_id(proc)?;
        Ok(self.pipeline.place(id)?)
    }

    fn release(&mut self, proc: usize, node: u32) {
        if let Ok(id) = self.proc_id(proc) {
            self.pipeline.release(id, node);
        }
    }

    fn expect(&mut self, proc: usize, count: usize) {
        if let (Ok(id), Ok(count)) = (self.proc_id(proc), u32::try_from(count)) {
            self.pipeline.expect(id, count);
        }
    }
}

/// The members of [`MEMBERS`] as the built-in plugins, each in a long-lived instance.
pub fn wasm_members(engine: &Arc<PluginEngine>) -> Result<Vec<MemberSpec>> {
    MEMBERS
        .iter()
        .map(|name| {
            let plugin = load(engine, name)?;
            let factory: Factory = Box::new(move || {
                Ok(Box::new(LiveScheduler::start(plugin.clone())?) as Box<dyn Backend>)
            });
            Ok(member(name, factory))
        })
        .collect()
}

/// The members of [`MEMBERS`] as native backends over `lain-scheduling-core`, configured as the
/// plugins' default configurations configure them.
pub fn native_members() -> Vec<MemberSpec> {
    vec![
        native_member("resources", || sched::Resources::new(sched::Scoring::None)),
        native_member("constraint", sched::Constraint::new),
        native_member("spread", || sched::Spread::new(false)),
    ]
}

/// A pipeline member running the algorithm `make` returns natively.
fn native_member<A: Algorithm + Send + 'static>(name: &'static str, make: fn() -> A) -> MemberSpec {
    member(
        name,
        Box::new(move || Ok(Box::new(Native::new(name, make())) as Box<dyn Backend>)),
    )
}

/// A member of weight 1 that fails the placement when it fails.
fn member(name: &str, factory: Factory) -> MemberSpec {
    MemberSpec {
        name: name.to_string(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory,
    }
}

/// A member whose `evaluate` calls add their duration, in nanoseconds, to `spent`.
struct Timed {
    inner: Box<dyn Backend>,
    spent: Arc<AtomicU64>,
}

/// Wraps every member in [`Timed`]; returns the members and their counters, in order.
pub fn timed(specs: Vec<MemberSpec>) -> (Vec<MemberSpec>, Vec<Arc<AtomicU64>>) {
    specs
        .into_iter()
        .map(|spec| {
            let spent = Arc::new(AtomicU64::new(0));
            let counter = spent.clone();
            let make = spec.factory;
            let factory: Factory = Box::new(move || {
                Ok(Box::new(Timed {
                    inner: make()?,
                    spent: counter.clone(),
                }) as Box<dyn Backend>)
            });
            (MemberSpec { factory, ..spec }, spent)
        })
        .unzip()
}

impl Backend for Timed {
    fn describe(&mut self) -> Result<SchedulerInfo, CallError> {
        self.inner.describe()
    }

    fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        self.inner.sync_labels(labels)
    }

    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        self.inner.sync_nodes(upsert, remove)
    }

    fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        self.inner.sync_usage(usage)
    }

    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        self.inner.define_proc(req)
    }

    fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        self.inner.forget_proc(proc)
    }

    fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        self.inner.record_placements(placed)
    }

    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        let start = Instant::now();
        let verdict = self.inner.evaluate(proc, candidates, placed);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.spent.fetch_add(nanos, Ordering::Relaxed);
        verdict
    }

    fn has_levels(&self) -> bool {
        self.inner.has_levels()
    }

    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        let start = Instant::now();
        let verdict = self.inner.evaluate_levels(proc, candidates, placed, levels);
        let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.spent.fetch_add(nanos, Ordering::Relaxed);
        verdict
    }

    fn is_dead(&self) -> bool {
        self.inner.is_dead()
    }
}

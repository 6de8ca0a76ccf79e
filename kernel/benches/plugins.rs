//! What plugins cost: instantiation, the scheduling pipeline, and a proc-type call.
//!
//! Run with `cargo bench -p lain --bench plugins`. Prints a markdown report to stdout and writes
//! the same figures as JSON to `<target dir>/bench/plugins.json`; progress goes to stderr.
//!
//! # Method
//!
//! Every comparison is made inside one run, on one machine, between variants measured in
//! interleaved rounds (the method of `shared/prototype/SCHEDULING.md`): in each round every
//! variant runs one batch, in an order rotated from round to round, so drift in the machine
//! (other tenants, frequency scaling) hits all variants alike. Figures are medians over rounds,
//! and ratios are the median of the per-round *paired* ratios, which are far steadier on a noisy
//! VM than ratios of absolute times. Speed is only ever reported, never asserted: the program
//! fails on wrong answers, not on slow ones.
//!
//! 1. **Instantiation** from the plugin's `InstancePre` with the pooling allocator, per sample:
//!    `LoadedPlugin::instantiate` alone (store made beforehand), store creation + instantiate, and
//!    the full cycle including dropping the store (which returns the slot to the pool; the kernel
//!    pays it on every call of a non-scheduler plugin). Percentiles over all samples.
//! 2. **Scheduling**: one `schedule::Pipeline` of `resources`, `constraint`, `spread` (in that
//!    order, weight 1, the plugins' default configuration) at 500 and 5,000 nodes, three ways:
//!    - *wasm*: the built-in plugins, each a long-lived [`LiveScheduler`];
//!    - *native, same algorithms*: [`Native`] backends wrapping the `lain-scheduling-core`
//!      structs the plugins compile, run through the very same `Pipeline`, so the difference is
//!      the wasm boundary and Cranelift's code, nothing else;
//!    - *natural native*: [`Natural`], what a kernel without plugins would plausibly write (string
//!      labels on node structs, a loop over all nodes per placement, a `HashMap` of counts).
//!
//!    A batch places [`BATCH`] instances cycling through [`PROCS`]; the time per placement is
//!    the batch time over its size. The instances are then released, untimed, so every batch
//!    starts from the same state and must choose the same nodes: the program checks in every
//!    round that the three variants produced the identical placement sequence and fails
//!    otherwise. Trade-off: the pipeline hands deltas to its members with their next call, so the
//!    releases of one batch reach the plugins (wasm and native alike) with the first `evaluate`
//!    of the next batch and are inside its timed region; the natural variant applies them at
//!    release. That is one small record per placement, the steady-state traffic anyway.
//!    A separate pass ([`bench_breakdown`]) then times each member's `evaluate` in a and b, to
//!    show where a placement's time goes.
//! 3. **A proc-type call**: `web`'s `render`, which instantiates a fresh instance per call, next
//!    to the same plugin's fresh-instance costs, so the call's own cost is visible.

use anyhow::{Context, Result, anyhow, bail, ensure};
use lain::plugin::bindings::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, SchedulerInfo,
    Verdict,
};
use lain::plugin::bindings::types::{AppContext, EnvVar, Label, PluginError as GuestError, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{CallError, Cause, FailurePolicy, Limits, LoadedPlugin, Manifest};
use lain::schedule::pipeline::Factory;
use lain::schedule::{Backend, MemberSpec, Pipeline, ProcId};
use lain_scheduling_core::{self as sched, Algorithm};
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Measured samples per fresh-instance figure and per `render` figure.
const SAMPLES: usize = 5_000;
/// Samples run and discarded first (page faults of fresh pool slots, lazy initialisation).
const WARMUP_SAMPLES: usize = 200;
/// Cluster sizes of the scheduling benchmark.
const NODE_COUNTS: [usize; 2] = [500, 5_000];
/// Placements per timed batch.
const BATCH: usize = 200;
/// Measured rounds per cluster size (odd, so the median is one round).
const ROUNDS: usize = 201;
/// Rounds run and discarded first (plan building in `constraint`, allocator growth).
const WARMUP_ROUNDS: usize = 3;
/// Measured rounds of the per-member breakdown.
const BREAKDOWN_ROUNDS: usize = 51;

const GIB: u64 = 1 << 30;
/// Allocatable memory of every node.
const NODE_MEMORY: u64 = 64 * GIB;
/// Allocatable CPU of every node, in milli-cores.
const NODE_CPU: u32 = 32_000;
/// Memory of one instance of every proc.
const PROC_MEMORY: u64 = GIB;
/// CPU of one instance of every proc, in milli-cores.
const PROC_CPU: u32 = 500;
/// The app the procs belong to.
const APP: &str = "shop";

/// A proc of the scheduling benchmark.
struct ProcSpec {
    name: &'static str,
    filters: &'static [&'static str],
    labels: &'static [&'static str],
}

/// The procs a batch cycles through: LAIN filters on node labels, and for `web` a soft affinity
/// that prefers nodes already running a `cache` instance.
const PROCS: [ProcSpec; 3] = [
    ProcSpec {
        name: "shop.worker.cache",
        filters: &["constraint:group==default", "constraint:disk==ssd"],
        labels: &["role=cache"],
    },
    ProcSpec {
        name: "shop.web.web",
        filters: &["constraint:group==default", "affinity:role==~cache"],
        labels: &["role=web"],
    },
    ProcSpec {
        name: "shop.worker.jobs",
        filters: &["constraint:group==default", "constraint:zone!=z2"],
        labels: &["role=jobs"],
    },
];

/// The scheduler plugins of the pipeline, in order.
const MEMBERS: [&str; 3] = ["resources", "constraint", "spread"];

fn main() -> Result<()> {
    let target = target_dir()?;
    let engine = PluginEngine::new(Limits::default(), Some(target.join("bench/compiled")))?;
    let machine = Machine::probe();

    eprintln!("instantiation: {SAMPLES} samples per plugin...");
    let instantiation = bench_instantiation(&engine, &["worker", "jwt"])?;
    let mut scheduling = Vec::new();
    for nodes in NODE_COUNTS {
        eprintln!("scheduling at {nodes} nodes: {ROUNDS} rounds of {BATCH} placements...");
        scheduling.push(bench_scheduling(&engine, nodes)?);
    }
    eprintln!("proc-type render: {SAMPLES} samples...");
    let render = bench_render(&engine)?;

    let targets = targets(&instantiation, &scheduling);
    let report = Report {
        machine,
        instantiation,
        scheduling,
        render,
        targets,
    };
    print!("{}", report.markdown()?);

    let json = target.join("bench/plugins.json");
    std::fs::create_dir_all(target.join("bench"))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("wrote {}", json.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Instantiation

/// Measures fresh instances of each named built-in plugin, interleaving the plugins sample by
/// sample.
fn bench_instantiation(engine: &Arc<PluginEngine>, names: &[&str]) -> Result<Vec<Instantiation>> {
    let plugins = names
        .iter()
        .map(|name| load(engine, name))
        .collect::<Result<Vec<_>>>()?;
    let mut samples: Vec<FreshSamples> = names.iter().map(|_| FreshSamples::default()).collect();
    for i in 0..WARMUP_SAMPLES + SAMPLES {
        for (plugin, samples) in plugins.iter().zip(&mut samples) {
            let sample = fresh_instance(plugin)?;
            if i >= WARMUP_SAMPLES {
                samples.push(sample);
            }
        }
    }
    names
        .iter()
        .zip(samples)
        .map(|(name, samples)| {
            Ok(Instantiation {
                plugin: name.to_string(),
                component_kib: builtin(name)?.len() / 1024,
                samples: SAMPLES,
                fresh: samples.summary(),
            })
        })
        .collect()
}

/// One sample of each way of getting a fresh instance.
struct FreshSample {
    instantiate: Duration,
    store_and_instantiate: Duration,
    full_cycle: Duration,
}

/// Times `LoadedPlugin::instantiate` alone, store creation + instantiate, and both plus the
/// store's drop.
fn fresh_instance(plugin: &LoadedPlugin) -> Result<FreshSample> {
    let mut store = plugin.new_store(None)?;
    let start = Instant::now();
    plugin.instantiate(&mut store)?;
    let instantiate = start.elapsed();
    drop(store);

    let start = Instant::now();
    let mut store = plugin.new_store(None)?;
    plugin.instantiate(&mut store)?;
    let store_and_instantiate = start.elapsed();
    drop(store);

    let start = Instant::now();
    let mut store = plugin.new_store(None)?;
    plugin.instantiate(&mut store)?;
    drop(store);
    let full_cycle = start.elapsed();

    Ok(FreshSample {
        instantiate,
        store_and_instantiate,
        full_cycle,
    })
}

/// The samples of [`fresh_instance`], by figure.
#[derive(Default)]
struct FreshSamples {
    instantiate: Vec<Duration>,
    store_and_instantiate: Vec<Duration>,
    full_cycle: Vec<Duration>,
}

impl FreshSamples {
    fn push(&mut self, s: FreshSample) {
        self.instantiate.push(s.instantiate);
        self.store_and_instantiate.push(s.store_and_instantiate);
        self.full_cycle.push(s.full_cycle);
    }

    fn summary(self) -> Fresh {
        Fresh {
            instantiate: Percentiles::of(self.instantiate),
            store_and_instantiate: Percentiles::of(self.store_and_instantiate),
            full_cycle: Percentiles::of(self.full_cycle),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Scheduling

/// The three ways of scheduling compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Variant {
    /// The built-in wasm plugins through `Pipeline`.
    Wasm,
    /// The same algorithms compiled natively, through the same `Pipeline`.
    NativeSameAlgorithms,
    /// A plain native scheduler over string data.
    NaturalNative,
}

impl Variant {
    /// The variant's name.
    fn name(self) -> &'static str {
        match self {
            Variant::Wasm => "wasm plugins",
            Variant::NativeSameAlgorithms => "native, same algorithms",
            Variant::NaturalNative => "natural native",
        }
    }

    /// The name with the letter the module docs use.
    fn title(self) -> String {
        let letter = match self {
            Variant::Wasm => 'a',
            Variant::NativeSameAlgorithms => 'b',
            Variant::NaturalNative => 'c',
        };
        format!("{letter}. {}", self.name())
    }
}

/// Places and releases instances; what the measurement loop drives.
trait Placer {
    /// Places one instance of proc `proc` (an index into [`PROCS`]); `None` if no node fits.
    fn place(&mut self, proc: usize) -> Result<Option<u32>>;
    /// Releases one instance of `proc` from `node`.
    fn release(&mut self, proc: usize, node: u32);
}

/// Runs the three variants in interleaved rounds on one cluster of `nodes` nodes, then the
/// per-member breakdown of a and b.
fn bench_scheduling(engine: &Arc<PluginEngine>, nodes: usize) -> Result<Scheduling> {
    let cluster = Cluster::new(nodes);
    let mut contestants = [
        Contestant::new(
            Variant::Wasm,
            PipelinePlacer::new(wasm_members(engine)?, &cluster)?,
        ),
        Contestant::new(
            Variant::NativeSameAlgorithms,
            PipelinePlacer::new(native_members(), &cluster)?,
        ),
        Contestant::new(Variant::NaturalNative, Natural::new(&cluster)?),
    ];
    let mut times: [Vec<f64>; 3] = Default::default();
    run_rounds(&mut contestants, ROUNDS, |i, elapsed, measured| {
        if measured && let Some(t) = times.get_mut(i) {
            t.push(per_placement(elapsed));
        }
    })?;

    let [wasm, native, natural] = &times;
    let paired = |baseline: &[f64]| {
        let ratios = baseline.iter().zip(wasm).map(|(b, w)| b / w).collect();
        Ratio::of(ratios)
    };
    let variants = contestants
        .iter()
        .zip(&times)
        .map(|(c, t)| {
            let us = median(t.clone());
            VariantResult {
                variant: c.variant,
                us_per_placement: us,
                placements_per_s: 1e6 / us,
                wasm_throughput: match c.variant {
                    Variant::Wasm => None,
                    Variant::NativeSameAlgorithms => Some(paired(native)),
                    Variant::NaturalNative => Some(paired(natural)),
                },
            }
        })
        .collect();
    Ok(Scheduling {
        nodes,
        batch: BATCH,
        rounds: ROUNDS,
        variants,
        breakdown: bench_breakdown(engine, &cluster)?,
    })
}

/// Splits the time per placement of variants a and b between the members' `evaluate` calls and
/// the pipeline's own work (candidate bitmap, score totals, best node, bookkeeping).
///
/// A separate pass over separate pipelines whose members are wrapped in [`Timed`]: its two clock
/// reads per member call would distort the main comparison, where b costs well under a µs.
fn bench_breakdown(engine: &Arc<PluginEngine>, cluster: &Cluster) -> Result<Vec<Breakdown>> {
    let (wasm, wasm_spent) = timed(wasm_members(engine)?);
    let (native, native_spent) = timed(native_members());
    let spent = [wasm_spent, native_spent];
    let mut contestants = [
        Contestant::new(Variant::Wasm, PipelinePlacer::new(wasm, cluster)?),
        Contestant::new(
            Variant::NativeSameAlgorithms,
            PipelinePlacer::new(native, cluster)?,
        ),
    ];
    // Per contestant, one column per member, then one for the pipeline's own work.
    let mut samples = [(); 2].map(|_| vec![Vec::new(); MEMBERS.len() + 1]);
    run_rounds(
        &mut contestants,
        BREAKDOWN_ROUNDS,
        |i, elapsed, measured| {
            let (Some(counters), Some(columns)) = (spent.get(i), samples.get_mut(i)) else {
                return;
            };
            // Read and reset the counters after every batch, warm-up ones included.
            let members: Vec<f64> = counters
                .iter()
                .map(|c| per_placement(Duration::from_nanos(c.swap(0, Ordering::Relaxed))))
                .collect();
            if measured {
                let own = per_placement(elapsed) - members.iter().sum::<f64>();
                for (column, value) in columns.iter_mut().zip(members.into_iter().chain([own])) {
                    column.push(value);
                }
            }
        },
    )?;
    Ok(contestants
        .iter()
        .zip(samples)
        .map(|(c, columns)| {
            let mut medians: Vec<f64> = columns.into_iter().map(median).collect();
            let pipeline_us = medians.pop().unwrap_or(f64::NAN);
            Breakdown {
                variant: c.variant,
                members: MEMBERS
                    .iter()
                    .zip(medians)
                    .map(|(&member, us)| MemberTime { member, us })
                    .collect(),
                pipeline_us,
            }
        })
        .collect())
}

/// One variant in the interleaved rounds: its placer and the nodes its last batch chose.
struct Contestant {
    variant: Variant,
    placer: Box<dyn Placer>,
    chosen: Vec<Option<u32>>,
}

impl Contestant {
    fn new(variant: Variant, placer: impl Placer + 'static) -> Contestant {
        Contestant {
            variant,
            placer: Box::new(placer),
            chosen: Vec::with_capacity(BATCH),
        }
    }
}

/// Runs [`WARMUP_ROUNDS`] + `rounds` rounds; in each, every contestant places one batch, in an
/// order rotated every round, and `after(i, elapsed, measured)` sees contestant `i`'s batch time.
/// Fails unless all contestants chose the same nodes in every round.
fn run_rounds(
    contestants: &mut [Contestant],
    rounds: usize,
    mut after: impl FnMut(usize, Duration, bool),
) -> Result<()> {
    let sequence: Vec<usize> = (0..BATCH).map(|k| k % PROCS.len()).collect();
    let n = contestants.len();
    for round in 0..WARMUP_ROUNDS + rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let c = &mut contestants[i];
            let elapsed = run_batch(c.placer.as_mut(), &sequence, &mut c.chosen)?;
            after(i, elapsed, round >= WARMUP_ROUNDS);
        }
        check_same_choices(contestants, &sequence, round)?;
    }
    Ok(())
}

/// Places the batch `sequence` (timed), then releases what it placed (untimed); `chosen`
/// receives the node chosen for each placement.
fn run_batch(
    placer: &mut dyn Placer,
    sequence: &[usize],
    chosen: &mut Vec<Option<u32>>,
) -> Result<Duration> {
    chosen.clear();
    let start = Instant::now();
    for &proc in sequence {
        chosen.push(placer.place(proc)?);
    }
    let elapsed = start.elapsed();
    for (&proc, node) in sequence.iter().zip(chosen.iter()) {
        if let Some(node) = *node {
            placer.release(proc, node);
        }
    }
    Ok(elapsed)
}

/// Fails unless every contestant placed every instance, on the same nodes as the first.
fn check_same_choices(contestants: &[Contestant], sequence: &[usize], round: usize) -> Result<()> {
    let name = |k: usize| {
        sequence
            .get(k)
            .and_then(|&p| PROCS.get(p))
            .map_or("?", |p| p.name)
    };
    let show = |chosen: Option<&Option<u32>>| match chosen {
        Some(Some(node)) => format!("node {node}"),
        Some(None) => "no node".to_string(),
        None => "nothing".to_string(),
    };
    let [reference, others @ ..] = contestants else {
        return Ok(());
    };
    if let Some(k) = reference.chosen.iter().position(Option::is_none) {
        bail!(
            "round {round}: placement #{k} ({}) found no node; the data set must fit",
            name(k)
        );
    }
    for other in others {
        let (a, b) = (&reference.chosen, &other.chosen);
        if let Some(k) = (0..a.len().max(b.len())).find(|&k| a.get(k) != b.get(k)) {
            bail!(
                "round {round}: placements differ at #{k} ({}): {} chose {}, {} chose {}",
                name(k),
                reference.variant.title(),
                show(a.get(k)),
                other.variant.title(),
                show(b.get(k)),
            );
        }
    }
    Ok(())
}

/// The benchmark cluster: node `i` has the labels `zone=z{i%3}`, `disk=ssd|hdd` (alternating),
/// `rack=r{i%10}`, `group=default`, 64 GiB and 32 cores. So that the `resources` filter has work
/// to do, every 50th node is under maintenance and every 37th has all but half a GiB reserved
/// outside the pipeline's placements.
struct Cluster {
    nodes: Vec<NodeSpec>,
}

/// One node of the [`Cluster`].
struct NodeSpec {
    name: String,
    labels: Vec<(String, String)>,
    state: NodeState,
    memory_reserved: u64,
}

impl Cluster {
    fn new(nodes: usize) -> Cluster {
        let nodes = (0..nodes)
            .map(|i| {
                let disk = if i % 2 == 0 { "ssd" } else { "hdd" };
                let labels = [
                    ("zone", format!("z{}", i % 3)),
                    ("disk", disk.to_string()),
                    ("rack", format!("r{}", i % 10)),
                    ("group", "default".to_string()),
                ];
                NodeSpec {
                    name: format!("node-{i:05}"),
                    labels: labels.map(|(k, v)| (k.to_string(), v)).to_vec(),
                    state: if i % 50 == 49 {
                        NodeState::Maintenance
                    } else {
                        NodeState::Ready
                    },
                    memory_reserved: if i % 37 == 36 {
                        NODE_MEMORY - GIB / 2
                    } else {
                        0
                    },
                }
            })
            .collect();
        Cluster { nodes }
    }
}

/// Variants a and b: a `Pipeline` holding the cluster and the procs.
struct PipelinePlacer {
    pipeline: Pipeline,
    /// Pipeline proc id of each of [`PROCS`].
    procs: Vec<ProcId>,
}

impl PipelinePlacer {
    /// Starts the members and syncs the cluster and the procs into them.
    fn new(members: Vec<MemberSpec>, cluster: &Cluster) -> Result<PipelinePlacer> {
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
}

/// The members of [`MEMBERS`] as the built-in plugins, each in a long-lived instance.
fn wasm_members(engine: &Arc<PluginEngine>) -> Result<Vec<MemberSpec>> {
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
fn native_members() -> Vec<MemberSpec> {
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

/// Variant b: a native pipeline member, the same algorithm the wasm plugin wraps.
///
/// It converts the bindgen records into the core's plain types, as the guest SDK does on the other
/// side of the boundary, and allocates the verdict's bitmap and scores per call, as the wasm path
/// must; so what it saves over wasm is exactly the boundary crossing (with `LiveScheduler`'s
/// per-call health accounting and epoch deadline) and the wasm code.
struct Native<A> {
    name: &'static str,
    algorithm: A,
}

impl<A: Algorithm> Native<A> {
    fn new(name: &'static str, algorithm: A) -> Self {
        Native { name, algorithm }
    }
}

impl<A: Algorithm + Send> Backend for Native<A> {
    fn describe(&mut self) -> Result<SchedulerInfo, CallError> {
        let r = self.algorithm.roles();
        let mut roles = Roles::empty();
        if r.filter {
            roles |= Roles::FILTER;
        }
        if r.score {
            roles |= Roles::SCORE;
        }
        Ok(SchedulerInfo {
            roles,
            summary: format!("native {}", self.name),
        })
    }

    fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        let labels: Vec<_> = labels
            .iter()
            .map(|l| sched::LabelDef {
                id: l.id,
                key: l.key.clone(),
                value: l.value.clone(),
            })
            .collect();
        self.algorithm.sync_labels(&labels);
        Ok(())
    }

    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        let upsert: Vec<_> = upsert
            .iter()
            .map(|n| sched::Node {
                id: n.id,
                labels: n.labels.clone(),
                memory: n.memory,
                cpu: n.cpu,
            })
            .collect();
        self.algorithm.sync_nodes(&upsert, remove);
        Ok(())
    }

    fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        let usage: Vec<_> = usage
            .iter()
            .map(|u| sched::NodeUsage {
                id: u.id,
                state: match u.state {
                    NodeState::Ready => sched::NodeState::Ready,
                    NodeState::Maintenance => sched::NodeState::Maintenance,
                    NodeState::Down => sched::NodeState::Down,
                },
                memory_reserved: u.memory_reserved,
                cpu_reserved: u.cpu_reserved,
            })
            .collect();
        self.algorithm.sync_usage(&usage);
        Ok(())
    }

    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        let req = sched::ProcRequirements {
            id: req.id,
            name: req.name.clone(),
            app: req.app.clone(),
            memory: req.memory,
            cpu: req.cpu,
            filters: req.filters.clone(),
            labels: req.labels.clone(),
        };
        self.algorithm
            .define_proc(&req)
            .map_err(|e| self.refusal("define-proc", e))
    }

    fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        self.algorithm.forget_proc(proc);
        Ok(())
    }

    fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        for p in placed {
            self.algorithm.record_placement(placement(p));
        }
        Ok(())
    }

    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        for p in placed {
            self.algorithm.record_placement(placement(p));
        }
        let mut feasible = candidates.to_vec();
        let mut scores = Vec::new();
        self.algorithm
            .evaluate(proc, &mut feasible, &mut scores)
            .map_err(|e| self.refusal("evaluate", e))?;
        Ok(Verdict { feasible, scores })
    }
}

impl<A> Native<A> {
    /// The algorithm's refusal as the pipeline sees a plugin's: a guest `invalid-input`.
    fn refusal(&self, function: &'static str, message: String) -> CallError {
        CallError {
            plugin: self.name.to_string(),
            version: "native".to_string(),
            function,
            cause: Cause::Guest(GuestError::InvalidInput(message)),
        }
    }
}

/// The core's copy of a placement.
fn placement(p: &Placement) -> sched::Placement {
    sched::Placement {
        proc: p.proc,
        node: p.node,
        count: p.count,
    }
}

/// A member whose `evaluate` calls add their duration, in nanoseconds, to `spent`.
struct Timed {
    inner: Box<dyn Backend>,
    spent: Arc<AtomicU64>,
}

/// Wraps every member in [`Timed`]; returns the members and their counters, in order.
fn timed(specs: Vec<MemberSpec>) -> (Vec<MemberSpec>, Vec<Arc<AtomicU64>>) {
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

    fn is_dead(&self) -> bool {
        self.inner.is_dead()
    }
}

/// Variant c: the scheduler a kernel without plugins would plausibly have.
///
/// Nodes are structs with string labels; each placement loops over every node, checks its state
/// and free memory and CPU, then the proc's filters (parsed once per proc, matched against label
/// strings per node; `affinity:` looks through the procs running on the node), applies the soft
/// filters to the survivors, and takes the best spread score, lowest id on ties: the rule the
/// pipeline applies. Of LAIN's filter syntax it lacks only globs, which [`PROCS`] do not use.
struct Natural {
    nodes: Vec<NaturalNode>,
    procs: Vec<NaturalProc>,
    /// Instances per (proc, node).
    instances: HashMap<(usize, usize), u32>,
}

/// A node as variant c keeps it.
struct NaturalNode {
    name: String,
    labels: Vec<(String, String)>,
    ready: bool,
    free_memory: u64,
    free_cpu: u32,
}

/// A proc as variant c keeps it: its filters parsed once.
struct NaturalProc {
    memory: u64,
    cpu: u32,
    /// Container labels, `key=value`.
    labels: Vec<String>,
    filters: Vec<NaturalFilter>,
}

/// `(constraint|affinity):<key>(==|!=)[~]<value>`, split once.
struct NaturalFilter {
    affinity: bool,
    key: String,
    negate: bool,
    soft: bool,
    value: String,
}

impl NaturalFilter {
    fn parse(text: &str) -> Result<NaturalFilter> {
        let (kind, expr) = text
            .split_once(':')
            .with_context(|| format!("filter {text}: no kind"))?;
        let affinity = match kind {
            "constraint" => false,
            "affinity" => true,
            _ => bail!("filter {text}: unknown kind {kind}"),
        };
        let (key, negate, value) = match (expr.split_once("=="), expr.split_once("!=")) {
            (Some((key, value)), _) => (key, false, value),
            (None, Some((key, value))) => (key, true, value),
            (None, None) => bail!("filter {text}: no == or !="),
        };
        let (soft, value) = match value.strip_prefix('~') {
            Some(value) => (true, value),
            None => (false, value),
        };
        ensure!(
            !value.contains('*'),
            "filter {text}: the natural baseline has no globs"
        );
        Ok(NaturalFilter {
            affinity,
            key: key.to_string(),
            negate,
            soft,
            value: value.to_string(),
        })
    }
}

impl Natural {
    fn new(cluster: &Cluster) -> Result<Natural> {
        let nodes = cluster
            .nodes
            .iter()
            .map(|n| NaturalNode {
                name: n.name.clone(),
                labels: n.labels.clone(),
                ready: n.state == NodeState::Ready,
                free_memory: NODE_MEMORY.saturating_sub(n.memory_reserved),
                free_cpu: NODE_CPU,
            })
            .collect();
        let procs = PROCS
            .iter()
            .map(|p| {
                Ok(NaturalProc {
                    memory: PROC_MEMORY,
                    cpu: PROC_CPU,
                    labels: strings(p.labels),
                    filters: p
                        .filters
                        .iter()
                        .map(|f| NaturalFilter::parse(f))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Natural {
            nodes,
            procs,
            instances: HashMap::new(),
        })
    }

    /// Instances of `proc` on node `id`.
    fn count(&self, proc: usize, id: usize) -> u32 {
        self.instances.get(&(proc, id)).copied().unwrap_or(0)
    }

    /// Whether node `id` passes filter `f`.
    fn satisfies(&self, f: &NaturalFilter, id: usize, node: &NaturalNode) -> bool {
        let matched = if f.affinity {
            self.procs.iter().enumerate().any(|(q, proc)| {
                self.count(q, id) > 0
                    && proc
                        .labels
                        .iter()
                        .any(|l| l.split_once('=') == Some((f.key.as_str(), f.value.as_str())))
            })
        } else {
            (f.key == "node" && node.name == f.value)
                || node
                    .labels
                    .iter()
                    .any(|(k, v)| *k == f.key && *v == f.value)
        };
        matched != f.negate
    }
}

impl Placer for Natural {
    fn place(&mut self, proc: usize) -> Result<Option<u32>> {
        let p = self
            .procs
            .get(proc)
            .with_context(|| format!("no proc #{proc}"))?;
        let mut candidates: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(id, node)| {
                node.ready
                    && node.free_memory >= p.memory
                    && node.free_cpu >= p.cpu
                    && p.filters
                        .iter()
                        .filter(|f| !f.soft)
                        .all(|f| self.satisfies(f, id, node))
            })
            .map(|(id, _)| id)
            .collect();
        for f in p.filters.iter().filter(|f| f.soft) {
            let passes = |&id: &usize| {
                self.nodes
                    .get(id)
                    .is_some_and(|node| self.satisfies(f, id, node))
            };
            if candidates.iter().any(passes) {
                candidates.retain(passes);
            }
        }
        let spread = |id: usize| 1000 / (1 + self.count(proc, id));
        let Some(best) = candidates
            .into_iter()
            .max_by_key(|&id| (spread(id), Reverse(id)))
        else {
            return Ok(None);
        };
        let (memory, cpu) = (p.memory, p.cpu);
        *self.instances.entry((proc, best)).or_default() += 1;
        if let Some(node) = self.nodes.get_mut(best) {
            node.free_memory -= memory;
            node.free_cpu -= cpu;
        }
        Ok(Some(u32::try_from(best)?))
    }

    fn release(&mut self, proc: usize, node: u32) {
        let id = node as usize;
        let Some(count) = self.instances.get_mut(&(proc, id)).filter(|c| **c > 0) else {
            return;
        };
        *count -= 1;
        if let (Some(p), Some(node)) = (self.procs.get(proc), self.nodes.get_mut(id)) {
            node.free_memory += p.memory;
            node.free_cpu += p.cpu;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A proc-type call

/// Times `web`'s `render` (a whole call: fresh store and instance, the call, the checks, the
/// store's drop) interleaved with the same plugin's fresh-instance figures.
fn bench_render(engine: &Arc<PluginEngine>) -> Result<Render> {
    let plugin = load(engine, "web")?;
    let web = ProcTypePlugin(&plugin);
    let ctx = AppContext {
        app: "bookshelf".into(),
        app_domain: "bookshelf".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    };
    let proc = web
        .validate(&web_proc(), &ctx)?
        .map_err(|problems| anyhow!("web refused the benchmark proc: {problems:?}"))?;

    let mut fresh = FreshSamples::default();
    let mut render = Vec::with_capacity(SAMPLES);
    for i in 0..WARMUP_SAMPLES + SAMPLES {
        let sample = fresh_instance(&plugin)?;
        let start = Instant::now();
        let plan = web.render(&proc, &ctx)?;
        let elapsed = start.elapsed();
        black_box(plan);
        if i >= WARMUP_SAMPLES {
            fresh.push(sample);
            render.push(elapsed);
        }
    }
    let fresh = fresh.summary();
    let render = Percentiles::of(render);
    Ok(Render {
        plugin: "web".into(),
        samples: SAMPLES,
        beyond_fresh_instance_p50_us: render.p50_us - fresh.full_cycle.p50_us,
        fresh,
        render,
    })
}

/// A typical web proc: two mountpoints, a health check, a few variables and labels.
fn web_proc() -> Proc {
    Proc {
        app: "bookshelf".into(),
        name: "web".into(),
        proc_type: "web".into(),
        image: "registry.lain.local/bookshelf:release-1".into(),
        entrypoint: None,
        cmd: Some(strings(&["./server", "--port", "8080"])),
        user: None,
        workdir: None,
        env: [("LOG_LEVEL", "info"), ("DB_POOL", "8")]
            .map(|(name, value)| EnvVar {
                name: name.into(),
                value: value.into(),
            })
            .to_vec(),
        num_instances: 3,
        cpu: 500,
        memory: 256 << 20,
        ports: vec![],
        stream_ports: vec![],
        mountpoints: strings(&["/api", "books.example.com"]),
        https_only: Some(true),
        healthcheck: Some("/healthz".into()),
        container_healthcheck: None,
        healthcheck_disabled: false,
        volumes: vec![],
        logs: vec![],
        secret_files: vec![],
        secret_files_bypass: false,
        stateful: false,
        setup_time: 30,
        kill_timeout: 10,
        labels: vec![Label {
            key: "team".into(),
            value: "books".into(),
        }],
        filters: strings(&["constraint:group==default"]),
        service_name: None,
        allow_clients: None,
        extra: "{}".into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading, statistics, environment

/// The component bytes of a built-in plugin.
fn builtin(name: &str) -> Result<&'static [u8]> {
    lain_builtin_plugins::BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, bytes)| *bytes)
        .with_context(|| format!("no built-in plugin named {name}"))
}

/// Loads a built-in plugin with its embedded manifest and default configuration.
fn load(engine: &Arc<PluginEngine>, name: &str) -> Result<Arc<LoadedPlugin>> {
    let bytes = builtin(name)?;
    let manifest = Manifest::embedded(bytes)?
        .with_context(|| format!("built-in plugin {name} has no embedded manifest"))?;
    Ok(Arc::new(LoadedPlugin::load(
        engine, manifest, bytes, true, None,
    )?))
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// µs per placement of a batch that took `d`.
fn per_placement(d: Duration) -> f64 {
    micros(d) / BATCH as f64
}

/// The `q` quantile of sorted values, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1))
        .copied()
        .unwrap_or(f64::NAN)
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn median(values: Vec<f64>) -> f64 {
    quantile(&sorted(values), 0.5)
}

/// The target directory: the nearest ancestor of this executable holding cargo's `CACHEDIR.TAG`
/// (so `CARGO_TARGET_DIR` is honoured).
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .map(Path::to_path_buf)
        .with_context(|| format!("no cargo target directory above {}", exe.display()))
}

// ---------------------------------------------------------------------------------------------
// Report

/// Everything measured, printed as markdown and written as JSON.
#[derive(Serialize)]
struct Report {
    machine: Machine,
    instantiation: Vec<Instantiation>,
    scheduling: Vec<Scheduling>,
    render: Render,
    targets: Vec<Target>,
}

/// Where the figures come from.
#[derive(Serialize)]
struct Machine {
    cpus: usize,
    cpu_model: String,
    commit: String,
}

impl Machine {
    /// Reads the CPU count, the CPU model and the commit; an unreadable one is `unknown`.
    fn probe() -> Machine {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, model)| model.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            cpus: std::thread::available_parallelism().map_or(0, usize::from),
            cpu_model,
            commit,
        }
    }
}

#[derive(Serialize)]
struct Percentiles {
    p50_us: f64,
    p99_us: f64,
}

impl Percentiles {
    fn of(samples: Vec<Duration>) -> Percentiles {
        let us = sorted(samples.into_iter().map(micros).collect());
        Percentiles {
            p50_us: quantile(&us, 0.5),
            p99_us: quantile(&us, 0.99),
        }
    }
}

/// The fresh-instance figures of one plugin.
#[derive(Serialize)]
struct Fresh {
    /// `LoadedPlugin::instantiate` alone.
    instantiate: Percentiles,
    /// `LoadedPlugin::new_store` + `instantiate`.
    store_and_instantiate: Percentiles,
    /// Store, instantiate and drop of the store.
    full_cycle: Percentiles,
}

#[derive(Serialize)]
struct Instantiation {
    plugin: String,
    component_kib: usize,
    samples: usize,
    #[serde(flatten)]
    fresh: Fresh,
}

/// Median of per-round paired throughput ratios (baseline time / wasm time), with its quartiles.
#[derive(Serialize)]
struct Ratio {
    median: f64,
    p25: f64,
    p75: f64,
}

impl Ratio {
    fn of(ratios: Vec<f64>) -> Ratio {
        let r = sorted(ratios);
        Ratio {
            median: quantile(&r, 0.5),
            p25: quantile(&r, 0.25),
            p75: quantile(&r, 0.75),
        }
    }
}

#[derive(Serialize)]
struct VariantResult {
    variant: Variant,
    /// Median over rounds of the batch time per placement.
    us_per_placement: f64,
    placements_per_s: f64,
    /// Throughput of wasm relative to this variant (1.0: equal; above: wasm is faster).
    wasm_throughput: Option<Ratio>,
}

#[derive(Serialize)]
struct Scheduling {
    nodes: usize,
    batch: usize,
    rounds: usize,
    variants: Vec<VariantResult>,
    breakdown: Vec<Breakdown>,
}

/// Median µs per placement spent in each member's `evaluate` and in the pipeline itself.
#[derive(Serialize)]
struct Breakdown {
    variant: Variant,
    members: Vec<MemberTime>,
    pipeline_us: f64,
}

/// Median µs per placement spent in one member's `evaluate`.
#[derive(Serialize)]
struct MemberTime {
    member: &'static str,
    us: f64,
}

impl Scheduling {
    fn variant(&self, v: Variant) -> Option<&VariantResult> {
        self.variants.iter().find(|r| r.variant == v)
    }
}

#[derive(Serialize)]
struct Render {
    plugin: String,
    samples: usize,
    #[serde(flatten)]
    fresh: Fresh,
    /// `render` as a whole.
    render: Percentiles,
    /// p50 of `render` minus p50 of a fresh instance's full cycle: the call's own cost.
    beyond_fresh_instance_p50_us: f64,
}

/// A target stated in the issue, and whether this run meets it.
#[derive(Serialize)]
struct Target {
    target: String,
    measured: String,
    met: bool,
}

/// Checks the figures against the targets.
fn targets(instantiation: &[Instantiation], scheduling: &[Scheduling]) -> Vec<Target> {
    let mut targets = Vec::new();
    for i in instantiation {
        let p50 = i.fresh.instantiate.p50_us;
        targets.push(Target {
            target: format!("instantiate `{}` from InstancePre: p50 < 10 µs", i.plugin),
            measured: format!(
                "{p50:.2} µs alone, {:.2} µs with store creation",
                i.fresh.store_and_instantiate.p50_us
            ),
            met: p50 < 10.0,
        });
    }
    let at = |nodes| scheduling.iter().find(|s| s.nodes == nodes);
    if let Some(s) = at(500) {
        for baseline in [Variant::NativeSameAlgorithms, Variant::NaturalNative] {
            if let Some(ratio) = s.variant(baseline).and_then(|r| r.wasm_throughput.as_ref()) {
                targets.push(Target {
                    target: format!("500 nodes: wasm throughput >= 0.9x {}", baseline.name()),
                    measured: format!("{:.2}x", ratio.median),
                    met: ratio.median >= 0.9,
                });
            }
        }
    }
    if let Some(wasm) = at(5_000).and_then(|s| s.variant(Variant::Wasm)) {
        targets.push(Target {
            target: "5,000 nodes: wasm >= 5,000 placements/s".into(),
            measured: format!("{}/s", grouped(wasm.placements_per_s)),
            met: wasm.placements_per_s >= 5_000.0,
        });
    }
    targets
}

impl Report {
    /// The report as markdown.
    fn markdown(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let m = &self.machine;
        writeln!(out, "# lain plugin benchmark\n")?;
        writeln!(
            out,
            "Machine: {} CPUs, {} · commit {} · wasmtime pooling allocator, epoch interruption, \
             default limits.\n",
            m.cpus, m.cpu_model, m.commit
        )?;

        writeln!(
            out,
            "## 1. Fresh instance from `InstancePre` (pooling allocator)\n\n\
             {SAMPLES} samples per figure after {WARMUP_SAMPLES} warm-up ones, plugins \
             interleaved. \"+ drop\" adds dropping the store, which every call of a \
             non-scheduler plugin also pays.\n"
        )?;
        writeln!(
            out,
            "| plugin | component | instantiate p50 | p99 | store + instantiate p50 | p99 | + drop p50 | p99 |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
        for i in &self.instantiation {
            let f = &i.fresh;
            writeln!(
                out,
                "| `{}` | {} KiB | {} | {} | {} | {} | {} | {} |",
                i.plugin,
                i.component_kib,
                us(f.instantiate.p50_us),
                us(f.instantiate.p99_us),
                us(f.store_and_instantiate.p50_us),
                us(f.store_and_instantiate.p99_us),
                us(f.full_cycle.p50_us),
                us(f.full_cycle.p99_us),
            )?;
        }

        writeln!(
            out,
            "\n## 2. Scheduling pipeline: `{}`\n\n\
             {ROUNDS} interleaved rounds (after {WARMUP_ROUNDS} warm-up ones) of {BATCH} \
             placements cycling over {} procs; all three variants chose identical nodes in every \
             round. Time per placement: median over rounds. \"wasm throughput vs this\": median \
             (quartiles) of the per-round ratio this variant's time / wasm's time; 1.00x is equal \
             throughput, above 1 wasm is faster.\n",
            MEMBERS.join("` → `"),
            PROCS.len(),
        )?;
        writeln!(
            out,
            "| nodes | variant | µs / placement | placements/s | wasm throughput vs this |"
        )?;
        writeln!(out, "|---:|---|---:|---:|---:|")?;
        for s in &self.scheduling {
            for v in &s.variants {
                let ratio = v.wasm_throughput.as_ref().map_or("—".into(), |r| {
                    format!("{:.2}x ({:.2}–{:.2})", r.median, r.p25, r.p75)
                });
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {ratio} |",
                    grouped(s.nodes as f64),
                    v.variant.title(),
                    us(v.us_per_placement),
                    grouped(v.placements_per_s),
                )?;
            }
        }

        writeln!(
            out,
            "\n### Where a placement's time goes\n\n\
             {BREAKDOWN_ROUNDS} further rounds of a and b with each member's `evaluate` timed on \
             its own (which adds two clock reads per call). Median µs per placement per column; \
             \"pipeline\" is the rest: candidate bitmap, score totals, best node, bookkeeping.\n"
        )?;
        let members: Vec<String> = MEMBERS.iter().map(|m| format!("`{m}`")).collect();
        writeln!(
            out,
            "| nodes | variant | {} | pipeline |",
            members.join(" | ")
        )?;
        writeln!(out, "|---:|---|{}---:|", "---:|".repeat(MEMBERS.len()))?;
        for s in &self.scheduling {
            for b in &s.breakdown {
                let members: Vec<String> = b.members.iter().map(|m| us(m.us)).collect();
                writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    grouped(s.nodes as f64),
                    b.variant.title(),
                    members.join(" | "),
                    us(b.pipeline_us),
                )?;
            }
        }

        let r = &self.render;
        writeln!(
            out,
            "\n## 3. proc-type call: `{}` `render`\n\n\
             {} samples, interleaved with the same plugin's fresh-instance figures. `render` is \
             the whole call as the kernel makes it: store, instance, call, result checks, drop.\n",
            r.plugin, r.samples
        )?;
        writeln!(out, "| what | p50 | p99 |")?;
        writeln!(out, "|---|---:|---:|")?;
        for (what, p) in [
            ("instantiate alone", &r.fresh.instantiate),
            ("store + instantiate", &r.fresh.store_and_instantiate),
            ("store + instantiate + drop", &r.fresh.full_cycle),
            ("`render` call", &r.render),
        ] {
            writeln!(out, "| {what} | {} | {} |", us(p.p50_us), us(p.p99_us))?;
        }
        writeln!(
            out,
            "| the call beyond a fresh instance (p50 difference) | {} | |",
            us(r.beyond_fresh_instance_p50_us)
        )?;

        writeln!(out, "\n## Targets\n")?;
        writeln!(out, "| target | measured | met |")?;
        writeln!(out, "|---|---|---|")?;
        for t in &self.targets {
            let met = if t.met { "yes" } else { "**no**" };
            writeln!(out, "| {} | {} | {met} |", t.target, t.measured)?;
        }
        Ok(out)
    }
}

fn us(v: f64) -> String {
    format!("{v:.2} µs")
}

/// `v` rounded, with thousands separators.
fn grouped(v: f64) -> String {
    let digits = format!("{:.0}", v.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

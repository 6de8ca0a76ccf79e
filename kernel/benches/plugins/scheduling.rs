//! Part 2: the three ways of scheduling, measured in interleaved rounds on one cluster, and the
//! per-member breakdown of a placement's time.

use crate::natural::Natural;
use crate::pipeline::{PipelinePlacer, native_members, timed, wasm_members};
use crate::report::{Breakdown, MemberTime, Scheduling, VariantResult};
use crate::stats::{Ratio, median, per_placement};
use crate::{BATCH, GIB, MEMBERS, NODE_MEMORY, PROCS, WARMUP_ROUNDS, breakdown_rounds, rounds};
use anyhow::{Result, bail};
use lain::plugin::bindings::scheduling::NodeState;
use lain::plugin::engine::PluginEngine;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// The three ways of scheduling compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// The built-in wasm plugins through `Pipeline`.
    Wasm,
    /// The same algorithms compiled natively, through the same `Pipeline`.
    NativeSameAlgorithms,
    /// A plain native scheduler over string data.
    NaturalNative,
}

impl Variant {
    /// The variant's name.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Wasm => "wasm plugins",
            Variant::NativeSameAlgorithms => "native, same algorithms",
            Variant::NaturalNative => "natural native",
        }
    }

    /// The name with the letter the module docs use.
    pub fn title(self) -> String {
        let letter = match self {
            Variant::Wasm => 'a',
            Variant::NativeSameAlgorithms => 'b',
            Variant::NaturalNative => 'c',
        };
        format!("{letter}. {}", self.name())
    }
}

/// Places and releases instances; what the measurement loop drives.
pub trait Placer {
    /// Places one instance of proc `proc` (an index into [`PROCS`]); `None` if no node fits.
    fn place(&mut self, proc: usize) -> Result<Option<u32>>;
    /// Releases one instance of `proc` from `node`.
    fn release(&mut self, proc: usize, node: u32);
    /// Says that the next `count` placements are of `proc` (a deploy); a hint.
    fn expect(&mut self, _proc: usize, _count: usize) {}
}

/// Runs the three variants in interleaved rounds on one cluster of `nodes` nodes, placing
/// deploys of `deploy` instances of one proc each, then the per-member breakdown of a and b.
pub fn bench_scheduling(
    engine: &Arc<PluginEngine>,
    nodes: usize,
    deploy: usize,
) -> Result<Scheduling> {
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
    run_rounds(
        &mut contestants,
        rounds(),
        deploy,
        |i, elapsed, measured| {
            if measured && let Some(t) = times.get_mut(i) {
                t.push(per_placement(elapsed));
            }
        },
    )?;

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
        deploy,
        rounds: rounds(),
        variants,
        breakdown: bench_breakdown(engine, &cluster, deploy)?,
    })
}

/// Splits the time per placement of variants a and b between the members' `evaluate` calls and
/// the pipeline's own work (candidate bitmap, score totals, best node, bookkeeping).
///
/// A separate pass over separate pipelines whose members are wrapped in [`Timed`]: its two clock
/// reads per member call would distort the main comparison, where b costs well under a µs.
pub fn bench_breakdown(
    engine: &Arc<PluginEngine>,
    cluster: &Cluster,
    deploy: usize,
) -> Result<Vec<Breakdown>> {
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
        breakdown_rounds(),
        deploy,
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
/// A batch is [`BATCH`] placements in deploys of `deploy` instances of one proc, the procs taken
/// in turn. Fails unless all contestants chose the same nodes in every round.
fn run_rounds(
    contestants: &mut [Contestant],
    rounds: usize,
    deploy: usize,
    mut after: impl FnMut(usize, Duration, bool),
) -> Result<()> {
    let deploys: Vec<(usize, usize)> = (0..BATCH.div_ceil(deploy))
        .map(|k| (k % PROCS.len(), deploy.min(BATCH - k * deploy)))
        .collect();
    let sequence: Vec<usize> = deploys
        .iter()
        .flat_map(|&(proc, count)| std::iter::repeat_n(proc, count))
        .collect();
    let n = contestants.len();
    for round in 0..WARMUP_ROUNDS + rounds {
        for k in 0..n {
            let i = (round + k) % n;
            let c = &mut contestants[i];
            let elapsed = run_batch(c.placer.as_mut(), &deploys, &mut c.chosen)?;
            after(i, elapsed, round >= WARMUP_ROUNDS);
        }
        check_same_choices(contestants, &sequence, round)?;
    }
    Ok(())
}

/// Places the `deploys` (proc, instances) in order (timed), then releases what they placed
/// (untimed); `chosen` receives the node chosen for each placement.
fn run_batch(
    placer: &mut dyn Placer,
    deploys: &[(usize, usize)],
    chosen: &mut Vec<Option<u32>>,
) -> Result<Duration> {
    chosen.clear();
    let start = Instant::now();
    for &(proc, count) in deploys {
        placer.expect(proc, count);
        for _ in 0..count {
            chosen.push(placer.place(proc)?);
        }
    }
    let elapsed = start.elapsed();
    let procs = deploys
        .iter()
        .flat_map(|&(proc, count)| std::iter::repeat_n(proc, count));
    for (proc, node) in procs.zip(chosen.iter()) {
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
pub struct Cluster {
    pub nodes: Vec<NodeSpec>,
}

/// One node of the [`Cluster`].
pub struct NodeSpec {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub state: NodeState,
    pub memory_reserved: u64,
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

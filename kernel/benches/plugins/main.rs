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
//!    - *wasm*: the built-in plugins, each a long-lived
//!      [`LiveScheduler`](lain::plugin::kinds::scheduler::LiveScheduler);
//!    - *native, same algorithms*: [`Native`](native::Native) backends wrapping the
//!      `lain-scheduling-core` structs the plugins compile, run through the very same `Pipeline`,
//!      so the difference is the wasm boundary and Cranelift's code, nothing else;
//!    - *natural native*: [`Natural`](natural::Natural), what a kernel without plugins would
//!      plausibly write (string labels on node structs, a loop over all nodes per placement, a
//!      `HashMap` of counts).
//!
//!    A batch places [`BATCH`] instances, in two workloads ([`DEPLOYS`]): one instance at a
//!    time cycling through [`PROCS`] (each placement of another proc, so every member is called
//!    per instance), and deploys of 20 instances of one proc, the procs in turn, announced to the
//!    pipeline with `Pipeline::expect` (the kernel's reconciler does the same), so members that
//!    export `scheduling-levels` are asked once per deploy and the pipeline places its
//!    instances over their tables. The natural variant places instance by instance in both.
//!    The time per placement is the batch time over its size. The instances are then released, untimed, so every batch
//!    starts from the same state and must choose the same nodes: the program checks in every
//!    round that the three variants produced the identical placement sequence and fails
//!    otherwise. Trade-off: the pipeline hands deltas to its members with their next call, so the
//!    releases of one batch reach the plugins (wasm and native alike) with the first `evaluate`
//!    of the next batch and are inside its timed region; the natural variant applies them at
//!    release. That is one small record per placement, the steady-state traffic anyway.
//!    A separate pass ([`bench_breakdown`](scheduling::bench_breakdown)) then times each member's
//!    `evaluate` in a and b, to show where a placement's time goes.
//! 3. **A proc-type call**: `web`'s `render`, which instantiates a fresh instance per call, next
//!    to the same plugin's fresh-instance costs, so the call's own cost is visible.
//! 4. **Upgrade latency** ([`upgrade`]): `Registry::upgrade_with` of `jwt`, `template` and `web`
//!    to components no cache holds, request to swap, with Cranelift compiling inside the request
//!    (an engine without Winch, as before tiered compilation) and tiered (Winch now, Cranelift in
//!    the background), interleaved; the time until the Cranelift build is in; and a `jwt`
//!    verification and a `web` render on each build, for what the Winch window costs calls.
//!
//! This file holds the driver, the workload and the loading of plugins; each part has its module,
//! and [`report`] prints and saves the figures.

mod instantiate;
#[path = "../support/mode.rs"]
mod mode;
mod native;
mod natural;
mod pipeline;
mod render;
mod report;
mod scheduling;
mod stats;
mod upgrade;

use anyhow::{Context, Result};
use lain::plugin::engine::PluginEngine;
use lain::plugin::{Limits, LoadedPlugin, Manifest};
use report::{Machine, Report, targets};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Measured samples per fresh-instance figure and per `render` figure.
fn sample_count() -> usize {
    mode::pick(5_000, 50)
}
/// Samples run and discarded first (page faults of fresh pool slots, lazy initialisation).
const WARMUP_SAMPLES: usize = 200;
/// Cluster sizes of the scheduling benchmark.
fn node_counts() -> [usize; 2] {
    mode::pick([500, 5_000], [50, 500])
}
/// Placements per timed batch.
const BATCH: usize = 200;
/// Instances per deploy in the scheduling workloads: one at a time, and deploys of 20.
const DEPLOYS: [usize; 2] = [1, 20];
/// Measured rounds per cluster size (odd, so the median is one round).
fn rounds() -> usize {
    mode::pick(201, 3)
}
/// Rounds run and discarded first (plan building in `constraint`, allocator growth).
const WARMUP_ROUNDS: usize = 3;
/// Measured rounds of the per-member breakdown.
fn breakdown_rounds() -> usize {
    mode::pick(51, 3)
}

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
    mode::announce("plugins");
    let target = target_dir()?;
    let engine = PluginEngine::new(Limits::default(), Some(target.join("bench/compiled")))?;
    let machine = Machine::probe();

    let (samples, rounds) = (sample_count(), rounds());
    eprintln!("instantiation: {samples} samples per plugin...");
    let instantiation = instantiate::bench_instantiation(&engine, &["worker", "jwt"])?;
    let mut scheduling = Vec::new();
    for nodes in node_counts() {
        for deploy in DEPLOYS {
            eprintln!(
                "scheduling at {nodes} nodes, deploys of {deploy}: {rounds} rounds of {BATCH} \
                 placements..."
            );
            scheduling.push(scheduling::bench_scheduling(&engine, nodes, deploy)?);
        }
    }
    eprintln!("proc-type render: {samples} samples...");
    let render = render::bench_render(&engine)?;
    eprintln!(
        "upgrades: {} per plugin and way...",
        upgrade::upgrade_rounds()
    );
    let upgrades = upgrade::bench_upgrades()?;
    eprintln!("calls on Winch and Cranelift builds: {samples} samples...");
    let call_cost = upgrade::bench_call_cost()?;

    let targets = targets(&instantiation, &scheduling, &upgrades);
    let report = Report {
        machine,
        instantiation,
        scheduling,
        render,
        upgrades,
        call_cost,
        targets,
    };
    print!("{}", report.markdown()?);

    let json = target.join("bench").join(mode::report_file("plugins"));
    std::fs::create_dir_all(target.join("bench"))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!("wrote {}", json.display());
    Ok(())
}

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

/// Owned copies of `items`.
fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
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

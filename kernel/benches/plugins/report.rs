//! The report: every figure as JSON, and the markdown tables printed.

use crate::scheduling::Variant;
use crate::stats::{Latency, Percentiles, Ratio};
use crate::upgrade::upgrade_rounds;
use crate::{
    BATCH, DEPLOYS, MEMBERS, PROCS, WARMUP_ROUNDS, WARMUP_SAMPLES, breakdown_rounds, rounds,
    sample_count,
};
use serde::Serialize;
use std::fmt::Write as _;

/// Everything measured, printed as markdown and written as JSON.
#[derive(Serialize)]
pub struct Report {
    pub machine: Machine,
    pub instantiation: Vec<Instantiation>,
    pub scheduling: Vec<Scheduling>,
    pub render: Render,
    pub upgrades: Vec<Upgrade>,
    pub call_cost: Vec<CallCost>,
    pub targets: Vec<Target>,
}

/// Where the figures come from.
#[derive(Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub commit: String,
}

impl Machine {
    /// Reads the CPU count, the CPU model and the commit; an unreadable one is `unknown`.
    pub fn probe() -> Machine {
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

/// The fresh-instance figures of one plugin.
#[derive(Serialize)]
pub struct Fresh {
    /// `LoadedPlugin::instantiate` alone.
    pub instantiate: Percentiles,
    /// `LoadedPlugin::new_store` + `instantiate`.
    pub store_and_instantiate: Percentiles,
    /// Store, instantiate and drop of the store.
    pub full_cycle: Percentiles,
}

#[derive(Serialize)]
pub struct Instantiation {
    pub plugin: String,
    pub component_kib: usize,
    pub samples: usize,
    #[serde(flatten)]
    pub fresh: Fresh,
}

#[derive(Serialize)]
pub struct VariantResult {
    pub variant: Variant,
    /// Median over rounds of the batch time per placement.
    pub us_per_placement: f64,
    pub placements_per_s: f64,
    /// Throughput of wasm relative to this variant (1.0: equal; above: wasm is faster).
    pub wasm_throughput: Option<Ratio>,
}

#[derive(Serialize)]
pub struct Scheduling {
    pub nodes: usize,
    pub batch: usize,
    /// Instances per deploy (1: one at a time, cycling over the procs).
    pub deploy: usize,
    pub rounds: usize,
    pub variants: Vec<VariantResult>,
    pub breakdown: Vec<Breakdown>,
}

/// Median µs per placement spent in each member's `evaluate` and in the pipeline itself.
#[derive(Serialize)]
pub struct Breakdown {
    pub variant: Variant,
    pub members: Vec<MemberTime>,
    pub pipeline_us: f64,
}

/// Median µs per placement spent in one member's `evaluate`.
#[derive(Serialize)]
pub struct MemberTime {
    pub member: &'static str,
    pub us: f64,
}

impl Scheduling {
    fn variant(&self, v: Variant) -> Option<&VariantResult> {
        self.variants.iter().find(|r| r.variant == v)
    }
}

#[derive(Serialize)]
pub struct Render {
    pub plugin: String,
    pub samples: usize,
    #[serde(flatten)]
    pub fresh: Fresh,
    /// `render` as a whole.
    pub render: Percentiles,
    /// p50 of `render` minus p50 of a fresh instance's full cycle: the call's own cost.
    pub beyond_fresh_instance_p50_us: f64,
}

/// Upgrades of one plugin, request to swap, both ways.
#[derive(Serialize)]
pub struct Upgrade {
    pub plugin: String,
    pub component_kib: usize,
    /// Measured upgrades per way.
    pub upgrades: usize,
    /// Cranelift compiling inside the request (before tiered compilation).
    pub inline: Latency,
    /// Winch inside the request, Cranelift in the background.
    pub tiered: Latency,
    /// Median (quartiles) of the per-round ratio inline / tiered.
    pub speedup: Ratio,
    /// From the tiered upgrade's request until its Cranelift build is swapped in.
    pub cranelift_in: Latency,
}

/// One call on the Winch build and on the Cranelift build of the same component.
#[derive(Serialize)]
pub struct CallCost {
    pub plugin: String,
    pub call: String,
    pub samples: usize,
    pub winch_p50_us: f64,
    pub cranelift_p50_us: f64,
    /// Median (quartiles) of the per-sample ratio Winch time / Cranelift time.
    pub winch_over_cranelift: Ratio,
}

/// A target stated in the issue, and whether this run meets it.
#[derive(Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// Checks the figures against the issues' targets.
pub fn targets(
    instantiation: &[Instantiation],
    scheduling: &[Scheduling],
    upgrades: &[Upgrade],
) -> Vec<Target> {
    let mut targets = Vec::new();
    for u in upgrades {
        targets.push(Target {
            target: format!(
                "`lain plugin upgrade` of `{}` ({} KiB), request to swap: p50 < 100 ms",
                u.plugin, u.component_kib
            ),
            measured: format!(
                "{:.1} ms (p95 {:.1} ms; Cranelift inline {:.1} ms)",
                u.tiered.p50_ms, u.tiered.p95_ms, u.inline.p50_ms
            ),
            met: u.tiered.p50_ms < 100.0,
        });
    }
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
    let at = |nodes, deploy| {
        scheduling
            .iter()
            .find(|s| s.nodes == nodes && s.deploy == deploy)
    };
    let ratio = |s: &Scheduling, baseline: Variant| {
        s.variant(baseline)
            .and_then(|r| r.wasm_throughput.as_ref())
            .map(|r| r.median)
    };
    // Issue 14: wasm >= 0.8x the same algorithms natively at 500 and 5,000 nodes, keeping >= 2x
    // a natural native scheduler; a deploy is what the kernel places.
    for nodes in [500, 5_000] {
        let Some(s) = at(nodes, DEPLOYS[1]) else {
            continue;
        };
        for (baseline, goal) in [
            (Variant::NativeSameAlgorithms, 0.8),
            (Variant::NaturalNative, 2.0),
        ] {
            if let Some(r) = ratio(s, baseline) {
                targets.push(Target {
                    target: format!(
                        "{} nodes, deploys of {}: wasm throughput >= {goal}x {}",
                        grouped(nodes as f64),
                        s.deploy,
                        baseline.name()
                    ),
                    measured: format!("{r:.2}x"),
                    met: r >= goal,
                });
            }
        }
    }
    if let Some(wasm) = at(5_000, 1).and_then(|s| s.variant(Variant::Wasm)) {
        targets.push(Target {
            target: "5,000 nodes, one at a time: wasm >= 5,000 placements/s".into(),
            measured: format!("{}/s", grouped(wasm.placements_per_s)),
            met: wasm.placements_per_s >= 5_000.0,
        });
    }
    targets
}

impl Report {
    /// The report as markdown.
    pub fn markdown(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        let m = &self.machine;
        let (samples, rounds, breakdown_rounds) = (sample_count(), rounds(), breakdown_rounds());
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
             {samples} samples per figure after {WARMUP_SAMPLES} warm-up ones, plugins \
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
             {rounds} interleaved rounds (after {WARMUP_ROUNDS} warm-up ones) of {BATCH} \
             placements over {} procs, either one at a time (each placement of the next proc) or \
             in deploys of several instances of one proc announced with `Pipeline::expect` (a \
             and b then ask each member once per deploy through `scheduling-levels`); all three \
             variants chose identical nodes in every round. Time per placement: median over rounds. \"wasm throughput vs this\": median \
             (quartiles) of the per-round ratio this variant's time / wasm's time; 1.00x is equal \
             throughput, above 1 wasm is faster.\n",
            MEMBERS.join("` → `"),
            PROCS.len(),
        )?;
        writeln!(
            out,
            "| nodes | per deploy | variant | µs / placement | placements/s | wasm throughput vs this |"
        )?;
        writeln!(out, "|---:|---:|---|---:|---:|---:|")?;
        for s in &self.scheduling {
            for v in &s.variants {
                let ratio = v.wasm_throughput.as_ref().map_or("—".into(), |r| {
                    format!("{:.2}x ({:.2}–{:.2})", r.median, r.p25, r.p75)
                });
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {ratio} |",
                    grouped(s.nodes as f64),
                    s.deploy,
                    v.variant.title(),
                    us(v.us_per_placement),
                    grouped(v.placements_per_s),
                )?;
            }
        }

        writeln!(
            out,
            "\n### Where a placement's time goes\n\n\
             {breakdown_rounds} further rounds of a and b with each member's `evaluate` (and \
             `evaluate-levels`) timed on its own (which adds two clock reads per call). Median µs per placement per column; \
             \"pipeline\" is the rest: candidate bitmap, score totals, best node, bookkeeping.\n"
        )?;
        let members: Vec<String> = MEMBERS.iter().map(|m| format!("`{m}`")).collect();
        writeln!(
            out,
            "| nodes | per deploy | variant | {} | pipeline |",
            members.join(" | ")
        )?;
        writeln!(out, "|---:|---:|---|{}---:|", "---:|".repeat(MEMBERS.len()))?;
        for s in &self.scheduling {
            for b in &s.breakdown {
                let members: Vec<String> = b.members.iter().map(|m| us(m.us)).collect();
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} |",
                    grouped(s.nodes as f64),
                    s.deploy,
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

        writeln!(
            out,
            "\n## 4. `lain plugin upgrade`: request to swap\n\n\
             Measured upgrades per plugin and way: {} (after {} warm-up one), each to a component no cache \
             holds (a custom section makes its SHA-256 new), the two ways alternating, each \
             upgrade started once the previous one's background build was in. The time is \
             `Registry::upgrade_with` as the API handler calls it (manifest, checks, compile, \
             store write, swap; not the HTTP body or its base64). *Inline*: Cranelift compiles \
             inside the request (before tiered compilation); *tiered*: Winch inside the request, \
             Cranelift in the background, swapped in when ready. Speedup: median (quartiles) of \
             the per-round ratio inline / tiered.\n",
            upgrade_rounds(),
            crate::upgrade::WARMUP_UPGRADES,
        )?;
        writeln!(
            out,
            "| plugin | component | inline p50 | p95 | tiered p50 | p95 | speedup | Cranelift build in p50 | p95 |"
        )?;
        writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")?;
        for u in &self.upgrades {
            writeln!(
                out,
                "| `{}` | {} KiB | {} | {} | {} | {} | {:.2}x ({:.2}–{:.2}) | {} | {} |",
                u.plugin,
                u.component_kib,
                ms(u.inline.p50_ms),
                ms(u.inline.p95_ms),
                ms(u.tiered.p50_ms),
                ms(u.tiered.p95_ms),
                u.speedup.median,
                u.speedup.p25,
                u.speedup.p75,
                ms(u.cranelift_in.p50_ms),
                ms(u.cranelift_in.p95_ms),
            )?;
        }
        writeln!(
            out,
            "\n### A call on the Winch build (the window until the Cranelift build is in)\n\n\
             The same component loaded twice, on Winch and on Cranelift, called alternately; \
             the ratio is the median (quartiles) of the per-call ratio Winch / Cranelift.\n"
        )?;
        writeln!(
            out,
            "| plugin | call | samples | Winch p50 | Cranelift p50 | Winch / Cranelift |"
        )?;
        writeln!(out, "|---|---|---:|---:|---:|---:|")?;
        for c in &self.call_cost {
            writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {:.2}x ({:.2}–{:.2}) |",
                c.plugin,
                c.call,
                c.samples,
                us(c.winch_p50_us),
                us(c.cranelift_p50_us),
                c.winch_over_cranelift.median,
                c.winch_over_cranelift.p25,
                c.winch_over_cranelift.p75,
            )?;
        }

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

fn ms(v: f64) -> String {
    format!("{v:.1} ms")
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

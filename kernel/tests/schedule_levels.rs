//! Batched placement (WIT `scheduling-levels`, `Pipeline::expect`) places exactly where placing
//! instance by instance does, with fewer calls into the members.
//!
//! Two pipelines get the same cluster, procs and changes; one places each deploy instance by
//! instance, the other announces it first. Their choices must be identical, on random clusters
//! and random procs (hard and soft `constraint:`/`affinity:` filters, filters naming the proc's
//! own labels, hard and soft spread, memory and CPU that run out, least-allocated scores), with
//! the algorithms run natively (many cases, fast) and as the built-in wasm plugins.

mod common;
#[path = "../benches/plugins/native.rs"]
#[allow(dead_code)]
mod native;

use lain::plugin::bindings::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, SchedulerInfo, Verdict,
};
use lain::plugin::bindings::scheduling_levels::{LevelsVerdict, RankRows, ScoreRows};
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::{CallError, Cause, FailurePolicy};
use lain::schedule::pipeline::Factory;
use lain::schedule::{Backend, MemberSpec, Pipeline, ProcId, ScheduleError};
use lain_scheduling_core as sched;
use native::Native;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const GIB: u64 = 1 << 30;

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Calls into one member, counted: `evaluate` and `evaluate-levels` separately.
#[derive(Clone, Default)]
struct Calls {
    evaluate: Arc<AtomicU64>,
    levels: Arc<AtomicU64>,
}

struct Counted {
    inner: Box<dyn Backend>,
    calls: Calls,
}

impl Backend for Counted {
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
        self.calls.evaluate.fetch_add(1, Ordering::Relaxed);
        self.inner.evaluate(proc, candidates, placed)
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
        self.calls.levels.fetch_add(1, Ordering::Relaxed);
        self.inner.evaluate_levels(proc, candidates, placed, levels)
    }
    fn is_dead(&self) -> bool {
        self.inner.is_dead()
    }
}

/// How one pipeline member is made.
#[derive(Clone, Copy, Debug)]
enum Algo {
    Resources(bool),
    Constraint,
    Spread(bool),
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Resources(_) => "resources",
            Algo::Constraint => "constraint",
            Algo::Spread(_) => "spread",
        }
    }

    fn native(self) -> Box<dyn Backend> {
        match self {
            Algo::Resources(score) => Box::new(Native::new(
                "resources",
                sched::Resources::new(if score {
                    sched::Scoring::LeastAllocated
                } else {
                    sched::Scoring::None
                }),
            )),
            Algo::Constraint => Box::new(Native::new("constraint", sched::Constraint::new())),
            Algo::Spread(hard) => Box::new(Native::new("spread", sched::Spread::new(hard))),
        }
    }

    fn config(self) -> Option<serde_json::Value> {
        match self {
            Algo::Resources(true) => Some(serde_json::json!({"score": "least-allocated"})),
            Algo::Spread(true) => Some(serde_json::json!({"hard": true})),
            _ => None,
        }
    }
}

/// A pipeline of `algos` (native, or the built-in plugins on `engine`), with their call counts.
fn pipeline(
    algos: &[(Algo, u32)],
    engine: Option<&Arc<lain::plugin::engine::PluginEngine>>,
) -> (Pipeline, Vec<Calls>) {
    let mut calls = Vec::new();
    let specs = algos
        .iter()
        .map(|&(algo, weight)| {
            let counted = Calls::default();
            calls.push(counted.clone());
            let plugin = engine.map(|e| common::builtin(e, algo.name(), algo.config()));
            let factory: Factory = Box::new(move || {
                let inner = match &plugin {
                    Some(p) => Box::new(LiveScheduler::start(p.clone())?) as Box<dyn Backend>,
                    None => algo.native(),
                };
                Ok(Box::new(Counted {
                    inner,
                    calls: counted.clone(),
                }) as Box<dyn Backend>)
            });
            MemberSpec {
                name: algo.name().to_string(),
                weight,
                policy: FailurePolicy::Closed,
                factory,
            }
        })
        .collect();
    (Pipeline::new(specs).expect("pipeline starts"), calls)
}

/// A random pipeline configuration: each algorithm at most once, in a random order.
fn random_members(rng: &mut Rng) -> Vec<(Algo, u32)> {
    let mut algos = vec![
        Algo::Resources(rng.chance(50)),
        Algo::Constraint,
        Algo::Spread(rng.chance(40)),
    ];
    for i in (1..algos.len()).rev() {
        algos.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let mut members = Vec::new();
    for a in algos {
        if rng.chance(85) {
            members.push((a, 1 + rng.below(3) as u32));
        }
    }
    members
}

/// The same world, built into every pipeline of `pipes`.
struct World {
    procs: Vec<ProcId>,
}

fn build_world(rng: &mut Rng, pipes: &mut [&mut Pipeline]) -> World {
    let nodes = 1 + rng.below(150) as usize;
    for i in 0..nodes {
        let labels: Vec<(String, String)> = [
            ("zone", format!("z{}", rng.below(3))),
            ("disk", rng.pick(&["ssd", "hdd"]).to_string()),
            ("group", "default".to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec();
        let memory = (2 + rng.below(14)) * GIB;
        let cpu = if rng.chance(20) {
            0
        } else {
            1000 * (1 + rng.below(8) as u32)
        };
        let state = match rng.below(20) {
            0 => Some(NodeState::Maintenance),
            1 => Some(NodeState::Down),
            2 | 3 => Some(NodeState::Ready),
            _ => None,
        };
        let reserved = rng.below(3) * GIB;
        let name = format!("node-{i}");
        for p in pipes.iter_mut() {
            p.upsert_node(&name, &labels, memory, cpu).expect("node");
            if let Some(state) = state {
                p.set_node_state(&name, state, reserved.min(memory), 0)
                    .expect("usage");
            }
        }
    }
    let filters = [
        "constraint:group==default",
        "constraint:disk==ssd",
        "constraint:zone!=z2",
        "constraint:zone==~z1",
        "constraint:disk!=~hdd",
        "affinity:role==~cache",
        "affinity:role!=~cache",
        "affinity:role==cache",
        "affinity:role!=web",
        "affinity:role!=jobs",
        "affinity:role==~web",
        "affinity:role!=~jobs",
        "affinity:role==~c*",
    ];
    let roles = ["cache", "web", "jobs"];
    let count = 1 + rng.below(4) as usize;
    let mut procs = Vec::new();
    for i in 0..count {
        let mut chosen: Vec<String> = Vec::new();
        for _ in 0..rng.below(4) {
            chosen.push(rng.pick(&filters).to_string());
        }
        let labels = vec![format!("role={}", roles[i % roles.len()])];
        let memory = GIB / 2 * (1 + rng.below(4));
        let cpu = 250 * rng.below(5) as u32;
        let mut id = None;
        for p in pipes.iter_mut() {
            let got = p
                .define_proc(
                    &format!("app.worker.p{i}"),
                    "app",
                    memory,
                    cpu,
                    &chosen,
                    &labels,
                )
                .expect("proc");
            assert!(id.is_none_or(|i| i == got));
            id = Some(got);
        }
        procs.extend(id);
    }
    World { procs }
}

/// Places `count` instances of `proc` in both pipelines, `batched` announcing them first; the
/// choices must be identical. Returns them.
fn place_both(
    one: &mut Pipeline,
    batched: &mut Pipeline,
    proc: ProcId,
    count: u32,
    context: &str,
) -> Vec<Option<u32>> {
    batched.expect(proc, count);
    let mut chosen = Vec::new();
    for k in 0..count {
        let a = one.place(proc).expect("place");
        let b = batched.place(proc).expect("place");
        assert_eq!(
            a, b,
            "{context}: instance {k} of {count} of proc {proc}: one by one {a:?}, batched {b:?}"
        );
        if a.is_none() {
            assert_eq!(
                one.explain_last(),
                batched.explain_last(),
                "{context}: same explanation"
            );
        }
        chosen.push(a);
    }
    chosen
}

fn total(calls: &[Calls], f: impl Fn(&Calls) -> &AtomicU64) -> u64 {
    calls.iter().map(|c| f(c).load(Ordering::Relaxed)).sum()
}

/// Runs one random case; returns the calls of the batched pipeline (`evaluate`, levels).
fn random_case(seed: u64, engine: Option<&Arc<lain::plugin::engine::PluginEngine>>) -> (u64, u64) {
    let mut rng = Rng::new(seed);
    let members = random_members(&mut rng);
    let (mut one, _) = pipeline(&members, engine);
    let (mut batched, calls) = pipeline(&members, engine);
    let world = build_world(&mut rng, &mut [&mut one, &mut batched]);
    let context = format!("seed {seed}, members {members:?}");
    let mut placed: Vec<(ProcId, u32)> = Vec::new();
    for _ in 0..6 {
        let proc = world.procs[rng.below(world.procs.len() as u64) as usize];
        let count = 1 + rng.below(40) as u32;
        for node in place_both(&mut one, &mut batched, proc, count, &context)
            .into_iter()
            .flatten()
        {
            placed.push((proc, node));
        }
        // Some instances go away between deploys, in both.
        for _ in 0..rng.below(placed.len() as u64 / 2 + 1) {
            if placed.is_empty() {
                break;
            }
            let (proc, node) = placed.swap_remove(rng.below(placed.len() as u64) as usize);
            one.release(proc, node);
            batched.release(proc, node);
        }
    }
    (total(&calls, |c| &c.evaluate), total(&calls, |c| &c.levels))
}

#[test]
fn batched_placement_equals_one_by_one_natively_on_random_clusters() {
    let (mut evaluate, mut levels) = (0, 0);
    for seed in 0..400 {
        let (e, l) = random_case(seed, None);
        evaluate += e;
        levels += l;
    }
    // The test would pass vacuously if nothing were batched.
    assert!(levels > 1_000, "batches were planned: {levels} level calls");
    eprintln!("batched pipelines: {evaluate} evaluate calls, {levels} evaluate-levels calls");
}

#[test]
fn batched_placement_equals_one_by_one_with_the_built_in_plugins() {
    let engine = common::engine();
    let (mut evaluate, mut levels) = (0, 0);
    for seed in 1_000..1_030 {
        let (e, l) = random_case(seed, Some(&engine));
        evaluate += e;
        levels += l;
    }
    assert!(levels > 50, "the wasm plugins answered by levels: {levels}");
    eprintln!("batched pipelines: {evaluate} evaluate calls, {levels} evaluate-levels calls");
}

#[test]
fn a_deploy_crosses_into_each_plugin_about_once() {
    let engine = common::engine();
    let members = [
        (Algo::Resources(true), 1),
        (Algo::Constraint, 1),
        (Algo::Spread(false), 2),
    ];
    let (mut one, one_calls) = pipeline(&members, Some(&engine));
    let (mut batched, calls) = pipeline(&members, Some(&engine));
    for i in 0..40 {
        let labels = [("group".to_string(), "default".to_string())];
        for p in [&mut one, &mut batched] {
            p.upsert_node(&format!("n{i}"), &labels, 16 * GIB, 8000)
                .expect("node");
        }
    }
    let filters = ["constraint:group==default".to_string()];
    let mut proc = 0;
    for p in [&mut one, &mut batched] {
        proc = p
            .define_proc("app.web.web", "app", GIB, 500, &filters, &[])
            .expect("proc");
    }
    let chosen = place_both(&mut one, &mut batched, proc, 100, "deploy of 100");
    assert!(chosen.iter().all(Option::is_some));
    assert_eq!(total(&one_calls, |c| &c.evaluate), 300, "3 members x 100");
    assert_eq!(total(&calls, |c| &c.evaluate), 0);
    // 100 instances over 40 nodes: 4 levels asked at first; the spread keeps every node within
    // them, so one call per member.
    assert_eq!(total(&calls, |c| &c.levels), 3);
}

/// A member whose `evaluate-levels` answers tables of the wrong shape.
struct Misshapen(Box<dyn Backend>);

impl Backend for Misshapen {
    fn describe(&mut self) -> Result<SchedulerInfo, CallError> {
        self.0.describe()
    }
    fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        self.0.sync_labels(labels)
    }
    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        self.0.sync_nodes(upsert, remove)
    }
    fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        self.0.sync_usage(usage)
    }
    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        self.0.define_proc(req)
    }
    fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        self.0.forget_proc(proc)
    }
    fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        self.0.record_placements(placed)
    }
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        self.0.evaluate(proc, candidates, placed)
    }
    fn has_levels(&self) -> bool {
        true
    }
    fn evaluate_levels(
        &mut self,
        _proc: u32,
        _candidates: &[u64],
        _placed: &[Placement],
        _levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        Ok(Some(LevelsVerdict {
            open: vec![0b111, 0],
            limited: Vec::new(),
            rank: RankRows {
                default: Vec::new(),
                nodes: Vec::new(),
                rows: Vec::new(),
            },
            scores: ScoreRows {
                default: Vec::new(),
                nodes: Vec::new(),
                rows: Vec::new(),
            },
        }))
    }
}

#[test]
fn tables_of_the_wrong_shape_fail_the_placement_naming_the_plugin_and_function() {
    let factory: Factory =
        Box::new(|| Ok(Box::new(Misshapen(Algo::Constraint.native())) as Box<dyn Backend>));
    let mut p = Pipeline::new(vec![MemberSpec {
        name: "odd".into(),
        weight: 1,
        policy: FailurePolicy::Closed,
        factory,
    }])
    .expect("pipeline");
    for i in 0..3 {
        p.upsert_node(&format!("n{i}"), &[], GIB, 0).expect("node");
    }
    let proc = p
        .define_proc("app.web.web", "app", 0, 0, &[], &[])
        .expect("proc");
    p.expect(proc, 2);
    match p.place(proc) {
        Err(ScheduleError::Plugin(e)) => {
            assert_eq!((e.plugin.as_str(), e.function), ("odd", "evaluate-levels"));
            assert!(
                matches!(&e.cause, Cause::BadResult(m) if m.contains("open has 2 words for 64 node ids")),
                "{e}"
            );
        }
        other => panic!("expected a bad result, got {other:?}"),
    }
    // Without the announcement, the same member places through `evaluate`.
    assert_eq!(p.place(proc).expect("place"), Some(0));
}

/// Spread without `evaluate_levels`: the core's default answer, `None`, as a plugin written with
/// the SDK's default gives.
struct SpreadWithoutLevels(sched::Spread);

impl sched::Algorithm for SpreadWithoutLevels {
    fn roles(&self) -> sched::Roles {
        self.0.roles()
    }
    fn sync_nodes(&mut self, upsert: &[sched::Node], remove: &[u32]) {
        self.0.sync_nodes(upsert, remove)
    }
    fn define_proc(&mut self, req: &sched::ProcRequirements) -> Result<(), String> {
        self.0.define_proc(req)
    }
    fn forget_proc(&mut self, proc: u32) {
        self.0.forget_proc(proc)
    }
    fn record_placement(&mut self, placement: sched::Placement) {
        self.0.record_placement(placement)
    }
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &mut [u64],
        scores: &mut Vec<u16>,
    ) -> Result<(), String> {
        self.0.evaluate(proc, candidates, scores)
    }
}

#[test]
fn a_member_answering_none_sends_the_deploy_one_by_one_with_the_same_outcome() {
    let make = |counted: Calls| -> Vec<MemberSpec> {
        let resources = counted.clone();
        let spread = counted;
        vec![
            MemberSpec {
                name: "resources".into(),
                weight: 1,
                policy: FailurePolicy::Closed,
                factory: Box::new(move || {
                    Ok(Box::new(Counted {
                        inner: Algo::Resources(true).native(),
                        calls: resources.clone(),
                    }) as Box<dyn Backend>)
                }),
            },
            MemberSpec {
                name: "spread".into(),
                weight: 1,
                policy: FailurePolicy::Closed,
                factory: Box::new(move || {
                    Ok(Box::new(Counted {
                        inner: Box::new(Native::new(
                            "spread",
                            SpreadWithoutLevels(sched::Spread::new(true)),
                        )),
                        calls: spread.clone(),
                    }) as Box<dyn Backend>)
                }),
            },
        ]
    };
    let calls = Calls::default();
    let mut one = Pipeline::new(make(Calls::default())).expect("pipeline");
    let mut batched = Pipeline::new(make(calls.clone())).expect("pipeline");
    for i in 0..5 {
        for p in [&mut one, &mut batched] {
            p.upsert_node(&format!("n{i}"), &[], 4 * GIB, 0)
                .expect("node");
        }
    }
    let mut proc = 0;
    for p in [&mut one, &mut batched] {
        proc = p
            .define_proc("app.web.web", "app", GIB, 0, &[], &[])
            .expect("proc");
    }
    // Two deploys: the deltas of the first must reach both members exactly once.
    let first = place_both(&mut one, &mut batched, proc, 7, "first deploy");
    let second = place_both(&mut one, &mut batched, proc, 20, "second deploy");
    assert!(first.iter().all(Option::is_some));
    assert_eq!(
        second.iter().filter(|n| n.is_some()).count(),
        13,
        "4 GiB x 5 nodes"
    );
    assert_eq!(
        calls.levels.load(Ordering::Relaxed),
        4,
        "each deploy asked both members once, then went one by one"
    );
}

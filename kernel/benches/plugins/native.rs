//! Variant b's pipeline member: a `lain-scheduling-core` algorithm run natively behind the
//! kernel's `Backend` trait.

use lain::plugin::bindings::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, SchedulerInfo,
    Verdict,
};
use lain::plugin::bindings::scheduling_levels::{LevelsVerdict, NodeRoom, RankRows, ScoreRows};
use lain::plugin::bindings::types::PluginError as GuestError;
use lain::plugin::{CallError, Cause};
use lain::schedule::Backend;
use lain_scheduling_core::{self as sched, Algorithm};

/// Variant b: a native pipeline member, the same algorithm the wasm plugin wraps.
///
/// It converts the bindgen records into the core's plain types, as `lain_scheduling_core::guest`
/// does on the other side of the boundary, and allocates the verdict's bitmap and scores per call, as the wasm path
/// must; so what it saves over wasm is exactly the boundary crossing (with `LiveScheduler`'s
/// per-call health accounting and epoch deadline) and the wasm code.
pub struct Native<A> {
    name: &'static str,
    algorithm: A,
}

impl<A: Algorithm> Native<A> {
    pub fn new(name: &'static str, algorithm: A) -> Self {
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

    fn has_levels(&self) -> bool {
        true
    }

    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        for p in placed {
            self.algorithm.record_placement(placement(p));
        }
        let verdict = self
            .algorithm
            .evaluate_levels(proc, candidates, levels)
            .map_err(|e| self.refusal("evaluate-levels", e))?;
        Ok(verdict.map(|v| LevelsVerdict {
            open: v.open,
            limited: v
                .limited
                .into_iter()
                .map(|(node, room)| NodeRoom { node, room })
                .collect(),
            rank: RankRows {
                default: v.rank.default,
                nodes: v.rank.nodes,
                rows: v.rank.rows,
            },
            scores: ScoreRows {
                default: v.scores.default,
                nodes: v.scores.nodes,
                rows: v.scores.rows,
            },
        }))
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

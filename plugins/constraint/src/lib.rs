//! The built-in `constraint` scheduler: LAIN's scheduling filters (LAIN spec §1.5 `filters`,
//! §4.5), `constraint:` on node labels and `affinity:` on the labels of running instances, soft
//! with `~`. A thin wrapper around [`lain_scheduling_core::Constraint`], which holds the algorithm
//! and documents the semantics.

use lain_scheduling_core::{self as sched, Algorithm};
use lain_sdk_guest::PluginError;
use lain_sdk_guest::scheduler::{
    LabelDef, Node, Placement, ProcRequirements, Roles, Scheduler, SchedulerInfo, Verdict,
};
use serde::Deserialize;

/// The plugin's configuration: none, but unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

/// The constraint algorithm behind the SDK trait.
struct Constraint(sched::Constraint);

impl Scheduler for Constraint {
    type Config = Config;

    fn new(_config: Config) -> Result<Self, PluginError> {
        Ok(Constraint(sched::Constraint::new()))
    }

    fn describe(&self) -> SchedulerInfo {
        SchedulerInfo {
            roles: Roles::FILTER,
            summary: "LAIN filters: constraint:<node label>, affinity:<instance label>, == / !=, soft with ~"
                .into(),
        }
    }

    fn sync_labels(&mut self, labels: Vec<LabelDef>) {
        let labels: Vec<_> = labels.into_iter().map(label).collect();
        self.0.sync_labels(&labels);
    }

    fn sync_nodes(&mut self, upsert: Vec<Node>, remove: Vec<u32>) {
        let upsert: Vec<_> = upsert.into_iter().map(node).collect();
        self.0.sync_nodes(&upsert, &remove);
    }

    fn define_proc(&mut self, req: ProcRequirements) -> Result<(), PluginError> {
        self.0
            .define_proc(&proc(req))
            .map_err(PluginError::InvalidInput)
    }

    fn forget_proc(&mut self, proc: u32) {
        self.0.forget_proc(proc);
    }

    fn record_placements(&mut self, placed: Vec<Placement>) {
        for p in placed {
            self.0.record_placement(placement(p));
        }
    }

    fn evaluate(&mut self, proc: u32, mut candidates: Vec<u64>) -> Result<Verdict, PluginError> {
        let mut scores = Vec::new();
        self.0
            .evaluate(proc, &mut candidates, &mut scores)
            .map_err(PluginError::InvalidInput)?;
        Ok(Verdict {
            feasible: candidates,
            scores,
        })
    }
}

/// The core's copy of a label definition.
fn label(l: LabelDef) -> sched::LabelDef {
    sched::LabelDef {
        id: l.id,
        key: l.key,
        value: l.value,
    }
}

/// The core's copy of a node.
fn node(n: Node) -> sched::Node {
    sched::Node {
        id: n.id,
        labels: n.labels,
        memory: n.memory,
        cpu: n.cpu,
    }
}

/// The core's copy of a placement.
fn placement(p: Placement) -> sched::Placement {
    sched::Placement {
        proc: p.proc,
        node: p.node,
        count: p.count,
    }
}

/// The core's copy of proc requirements (moved, not copied).
fn proc(r: ProcRequirements) -> sched::ProcRequirements {
    sched::ProcRequirements {
        id: r.id,
        name: r.name,
        app: r.app,
        memory: r.memory,
        cpu: r.cpu,
        filters: r.filters,
        labels: r.labels,
    }
}

lain_sdk_guest::export_scheduler!(Constraint);

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: u32, filters: &[&str], labels: &[&str]) -> ProcRequirements {
        ProcRequirements {
            id,
            name: "hello.worker.w".into(),
            app: "hello".into(),
            memory: 0,
            cpu: 0,
            filters: filters.iter().map(|s| s.to_string()).collect(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn config_refuses_unknown_keys() {
        assert!(serde_json::from_str::<Config>("{}").is_ok());
        assert!(serde_json::from_str::<Config>(r#"{"soft": true}"#).is_err());
    }

    #[test]
    fn filters_through_the_sdk_types() -> Result<(), PluginError> {
        let mut c = Constraint::new(Config {})?;
        c.sync_labels(vec![LabelDef {
            id: 0,
            key: "group".into(),
            value: "db".into(),
        }]);
        let n = |id, labels| Node {
            id,
            labels,
            memory: 0,
            cpu: 0,
        };
        c.sync_nodes(vec![n(0, vec![]), n(1, vec![0]), n(2, vec![0])], vec![]);
        c.define_proc(req(0, &[], &["proctype=db"]))?;
        c.define_proc(req(
            1,
            &["constraint:group==db", "affinity:proctype!=~db"],
            &[],
        ))?;
        c.record_placements(vec![Placement {
            proc: 0,
            node: 1,
            count: 1,
        }]);
        let v = c.evaluate(1, vec![0b111])?;
        assert_eq!((v.feasible, v.scores), (vec![0b100], vec![]));
        match c.define_proc(req(1, &["constraint:group=db"], &[])) {
            Err(PluginError::InvalidInput(m)) => {
                assert_eq!(m, "filter \"constraint:group=db\": expected == or !=")
            }
            other => panic!("expected invalid-input, got {other:?}"),
        }
        Ok(())
    }
}

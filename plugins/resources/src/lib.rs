//! The built-in `resources` scheduler: an instance goes to a ready node with room for its memory
//! and CPU (LAIN spec §2.6, §2.8, §4.5; LAIN checked memory only, and only on spec changes).
//! A thin wrapper around [`lain_scheduling_core::Resources`], which holds the algorithm and
//! documents the accounting.

use lain_scheduling_core::{self as sched, Algorithm};
use lain_sdk_guest::PluginError;
use lain_sdk_guest::scheduler::{
    Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, Scheduler, SchedulerInfo,
    Verdict,
};
use serde::Deserialize;

/// The plugin's configuration (`[config]` of `lain-plugin.toml`).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Whether to score nodes as well as filter them.
    #[serde(default)]
    score: Score,
}

/// The `score` setting.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Score {
    /// Filter only.
    #[default]
    None,
    /// Also score nodes by their free share of memory and CPU.
    LeastAllocated,
}

/// The resources algorithm behind the SDK trait.
struct Resources(sched::Resources);

impl Scheduler for Resources {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let scoring = match config.score {
            Score::None => sched::Scoring::None,
            Score::LeastAllocated => sched::Scoring::LeastAllocated,
        };
        Ok(Resources(sched::Resources::new(scoring)))
    }

    fn describe(&self) -> SchedulerInfo {
        SchedulerInfo {
            roles: roles(self.0.roles()),
            summary: "ready nodes with enough free memory and CPU for one more instance".into(),
        }
    }

    fn sync_nodes(&mut self, upsert: Vec<Node>, remove: Vec<u32>) {
        let upsert: Vec<_> = upsert.into_iter().map(node).collect();
        self.0.sync_nodes(&upsert, &remove);
    }

    fn sync_usage(&mut self, usage: Vec<NodeUsage>) {
        let usage: Vec<_> = usage.iter().map(node_usage).collect();
        self.0.sync_usage(&usage);
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

/// The WIT flags of `r`.
fn roles(r: sched::Roles) -> Roles {
    let mut flags = Roles::empty();
    flags.set(Roles::FILTER, r.filter);
    flags.set(Roles::SCORE, r.score);
    flags
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

/// The core's copy of a node's usage.
fn node_usage(u: &NodeUsage) -> sched::NodeUsage {
    sched::NodeUsage {
        id: u.id,
        state: match u.state {
            NodeState::Ready => sched::NodeState::Ready,
            NodeState::Maintenance => sched::NodeState::Maintenance,
            NodeState::Down => sched::NodeState::Down,
        },
        memory_reserved: u.memory_reserved,
        cpu_reserved: u.cpu_reserved,
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

lain_sdk_guest::export_scheduler!(Resources);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn config_values() {
        assert_eq!(config("{}"), Ok(Config { score: Score::None }));
        assert_eq!(
            config(r#"{"score": "none"}"#),
            Ok(Config { score: Score::None })
        );
        assert_eq!(
            config(r#"{"score": "least-allocated"}"#),
            Ok(Config {
                score: Score::LeastAllocated
            })
        );
        assert!(config(r#"{"score": "most-allocated"}"#).is_err());
        assert!(config(r#"{"scores": "none"}"#).is_err());
    }

    #[test]
    fn fits_through_the_sdk_types() -> Result<(), PluginError> {
        let mut r = Resources::new(Config {
            score: Score::LeastAllocated,
        })?;
        assert_eq!(r.describe().roles, Roles::FILTER | Roles::SCORE);
        let n = |id| Node {
            id,
            labels: vec![],
            memory: 1000,
            cpu: 0,
        };
        r.sync_nodes(vec![n(0), n(1), n(2)], vec![]);
        r.sync_usage(vec![NodeUsage {
            id: 2,
            state: NodeState::Maintenance,
            memory_reserved: 0,
            cpu_reserved: 0,
        }]);
        r.define_proc(ProcRequirements {
            id: 0,
            name: "hello.web.web".into(),
            app: "hello".into(),
            memory: 600,
            cpu: 0,
            filters: vec!["constraint:anything==goes".into()],
            labels: vec![],
        })?;
        r.record_placements(vec![Placement {
            proc: 0,
            node: 0,
            count: 1,
        }]);
        let v = r.evaluate(0, vec![0b111])?;
        assert_eq!(v.feasible, vec![0b010]);
        assert_eq!(&v.scores[..2], &[400, 1000]);
        Ok(())
    }
}

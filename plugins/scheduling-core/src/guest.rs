//! The adapter that exports an [`Algorithm`] as a wasm scheduling plugin (feature `guest`).
//!
//! A plugin crate declares its configuration, implements [`AlgorithmConfig`] on it to say which
//! algorithm it builds, and exports [`Plugin`]:
//!
//! ```no_run
//! use lain_scheduling_core::Spread;
//! use lain_scheduling_core::guest::AlgorithmConfig;
//!
//! #[derive(serde::Deserialize)]
//! struct Config {
//!     hard: bool,
//! }
//!
//! impl AlgorithmConfig for Config {
//!     type Algorithm = Spread;
//!     const SUMMARY: &'static str = "spreads a proc's instances";
//!     fn build(self) -> Spread {
//!         Spread::new(self.hard)
//!     }
//! }
//!
//! lain_sdk_guest::export_scheduler!(lain_scheduling_core::guest::Plugin<Config>);
//! ```
//!
//! [`Plugin`] converts the SDK's records into the plain types of [`crate::types`] (moving, not
//! copying, their strings and lists) and forwards every call to the algorithm.

use crate::Algorithm;
use crate::types::{LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles};
use lain_sdk_guest::PluginError;
use lain_sdk_guest::scheduler::{self as sdk, Scheduler, SchedulerInfo, Verdict};
use serde::de::DeserializeOwned;

/// The configuration of a scheduling plugin: deserialised from the plugin's effective
/// configuration, it builds the algorithm the plugin runs.
pub trait AlgorithmConfig: DeserializeOwned + 'static {
    /// The algorithm built.
    type Algorithm: Algorithm + 'static;

    /// The summary the plugin's `describe` reports.
    const SUMMARY: &'static str;

    /// Builds the algorithm this configuration asks for.
    fn build(self) -> Self::Algorithm;
}

/// A scheduling plugin running the algorithm that its configuration `C` builds.
pub struct Plugin<C: AlgorithmConfig>(C::Algorithm);

impl<C: AlgorithmConfig> Scheduler for Plugin<C> {
    type Config = C;

    fn new(config: C) -> Result<Self, PluginError> {
        Ok(Plugin(config.build()))
    }

    fn describe(&self) -> SchedulerInfo {
        SchedulerInfo {
            roles: self.0.roles().into(),
            summary: C::SUMMARY.into(),
        }
    }

    fn sync_labels(&mut self, labels: Vec<sdk::LabelDef>) {
        let labels: Vec<_> = labels.into_iter().map(LabelDef::from).collect();
        self.0.sync_labels(&labels);
    }

    fn sync_nodes(&mut self, upsert: Vec<sdk::Node>, remove: Vec<u32>) {
        let upsert: Vec<_> = upsert.into_iter().map(Node::from).collect();
        self.0.sync_nodes(&upsert, &remove);
    }

    fn sync_usage(&mut self, usage: Vec<sdk::NodeUsage>) {
        let usage: Vec<_> = usage.into_iter().map(NodeUsage::from).collect();
        self.0.sync_usage(&usage);
    }

    fn define_proc(&mut self, req: sdk::ProcRequirements) -> Result<(), PluginError> {
        self.0
            .define_proc(&req.into())
            .map_err(PluginError::InvalidInput)
    }

    fn forget_proc(&mut self, proc: u32) {
        self.0.forget_proc(proc);
    }

    fn record_placements(&mut self, placed: Vec<sdk::Placement>) {
        for p in placed {
            self.0.record_placement(p.into());
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

    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: Vec<u64>,
        levels: u32,
    ) -> Result<Option<sdk::LevelsVerdict>, PluginError> {
        let verdict = self
            .0
            .evaluate_levels(proc, &candidates, levels)
            .map_err(PluginError::InvalidInput)?;
        Ok(verdict.map(|v| sdk::LevelsVerdict {
            open: v.open,
            limited: v
                .limited
                .into_iter()
                .map(|(node, room)| sdk::NodeRoom { node, room })
                .collect(),
            rank: sdk::RankRows {
                default: v.rank.default,
                nodes: v.rank.nodes,
                rows: v.rank.rows,
            },
            scores: sdk::ScoreRows {
                default: v.scores.default,
                nodes: v.scores.nodes,
                rows: v.scores.rows,
            },
        }))
    }
}

impl From<Roles> for sdk::Roles {
    fn from(r: Roles) -> Self {
        let mut flags = sdk::Roles::empty();
        flags.set(sdk::Roles::FILTER, r.filter);
        flags.set(sdk::Roles::SCORE, r.score);
        flags
    }
}

impl From<sdk::LabelDef> for LabelDef {
    fn from(l: sdk::LabelDef) -> Self {
        LabelDef {
            id: l.id,
            key: l.key,
            value: l.value,
        }
    }
}

impl From<sdk::Node> for Node {
    fn from(n: sdk::Node) -> Self {
        Node {
            id: n.id,
            labels: n.labels,
            memory: n.memory,
            cpu: n.cpu,
        }
    }
}

impl From<sdk::NodeState> for NodeState {
    fn from(s: sdk::NodeState) -> Self {
        match s {
            sdk::NodeState::Ready => NodeState::Ready,
            sdk::NodeState::Maintenance => NodeState::Maintenance,
            sdk::NodeState::Down => NodeState::Down,
        }
    }
}

impl From<sdk::NodeUsage> for NodeUsage {
    fn from(u: sdk::NodeUsage) -> Self {
        NodeUsage {
            id: u.id,
            state: u.state.into(),
            memory_reserved: u.memory_reserved,
            cpu_reserved: u.cpu_reserved,
        }
    }
}

impl From<sdk::Placement> for Placement {
    fn from(p: sdk::Placement) -> Self {
        Placement {
            proc: p.proc,
            node: p.node,
            count: p.count,
        }
    }
}

impl From<sdk::ProcRequirements> for ProcRequirements {
    fn from(r: sdk::ProcRequirements) -> Self {
        ProcRequirements {
            id: r.id,
            name: r.name,
            app: r.app,
            memory: r.memory,
            cpu: r.cpu,
            filters: r.filters,
            labels: r.labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Resources, Scoring, Spread};
    use serde::Deserialize;

    /// A spread plugin's configuration, as the tests' plugin.
    #[derive(Deserialize)]
    struct Hard(bool);

    impl AlgorithmConfig for Hard {
        type Algorithm = Spread;
        const SUMMARY: &'static str = "test spread";
        fn build(self) -> Spread {
            Spread::new(self.0)
        }
    }

    /// A resources plugin that scores, as the tests' plugin for node data.
    #[derive(Deserialize)]
    struct LeastAllocated;

    impl AlgorithmConfig for LeastAllocated {
        type Algorithm = Resources;
        const SUMMARY: &'static str = "test resources";
        fn build(self) -> Resources {
            Resources::new(Scoring::LeastAllocated)
        }
    }

    fn req(id: u32, memory: u64) -> sdk::ProcRequirements {
        sdk::ProcRequirements {
            id,
            name: "hello.web.web".into(),
            app: "hello".into(),
            memory,
            cpu: 0,
            filters: vec!["constraint:group==db".into()],
            labels: vec!["proctype=web".into()],
        }
    }

    #[test]
    fn records_convert_field_by_field() {
        let label = LabelDef::from(sdk::LabelDef {
            id: 3,
            key: "group".into(),
            value: "db".into(),
        });
        assert_eq!(
            (label.id, label.key.as_str(), label.value.as_str()),
            (3, "group", "db")
        );
        let node = Node::from(sdk::Node {
            id: 1,
            labels: vec![3, 4],
            memory: 1000,
            cpu: 2000,
        });
        assert_eq!(
            node,
            Node {
                id: 1,
                labels: vec![3, 4],
                memory: 1000,
                cpu: 2000
            }
        );
        for (state, expected) in [
            (sdk::NodeState::Ready, NodeState::Ready),
            (sdk::NodeState::Maintenance, NodeState::Maintenance),
            (sdk::NodeState::Down, NodeState::Down),
        ] {
            let usage = NodeUsage::from(sdk::NodeUsage {
                id: 2,
                state,
                memory_reserved: 5,
                cpu_reserved: 6,
            });
            assert_eq!(
                usage,
                NodeUsage {
                    id: 2,
                    state: expected,
                    memory_reserved: 5,
                    cpu_reserved: 6
                }
            );
        }
        let placed = Placement::from(sdk::Placement {
            proc: 7,
            node: 8,
            count: -1,
        });
        assert_eq!(
            placed,
            Placement {
                proc: 7,
                node: 8,
                count: -1
            }
        );
        let proc = ProcRequirements::from(req(9, 600));
        assert_eq!(
            proc,
            ProcRequirements {
                id: 9,
                name: "hello.web.web".into(),
                app: "hello".into(),
                memory: 600,
                cpu: 0,
                filters: vec!["constraint:group==db".into()],
                labels: vec!["proctype=web".into()],
            }
        );
    }

    #[test]
    fn roles_become_flags() {
        let flags = |filter, score| sdk::Roles::from(Roles { filter, score });
        assert_eq!(flags(false, false), sdk::Roles::empty());
        assert_eq!(flags(true, false), sdk::Roles::FILTER);
        assert_eq!(flags(false, true), sdk::Roles::SCORE);
        assert_eq!(flags(true, true), sdk::Roles::FILTER | sdk::Roles::SCORE);
    }

    #[test]
    fn describe_reports_the_algorithm_roles_and_summary() -> Result<(), PluginError> {
        let info = Plugin::new(Hard(true))?.describe();
        assert_eq!(info.roles, sdk::Roles::FILTER | sdk::Roles::SCORE);
        assert_eq!(info.summary, "test spread");
        assert_eq!(
            Plugin::new(Hard(false))?.describe().roles,
            sdk::Roles::SCORE
        );
        Ok(())
    }

    #[test]
    fn calls_reach_the_algorithm() -> Result<(), PluginError> {
        let mut p = Plugin::new(LeastAllocated)?;
        let n = |id| sdk::Node {
            id,
            labels: vec![],
            memory: 1000,
            cpu: 0,
        };
        p.sync_nodes(vec![n(0), n(1), n(2), n(3)], vec![3]);
        p.sync_usage(vec![sdk::NodeUsage {
            id: 2,
            state: sdk::NodeState::Down,
            memory_reserved: 0,
            cpu_reserved: 0,
        }]);
        p.define_proc(req(0, 600))?;
        p.record_placements(vec![sdk::Placement {
            proc: 0,
            node: 0,
            count: 1,
        }]);
        let v = p.evaluate(0, vec![0b1111])?;
        assert_eq!(v.feasible, vec![0b0010]);
        assert_eq!(&v.scores[..2], &[400, 1000]);
        p.forget_proc(0);
        assert!(matches!(
            p.evaluate(0, vec![0b1111]),
            Err(PluginError::InvalidInput(m)) if m == "proc 0 was never defined"
        ));
        assert!(matches!(
            p.define_proc(req(u32::MAX, 0)),
            Err(PluginError::InvalidInput(_))
        ));
        Ok(())
    }
}

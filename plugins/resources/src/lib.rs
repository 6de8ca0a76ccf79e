//! The built-in `resources` scheduler: an instance goes to a ready node with room for its memory
//! and CPU (LAIN reference §resources, §scheduling; LAIN checked memory only, and only on spec
//! changes). [`lain_scheduling_core::Resources`] holds the algorithm and documents the accounting.

use lain_scheduling_core::guest::{AlgorithmConfig, Plugin};
use lain_scheduling_core::{Resources, Scoring};
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

impl AlgorithmConfig for Config {
    type Algorithm = Resources;
    const SUMMARY: &'static str =
        "ready nodes with enough free memory and CPU for one more instance";

    fn build(self) -> Resources {
        Resources::new(match self.score {
            Score::None => Scoring::None,
            Score::LeastAllocated => Scoring::LeastAllocated,
        })
    }
}

lain_sdk_guest::export_scheduler!(Plugin<Config>);

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::PluginError;
    use lain_sdk_guest::scheduler::{
        Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, Scheduler,
    };

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
        let mut r = Plugin::new(Config {
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

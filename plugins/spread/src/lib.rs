//! The built-in `spread` scheduler: the instances of a proc go to different nodes, as LAIN's
//! soft anti-affinity `affinity:cc.bdp.lain.deployd.pg_name!=~<pg>` tried to do (LAIN reference
//! §resources, §scheduling). [`lain_scheduling_core::Spread`] holds the algorithm; this crate
//! configures it.

use lain_scheduling_core::Spread;
use lain_scheduling_core::guest::{AlgorithmConfig, Plugin};
use serde::Deserialize;

/// The plugin's configuration (`[config]` of `lain-plugin.toml`).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Also filter: keep only the candidates running the fewest instances of the proc.
    #[serde(default)]
    hard: bool,
}

impl AlgorithmConfig for Config {
    type Algorithm = Spread;
    const SUMMARY: &'static str =
        "spreads a proc's instances: the fewer of them on a node, the higher it scores";

    fn build(self) -> Spread {
        Spread::new(self.hard)
    }
}

lain_sdk_guest::export_scheduler!(Plugin<Config>);

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::PluginError;
    use lain_sdk_guest::scheduler::{Placement, ProcRequirements, Roles, Scheduler};

    fn config(json: &str) -> Result<Config, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_typos() {
        assert_eq!(config("{}"), Ok(Config { hard: false }));
        assert_eq!(config(r#"{"hard": true}"#), Ok(Config { hard: true }));
        assert!(config(r#"{"hrad": true}"#).is_err());
    }

    #[test]
    fn roles_follow_the_config() -> Result<(), PluginError> {
        let soft = Plugin::new(Config { hard: false })?;
        assert_eq!(soft.describe().roles, Roles::SCORE);
        let hard = Plugin::new(Config { hard: true })?;
        assert_eq!(hard.describe().roles, Roles::FILTER | Roles::SCORE);
        Ok(())
    }

    #[test]
    fn evaluate_returns_the_candidates_and_scores() -> Result<(), PluginError> {
        let mut s = Plugin::new(Config { hard: true })?;
        s.define_proc(ProcRequirements {
            id: 0,
            name: "hello.worker.w".into(),
            app: "hello".into(),
            memory: 0,
            cpu: 0,
            filters: vec![],
            labels: vec![],
        })?;
        s.record_placements(vec![Placement {
            proc: 0,
            node: 1,
            count: 1,
        }]);
        let v = s.evaluate(0, vec![0b11])?;
        assert_eq!(v.feasible, vec![0b01]);
        assert_eq!(&v.scores[..2], &[1000, 500]);
        assert!(matches!(
            s.evaluate(7, vec![1]),
            Err(PluginError::InvalidInput(_))
        ));
        Ok(())
    }
}

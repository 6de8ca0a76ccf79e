//! The built-in `constraint` scheduler: LAIN's scheduling filters (LAIN reference §proc-keys
//! `filters`, §scheduling), `constraint:` on node labels and `affinity:` on the labels of running
//! instances, soft with `~`. [`lain_scheduling_core::Constraint`] holds the algorithm and documents
//! the semantics.

use lain_scheduling_core::Constraint;
use lain_scheduling_core::guest::{AlgorithmConfig, Plugin};
use serde::Deserialize;

/// The plugin's configuration: none, but unknown keys are refused.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

impl AlgorithmConfig for Config {
    type Algorithm = Constraint;
    const SUMMARY: &'static str =
        "LAIN filters: constraint:<node label>, affinity:<instance label>, == / !=, soft with ~";

    fn build(self) -> Constraint {
        Constraint::new()
    }
}

lain_sdk_guest::export_scheduler!(Plugin<Config>);

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::PluginError;
    use lain_sdk_guest::scheduler::{LabelDef, Node, Placement, ProcRequirements, Scheduler};

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
        let mut c = Plugin::new(Config {})?;
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

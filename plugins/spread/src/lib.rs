//! The built-in `spread` scheduler: the instances of a proc go to different nodes, as LAIN's
//! soft anti-affinity `affinity:cc.bdp.lain.deployd.pg_name!=~<pg>` tried to do (LAIN spec §2.6,
//! §4.5). A thin wrapper around [`lain_scheduling_core::Spread`], which holds the algorithm.

use lain_scheduling_core::{self as sched, Algorithm};
use lain_sdk_guest::PluginError;
use lain_sdk_guest::scheduler::{
    Node, Placement, ProcRequirements, Roles, Scheduler, SchedulerInfo, Verdict,
};
use serde::Deserialize;

/// The plugin's configuration (`[config]` of `lain-plugin.toml`).
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Also filter: keep only the candidates running the fewest instances of the proc.
    #[serde(default)]
    hard: bool,
}

/// The spread algorithm behind the SDK trait.
struct Spread(sched::Spread);

impl Scheduler for Spread {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        Ok(Spread(sched::Spread::new(config.hard)))
    }

    fn describe(&self) -> SchedulerInfo {
        SchedulerInfo {
            roles: roles(self.0.roles()),
            summary:
                "spreads a proc's instances: the fewer of them on a node, the higher it scores"
                    .into(),
        }
    }

    fn sync_nodes(&mut self, _upsert: Vec<Node>, remove: Vec<u32>) {
        self.0.sync_nodes(&[], &remove);
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

lain_sdk_guest::export_scheduler!(Spread);

#[cfg(test)]
mod tests {
    use super::*;

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
        let soft = Spread::new(Config { hard: false })?;
        assert_eq!(soft.describe().roles, Roles::SCORE);
        let hard = Spread::new(Config { hard: true })?;
        assert_eq!(hard.describe().roles, Roles::FILTER | Roles::SCORE);
        Ok(())
    }

    #[test]
    fn evaluate_returns_the_candidates_and_scores() -> Result<(), PluginError> {
        let mut s = Spread::new(Config { hard: true })?;
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

//! Hosting `lain:plugin@0.1.0` next to the current version: the 0.1.0 `host` import, and the
//! conversions of values between the two versions' generated types.
//!
//! Records that are the same in both versions cross by [`transcode`] (their serde forms are
//! identical by construction: both are generated from the same WIT text but for the package
//! version). Only what changed is converted by hand: a 0.1.0 container plan becomes a 0.2.0 plan
//! with the old restart policy, no restart limit, no schedule, `spread` placement and no extra
//! volumes ([`plan_from_v0_1`]); plans stored by a kernel of the 0.1.0 era are read the same way
//! ([`upgrade_stored_plan`]). The scheduler's per-placement records are converted field by field,
//! since they cross on the hot path.

use super::bindings::{host, types, v0_1};
use super::bindings::{proc_rendering, scheduling};
use super::state::PluginState;
use serde::Serialize;
use serde::de::DeserializeOwned;

impl v0_1::types::Host for PluginState {}

impl v0_1::host::Host for PluginState {
    fn log(&mut self, level: v0_1::host::LogLevel, message: String, fields: Vec<(String, String)>) {
        let level = match level {
            v0_1::host::LogLevel::Trace => host::LogLevel::Trace,
            v0_1::host::LogLevel::Debug => host::LogLevel::Debug,
            v0_1::host::LogLevel::Info => host::LogLevel::Info,
            v0_1::host::LogLevel::Warn => host::LogLevel::Warn,
            v0_1::host::LogLevel::Error => host::LogLevel::Error,
        };
        host::Host::log(self, level, message, fields);
    }

    fn config(&mut self) -> String {
        host::Host::config(self)
    }

    fn read_file(&mut self, name: String) -> Result<Vec<u8>, String> {
        host::Host::read_file(self, name)
    }

    fn now(&mut self) -> v0_1::types::Timestamp {
        let t = host::Host::now(self);
        v0_1::types::Timestamp {
            seconds: t.seconds,
            nanoseconds: t.nanoseconds,
        }
    }
}

/// Converts a value into the other version's type of the same shape, through its serde form.
///
/// Errors only if the shapes differ, which is a kernel bug (named in the message) rather than
/// anything a plugin can cause.
pub fn transcode<A: Serialize + ?Sized, B: DeserializeOwned>(value: &A) -> Result<B, String> {
    serde_json::to_value(value)
        .and_then(serde_json::from_value)
        .map_err(|e| {
            format!(
                "cannot convert {} to {} between WIT versions: {e}",
                std::any::type_name::<A>(),
                std::any::type_name::<B>()
            )
        })
}

/// A 0.1.0 plan as the current version says it: the restart policy without limit or backoff
/// setting, run all the time, spread placement, no volumes of its own.
pub fn plan_from_v0_1(
    plan: &v0_1::proc_rendering::ContainerPlan,
) -> Result<proc_rendering::ContainerPlan, String> {
    let mut value = serde_json::to_value(plan).map_err(|e| e.to_string())?;
    upgrade_plan_value(&mut value);
    serde_json::from_value(value).map_err(|e| format!("cannot convert a 0.1.0 plan: {e}"))
}

/// Brings a stored plan written before 0.2.0 (its `restart` a bare policy) to the current shape;
/// a current plan is left as it is.
pub fn upgrade_stored_plan(value: &mut serde_json::Value) {
    if value
        .get("restart")
        .is_some_and(serde_json::Value::is_string)
    {
        upgrade_plan_value(value);
    }
}

fn upgrade_plan_value(value: &mut serde_json::Value) {
    let Some(plan) = value.as_object_mut() else {
        return;
    };
    let policy = plan
        .remove("restart")
        .unwrap_or(serde_json::Value::String("Always".into()));
    plan.insert(
        "restart".into(),
        serde_json::json!({
            "policy": policy,
            "max_restarts": null,
            "backoff_initial": 0,
            "backoff_max": 0,
        }),
    );
    plan.insert("schedule".into(), serde_json::Value::Null);
    plan.insert(
        "placement".into(),
        serde_json::to_value(proc_rendering::PlacementMode::Spread)
            .unwrap_or(serde_json::Value::Null),
    );
    plan.insert("volumes".into(), serde_json::Value::Array(Vec::new()));
}

/// A 0.1.0 plugin error as the current version's.
pub fn error_from_v0_1(e: v0_1::types::PluginError) -> types::PluginError {
    match e {
        v0_1::types::PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
        v0_1::types::PluginError::BadConfig(m) => types::PluginError::BadConfig(m),
        v0_1::types::PluginError::Unsupported(m) => types::PluginError::Unsupported(m),
        v0_1::types::PluginError::Other(m) => types::PluginError::Other(m),
    }
}

/// Placements for a 0.1.0 scheduler (hot path: field by field).
pub fn placements_to_v0_1(placed: &[scheduling::Placement]) -> Vec<v0_1::scheduling::Placement> {
    placed
        .iter()
        .map(|p| v0_1::scheduling::Placement {
            proc: p.proc,
            node: p.node,
            count: p.count,
        })
        .collect()
}

/// A 0.1.0 scheduler's verdict (hot path: moved, not copied).
pub fn verdict_from_v0_1(v: v0_1::scheduling::Verdict) -> scheduling::Verdict {
    scheduling::Verdict {
        feasible: v.feasible,
        scores: v.scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v0_1_plan_keeps_its_policy_and_gains_the_0_2_defaults() -> Result<(), String> {
        let old = v0_1::proc_rendering::ContainerPlan {
            image: "hello:1".into(),
            entrypoint: None,
            cmd: Some(vec!["run".into()]),
            env: vec![],
            user: None,
            workdir: None,
            ports: vec![],
            cpu: 0,
            memory: 1 << 20,
            health: None,
            restart: v0_1::proc_rendering::RestartPolicy::OnFailure,
            routes: vec![],
            portal: None,
            labels: vec![],
            kill_timeout: 10,
            setup_time: 0,
        };
        let new = plan_from_v0_1(&old)?;
        assert_eq!(new.restart.policy, proc_rendering::RestartPolicy::OnFailure);
        assert_eq!(new.restart.max_restarts, None);
        assert_eq!(new.schedule, None);
        assert_eq!(new.placement, proc_rendering::PlacementMode::Spread);
        assert!(new.volumes.is_empty());
        assert_eq!(new.cmd, old.cmd);
        // A plan stored before 0.2.0 reads the same way; a current one is left alone.
        let mut stored = serde_json::to_value(&old).map_err(|e| e.to_string())?;
        upgrade_stored_plan(&mut stored);
        let read: proc_rendering::ContainerPlan =
            serde_json::from_value(stored.clone()).map_err(|e| e.to_string())?;
        assert_eq!(read, new);
        upgrade_stored_plan(&mut stored);
        assert_eq!(
            serde_json::from_value::<proc_rendering::ContainerPlan>(stored).ok(),
            Some(new)
        );
        Ok(())
    }
}

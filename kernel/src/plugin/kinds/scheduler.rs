//! Calls into scheduler plugins, which keep one long-lived instance each.
//!
//! Unlike the other kinds, a scheduler instance holds state that the kernel syncs into it by
//! deltas (nodes, labels, procs, placements), so it is not re-instantiated per call. If a call
//! faults, the instance is dead (a trapped instance cannot be entered again) and the owner makes a
//! new one and replays the state into it (see `crate::schedule`).
//!
//! A 0.2.0 plugin may also export `scheduling-levels` (the SDK's plugins do): it is looked up
//! when the instance starts, and [`LiveScheduler::evaluate_levels`] answers `None` without it.

use super::{KindGuest, within_limit};
use crate::plugin::bindings::scheduling::{
    Guest, LabelDef, Node, NodeUsage, Placement, ProcRequirements, SchedulerInfo, Verdict,
};
use crate::plugin::bindings::scheduling_levels::{self, LevelsVerdict};
use crate::plugin::bindings::types::PluginError;
use crate::plugin::bindings::v0_1::scheduling as v0_1;
use crate::plugin::error::{CallError, Cause};
use crate::plugin::legacy;
use crate::plugin::loaded::LoadedPlugin;
use crate::plugin::state::PluginState;
use std::sync::Arc;
use wasmtime::Store;
use wasmtime::component::Instance;

/// A live instance of a scheduler plugin.
pub struct LiveScheduler {
    plugin: Arc<LoadedPlugin>,
    store: Store<PluginState>,
    guest: Guests,
    /// The `scheduling-levels` export, when the component has one.
    levels: Option<scheduling_levels::Guest>,
    dead: bool,
}

/// The bindings of a live instance, by the WIT version its plugin implements.
enum Guests {
    /// `lain:plugin@0.2.0`.
    Current(Guest),
    /// `lain:plugin@0.1.0`: arguments and answers are converted.
    V0_1(v0_1::Guest),
}

/// Loads `G`'s bindings of a new instance of `plugin`.
fn load<G: KindGuest>(
    plugin: &LoadedPlugin,
    idx: &G::Indices,
) -> Result<(Store<PluginState>, Instance, G), Cause> {
    let mut store = plugin.new_store(None)?;
    let instance = plugin.instantiate(&mut store)?;
    let guest = G::load(idx, &mut store, &instance).map_err(|e| plugin.cause(&store, e))?;
    Ok((store, instance, guest))
}

/// The `scheduling-levels` export of the current version.
const LEVELS_EXPORT: &str = "lain:plugin/scheduling-levels@0.2.0";

/// The `scheduling-levels` bindings of `instance`, if its component exports the interface. An
/// export of that name with other functions is an error (it would be a contract violation, not
/// an absence).
fn load_levels(
    plugin: &LoadedPlugin,
    store: &mut Store<PluginState>,
    instance: &Instance,
) -> Result<Option<scheduling_levels::Guest>, Cause> {
    let pre = instance.instance_pre(&*store);
    if pre
        .component()
        .get_export_index(None, LEVELS_EXPORT)
        .is_none()
    {
        return Ok(None);
    }
    scheduling_levels::GuestIndices::new(&pre)
        .and_then(|idx| idx.load(&mut *store, instance))
        .map(Some)
        .map_err(|e| plugin.cause(store, e))
}

impl LiveScheduler {
    /// Instantiates the plugin.
    pub fn start(plugin: Arc<LoadedPlugin>) -> Result<LiveScheduler, CallError> {
        let started = plugin.health().admit(plugin.limits()).and_then(|()| {
            if let Some(idx) = <Guest as KindGuest>::indices(plugin.exports()) {
                let (mut store, instance, guest) = load::<Guest>(&plugin, idx)?;
                let levels = load_levels(&plugin, &mut store, &instance)?;
                Ok((store, Guests::Current(guest), levels))
            } else if let Some(idx) = <v0_1::Guest as KindGuest>::indices(plugin.exports()) {
                let (store, _, guest) = load::<v0_1::Guest>(&plugin, idx)?;
                Ok((store, Guests::V0_1(guest), None))
            } else {
                Err(Cause::Host(format!(
                    "`{}` is a {} plugin",
                    plugin.name(),
                    plugin.kind()
                )))
            }
        });
        let (store, guest, levels) = plugin.finish(crate::plugin::error::LOADING, started)?;
        Ok(LiveScheduler {
            plugin,
            store,
            guest,
            levels,
            dead: false,
        })
    }

    /// The plugin this instance runs.
    pub fn plugin(&self) -> &Arc<LoadedPlugin> {
        &self.plugin
    }

    /// Whether a fault killed the instance (it must be replaced).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    fn run<R: serde::Serialize>(
        &mut self,
        function: &'static str,
        f: impl FnOnce(&Guests, &mut Store<PluginState>) -> wasmtime::Result<R>,
    ) -> Result<R, CallError> {
        if self.dead {
            return Err(self
                .plugin
                .error(function, Cause::Host("instance is dead".into())));
        }
        let (plugin, store, guest, dead) =
            (&self.plugin, &mut self.store, &self.guest, &mut self.dead);
        let result = plugin.health().admit(plugin.limits()).and_then(|()| {
            store.set_epoch_deadline(plugin.limits().deadline_ticks());
            f(guest, store).map_err(|e| {
                *dead = true;
                plugin.cause(store, e)
            })
        });
        plugin.finish(function, result)
    }

    /// [`Self::run`] for a function that answers `result<T, plugin-error>`: the plugin's refusal
    /// becomes `Cause::Guest`, named with the same function.
    fn run_fallible<T>(
        &mut self,
        function: &'static str,
        f: impl FnOnce(&Guests, &mut Store<PluginState>) -> wasmtime::Result<Result<T, PluginError>>,
    ) -> Result<T, CallError>
    where
        Result<T, PluginError>: serde::Serialize,
    {
        let answer = self.run(function, f)?;
        answer.map_err(|e| self.plugin.error(function, Cause::Guest(e)))
    }

    /// See WIT `describe`.
    pub fn describe(&mut self) -> Result<SchedulerInfo, CallError> {
        const DESCRIBE: &str = "describe";
        let info = self.run(DESCRIBE, |g, s| match g {
            Guests::Current(g) => g.call_describe(s),
            Guests::V0_1(g) => super::converted(g.call_describe(s)),
        })?;
        within_limit(&self.plugin, &info).map_err(|c| self.plugin.error(DESCRIBE, c))?;
        Ok(info)
    }

    /// See WIT `sync-labels`.
    pub fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        self.run("sync-labels", |g, s| match g {
            Guests::Current(g) => g.call_sync_labels(s, labels),
            Guests::V0_1(g) => g.call_sync_labels(s, &old::<_, Vec<_>>(labels)?),
        })
    }

    /// See WIT `sync-nodes`.
    pub fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        self.run("sync-nodes", |g, s| match g {
            Guests::Current(g) => g.call_sync_nodes(s, upsert, remove),
            Guests::V0_1(g) => g.call_sync_nodes(s, &old::<_, Vec<_>>(upsert)?, remove),
        })
    }

    /// See WIT `sync-usage`.
    pub fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        self.run("sync-usage", |g, s| match g {
            Guests::Current(g) => g.call_sync_usage(s, usage),
            Guests::V0_1(g) => g.call_sync_usage(s, &old::<_, Vec<_>>(usage)?),
        })
    }

    /// See WIT `define-proc`; the plugin's refusal is `Cause::Guest`.
    pub fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        self.run_fallible("define-proc", |g, s| match g {
            Guests::Current(g) => g.call_define_proc(s, req),
            Guests::V0_1(g) => Ok(g
                .call_define_proc(s, &old(req)?)?
                .map_err(legacy::error_from_v0_1)),
        })
    }

    /// See WIT `forget-proc`.
    pub fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        self.run("forget-proc", |g, s| match g {
            Guests::Current(g) => g.call_forget_proc(s, proc),
            Guests::V0_1(g) => g.call_forget_proc(s, proc),
        })
    }

    /// See WIT `record-placements`.
    pub fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        self.run("record-placements", |g, s| match g {
            Guests::Current(g) => g.call_record_placements(s, placed),
            Guests::V0_1(g) => g.call_record_placements(s, &legacy::placements_to_v0_1(placed)),
        })
    }

    /// See WIT `evaluate`. The caller checks the verdict's shape against the plugin's roles.
    pub fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        self.run_fallible("evaluate", |g, s| match g {
            Guests::Current(g) => g.call_evaluate(s, proc, candidates, placed),
            Guests::V0_1(g) => Ok(g
                .call_evaluate(s, proc, candidates, &legacy::placements_to_v0_1(placed))?
                .map(legacy::verdict_from_v0_1)
                .map_err(legacy::error_from_v0_1)),
        })
    }
}

impl LiveScheduler {
    /// Whether the plugin exports `scheduling-levels`.
    pub fn has_levels(&self) -> bool {
        self.levels.is_some()
    }

    /// See WIT `evaluate-levels`; `Ok(None)` also when the plugin does not export
    /// `scheduling-levels` (the caller must then not have sent `placed`: see
    /// [`LiveScheduler::has_levels`]). The caller checks the tables' shapes.
    pub fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, CallError> {
        let Some(guest) = self.levels.take() else {
            return Ok(None);
        };
        let answer = self.run_fallible("evaluate-levels", |_, s| {
            guest.call_evaluate_levels(s, proc, candidates, placed, levels)
        });
        self.levels = Some(guest);
        answer
    }
}

/// A sync argument for a 0.1.0 scheduler (same shape; sync calls are rare).
fn old<A: serde::Serialize + ?Sized, B: serde::de::DeserializeOwned>(
    value: &A,
) -> wasmtime::Result<B> {
    legacy::transcode(value).map_err(wasmtime::Error::msg)
}

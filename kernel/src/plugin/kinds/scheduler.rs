//! Calls into scheduler plugins, which keep one long-lived instance each.
//!
//! Unlike the other kinds, a scheduler instance holds state that the kernel syncs into it by
//! deltas (nodes, labels, procs, placements), so it is not re-instantiated per call. If a call
//! faults, the instance is dead (a trapped instance cannot be entered again) and the owner makes a
//! new one and replays the state into it (see `crate::schedule`).

use super::{KindGuest as _, within_limit};
use crate::plugin::bindings::scheduling::{
    Guest, LabelDef, Node, NodeUsage, Placement, ProcRequirements, SchedulerInfo, Verdict,
};
use crate::plugin::bindings::types::PluginError;
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::LoadedPlugin;
use crate::plugin::state::PluginState;
use std::sync::Arc;
use wasmtime::Store;

/// A live instance of a scheduler plugin.
pub struct LiveScheduler {
    plugin: Arc<LoadedPlugin>,
    store: Store<PluginState>,
    guest: Guest,
    dead: bool,
}

impl LiveScheduler {
    /// Instantiates the plugin.
    pub fn start(plugin: Arc<LoadedPlugin>) -> Result<LiveScheduler, CallError> {
        let Some(idx) = Guest::indices(plugin.exports()) else {
            return Err(super::wrong_kind(&plugin, crate::plugin::error::LOADING));
        };
        let started = plugin.health().admit(plugin.limits()).and_then(|()| {
            let mut store = plugin.new_store(None)?;
            let instance = plugin.instantiate(&mut store)?;
            let guest =
                Guest::load(idx, &mut store, &instance).map_err(|e| plugin.cause(&store, e))?;
            Ok((store, guest))
        });
        let (store, guest) = plugin.finish(crate::plugin::error::LOADING, started)?;
        Ok(LiveScheduler {
            plugin,
            store,
            guest,
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
        f: impl FnOnce(&Guest, &mut Store<PluginState>) -> wasmtime::Result<R>,
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
        f: impl FnOnce(&Guest, &mut Store<PluginState>) -> wasmtime::Result<Result<T, PluginError>>,
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
        let info = self.run(DESCRIBE, |g, s| g.call_describe(s))?;
        within_limit(&self.plugin, &info).map_err(|c| self.plugin.error(DESCRIBE, c))?;
        Ok(info)
    }

    /// See WIT `sync-labels`.
    pub fn sync_labels(&mut self, labels: &[LabelDef]) -> Result<(), CallError> {
        self.run("sync-labels", |g, s| g.call_sync_labels(s, labels))
    }

    /// See WIT `sync-nodes`.
    pub fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) -> Result<(), CallError> {
        self.run("sync-nodes", |g, s| g.call_sync_nodes(s, upsert, remove))
    }

    /// See WIT `sync-usage`.
    pub fn sync_usage(&mut self, usage: &[NodeUsage]) -> Result<(), CallError> {
        self.run("sync-usage", |g, s| g.call_sync_usage(s, usage))
    }

    /// See WIT `define-proc`; the plugin's refusal is `Cause::Guest`.
    pub fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), CallError> {
        self.run_fallible("define-proc", |g, s| g.call_define_proc(s, req))
    }

    /// See WIT `forget-proc`.
    pub fn forget_proc(&mut self, proc: u32) -> Result<(), CallError> {
        self.run("forget-proc", |g, s| g.call_forget_proc(s, proc))
    }

    /// See WIT `record-placements`.
    pub fn record_placements(&mut self, placed: &[Placement]) -> Result<(), CallError> {
        self.run("record-placements", |g, s| {
            g.call_record_placements(s, placed)
        })
    }

    /// See WIT `evaluate`. The caller checks the verdict's shape against the plugin's roles.
    pub fn evaluate(
        &mut self,
        proc: u32,
        candidates: &[u64],
        placed: &[Placement],
    ) -> Result<Verdict, CallError> {
        self.run_fallible("evaluate", |g, s| {
            g.call_evaluate(s, proc, candidates, placed)
        })
    }
}

//! Scheduling filters and scorers: which nodes may take an instance, and how good each one is.
//!
//! The plugin value is long-lived: the kernel syncs nodes, labels, usage and proc requirements into
//! it, then asks for one [`Verdict`] per instance to place. Node ids are dense (`0..n`); candidate
//! sets are bitmaps (see [`crate::bitmap`]); scores are `0..=1000`, one per node id.
//!
//! A complete filter that only accepts nodes carrying the label `disk=ssd` for procs labelled
//! `needs=ssd`:
//!
//! ```no_run
//! use lain_sdk_guest::scheduler::*;
//! use lain_sdk_guest::{bitmap, PluginError};
//! use std::collections::{HashMap, HashSet};
//!
//! #[derive(Default)]
//! struct Ssd { ssd_label: Option<u32>, ssd_nodes: Vec<u64>, wants_ssd: HashSet<u32> }
//!
//! impl Scheduler for Ssd {
//!     type Config = HashMap<String, serde_json::Value>;
//!     fn new(_: Self::Config) -> Result<Self, PluginError> { Ok(Ssd::default()) }
//!     fn describe(&self) -> SchedulerInfo {
//!         SchedulerInfo { roles: Roles::FILTER, summary: "procs labelled needs=ssd go to disk=ssd nodes".into() }
//!     }
//!     fn sync_labels(&mut self, labels: Vec<LabelDef>) {
//!         for l in labels { if l.key == "disk" && l.value == "ssd" { self.ssd_label = Some(l.id) } }
//!     }
//!     fn sync_nodes(&mut self, upsert: Vec<Node>, remove: Vec<u32>) {
//!         for n in upsert {
//!             if Some(true) == self.ssd_label.map(|id| n.labels.contains(&id)) { bitmap::set(&mut self.ssd_nodes, n.id) }
//!             else { bitmap::clear(&mut self.ssd_nodes, n.id) }
//!         }
//!         for id in remove { bitmap::clear(&mut self.ssd_nodes, id) }
//!     }
//!     fn define_proc(&mut self, req: ProcRequirements) -> Result<(), PluginError> {
//!         if req.labels.iter().any(|l| l == "needs=ssd") { self.wants_ssd.insert(req.id); } else { self.wants_ssd.remove(&req.id); }
//!         Ok(())
//!     }
//!     fn forget_proc(&mut self, proc: u32) { self.wants_ssd.remove(&proc); }
//!     fn evaluate(&mut self, proc: u32, mut candidates: Vec<u64>) -> Result<Verdict, PluginError> {
//!         if self.wants_ssd.contains(&proc) { bitmap::and_assign(&mut candidates, &self.ssd_nodes) }
//!         Ok(Verdict { feasible: candidates, scores: vec![] })
//!     }
//! }
//!
//! lain_sdk_guest::export_scheduler!(Ssd);
//! ```

pub use crate::bindings::scheduler_filter_levels::exports::lain::plugin::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, SchedulerInfo,
    Verdict,
};
pub use crate::bindings::scheduler_filter_levels::exports::lain::plugin::scheduling_levels::{
    LevelsVerdict, NodeRoom, RankRows, ScoreRows,
};

use crate::PluginError;

/// A scheduling filter and/or scorer. Implement it and export it with
/// [`export_scheduler!`](crate::export_scheduler).
///
/// Methods with a default do nothing; override those whose data the plugin needs.
pub trait Scheduler: Sized + 'static {
    /// The plugin's configuration, deserialised from its effective JSON configuration.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its configuration. Called once per component instance.
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// The roles the plugin plays and a summary.
    fn describe(&self) -> SchedulerInfo;

    /// New or changed interned labels.
    fn sync_labels(&mut self, _labels: Vec<LabelDef>) {}

    /// New or changed nodes, and nodes gone.
    fn sync_nodes(&mut self, _upsert: Vec<Node>, _remove: Vec<u32>) {}

    /// Node state and usage not explained by placements.
    fn sync_usage(&mut self, _usage: Vec<NodeUsage>) {}

    /// A proc to be placed, or its new requirements. Refuse filters you do not understand.
    fn define_proc(&mut self, _req: ProcRequirements) -> Result<(), PluginError> {
        Ok(())
    }

    /// A proc is gone, with its placements.
    fn forget_proc(&mut self, _proc: u32) {}

    /// Instances added or removed on nodes.
    fn record_placements(&mut self, _placed: Vec<Placement>) {}

    /// Filters and/or scores the candidates for one new instance of `proc`. The placements the
    /// kernel sent with this call were given to
    /// [`record_placements`](Scheduler::record_placements) just before.
    fn evaluate(&mut self, proc: u32, candidates: Vec<u64>) -> Result<Verdict, PluginError>;

    /// Answers for the next `levels` instances of `proc` on every node at once, or `Ok(None)`
    /// (the default) to be asked per instance through [`evaluate`](Scheduler::evaluate).
    ///
    /// Answer only if the plugin's verdict on a node depends on nothing but that node and the
    /// number of the proc's instances added to it (see [`LevelsVerdict`] and the WIT
    /// `scheduling-levels` interface): the kernel places a whole batch over the tables, and the
    /// result must be what `evaluate` per instance would give. A deploy of n instances then
    /// crosses into the plugin once instead of n times. The placements the kernel sent with this
    /// call were given to [`record_placements`](Scheduler::record_placements) just before.
    fn evaluate_levels(
        &mut self,
        _proc: u32,
        _candidates: Vec<u64>,
        _levels: u32,
    ) -> Result<Option<LevelsVerdict>, PluginError> {
        Ok(None)
    }
}

/// Exports a [`Scheduler`] implementation as the component's `scheduling` and
/// `scheduling-levels` interfaces and embeds the crate's `lain-plugin.toml` as its manifest.
///
/// Calls that the WIT says never fail panic if the plugin's configuration is unusable; the kernel
/// reports the panic message with the plugin's name.
#[macro_export]
macro_rules! export_scheduler {
    ($ty:ty) => {
        const _: () = {
            use $crate::bindings::scheduler_filter_levels::exports::lain::plugin::scheduling as __raw;
            use $crate::bindings::scheduler_filter_levels::exports::lain::plugin::scheduling_levels as __levels;
            use $crate::scheduler::Scheduler as _;
            $crate::__embed_manifest!();
            $crate::__plugin_cell!($ty, $crate::scheduler::Scheduler);

            fn __lain_must<R>(r: ::core::result::Result<R, $crate::PluginError>) -> R {
                match r {
                    Ok(v) => v,
                    Err(e) => panic!("{e}"),
                }
            }

            struct __LainScheduler;

            impl __raw::Guest for __LainScheduler {
                fn describe() -> __raw::SchedulerInfo {
                    __lain_must(__lain_with(|p| p.describe()))
                }
                fn sync_labels(labels: Vec<__raw::LabelDef>) {
                    __lain_must(__lain_with(move |p| p.sync_labels(labels)))
                }
                fn sync_nodes(upsert: Vec<__raw::Node>, remove: Vec<u32>) {
                    __lain_must(__lain_with(move |p| p.sync_nodes(upsert, remove)))
                }
                fn sync_usage(usage: Vec<__raw::NodeUsage>) {
                    __lain_must(__lain_with(move |p| p.sync_usage(usage)))
                }
                fn define_proc(req: __raw::ProcRequirements) -> Result<(), $crate::PluginError> {
                    __lain_with(move |p| p.define_proc(req))?
                }
                fn forget_proc(proc: u32) {
                    __lain_must(__lain_with(move |p| p.forget_proc(proc)))
                }
                fn evaluate(
                    proc: u32,
                    candidates: Vec<u64>,
                    placed: Vec<__raw::Placement>,
                ) -> Result<__raw::Verdict, $crate::PluginError> {
                    __lain_with(move |p| {
                        if !placed.is_empty() {
                            p.record_placements(placed);
                        }
                        p.evaluate(proc, candidates)
                    })?
                }
                fn record_placements(placed: Vec<__raw::Placement>) {
                    __lain_must(__lain_with(move |p| p.record_placements(placed)))
                }
            }

            impl __levels::Guest for __LainScheduler {
                fn evaluate_levels(
                    proc: u32,
                    candidates: Vec<u64>,
                    placed: Vec<__raw::Placement>,
                    levels: u32,
                ) -> Result<Option<__levels::LevelsVerdict>, $crate::PluginError> {
                    __lain_with(move |p| {
                        if !placed.is_empty() {
                            p.record_placements(placed);
                        }
                        p.evaluate_levels(proc, candidates, levels)
                    })?
                }
            }

            $crate::bindings::scheduler_filter_levels::__export_scheduler_filter_levels_world!(
                __LainScheduler
            );
        };
    };
}

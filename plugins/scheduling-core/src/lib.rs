//! The algorithms behind the built-in scheduling plugins `spread`, `constraint` and `resources`.
//!
//! Without features this crate has no dependency on the WIT bindings: the kernel's benchmark
//! drives the very same code natively as its baseline. The feature `guest` adds the module
//! `guest`, the adapter through which the wasm guests (`plugins/spread`, `plugins/constraint`,
//! `plugins/resources`) convert the SDK's records into the plain types of [`types`] and delegate
//! to the structs here.
//!
//! Each algorithm is a long-lived state value implementing [`Algorithm`], whose methods mirror the
//! `scheduling` WIT interface: the inventory arrives by deltas (`sync_*`, `define_proc`,
//! `record_placement`), then [`Algorithm::evaluate`] narrows a candidate bitmap in place and/or
//! writes one score per node. Node and proc ids are dense and index plain `Vec`s (see [`ids`]), so
//! nothing on the evaluation path hashes, allocates per node or touches a string.

#![warn(missing_docs)]

pub mod bitmap;
mod constraint;
mod counts;
#[cfg(feature = "guest")]
pub mod guest;
pub mod ids;
mod resources;
mod spread;
pub mod types;

pub use constraint::Constraint;
pub use resources::{Resources, Scoring};
pub use spread::{Spread, spread_score};
pub use types::{
    LabelDef, LevelsVerdict, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, Rows,
};

/// One scheduling algorithm, driven like the `scheduling` WIT interface.
///
/// The `sync_*` methods have empty defaults: an algorithm overrides those whose data it needs.
pub trait Algorithm {
    /// Whether [`evaluate`](Algorithm::evaluate) filters, scores, or both.
    fn roles(&self) -> Roles;

    /// Adds or replaces interned node labels.
    fn sync_labels(&mut self, _labels: &[LabelDef]) {}

    /// Adds or replaces the nodes in `upsert` and forgets the nodes in `remove`, with the
    /// instances recorded on them.
    fn sync_nodes(&mut self, _upsert: &[Node], _remove: &[u32]) {}

    /// Replaces the state and outside usage of the listed nodes.
    fn sync_usage(&mut self, _usage: &[NodeUsage]) {}

    /// Declares or updates a proc. On error (the message names the culprit) nothing changes.
    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), String>;

    /// Forgets a proc and its placements.
    fn forget_proc(&mut self, proc: u32);

    /// Applies one placement delta: `count` instances of `proc` added to (or removed from) `node`.
    /// Counts never go below zero; placements of procs not defined yet are kept and take effect
    /// when the proc is defined.
    fn record_placement(&mut self, placement: Placement);

    /// Applies several placement deltas in order.
    fn record_placements(&mut self, placed: &[Placement]) {
        for &p in placed {
            self.record_placement(p);
        }
    }

    /// Evaluates the candidates for one new instance of `proc`.
    ///
    /// `candidates` is a node bitmap (bit `i` of word `i / 64` is node `i`, see [`bitmap`]); a
    /// filter clears the bits of the nodes it rejects and never sets one. `scores` is cleared; a
    /// scorer then fills it with one score (`0..=1000`, higher is better) per bit of `candidates`,
    /// i.e. `candidates.len() * 64` entries indexed by node id. Errors: `proc` was never defined.
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &mut [u64],
        scores: &mut Vec<u16>,
    ) -> Result<(), String>;

    /// Answers for the next `levels` instances of `proc` on every node at once (see
    /// [`LevelsVerdict`] and WIT `evaluate-levels`), or `Ok(None)` when the algorithm's verdict
    /// on a node depends on more than that node and the proc's count on it. Records nothing.
    ///
    /// The default answers `None`: the kernel then calls [`evaluate`](Algorithm::evaluate) per
    /// instance. Errors: `proc` was never defined.
    fn evaluate_levels(
        &mut self,
        _proc: u32,
        _candidates: &[u64],
        _levels: u32,
    ) -> Result<Option<LevelsVerdict>, String> {
        Ok(None)
    }
}

/// The most table entries (nodes x levels) an algorithm may build for one
/// [`Algorithm::evaluate_levels`]; above it, it answers `None` and the kernel places instance by
/// instance. 2^20 entries would be 2 MiB of scores if every node had its own row.
pub const MAX_LEVEL_ENTRIES: usize = 1 << 20;

/// The number of node ids and levels of a levels table over `candidates`, or `None` when the table
/// would exceed [`MAX_LEVEL_ENTRIES`] (or `levels` is 0).
pub fn level_shape(candidates: &[u64], levels: u32) -> Option<(usize, usize)> {
    let nodes = candidates.len().checked_mul(64)?;
    let levels = levels as usize;
    (levels > 0 && nodes.checked_mul(levels)? <= MAX_LEVEL_ENTRIES).then_some((nodes, levels))
}

/// The error of [`Algorithm::evaluate`] for a proc that was never defined.
fn undefined(proc: u32) -> String {
    format!("proc {proc} was never defined")
}

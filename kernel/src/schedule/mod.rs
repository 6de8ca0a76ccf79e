//! Scheduling: which node takes a new instance.
//!
//! The kernel keeps the authoritative [`inventory::Inventory`] (nodes, interned labels, procs,
//! placements) and runs a [`pipeline::Pipeline`] of scheduler plugins configured in order. Each
//! plugin holds a long-lived mirror of the inventory, synced by deltas; per placement the pipeline
//! passes only a bitmap of candidate nodes and the placements made since the plugin's last call
//! (see `wit/RATIONALE.md`). Filters narrow the candidates in order; scorers' weighted scores are
//! summed over what is left; the best node wins, ties going to the lowest node id. When no node
//! is left, the error names the filter that removed the last candidates
//! ([`pipeline::explain_no_fit`]).
//!
//! The pipeline's members and weights live in the state store and change while the kernel runs
//! ([`live`]); the kernel configuration's `[scheduler]` only seeds them.

pub mod backend;
mod config;
pub mod inventory;
pub mod live;
pub mod mode;
pub mod pipeline;

pub use backend::Backend;
pub use config::Config;
pub use inventory::{NodeId, ProcId};
pub use live::{Live, LiveError, Misfit, Moves};
pub use mode::Mode;
pub use pipeline::{MemberSpec, Pipeline, ScheduleError};

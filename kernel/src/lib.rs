//! The lain kernel: state, orchestration, the plugin host, the platform API and the CLI.
//!
//! Data flows one way: requests change desired state in the [`store`]; the kernel acts on it;
//! everything that differs between sites is decided by sandboxed WebAssembly [`plugin`]s.
//! `docs/architecture.md` shows which module owns each step; a citation "LAIN reference §name"
//! points at the section `#name` of `docs/lain-reference.md`.

#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod backup;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod cron;
pub mod kernel;
pub mod lifecycle;
pub mod monitor;
pub mod plugin;
pub mod router;
pub mod runtime;
pub mod schedule;
pub mod secrets;
pub mod spec;
pub mod store;

/// A small tmpfs for the full-disk tests.
#[cfg(test)]
mod full_disk;

/// Hostile inputs shared with the integration and end-to-end tests.
#[cfg(test)]
#[path = "../tests/common/hostile.rs"]
mod hostile;

//! The plugin host: everything that differs between sites runs here, as sandboxed WebAssembly
//! components loaded through the WIT package `lain:plugin@0.2.0` (and, hosted forever,
//! `0.1.0`: see [`legacy`] and `wit/`).
//!
//! - [`engine::PluginEngine`]: the wasmtime engines (Cranelift with the pooling allocator, Winch
//!   for a new component until its Cranelift build is ready; epoch interruption), the linkers, compilation with
//!   an on-disk cache, and the install-time checks.
//! - [`tiering`]: the background Cranelift builds of components first run on Winch.
//! - [`loaded::LoadedPlugin`]: a compiled, checked, pre-linked plugin and the machinery of one call
//!   under limits (CPU budget, memory cap, result size), with typed errors and quarantine.
//! - [`world`]: the five kinds ([`Kind`]), the WIT world each implements, their failure policies.
//! - [`kinds`]: typed entry points for each of the five kinds.
//! - [`registry::Registry`]: installed and built-in plugins, persisted in the state store.

pub mod bindings;
mod config;
pub mod engine;
pub mod error;
pub mod guest_log;
pub mod health;
pub mod kinds;
pub mod legacy;
pub mod limits;
pub mod loaded;
pub mod manifest;
pub mod registry;
pub mod state;
pub mod tiering;
pub mod world;

pub use config::Config;
pub use error::{CallError, Cause, InstallError};
pub use limits::Limits;
pub use loaded::LoadedPlugin;
pub use manifest::Manifest;
pub use world::{FailurePolicy, Kind};

//! lain's built-in plugins, compiled to WebAssembly components by this crate's build script and
//! embedded as bytes, plus the paths of the guest fixtures the tests use.
//!
//! The kernel registers [`BUILTINS`] at start-up and shows them as built-in; they are the same kind
//! of component a site installs, built from `plugins/<name>/`.

include!(concat!(env!("OUT_DIR"), "/artifacts.rs"));

//! Write lain plugins in Rust.
//!
//! A lain plugin is a WebAssembly component that the lain kernel loads in a sandbox. There are five
//! kinds; for each, this crate has one trait to implement and one macro to export it:
//!
//! | kind | trait | export macro | world |
//! |---|---|---|---|
//! | proc type | [`proc_type::ProcType`] | [`export_proc_type!`] | `lain:plugin/proc-type` |
//! | scheduling filter/scorer | [`scheduler::Scheduler`] | [`export_scheduler!`] | `lain:plugin/scheduler-filter-levels` (a `scheduler-filter` that may answer by levels) |
//! | backup hook | [`backup::BackupHook`] | [`export_backup_hook!`] | `lain:plugin/backup-hook` |
//! | monitoring exporter | [`monitor::Exporter`] | [`export_exporter!`] | `lain:plugin/monitor-exporter` |
//! | auth provider | [`auth::AuthProvider`] | [`export_auth_provider!`] | `lain:plugin/auth-provider` |
//!
//! Each trait has an associated `Config` type: the plugin's configuration (the defaults from its
//! manifest, with the operator's settings merged over them) is deserialised into it with serde
//! before [`new`](proc_type::ProcType::new) builds the plugin. The plugin value lives as long as the
//! component instance: the kernel makes a fresh instance per call for most kinds, and keeps a
//! long-lived one for schedulers (so their state survives between calls).
//!
//! The export macro also embeds the crate's `lain-plugin.toml` (next to its `Cargo.toml`) into the
//! component as the custom section `lain-plugin-manifest`, so the `.wasm` file is all an operator
//! installs:
//!
//! ```toml
//! name = "cron"
//! version = "0.1.0"
//! kind = "proc-type"            # proc-type | scheduler-filter | backup-hook | monitor-exporter | auth-provider
//! description = "Runs a command on a schedule"
//!
//! [config]                      # defaults, overridable by the operator
//! timezone = "UTC"
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`: the result in
//! `target/wasm32-wasip2/release/<crate>.wasm` already is a component. `plugins/template/` in the
//! lain repository is a complete starting point.
//!
//! What a plugin may touch is what its world grants: the [`host`] functions (log, config, granted
//! files, clock), and for backup hooks the volume under `/volume`. No network, no environment.
//!
//! Unit tests run on the host, where the [`host`] functions are unavailable. For them,
//! [`proc_type::Proc`] implements `Default` with LAIN's defaults, and the feature `testing` adds
//! the module `testing` (e.g. to check that a manifest's `[config]` matches the plugin's defaults;
//! its docs give the `[dev-dependencies]` line for a copy of the template). To test the built
//! component itself under the kernel's real host (its limits, its checks of what the plugin
//! returns, the whole `lain.yaml` parser), use the crate `lain-plugin-harness` in
//! `sdk-guest/harness`. `docs/plugins.md` in the lain repository is the authoring guide.

#![warn(missing_docs)]

pub mod bindings;

pub mod auth;
pub mod backup;
pub mod bitmap;
pub mod host;
pub mod monitor;
pub mod proc_type;
pub mod scheduler;
#[cfg(feature = "testing")]
pub mod testing;

pub use bindings::proc_type::lain::plugin::types::{
    BackupPolicy, EnvVar, HealthCheck, HttpProbe, Label, PluginError, Port, Principal, Probe,
    Problem, Protocol, StreamPort, Timestamp, Volume,
};

/// Re-exported for the export macros; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use serde_json;

    use crate::PluginError;
    use serde::de::DeserializeOwned;

    /// Loads the plugin's configuration from the host and deserialises it.
    pub fn load_config<C: DeserializeOwned>() -> Result<C, PluginError> {
        crate::parse_config(&crate::host::config_json())
    }
}

/// Deserialises a plugin configuration from its JSON text.
fn parse_config<C: serde::de::DeserializeOwned>(text: &str) -> Result<C, PluginError> {
    serde_json::from_str(text)
        .map_err(|e| PluginError::BadConfig(format!("plugin configuration: {e}")))
}

impl Problem {
    /// A problem at `path` (keys of the proc section, outermost first).
    pub fn at(path: &[&str], message: impl Into<String>) -> Self {
        Problem {
            path: path.iter().map(|s| s.to_string()).collect(),
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint on how to fix the problem.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Embeds `lain-plugin.toml` of the invoking crate as the component's manifest section.
#[doc(hidden)]
#[macro_export]
macro_rules! __embed_manifest {
    () => {
        #[cfg(target_family = "wasm")]
        #[unsafe(link_section = "lain-plugin-manifest")]
        #[used]
        static __LAIN_PLUGIN_MANIFEST: [u8; include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/lain-plugin.toml"
        ))
        .len()] = *include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/lain-plugin.toml"));
    };
}

/// Keeps the one plugin value of this component instance, built on first use from the config.
#[doc(hidden)]
#[macro_export]
macro_rules! __plugin_cell {
    ($ty:ty, $trait:path) => {
        thread_local! {
            static __LAIN_PLUGIN: ::std::cell::RefCell<Option<$ty>> =
                const { ::std::cell::RefCell::new(None) };
        }

        /// Runs `f` on the plugin value, building it first if needed.
        fn __lain_with<R>(
            f: impl FnOnce(&mut $ty) -> R,
        ) -> ::core::result::Result<R, $crate::PluginError> {
            __LAIN_PLUGIN.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    let config = $crate::__private::load_config::<<$ty as $trait>::Config>()?;
                    *slot = Some(<$ty as $trait>::new(config)?);
                }
                match slot.as_mut() {
                    Some(plugin) => Ok(f(plugin)),
                    None => Err($crate::PluginError::Other("plugin not initialised".into())),
                }
            })
        }
    };
}

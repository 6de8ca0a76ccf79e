//! Helpers for a plugin's unit tests on the host (feature `testing`).
//!
//! Turn the feature on for tests only, in the plugin's `[dev-dependencies]`, with the same path as
//! its `[dependencies]` line (cargo merges the two; the `.wasm` build does not get the feature).
//! In a copy of `plugins/template`, outside the lain repository:
//!
//! ```toml
//! [dev-dependencies]
//! lain-sdk-guest = { path = "/path/to/lain/sdk-guest", features = ["testing"] }
//! ```
//!
//! (A plugin inside the lain workspace, such as the built-in ones, writes
//! `lain-sdk-guest = { workspace = true, features = ["testing"] }` instead; that line does not
//! work in a copy, which has no lain workspace.)
//!
//! To run the built `.wasm` under the kernel's real host rather than call the Rust functions,
//! use the crate `lain-plugin-harness` (`sdk-guest/harness`).

use crate::PluginError;
use serde::de::DeserializeOwned;

/// The configuration a plugin gets when the operator sets nothing: the `[config]` table of the
/// manifest `manifest` (the text of a `lain-plugin.toml`), handed over as JSON the way the kernel
/// hands it over and deserialised the way the export macros deserialise it.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Config { timezone: String }
///
/// let manifest = "name = \"cron\"\nkind = \"proc-type\"\n[config]\ntimezone = \"UTC\"\n";
/// let config: Config = lain_sdk_guest::testing::manifest_config(manifest)?;
/// assert_eq!(config.timezone, "UTC");
/// # Ok::<(), lain_sdk_guest::PluginError>(())
/// ```
pub fn manifest_config<C: DeserializeOwned>(manifest: &str) -> Result<C, PluginError> {
    let bad = |e: String| PluginError::BadConfig(format!("lain-plugin.toml: {e}"));
    let mut manifest: toml::Table = toml::from_str(manifest).map_err(|e| bad(e.to_string()))?;
    let defaults = manifest
        .remove("config")
        .unwrap_or_else(|| toml::Table::new().into());
    let json = serde_json::to_string(&defaults).map_err(|e| bad(e.to_string()))?;
    crate::parse_config(&json)
}

//! Helpers for a plugin's unit tests on the host (feature `testing`, meant for
//! `[dev-dependencies]`: `lain-sdk-guest = { workspace = true, features = ["testing"] }`).

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

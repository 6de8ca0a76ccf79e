//! The plugin's configuration (defaults in `lain-plugin.toml`).

use lain_sdk_guest::PluginError;
use serde::Deserialize;

/// The `prometheus` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// URL path the kernel serves the metrics on.
    pub path: String,
    /// Append the batch's timestamp to every sample line.
    pub timestamps: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            path: "/metrics".into(),
            timestamps: false,
        }
    }
}

impl Config {
    /// Checks the settings. Errors name the key.
    pub fn check(&self) -> Result<(), PluginError> {
        if !self.path.starts_with('/') || self.path.chars().any(|c| c.is_whitespace() || c == '?') {
            return Err(PluginError::BadConfig(format!(
                "path: `{}` must be an absolute URL path without spaces or query",
                self.path
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::testing::manifest_config;

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let config: Config = manifest_config(include_str!("../lain-plugin.toml")).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.check().is_ok());
    }

    #[test]
    fn path_must_be_absolute() {
        for path in ["metrics", "", "/a b", "/m?x=1"] {
            let config = Config {
                path: path.into(),
                ..Config::default()
            };
            assert!(
                matches!(config.check(), Err(PluginError::BadConfig(m)) if m.starts_with("path: "))
            );
        }
    }
}

//! The plugin's configuration (defaults in `lain-plugin.toml`).

use crate::glob::Pattern;
use lain_sdk_guest::PluginError;
use serde::Deserialize;
use std::path::{Component, Path};

/// The `archive` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Glob patterns left out of every backup.
    pub exclude: Vec<String>,
    /// File at the volume root holding more patterns, one a line; `""` disables it.
    pub ignore_file: String,
    /// Walk into symbolic links to directories.
    pub follow_symlinks: bool,
    /// Planning fails if the volume holds more entries than this.
    pub max_entries: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            exclude: ["*.tmp", "*.swp", "*.sock", "lost+found"]
                .map(String::from)
                .to_vec(),
            ignore_file: ".lainbackupignore".into(),
            follow_symlinks: false,
            max_entries: 1_000_000,
        }
    }
}

impl Config {
    /// Checks the configuration and parses `exclude`. Errors name the key (and the index).
    pub fn patterns(&self) -> Result<Vec<Pattern>, PluginError> {
        let relative = Path::new(&self.ignore_file)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
        if !relative {
            return Err(PluginError::BadConfig(format!(
                "ignore_file: `{}` must be a path inside the volume, without `..`",
                self.ignore_file
            )));
        }
        if self.max_entries == 0 {
            return Err(PluginError::BadConfig(
                "max_entries: must be at least 1".into(),
            ));
        }
        self.exclude
            .iter()
            .enumerate()
            .map(|(i, text)| {
                Pattern::parse(text)
                    .map_err(|e| PluginError::BadConfig(format!("exclude[{i}]: {e}")))
            })
            .collect()
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
        assert!(config.patterns().is_ok_and(|p| p.len() == 4));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let bad_glob = Config {
            exclude: vec!["*.tmp".into(), "!x".into()],
            ..Config::default()
        };
        assert!(
            matches!(bad_glob.patterns(), Err(PluginError::BadConfig(m)) if m.starts_with("exclude[1]: "))
        );
        for file in ["../etc/passwd", "/etc/passwd", "a/../../b"] {
            let bad_file = Config {
                ignore_file: file.into(),
                ..Config::default()
            };
            assert!(
                matches!(bad_file.patterns(), Err(PluginError::BadConfig(m)) if m.starts_with("ignore_file: "))
            );
        }
        let zero = Config {
            max_entries: 0,
            ..Config::default()
        };
        assert!(
            matches!(zero.patterns(), Err(PluginError::BadConfig(m)) if m.starts_with("max_entries: "))
        );
    }
}

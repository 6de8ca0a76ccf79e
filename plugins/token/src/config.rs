//! The plugin's configuration (defaults in `lain-plugin.toml`).

use serde::Deserialize;

/// The `token` configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The known tokens.
    pub tokens: Vec<Entry>,
    /// Deny unknown bearer tokens instead of leaving them to the next provider.
    pub exclusive: bool,
}

/// One known token: whose it is, and the token by hash (or, for development, in plain text).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Entry {
    /// The principal's subject.
    pub user: String,
    /// The principal's groups.
    pub groups: Vec<String>,
    /// Hex of the SHA-256 of the token.
    pub sha256: Option<String>,
    /// The token itself; for development only.
    pub token: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use lain_sdk_guest::testing::manifest_config;

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let config: Config = manifest_config(include_str!("../lain-plugin.toml")).unwrap();
        assert_eq!(config, Config::default());
    }
}

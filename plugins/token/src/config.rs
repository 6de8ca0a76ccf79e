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

    #[test]
    fn manifest_defaults_match_the_built_in_ones() {
        let manifest: toml::Table = toml::from_str(include_str!("../lain-plugin.toml")).unwrap();
        let config = Config::deserialize(manifest["config"].clone()).unwrap();
        assert_eq!(config, Config::default());
    }
}

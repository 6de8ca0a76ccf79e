//! The built-in `token` auth provider: static bearer tokens with groups, from the configuration.
//!
//! Tokens are configured by their SHA-256 hash, so the configuration holds no secret. An unknown
//! bearer token is left to the next provider (for example `jwt`) unless `exclusive` is set.

mod config;
mod tokens;

use config::Config;
use lain_sdk_guest::PluginError;
use lain_sdk_guest::auth::*;
use lain_sdk_guest::host::{self, LogLevel};
use tokens::Tokens;

impl AuthProvider for Tokens {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let (tokens, plaintext) = Tokens::from_config(config)?;
        if !plaintext.is_empty() {
            let entries: Vec<String> = plaintext.iter().map(|i| format!("tokens[{i}]")).collect();
            host::log(
                LogLevel::Warn,
                "plaintext tokens configured: use `sha256` outside development",
                &[("entries", &entries.join(","))],
            );
        }
        Ok(tokens)
    }

    fn describe(&self) -> Result<ProviderInfo, PluginError> {
        Ok(ProviderInfo {
            summary: self.summary(),
        })
    }

    fn authenticate(&mut self, creds: Credentials) -> Result<AuthResult, PluginError> {
        Ok(self.check(&creds))
    }
}

lain_sdk_guest::export_auth_provider!(Tokens);

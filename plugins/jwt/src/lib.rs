//! The built-in `jwt` auth provider: accepts the HS256 and RS256 bearer tokens (JWT) of an
//! SSO/OIDC provider.
//!
//! Keys come from the configuration (inline PEM keys, an inline development secret) and from
//! files the operator granted by name (HS256 secrets, a JWKS document). What a token must
//! satisfy is described in [`verify`]; that check is a pure function of the token, the policy, the
//! keys and the time, tested without the host.

mod config;
mod keys;
#[cfg(test)]
mod test_keys;
mod verify;

use config::{Config, Policy};
use keys::Keys;
use lain_sdk_guest::PluginError;
use lain_sdk_guest::auth::*;
use lain_sdk_guest::host;

/// The plugin: the claim policy and the keys.
struct Jwt {
    policy: Policy,
    keys: Keys,
}

impl AuthProvider for Jwt {
    type Config = Config;

    fn new(config: Config) -> Result<Self, PluginError> {
        let policy = config.policy()?;
        let keys = Keys::load(&config, host::read_file)?;
        Ok(Jwt { policy, keys })
    }

    fn describe(&self) -> Result<ProviderInfo, PluginError> {
        Ok(ProviderInfo {
            summary: format!(
                "JWT bearer tokens from {} for {} ({} HS256 secret(s), {} RS256 key(s))",
                self.policy.issuer,
                self.policy.audience,
                self.keys.hmac.len(),
                self.keys.rsa.len()
            ),
        })
    }

    fn authenticate(&mut self, creds: Credentials) -> Result<AuthResult, PluginError> {
        if creds.scheme != "bearer" {
            return Ok(AuthResult::NotMine);
        }
        Ok(verify::verify(
            &creds.token,
            &self.policy,
            &self.keys,
            host::now_unix(),
        ))
    }
}

lain_sdk_guest::export_auth_provider!(Jwt);

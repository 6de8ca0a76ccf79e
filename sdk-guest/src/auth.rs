//! Auth providers: who a request is, and which groups they are in.
//!
//! A complete provider that accepts one shared bearer token from its configuration:
//!
//! ```no_run
//! use lain_sdk_guest::auth::*;
//! use lain_sdk_guest::{PluginError, Principal};
//!
//! #[derive(serde::Deserialize)]
//! struct Config { token: String, user: String }
//!
//! struct Shared(Config);
//!
//! impl AuthProvider for Shared {
//!     type Config = Config;
//!     fn new(config: Config) -> Result<Self, PluginError> {
//!         if config.token.len() < 16 { return Err(PluginError::BadConfig("token shorter than 16 bytes".into())) }
//!         Ok(Shared(config))
//!     }
//!     fn describe(&self) -> Result<ProviderInfo, PluginError> { Ok(ProviderInfo { summary: "one shared token".into() }) }
//!     fn authenticate(&mut self, creds: Credentials) -> Result<AuthResult, PluginError> {
//!         if creds.scheme != "bearer" { return Ok(AuthResult::NotMine) }
//!         if creds.token != self.0.token { return Ok(AuthResult::Denied("unknown token".into())) }
//!         Ok(AuthResult::Authenticated(Principal { subject: self.0.user.clone(), groups: vec![], provider: "shared".into(), expires_at: None }))
//!     }
//! }
//!
//! lain_sdk_guest::export_auth_provider!(Shared);
//! ```

pub use crate::bindings::auth_provider::exports::lain::plugin::authentication::{
    AuthResult, Credentials, ProviderInfo,
};

use crate::PluginError;

/// An auth provider. Implement it and export it with
/// [`export_auth_provider!`](crate::export_auth_provider).
pub trait AuthProvider: Sized + 'static {
    /// The plugin's configuration, deserialised from its effective JSON configuration.
    type Config: serde::de::DeserializeOwned;

    /// Builds the plugin from its configuration. Called once per component instance.
    fn new(config: Self::Config) -> Result<Self, PluginError>;

    /// A summary, or why the configuration is unusable.
    fn describe(&self) -> Result<ProviderInfo, PluginError>;

    /// Authenticates one request's credentials.
    fn authenticate(&mut self, creds: Credentials) -> Result<AuthResult, PluginError>;
}

/// Constant-time comparison of two byte strings, for secrets.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Exports an [`AuthProvider`] implementation as the component's `authentication` interface and
/// embeds the crate's `lain-plugin.toml` as its manifest.
#[macro_export]
macro_rules! export_auth_provider {
    ($ty:ty) => {
        const _: () = {
            use $crate::auth::AuthProvider as _;
            use $crate::bindings::auth_provider::exports::lain::plugin::authentication as __raw;
            $crate::__embed_manifest!();
            $crate::__plugin_cell!($ty, $crate::auth::AuthProvider);

            struct __LainAuthProvider;

            impl __raw::Guest for __LainAuthProvider {
                fn describe() -> Result<__raw::ProviderInfo, $crate::PluginError> {
                    __lain_with(|p| p.describe())?
                }
                fn authenticate(
                    creds: __raw::Credentials,
                ) -> Result<__raw::AuthResult, $crate::PluginError> {
                    __lain_with(move |p| p.authenticate(creds))?
                }
            }

            $crate::bindings::auth_provider::__export_auth_provider_world!(__LainAuthProvider);
        };
    };
}

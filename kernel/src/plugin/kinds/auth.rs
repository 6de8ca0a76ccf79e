//! Calls into auth-provider plugins.

use super::{call_fallible, within_limit};
use crate::plugin::bindings::authentication::{AuthResult, Credentials, Guest, ProviderInfo};
use crate::plugin::error::CallError;
use crate::plugin::loaded::LoadedPlugin;

/// An auth-provider plugin.
pub struct AuthPlugin<'a>(pub &'a LoadedPlugin);

impl AuthPlugin<'_> {
    /// A summary, or why the configuration is unusable.
    pub fn describe(&self) -> Result<ProviderInfo, CallError> {
        call_fallible(
            self.0,
            "describe",
            None,
            |g: &Guest, s| g.call_describe(s),
            |r| within_limit(self.0, r),
        )
    }

    /// Authenticates one request's credentials.
    pub fn authenticate(&self, creds: &Credentials) -> Result<AuthResult, CallError> {
        call_fallible(
            self.0,
            "authenticate",
            None,
            |g: &Guest, s| g.call_authenticate(s, creds),
            |r| within_limit(self.0, r),
        )
    }
}

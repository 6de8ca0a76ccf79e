//! Calls into auth-provider plugins.

use super::{arg_v0_1, call_fallible, converted, is_v0_1, within_limit};
use crate::plugin::bindings::authentication::{AuthResult, Credentials, Guest, ProviderInfo};
use crate::plugin::bindings::v0_1::authentication::Guest as GuestV0_1;
use crate::plugin::error::CallError;
use crate::plugin::loaded::LoadedPlugin;

/// An auth-provider plugin.
pub struct AuthPlugin<'a>(pub &'a LoadedPlugin);

impl AuthPlugin<'_> {
    /// A summary, or why the configuration is unusable.
    pub fn describe(&self) -> Result<ProviderInfo, CallError> {
        if is_v0_1(self.0) {
            return call_fallible(
                self.0,
                "describe",
                None,
                |g: &GuestV0_1, s| converted(g.call_describe(s)),
                |r| within_limit(self.0, r),
            );
        }
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
        if is_v0_1(self.0) {
            let old = arg_v0_1(self.0, "authenticate", creds)?;
            return call_fallible(
                self.0,
                "authenticate",
                None,
                |g: &GuestV0_1, s| converted(g.call_authenticate(s, &old)),
                |r| within_limit(self.0, r),
            );
        }
        call_fallible(
            self.0,
            "authenticate",
            None,
            |g: &Guest, s| g.call_authenticate(s, creds),
            |r| within_limit(self.0, r),
        )
    }
}

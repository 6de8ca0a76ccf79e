//! Calls into auth-provider plugins.

use super::{within_limit, wrong_kind};
use crate::plugin::bindings::authentication::{AuthResult, Credentials, ProviderInfo};
use crate::plugin::error::{CallError, Cause};
use crate::plugin::loaded::{Exports, LoadedPlugin};

/// An auth-provider plugin.
pub struct AuthPlugin<'a>(pub &'a LoadedPlugin);

impl AuthPlugin<'_> {
    /// A summary, or why the configuration is unusable.
    pub fn describe(&self) -> Result<ProviderInfo, CallError> {
        let Exports::AuthProvider(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "describe"));
        };
        let answer = self.0.call(
            "describe",
            None,
            |store, instance, _| idx.load(&mut *store, instance)?.call_describe(&mut *store),
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("describe", Cause::Guest(e)))
    }

    /// Authenticates one request's credentials.
    pub fn authenticate(&self, creds: &Credentials) -> Result<AuthResult, CallError> {
        let Exports::AuthProvider(idx) = self.0.exports() else {
            return Err(wrong_kind(self.0, "authenticate"));
        };
        let answer = self.0.call(
            "authenticate",
            None,
            |store, instance, _| {
                idx.load(&mut *store, instance)?
                    .call_authenticate(&mut *store, creds)
            },
            |r| within_limit(self.0, r),
        )?;
        answer.map_err(|e| self.0.error("authenticate", Cause::Guest(e)))
    }
}

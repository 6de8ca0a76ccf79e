//! Authentication: who an API caller is, decided by the chain of enabled auth-provider plugins.
//!
//! Providers are asked in the configured order. The first that recognises the credentials
//! decides (authenticated or denied); `not-mine` passes to the next. A provider that faults or is
//! quarantined counts as a denial under its default policy (fail closed); an operator who sets its
//! policy to `open` makes the chain skip it instead. If no provider recognises the credentials, the
//! caller is denied. Denial reasons go to the log, never to the caller.

use crate::plugin::bindings::authentication::{AuthResult, Credentials};
use crate::plugin::bindings::types::Principal;
use crate::plugin::kinds::auth::AuthPlugin;
use crate::plugin::registry::Registry;
use crate::plugin::{Cause, FailurePolicy};
use std::sync::Arc;

/// What the chain concluded about a request.
#[derive(Debug)]
pub enum Outcome {
    /// A provider vouched for the caller.
    Authenticated(Principal),
    /// No credentials were sent.
    Anonymous,
    /// Credentials were sent and refused; the reason is for the log only.
    Denied(String),
}

/// The configured chain of auth providers.
#[derive(Clone)]
pub struct AuthChain {
    registry: Arc<Registry>,
    providers: Vec<String>,
}

impl AuthChain {
    /// A chain over the named providers, in order.
    pub fn new(registry: Arc<Registry>, providers: Vec<String>) -> AuthChain {
        AuthChain {
            registry,
            providers,
        }
    }

    /// Authenticates the value of an `Authorization` header. Blocking: runs plugin calls.
    pub fn authenticate(&self, authorization: Option<&str>) -> Outcome {
        let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) else {
            return Outcome::Anonymous;
        };
        let (scheme, token) = header.split_once(' ').unwrap_or((header, ""));
        let creds = Credentials {
            scheme: scheme.to_ascii_lowercase(),
            token: token.trim().to_string(),
        };
        for name in &self.providers {
            let plugin = match self.registry.get(name) {
                None => {
                    tracing::warn!(provider = %name, "configured auth provider is not installed; skipped");
                    continue;
                }
                Some(Err(_)) => continue,
                Some(Ok(plugin)) => plugin,
            };
            match AuthPlugin(&plugin).authenticate(&creds) {
                Ok(AuthResult::Authenticated(mut principal)) => {
                    principal.provider = name.clone();
                    return Outcome::Authenticated(principal);
                }
                Ok(AuthResult::NotMine) => continue,
                Ok(AuthResult::Denied(reason)) => {
                    return Outcome::Denied(format!("{name}: {reason}"));
                }
                Err(e) => {
                    let skip = plugin.policy() == FailurePolicy::Open
                        && !matches!(e.cause, Cause::Guest(_));
                    tracing::warn!(provider = %name, skip, "auth provider failed: {e}");
                    if !skip {
                        return Outcome::Denied(e.to_string());
                    }
                }
            }
        }
        Outcome::Denied("no auth provider recognised the credentials".into())
    }
}

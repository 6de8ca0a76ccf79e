//! Who may do what: authentication through auth-provider plugins, the rights table, app
//! maintainers, cluster admins and the audit log.
//!
//! Every API request passes [`crate::api::guard`], which asks [`Access`]: who is calling
//! ([`Access::authenticate`]: the local bootstrap token, then the provider [`chain`]), and may
//! they use this route ([`Access::authorize`] with the route's [`rights::Rule`]). Refusals are
//! 401 (no or invalid credentials) or 403 (not allowed) and happen before any handler runs, so a
//! refused call changes nothing. Calls that change something are written to the [`audit`] log,
//! refused ones included.

pub mod audit;
pub mod bootstrap;
pub mod chain;
pub mod maintainers;
pub mod rights;

pub use chain::{AuthChain, Outcome};

use crate::config::KernelConfig;
use crate::plugin::bindings::types::Principal;
use crate::plugin::registry::Registry;
use crate::store::{Store, StoreError};
use rights::Right;
use std::sync::Arc;

/// An authenticated caller, as handlers see it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, as the provider vouched.
    pub principal: Principal,
    /// Whether the caller is a cluster admin.
    pub admin: bool,
}

/// Why a caller may not do something (answered as 403).
#[derive(Debug, thiserror::Error)]
pub enum Denied {
    /// The right is missing.
    #[error("`{subject}` lacks the `{right}` right{on}: {who}")]
    Right {
        /// The caller.
        subject: String,
        /// The right's name.
        right: &'static str,
        /// ` on app `x`` or empty.
        on: String,
        /// Who holds the right.
        who: &'static str,
    },
    /// The store could not be read to decide (answered as 503, fail closed).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Authentication and authorization of API calls.
pub struct Access {
    store: Arc<dyn Store>,
    chain: AuthChain,
    bootstrap: Option<bootstrap::Bootstrap>,
    admin_groups: Vec<String>,
    admin_users: Vec<String>,
    /// The audit log.
    pub audit: audit::AuditLog,
}

impl Access {
    /// The access rules of a kernel configured by `config`; creates the bootstrap token file
    /// when the local bootstrap is on.
    pub fn new(
        config: &KernelConfig,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Access> {
        let bootstrap = config
            .bootstrap_token_file()
            .map(|f| bootstrap::Bootstrap::open(&f))
            .transpose()?;
        Ok(Access {
            store,
            chain: AuthChain::new(registry, config.auth.providers.clone()),
            bootstrap,
            admin_groups: config.auth.admin_groups.clone(),
            admin_users: config.auth.admin_users.clone(),
            audit: audit::AuditLog::new(config.auth.audit_keep),
        })
    }

    /// The bootstrap token's file, when the local bootstrap is on.
    pub fn bootstrap_file(&self) -> Option<&std::path::Path> {
        self.bootstrap.as_ref().map(|b| b.file.as_path())
    }

    /// Authenticates an `Authorization` header value: the bootstrap token, else the provider
    /// chain. Blocking: runs plugin calls.
    pub fn authenticate(&self, authorization: Option<&str>) -> Outcome {
        if let (Some(b), Some(token)) = (
            &self.bootstrap,
            authorization.and_then(|h| h.trim().strip_prefix("Bearer ")),
        ) && let Some(principal) = b.check(token.trim())
        {
            return Outcome::Authenticated(principal);
        }
        self.chain.authenticate(authorization)
    }

    /// The caller `principal` is.
    pub fn caller(&self, principal: Principal) -> Caller {
        let admin = principal.provider == bootstrap::BOOTSTRAP
            || self.admin_users.contains(&principal.subject)
            || principal
                .groups
                .iter()
                .any(|g| self.admin_groups.contains(g));
        Caller { principal, admin }
    }

    /// Whether `caller` holds `right` (on `app` for per-app rights). Blocking: reads the store.
    pub fn authorize(
        &self,
        caller: &Caller,
        right: Right,
        app: Option<&str>,
    ) -> Result<(), Denied> {
        let denied = |who| {
            Err(Denied::Right {
                subject: caller.principal.subject.clone(),
                right: right.name(),
                on: app.map(|a| format!(" on app `{a}`")).unwrap_or_default(),
                who,
            })
        };
        match right {
            Right::Public | Right::Authenticated => Ok(()),
            _ if caller.admin => Ok(()),
            Right::Admin => denied("only cluster admins hold it"),
            Right::Read | Right::Operate | Right::Secrets => {
                let Some(app) = app else {
                    return denied("the route names no app");
                };
                if self.maintains(caller, app)? {
                    Ok(())
                } else {
                    denied("only the app's maintainers and cluster admins hold it")
                }
            }
        }
    }

    /// Whether `caller` is one of `app`'s maintainers.
    pub fn maintains(&self, caller: &Caller, app: &str) -> Result<bool, StoreError> {
        Ok(maintainers::get(&*self.store, app)?
            .admit(&caller.principal.subject, &caller.principal.groups))
    }
}

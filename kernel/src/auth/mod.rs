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
mod config;
pub mod maintainers;
pub mod rights;

pub use chain::{AuthChain, Outcome};
pub use config::Config;

use crate::plugin::bindings::types::Principal;
use crate::plugin::registry::Registry;
use crate::store::{Store, StoreError};
use rights::Right;
use sha2::Digest as _;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An authenticated caller, as handlers see it.
#[derive(Clone, Debug)]
pub struct Caller {
    /// Who, as the provider vouched.
    pub principal: Principal,
    /// Whether the caller is a cluster admin.
    pub admin: bool,
}

impl Caller {
    /// `provider:subject`: who the caller is, unambiguous across providers.
    pub fn id(&self) -> String {
        format!("{}:{}", self.principal.provider, self.principal.subject)
    }
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

/// How long a provider's positive answer is reused for the same credentials (never beyond the
/// principal's `expires_at`, and forgotten when plugins change). A provider plugin call costs a
/// thread hand-off (~20 µs, the wall-clock bound needs it); scripts and the CLI send the same
/// token many times a second. Refusals are never cached.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);
/// Cached credentials at most; the cache is emptied when full.
const AUTH_CACHE_MAX: usize = 4096;

struct Remembered {
    caller: Caller,
    until: Instant,
    generation: u64,
}

/// Authentication and authorization of API calls.
pub struct Access {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    chain: AuthChain,
    cache: parking_lot::Mutex<HashMap<[u8; 32], Remembered>>,
    bootstrap: Option<bootstrap::Bootstrap>,
    admin_groups: Vec<String>,
    admin_users: Vec<String>,
    metrics_groups: Vec<String>,
    metrics_users: Vec<String>,
    register_groups: Vec<String>,
    register_users: Vec<String>,
    /// The audit log.
    pub audit: audit::AuditLog,
}

impl Access {
    /// The access rules `[auth]` configures; with `bootstrap_token` (the local bootstrap is on),
    /// creates that token file when missing.
    pub fn new(
        config: &Config,
        bootstrap_token: Option<&Path>,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
    ) -> anyhow::Result<Access> {
        for (key, users) in [
            ("admin_users", &config.admin_users),
            ("register_users", &config.register_users),
            ("metrics_users", &config.metrics_users),
        ] {
            for user in users {
                maintainers::check_user(user, &config.providers)
                    .map_err(|e| anyhow::anyhow!("`[auth] {key}`: {e}"))?;
            }
        }
        anyhow::ensure!(
            !config.providers.iter().any(|p| p == bootstrap::BOOTSTRAP),
            "`[auth] providers`: `{}` is the local bootstrap's name; no provider may use it",
            bootstrap::BOOTSTRAP
        );
        maintainers::scope_legacy_users(&*store, &config.providers)?;
        let bootstrap = bootstrap_token
            .map(bootstrap::Bootstrap::open)
            .transpose()?;
        Ok(Access {
            store,
            chain: AuthChain::new(registry.clone(), config.providers.clone()),
            registry,
            cache: parking_lot::Mutex::new(HashMap::new()),
            bootstrap,
            admin_groups: config.admin_groups.clone(),
            admin_users: config.admin_users.clone(),
            metrics_groups: config.metrics_groups.clone(),
            metrics_users: config.metrics_users.clone(),
            register_groups: config.register_groups.clone(),
            register_users: config.register_users.clone(),
            audit: audit::AuditLog::new(config.audit_keep),
        })
    }

    /// The bootstrap token's file, when the local bootstrap is on.
    pub fn bootstrap_file(&self) -> Option<&std::path::Path> {
        self.bootstrap.as_ref().map(|b| b.file.as_path())
    }

    /// Authenticates an `Authorization` header value: the bootstrap token (a cluster admin),
    /// else the provider chain. Anything but a caller is the chain's outcome (anonymous or
    /// denied). Blocking: runs plugin calls.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Caller, Outcome> {
        if let Some(caller) = self.bootstrap_caller(authorization) {
            return Ok(caller);
        }
        let generation = self.registry.generation();
        match self.chain.authenticate(authorization) {
            Outcome::Authenticated(principal) => {
                let caller = self.caller(principal);
                self.remember(authorization, &caller, generation);
                Ok(caller)
            }
            other => Err(other),
        }
    }

    /// The caller these credentials authenticated as within [`AUTH_CACHE_TTL`], if the plugins
    /// have not changed since.
    pub fn cached_caller(&self, authorization: Option<&str>) -> Option<Caller> {
        let key = cache_key(authorization?);
        let mut cache = self.cache.lock();
        let hit = cache.get(&key)?;
        if hit.until > Instant::now() && hit.generation == self.registry.generation() {
            return Some(hit.caller.clone());
        }
        cache.remove(&key);
        None
    }

    fn remember(&self, authorization: Option<&str>, caller: &Caller, generation: u64) {
        let Some(header) = authorization else { return };
        let mut ttl = AUTH_CACHE_TTL;
        if let Some(expires) = caller.principal.expires_at {
            let left = expires - crate::clock::unix_secs();
            if left <= 0 {
                return;
            }
            ttl = ttl.min(Duration::from_secs(left as u64));
        }
        let mut cache = self.cache.lock();
        if cache.len() >= AUTH_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            cache_key(header),
            Remembered {
                caller: caller.clone(),
                until: Instant::now() + ttl,
                generation,
            },
        );
    }

    /// The bootstrap admin, when `authorization` carries the bootstrap token. Cheap (one
    /// SHA-256) and never blocks, so it runs before any work is handed to another thread.
    pub fn bootstrap_caller(&self, authorization: Option<&str>) -> Option<Caller> {
        let token = authorization?.trim().strip_prefix("Bearer ")?;
        let principal = self.bootstrap.as_ref()?.check(token.trim())?;
        Some(Caller {
            principal,
            admin: true,
        })
    }

    /// The caller a provider's `principal` is: an admin by `[auth] admin_users`
    /// (`provider:subject`) or `admin_groups`.
    fn caller(&self, principal: Principal) -> Caller {
        let id = format!("{}:{}", principal.provider, principal.subject);
        let admin = self.admin_users.contains(&id)
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
                subject: caller.id(),
                right: right.name(),
                on: app.map(|a| format!(" on app `{a}`")).unwrap_or_default(),
                who,
            })
        };
        match right {
            Right::Public | Right::Authenticated => Ok(()),
            _ if caller.admin => Ok(()),
            Right::Admin => denied("only cluster admins hold it"),
            Right::Metrics => {
                let p = &caller.principal;
                if self.metrics_users.contains(&caller.id())
                    || p.groups.iter().any(|g| self.metrics_groups.contains(g))
                {
                    Ok(())
                } else {
                    denied(
                        "only cluster admins and the principals in `[auth] metrics_users` or `metrics_groups` hold it",
                    )
                }
            }
            Right::Register => {
                let p = &caller.principal;
                if self.register_users.contains(&caller.id())
                    || p.groups.iter().any(|g| self.register_groups.contains(g))
                {
                    Ok(())
                } else {
                    denied(
                        "cluster admins and the principals of `[auth] register_users` and `register_groups` hold it",
                    )
                }
            }
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

    /// Whether `caller` may build app `app`: the `operate` right on an existing app, the
    /// `register` right for a new one, whose registrant becomes its maintainer; the writes that
    /// go with registering it. Blocking: reads the store.
    pub fn admit_build(
        &self,
        caller: &Caller,
        app: &str,
        exists: bool,
    ) -> Result<Vec<crate::store::Op>, Denied> {
        if exists {
            self.authorize(caller, Right::Operate, Some(app))?;
            return Ok(Vec::new());
        }
        self.authorize(caller, Right::Register, Some(app))?;
        Ok(vec![maintainers::first(app, &caller.id())?])
    }

    /// The `items` whose app (`app_of`) `caller` may read, in order. Blocking: reads the store;
    /// a store that cannot be read fails the whole answer rather than hiding items.
    pub fn readable<T>(
        &self,
        caller: &Caller,
        items: Vec<T>,
        app_of: impl Fn(&T) -> &str,
    ) -> Result<Vec<T>, StoreError> {
        let mut visible = Vec::with_capacity(items.len());
        for item in items {
            match self.authorize(caller, Right::Read, Some(app_of(&item))) {
                Ok(()) => visible.push(item),
                Err(Denied::Store(e)) => return Err(e),
                Err(Denied::Right { .. }) => {}
            }
        }
        Ok(visible)
    }

    /// Whether `caller` is one of `app`'s maintainers (a resource instance's are its client's).
    pub fn maintains(&self, caller: &Caller, app: &str) -> Result<bool, StoreError> {
        // A resource instance `resource.<res>.<client>` is its client's: the client's maintainers
        // maintain it.
        let app = crate::spec::template::instance_of(app).map_or(app, |(_, client)| client);
        Ok(maintainers::get(&*self.store, app)?.admit(&caller.id(), &caller.principal.groups))
    }
}

/// The cache's key for an `Authorization` header: its SHA-256, so no token is kept in memory
/// longer than the request.
fn cache_key(header: &str) -> [u8; 32] {
    sha2::Sha256::digest(header.as_bytes()).into()
}

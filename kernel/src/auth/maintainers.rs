//! An app's maintainers (LAIN's app roles): the users and groups who may read, operate it and
//! manage its secrets. Kept at `maintainers/<app>`, apart from the app record, so changing them
//! never races with the reconciler's writes to the app.
//!
//! A user is `provider:subject` (`token:alice`, `jwt:alice`, `bootstrap:bootstrap`): each auth
//! provider names its own principals, so a subject means nothing without its provider (a
//! `token` user named `bootstrap` is not the local bootstrap). Records written before users were
//! scoped are rewritten once by [`scope_legacy_users`].

use crate::store::{Expect, Op, Store, StoreError, get_json, put_json};
use std::collections::BTreeSet;

/// Set once every stored maintainer user is `provider:subject`.
pub const SCOPED: &str = "kernel/maintainers-scoped";

/// The maintainers of one app.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Maintainers {
    /// Principals, as `provider:subject`.
    pub users: BTreeSet<String>,
    /// Groups whose members are maintainers.
    pub groups: BTreeSet<String>,
}

/// Which kind of member a maintainer entry names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberKind {
    /// A subject.
    Users,
    /// A group.
    Groups,
}

impl Maintainers {
    /// Whether the principal `id` (`provider:subject`) with `groups` is one of them.
    pub fn admit(&self, id: &str, groups: &[String]) -> bool {
        self.users.contains(id) || groups.iter().any(|g| self.groups.contains(g))
    }

    /// No user and no group.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty() && self.groups.is_empty()
    }

    fn set(&mut self, kind: MemberKind) -> &mut BTreeSet<String> {
        match kind {
            MemberKind::Users => &mut self.users,
            MemberKind::Groups => &mut self.groups,
        }
    }
}

/// The store key of `app`'s maintainers.
pub fn key(app: &str) -> String {
    format!("maintainers/{app}")
}

/// `app`'s maintainers (none recorded: empty).
pub fn get(store: &dyn Store, app: &str) -> Result<Maintainers, StoreError> {
    Ok(get_json(store, &key(app))?.unwrap_or_default())
}

/// The write that makes the principal `id` (`provider:subject`) the only maintainer of a new
/// app.
pub fn first(app: &str, id: &str) -> Result<Op, StoreError> {
    let m = Maintainers {
        users: [id.to_string()].into(),
        groups: BTreeSet::new(),
    };
    put_json(&key(app), &m)
}

/// Why a maintainer change was refused; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The member to remove is not one.
    #[error("`{name}` is not a maintainer of `{app}`")]
    NotAMaintainer {
        /// The app.
        app: String,
        /// The member named.
        name: String,
    },
    /// Removing it would leave the app without maintainers.
    #[error("`{name}` is the last maintainer of `{app}`; add another one first")]
    LastMaintainer {
        /// The app.
        app: String,
        /// The member named.
        name: String,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds (or with `add == false` removes) a member; the result. Removing the last member is
/// refused: an app without maintainers could only be reached by admins.
pub fn change(
    store: &dyn Store,
    app: &str,
    kind: MemberKind,
    name: &str,
    add: bool,
) -> Result<Maintainers, ChangeError> {
    let key = key(app);
    crate::store::transact(store, &key, |txn| {
        let mut m: Maintainers = txn.get_json(&key)?.unwrap_or_default();
        let changed = if add {
            m.set(kind).insert(name.to_string())
        } else {
            m.set(kind).remove(name)
        };
        let refused = |last: bool| {
            let (app, name) = (app.to_string(), name.to_string());
            if last {
                ChangeError::LastMaintainer { app, name }
            } else {
                ChangeError::NotAMaintainer { app, name }
            }
        };
        if !add && !changed {
            return Err(refused(false));
        }
        if m.is_empty() {
            return Err(refused(true));
        }
        if changed {
            txn.put_json(&key, &m)?;
        }
        Ok(m)
    })
}

/// Whether `name` is a user entry `provider:subject` naming one of `providers` (or the local
/// bootstrap); the message says what to write instead.
pub fn check_user(name: &str, providers: &[String]) -> Result<(), String> {
    let known =
        |p: &str| p == crate::auth::bootstrap::BOOTSTRAP || providers.iter().any(|k| k == p);
    match name.split_once(':') {
        Some((provider, subject)) if !subject.is_empty() && known(provider) => Ok(()),
        Some((provider, subject)) if !subject.is_empty() => Err(format!(
            "`{provider}` in `{name}` is not a configured auth provider (providers: {})",
            providers.join(", ")
        )),
        _ => Err(format!(
            "a user is `provider:subject`, e.g. `{}:{}` (providers: {}): a subject means nothing \
             without the provider that vouches for it",
            providers.first().map_or("token", String::as_str),
            if name.is_empty() { "alice" } else { name },
            providers.join(", ")
        )),
    }
}

/// Once per store: rewrites the maintainer users recorded before users were scoped (bare
/// subjects). `bootstrap` becomes `bootstrap:bootstrap` only (the local bootstrap registered
/// those apps; a provider's user of that name never maintained them legitimately); any other
/// subject `s` becomes `p:s` for each of `providers`, so everyone who maintained an app still
/// does, and `lain maintainer list` shows whom to remove. Returns how many records changed.
pub fn scope_legacy_users(store: &dyn Store, providers: &[String]) -> Result<usize, StoreError> {
    for _ in 0..16 {
        if store.get(SCOPED)?.is_some() {
            return Ok(0);
        }
        let mut ops = Vec::new();
        let mut expect = vec![Expect {
            key: SCOPED.into(),
            value: None,
        }];
        for (key, raw) in store.list("maintainers/")? {
            let mut m: Maintainers = serde_json::from_slice(&raw)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))?;
            m.users = m
                .users
                .iter()
                .flat_map(|subject| {
                    if subject == crate::auth::bootstrap::BOOTSTRAP {
                        vec![format!("{subject}:{subject}")]
                    } else {
                        providers.iter().map(|p| format!("{p}:{subject}")).collect()
                    }
                })
                .collect();
            ops.push(put_json(&key, &m)?);
            expect.push(Expect {
                key,
                value: Some(raw),
            });
        }
        let changed = ops.len();
        ops.push(Op::Put(SCOPED.into(), b"1".to_vec()));
        if store.apply_if(&expect, ops)?.is_some() {
            if changed > 0 {
                tracing::warn!(
                    records = changed,
                    "maintainer users are now `provider:subject`; bare subjects were given every configured provider: check `lain maintainer list`"
                );
            }
            return Ok(changed);
        }
    }
    Err(StoreError(
        "maintainers kept changing while scoping their users".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_subjects_are_scoped_once_and_bootstrap_only_to_the_bootstrap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            crate::store::embedded::EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
        let legacy = serde_json::json!({"users": ["bootstrap", "alice"], "groups": ["dev"]});
        store
            .apply(vec![Op::Put(key("a"), legacy.to_string().into_bytes())])
            .expect("put");
        let providers = vec!["token".to_string(), "jwt".to_string()];
        assert_eq!(scope_legacy_users(&store, &providers).expect("scope"), 1);
        let m = get(&store, "a").expect("get");
        let users: Vec<&str> = m.users.iter().map(String::as_str).collect();
        assert_eq!(users, ["bootstrap:bootstrap", "jwt:alice", "token:alice"]);
        assert!(!m.admit("token:bootstrap", &[]));
        assert!(m.admit("bootstrap:bootstrap", &[]));
        assert!(m.admit("jwt:bob", &["dev".into()]));
        assert_eq!(scope_legacy_users(&store, &providers).expect("again"), 0);
        assert_eq!(get(&store, "a").expect("get"), m, "only once");
    }

    #[test]
    fn concurrent_additions_are_both_kept() {
        let (_dir, store) = crate::store::cas::tests::store();
        change(&*store, "a", MemberKind::Users, "token:alice", true).expect("alice");
        let other = store.clone();
        crate::store::cas::tests::interleave(move || {
            change(&*other, "a", MemberKind::Users, "token:bob", true).expect("bob");
        });
        change(&*store, "a", MemberKind::Groups, "dev", true).expect("dev");
        let m = get(&*store, "a").expect("get");
        assert!(
            m.users.contains("token:bob"),
            "the concurrent addition is kept: {m:?}"
        );
        assert!(
            m.users.contains("token:alice") && m.groups.contains("dev"),
            "{m:?}"
        );
    }

    #[test]
    fn user_entries_name_a_provider() {
        let providers = vec!["token".to_string(), "jwt".to_string()];
        assert!(check_user("token:alice", &providers).is_ok());
        assert!(check_user("jwt:urn:x:alice", &providers).is_ok());
        assert!(check_user("bootstrap:bootstrap", &providers).is_ok());
        let bare = check_user("alice", &providers).expect_err("bare");
        assert!(bare.contains("token:alice"), "{bare}");
        assert!(check_user("ldap:alice", &providers).is_err());
        assert!(check_user("token:", &providers).is_err());
    }
}

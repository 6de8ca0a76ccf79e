//! An app's maintainers (LAIN's app roles): the users and groups who may read, operate it and
//! manage its secrets. Kept at `maintainers/<app>`, apart from the app record, so changing them
//! never races with the reconciler's writes to the app.

use crate::store::{Op, Store, StoreError, get_json, put_json};
use std::collections::BTreeSet;

/// The maintainers of one app.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub struct Maintainers {
    /// Subjects.
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
    /// Whether a principal with `subject` and `groups` is one of them.
    pub fn admit(&self, subject: &str, groups: &[String]) -> bool {
        self.users.contains(subject) || groups.iter().any(|g| self.groups.contains(g))
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

/// The write that makes `subject` the only maintainer of a new app.
pub fn first(app: &str, subject: &str) -> Result<Op, StoreError> {
    let m = Maintainers {
        users: [subject.to_string()].into(),
        groups: BTreeSet::new(),
    };
    put_json(&key(app), &m)
}

/// Adds (or with `add == false` removes) a member; the result. Removing the last member is
/// refused: an app without maintainers could only be reached by admins.
pub fn change(
    store: &dyn Store,
    app: &str,
    kind: MemberKind,
    name: &str,
    add: bool,
) -> Result<Result<Maintainers, String>, StoreError> {
    let mut m = get(store, app)?;
    let changed = if add {
        m.set(kind).insert(name.to_string())
    } else {
        m.set(kind).remove(name)
    };
    if !add && !changed {
        return Ok(Err(format!("`{name}` is not a maintainer of `{app}`")));
    }
    if m.is_empty() {
        return Ok(Err(format!(
            "`{name}` is the last maintainer of `{app}`; add another one first"
        )));
    }
    if changed {
        store.apply(vec![put_json(&key(app), &m)?])?;
    }
    Ok(Ok(m))
}

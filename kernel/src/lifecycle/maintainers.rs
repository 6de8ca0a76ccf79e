//! An app's maintainers as requests change them: one call per request, the app checked first.

use super::{Lifecycle, LifecycleError};
use crate::auth::maintainers::{self, ChangeError, Maintainers, MemberKind};

/// Why a maintainer change did not happen; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum MaintainerError {
    /// No such app, a member that is no `provider:subject` of a configured provider, or the
    /// store failed.
    #[error(transparent)]
    App(#[from] LifecycleError),
    /// The change itself was refused.
    #[error(transparent)]
    Refused(#[from] ChangeError),
}

impl Lifecycle {
    /// `app`'s maintainers; an unknown app is [`LifecycleError::NotFound`].
    pub fn maintainers(&self, app: &str) -> Result<Maintainers, LifecycleError> {
        self.app(app)?;
        Ok(maintainers::get(self.store(), app)?)
    }

    /// Adds (`add`) or removes the member `name` of `kind`: a user must be `provider:subject` of
    /// a configured provider; the last maintainer cannot be removed.
    pub fn change_maintainer(
        &self,
        app: &str,
        kind: MemberKind,
        name: &str,
        add: bool,
    ) -> Result<Maintainers, MaintainerError> {
        if kind == MemberKind::Users && add {
            maintainers::check_user(name, &self.config().auth.providers)
                .map_err(LifecycleError::Invalid)?;
        }
        self.app(app)?;
        Ok(maintainers::change(self.store(), app, kind, name, add)?)
    }
}

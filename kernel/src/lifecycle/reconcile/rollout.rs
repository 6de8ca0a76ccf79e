//! A failed rollout: the app goes back to its previous deployment (LAIN's automatic rollback),
//! or, when it may not, records why the rollout failed.

use crate::lifecycle::LifecycleError;
use crate::lifecycle::state::Records;

/// Records that the rollout of `release` of `app` failed for `reason`: back to the previous
/// deployment if the current one is `release` and may roll back automatically.
pub fn failed(
    records: &Records,
    app: &str,
    release: &str,
    reason: &str,
) -> Result<(), LifecycleError> {
    records
        .update_app(app, |record| {
            let Some(current) = &record.deployed else {
                return Ok(());
            };
            if current.release != release {
                return Ok(());
            }
            let message = format!("rollout of release {release} failed: {reason}");
            if current.auto_rollback
                && let Some(mut previous) = record.history.pop()
            {
                tracing::warn!(
                    app,
                    release,
                    "{message}; rolling back to {}",
                    previous.release
                );
                previous.deployed_at = crate::clock::unix_secs();
                previous.auto_rollback = false;
                record.last_error = Some(format!(
                    "rollout of release {release} failed and was rolled back to {}: {reason}",
                    previous.release
                ));
                record.deployed = Some(previous);
            } else if record.last_error.as_deref() != Some(message.as_str()) {
                tracing::warn!(app, release, "{message}");
                record.last_error = Some(message);
            }
            Ok(())
        })
        .map(|_| ())
}

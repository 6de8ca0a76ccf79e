//! Volumes: where each instance number's volumes live, their sizes, and moving them to another
//! node (with the right to restore backups: the app's maintainers and cluster admins, audited).

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::backup::Migrated;
use crate::lifecycle::volumes::VolumeView;
use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use serde::Deserialize;

/// The volumes of an app's instances: node, paths, since when, and sizes where the kernel's
/// host holds them.
#[utoipa::path(get, path = "/api/v1/apps/{app}/volumes", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 200, body = Vec<VolumeView>), (status = 404, body = ErrorBody)))]
pub async fn app(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<VolumeView>>, ApiError> {
    let lc = state.lifecycle.clone();
    Ok(Json(blocking(move || Ok(lc.volumes(Some(&app))?)).await?))
}

/// The volumes of every app (cluster admins).
#[utoipa::path(get, path = "/api/v1/volumes", tag = "apps",
    responses((status = 200, body = Vec<VolumeView>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<VolumeView>>, ApiError> {
    let lc = state.lifecycle.clone();
    Ok(Json(blocking(move || Ok(lc.volumes(None)?)).await?))
}

/// Where to move an instance's volumes.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MigrateVolumes {
    /// The target node (required unless `cancel`).
    pub to: Option<String>,
    /// The backups to restore, one per volume of the proc (the source node is gone); none: the
    /// final backups are taken from the stopped instance.
    pub backups: Vec<u64>,
    /// Give an unfinished migration up instead: the instance starts again where it was.
    pub cancel: bool,
}

/// Moves the volumes of one instance number to another node through a backup and a restore
/// (`lain volume migrate`): stops the instance, takes the final full backup of each volume (or
/// restores the given ones), restores them verified on the target and moves the instance
/// there; answers once it is done. Or gives an unfinished migration up (`cancel`).
#[utoipa::path(post, path = "/api/v1/apps/{app}/procs/{proc}/volumes/{instance}/migrate", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name"),
        ("instance" = u32, Path, description = "Instance number")),
    request_body = MigrateVolumes,
    responses((status = 200, body = Migrated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "Another migration of that instance is unfinished, or the volume home changed meanwhile", body = ErrorBody)))]
pub async fn migrate(
    State(state): State<AppState>,
    path: Result<Path<(String, String, u32)>, PathRejection>,
    body: Result<Json<MigrateVolumes>, JsonRejection>,
) -> Result<Json<Migrated>, ApiError> {
    let Path((app, proc, instance)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Json(body) = body?;
    if body.cancel {
        if body.to.is_some() || !body.backups.is_empty() {
            return Err(ApiError::bad_request(
                "cancel takes neither `to` nor `backups`",
            ));
        }
        let backups = state.backups.clone();
        return blocking(move || Ok(Json(backups.cancel_migration(&app, &proc, instance)?))).await;
    }
    let Some(to) = body.to else {
        return Err(ApiError::bad_request("give the target node in `to`"));
    };
    // A task of its own: a client that goes away does not stop a migration half way.
    let backups = state.backups.clone();
    let moving = tokio::spawn(async move {
        backups
            .migrate(&app, &proc, instance, &to, &body.backups)
            .await
    });
    let migrated = moving
        .await
        .map_err(|e| crate::backup::BackupError::Internal(e.into()))??;
    Ok(Json(migrated))
}

//! Volumes: where each instance number's volumes live, and their sizes.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::lifecycle::volumes::VolumeView;
use axum::Json;
use axum::extract::{Path, State};

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

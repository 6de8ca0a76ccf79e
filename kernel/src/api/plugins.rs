//! `/api/v1/plugins`: list, show, install, upgrade, enable, disable, set policy, remove.

use super::error::{ApiError, ErrorBody, blocking};
use super::{AppState, Json};
use crate::plugin::FailurePolicy;
use crate::plugin::registry::PluginView;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use base64::Engine as _;
use serde::Deserialize;

/// Body of an install or upgrade.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    /// The component (`.wasm`), base64-encoded.
    pub component: String,
    /// A manifest (TOML) to use instead of the one embedded in the component.
    #[serde(default)]
    pub manifest: Option<String>,
}

/// Body of a policy change.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRequest {
    /// `open` or `closed`; `null` goes back to the kind's default.
    pub policy: Option<FailurePolicy>,
}

fn decode(req: &InstallRequest) -> Result<Vec<u8>, ApiError> {
    base64::engine::general_purpose::STANDARD
        .decode(req.component.trim())
        .map_err(|e| ApiError::bad_request(format!("component: not valid base64: {e}")))
}

/// Lists every plugin.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins",
    responses((status = 200, description = "All plugins, by name", body = [PluginView])))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<PluginView>> {
    Json(state.registry.list())
}

/// Shows one plugin.
#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    state
        .registry
        .show(&name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no plugin named `{name}`")))
}

/// Installs a plugin. The component is compiled and checked against the world its manifest names
/// before anything is stored; a refusal changes nothing.
#[utoipa::path(post, path = "/api/v1/plugins", tag = "plugins", request_body = InstallRequest,
    responses((status = 201, body = PluginView),
        (status = 409, description = "Name taken", body = ErrorBody),
        (status = 422, description = "Refused: not a component, bad manifest, wrong world, forbidden import", body = ErrorBody)))]
pub async fn install(
    State(state): State<AppState>,
    body: Result<Json<InstallRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<PluginView>), ApiError> {
    let Json(req) = body?;
    let bytes = decode(&req)?;
    let registry = state.registry.clone();
    let view = blocking(move || Ok(registry.install(&bytes, req.manifest.as_deref())?)).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Upgrades a plugin to a new component. Calls in flight finish on the old version.
#[utoipa::path(put, path = "/api/v1/plugins/{name}", tag = "plugins", request_body = InstallRequest,
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<InstallRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PluginView>, ApiError> {
    let Json(req) = body?;
    let bytes = decode(&req)?;
    let registry = state.registry.clone();
    let view =
        blocking(move || Ok(registry.upgrade(&name, &bytes, req.manifest.as_deref())?)).await?;
    Ok(Json(view))
}

/// Enables a plugin (and lifts a quarantine).
#[utoipa::path(post, path = "/api/v1/plugins/{name}/enable", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.set_enabled(&name, true)?)).await?,
    ))
}

/// Disables a plugin: it is not called until enabled again.
#[utoipa::path(post, path = "/api/v1/plugins/{name}/disable", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.set_enabled(&name, false)?)).await?,
    ))
}

/// Sets what the kernel does when the plugin fails: `open` skips it, `closed` fails the operation.
#[utoipa::path(put, path = "/api/v1/plugins/{name}/policy", tag = "plugins", request_body = PolicyRequest,
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub async fn set_policy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<PolicyRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PluginView>, ApiError> {
    let Json(req) = body?;
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.set_policy(&name, req.policy)?)).await?,
    ))
}

/// Removes an installed plugin (built-ins can only be disabled).
#[utoipa::path(delete, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 204, description = "Removed"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let registry = state.registry.clone();
    blocking(move || Ok(registry.remove(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

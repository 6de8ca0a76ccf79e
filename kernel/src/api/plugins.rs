//! `/api/v1/plugins`: list, show, install, upgrade, enable, disable, set policy, configure,
//! remove; `/api/v1/proc-types`: the operator's mapping of proc types to plugins.

use super::error::{ApiError, ErrorBody, blocking};
use super::{AppState, Json};
use crate::plugin::FailurePolicy;
use crate::plugin::registry::{ConfigChange, ConfigView, PluginView, TypeMapping, Upgraded};
use axum::extract::{Path, Query, State};
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

/// Shows one plugin, with what it says about itself (`described`: a proc type's type, extra
/// keys, summary and the types it serves; the summary and roles or delivery of the others).
#[utoipa::path(get, path = "/api/v1/plugins/{name}", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = PluginView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<PluginView>, ApiError> {
    let registry = state.registry.clone();
    let view = blocking(move || {
        registry
            .show_described(&name)
            .ok_or_else(|| ApiError::not_found(format!("no plugin named `{name}`")))
    })
    .await?;
    Ok(Json(view))
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

/// Query of an upgrade.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UpgradeQuery {
    /// Accept a lower version than the one installed.
    #[serde(default, rename = "allow-downgrade")]
    #[param(rename = "allow-downgrade")]
    pub allow_downgrade: bool,
}

/// Upgrades a plugin to a new component. Calls in flight finish on the old version. A lower
/// semver version is refused (409 `downgrade`) unless `allow-downgrade=true`; the same version
/// with another component is accepted as a rebuild (`change` says which).
#[utoipa::path(put, path = "/api/v1/plugins/{name}", tag = "plugins", request_body = InstallRequest,
    params(("name" = String, Path, description = "Plugin name"), UpgradeQuery),
    responses((status = 200, body = Upgraded), (status = 404, body = ErrorBody),
        (status = 409, description = "A downgrade without allow-downgrade, a kind change, a proc type taken", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn upgrade(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<UpgradeQuery>, axum::extract::rejection::QueryRejection>,
    body: Result<Json<InstallRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Upgraded>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let Json(req) = body?;
    let bytes = decode(&req)?;
    let registry = state.registry.clone();
    let upgraded = blocking(move || {
        Ok(registry.upgrade_with(
            &name,
            &bytes,
            req.manifest.as_deref(),
            query.allow_downgrade,
        )?)
    })
    .await?;
    Ok(Json(upgraded))
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

/// Body of a configuration change: exactly one of `settings` (replace) or `set`/`unset` (edit).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigRequest {
    /// The operator's settings as a whole (a table), replacing those in effect.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Value>,
    /// Keys to set, by dotted path (`limits.cpu_ms`), over the settings in effect.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub set: std::collections::BTreeMap<String, serde_json::Value>,
    /// Keys to remove, by dotted path.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// A plugin's configuration: manifest defaults, the operator's settings and where they come
/// from, what the plugin reads, files granted and limits.
#[utoipa::path(get, path = "/api/v1/plugins/{name}/config", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = ConfigView), (status = 404, body = ErrorBody)))]
pub async fn config(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConfigView>, ApiError> {
    Ok(Json(state.registry.config(&name)?))
}

/// Changes a plugin's operator settings without a restart: checked (bounds, file grants,
/// limits), tried on the plugin (its `describe`, or an instantiation), kept in the store, then
/// applied. They replace the kernel config's `[plugins.config.<name>]` until reset. A refusal
/// (422 `bad-config`, naming the plugin's own message; 409 when a proc type's new type is taken)
/// changes nothing.
#[utoipa::path(put, path = "/api/v1/plugins/{name}/config", tag = "plugins", request_body = ConfigRequest,
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = ConfigView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, description = "Refused by the checks or by the plugin", body = ErrorBody)))]
pub async fn configure(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<ConfigRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ConfigView>, ApiError> {
    let Json(req) = body?;
    let change = match req.settings {
        Some(_) if !req.set.is_empty() || !req.unset.is_empty() => {
            return Err(ApiError::bad_request(
                "give either `settings` (replace) or `set`/`unset` (edit), not both",
            ));
        }
        Some(settings) => ConfigChange::Replace(settings),
        None if req.set.is_empty() && req.unset.is_empty() => {
            return Err(ApiError::bad_request(
                "nothing to change: give `settings`, `set` or `unset` (DELETE resets)",
            ));
        }
        None => ConfigChange::Edit {
            set: req.set,
            unset: req.unset,
        },
    };
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.configure(&name, change)?)).await?,
    ))
}

/// Forgets the operator's settings set through the API: the kernel config's
/// `[plugins.config.<name>]` applies again (checked and tried like any change).
#[utoipa::path(delete, path = "/api/v1/plugins/{name}/config", tag = "plugins",
    params(("name" = String, Path, description = "Plugin name")),
    responses((status = 200, body = ConfigView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reset_config(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ConfigView>, ApiError> {
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.configure(&name, ConfigChange::Reset)?)).await?,
    ))
}

/// The operator's assignments of proc types to plugins, from the kernel config's `[proc_types]`
/// and the live mapping.
#[utoipa::path(get, path = "/api/v1/proc-types", tag = "plugins",
    responses((status = 200, body = [TypeMapping])))]
pub async fn mappings(State(state): State<AppState>) -> Json<Vec<TypeMapping>> {
    Json(state.registry.mappings())
}

/// Body of a mapping.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MapRequest {
    /// The proc-type plugin to serve the type.
    pub plugin: String,
}

/// Assigns a proc type to a proc-type plugin, over the plugin that describes itself as that
/// type or a built-in; kept in the store and applied by the next deploy.
#[utoipa::path(put, path = "/api/v1/proc-types/{type}", tag = "plugins", request_body = MapRequest,
    params(("type" = String, Path, description = "Proc type")),
    responses((status = 200, body = [TypeMapping]), (status = 404, body = ErrorBody),
        (status = 409, description = "Not a proc-type plugin, or not a type name", body = ErrorBody)))]
pub async fn map(
    State(state): State<AppState>,
    Path(ty): Path<String>,
    body: Result<Json<MapRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Vec<TypeMapping>>, ApiError> {
    let Json(req) = body?;
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.map_type(&ty, &req.plugin)?)).await?,
    ))
}

/// Query of an unmapping.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UnmapQuery {
    /// Forget the live entry, so the kernel config's `[proc_types]` applies again, instead of
    /// leaving the type unassigned.
    #[serde(default)]
    pub reset: bool,
}

/// Takes a proc type back from the plugin the operator assigned it to.
#[utoipa::path(delete, path = "/api/v1/proc-types/{type}", tag = "plugins",
    params(("type" = String, Path, description = "Proc type"), UnmapQuery),
    responses((status = 200, body = [TypeMapping]), (status = 404, body = ErrorBody)))]
pub async fn unmap(
    State(state): State<AppState>,
    Path(ty): Path<String>,
    query: Result<Query<UnmapQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<TypeMapping>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(registry.unmap_type(&ty, query.reset)?)).await?,
    ))
}

//! Secret files of an app's procs (`lain secret`), and the master key's rotation. Contents
//! travel base64-encoded in JSON on the way in and as raw bytes on the way out; listings never
//! carry them.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::secrets::vault::SecretInfo;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Largest body of `PUT .../secrets`: a base64 file of the vault's maximum size, and its path.
pub const MAX_SECRET_BODY: usize = crate::secrets::vault::MAX_SECRET_BYTES / 3 * 4 + 8192;

/// A secret file to store.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// Absolute path in the instance, e.g. `/lain/app/config/db.toml`.
    pub path: String,
    /// The content, base64-encoded (standard alphabet, padded).
    pub content: String,
}

/// Which secret file.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Absolute path in the instance.
    pub path: String,
}

/// Which secrets to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this proc's.
    pub proc: Option<String>,
}

/// The result of a key rotation.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rotated {
    /// The new master key's id.
    pub key_id: String,
    /// Secret files re-encrypted under it.
    pub reencrypted: usize,
}

/// The app must exist and the proc name be a name: secrets of typos are refused, not kept.
fn check_target(state: &AppState, app: &str, proc: Option<&str>) -> Result<(), ApiError> {
    if let Some(proc) = proc
        && !crate::lifecycle::records::valid_name(proc)
    {
        return Err(ApiError::bad_request(format!(
            "`{}` is not a proc name: use a-z 0-9 - _ .",
            proc.escape_debug()
        )));
    }
    state.lifecycle.app(app)?;
    Ok(())
}

/// The secret files of an app (of one proc with `?proc=`), without their contents.
#[utoipa::path(get, path = "/api/v1/apps/{app}/secrets", tag = "secrets",
    params(("app" = String, Path, description = "App name"), ListQuery),
    responses((status = 200, body = Vec<SecretInfo>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<String>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<SecretInfo>>, ApiError> {
    let Query(q) = q?;
    blocking(move || {
        check_target(&state, &app, q.proc.as_deref())?;
        Ok(Json(state.lifecycle.vault().list(&app, q.proc.as_deref())?))
    })
    .await
}

/// Stores a secret file of a proc (replacing its content). Takes effect in instances created
/// after it: deploy again to roll it out.
#[utoipa::path(put, path = "/api/v1/apps/{app}/procs/{proc}/secrets", tag = "secrets",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = PutSecret,
    responses((status = 200, body = SecretInfo), (status = 400, body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody),
        (status = 413, body = ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    body: Result<Json<PutSecret>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<SecretInfo>, ApiError> {
    let Json(body) = body?;
    let content = base64::engine::general_purpose::STANDARD
        .decode(body.content.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("`content` is not base64: {e}")))?;
    blocking(move || {
        check_target(&state, &app, Some(&proc))?;
        Ok(Json(
            state
                .lifecycle
                .vault()
                .put(&app, &proc, &body.path, &content)?,
        ))
    })
    .await
}

/// The content of a secret file, as `application/octet-stream`. Audited.
#[utoipa::path(get, path = "/api/v1/apps/{app}/procs/{proc}/secrets/content", tag = "secrets",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name"), PathQuery),
    responses((status = 200, content_type = "application/octet-stream", body = String),
        (status = 404, body = ErrorBody), (status = 409, description = "Tampered ciphertext", body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let content = blocking(move || {
        check_target(&state, &app, Some(&proc))?;
        Ok(state.lifecycle.vault().get(&app, &proc, &q.path)?)
    })
    .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Bytes::from(content),
    )
        .into_response())
}

/// Removes a secret file.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/procs/{proc}/secrets", tag = "secrets",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name"), PathQuery),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    q: Result<Query<PathQuery>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    let Query(q) = q?;
    blocking(move || {
        check_target(&state, &app, Some(&proc))?;
        state.lifecycle.vault().remove(&app, &proc, &q.path)?;
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}

/// Re-encrypts every secret file under a new master key, which replaces the key file. Secrets
/// stay readable throughout; a kernel killed midway finishes the rotation when it starts.
#[utoipa::path(post, path = "/api/v1/secrets/rotate-key", tag = "secrets",
    responses((status = 200, body = Rotated)))]
pub async fn rotate_key(State(state): State<AppState>) -> Result<Json<Rotated>, ApiError> {
    blocking(move || {
        let (key_id, reencrypted) = state.lifecycle.vault().rotate()?;
        Ok(Json(Rotated {
            key_id,
            reencrypted,
        }))
    })
    .await
}

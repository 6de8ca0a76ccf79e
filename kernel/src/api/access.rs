//! App maintainers (`lain maintainer`) and the audit log (`lain audit`).

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::auth::audit::{AuditQuery, AuditRecord};
use crate::auth::maintainers::{Maintainers, MemberKind};
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};

/// An app's maintainers.
#[utoipa::path(get, path = "/api/v1/apps/{app}/maintainers", tag = "access",
    params(("app" = String, Path, description = "App name")),
    responses((status = 200, body = Maintainers), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Maintainers>, ApiError> {
    blocking(move || Ok(Json(state.lifecycle.maintainers(&app)?))).await
}

/// Makes a user (`provider:subject`, e.g. `token:alice`) or a group (`kind` is `users` or
/// `groups`) a maintainer of the app.
#[utoipa::path(put, path = "/api/v1/apps/{app}/maintainers/{kind}/{name}", tag = "access",
    params(("app" = String, Path, description = "App name"),
        ("kind" = String, Path, description = "`users` or `groups`"),
        ("name" = String, Path, description = "`provider:subject` or group")),
    responses((status = 200, body = Maintainers),
        (status = 400, description = "Not `users` or `groups`, or not a valid member", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    Path((app, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Maintainers>, ApiError> {
    change(state, app, kind, name, true).await
}

/// Removes a maintainer; the last one cannot be removed.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/maintainers/{kind}/{name}", tag = "access",
    params(("app" = String, Path, description = "App name"),
        ("kind" = String, Path, description = "`users` or `groups`"),
        ("name" = String, Path, description = "`provider:subject` or group")),
    responses((status = 200, body = Maintainers),
        (status = 400, description = "Not `users` or `groups`, or not a valid member", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The last maintainer", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path((app, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Maintainers>, ApiError> {
    change(state, app, kind, name, false).await
}

async fn change(
    state: AppState,
    app: String,
    kind: String,
    name: String,
    add: bool,
) -> Result<Json<Maintainers>, ApiError> {
    let kind = match kind.as_str() {
        "users" => MemberKind::Users,
        "groups" => MemberKind::Groups,
        _ => {
            return Err(ApiError::bad_request(format!(
                "`{}` is neither `users` nor `groups`",
                kind.escape_debug()
            )));
        }
    };
    if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a maintainer is 1 to 256 characters without control characters",
        ));
    }
    blocking(move || {
        Ok(Json(
            state.lifecycle.change_maintainer(&app, kind, &name, add)?,
        ))
    })
    .await
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "access", params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>)))]
pub async fn audit(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let Query(q) = q?;
    blocking(move || Ok(Json(state.access.audit.query(state.lifecycle.store(), &q)?))).await
}

//! The runs of scheduled procs: their history and each run's log (`lain runs`). Same rights as
//! reading the app.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::lifecycle::runs::RunRecord;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// Which runs to list.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Only the runs of this proc.
    pub proc: Option<String>,
}

/// The history of an app's scheduled procs: every run kept (and every tick that started none:
/// skipped, missed), oldest first per proc.
#[utoipa::path(get, path = "/api/v1/apps/{app}/runs", tag = "apps",
    params(("app" = String, Path, description = "App name"), RunsQuery),
    responses((status = 200, body = Vec<RunRecord>), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(app): Path<String>,
    q: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<RunRecord>>, ApiError> {
    let Query(q) = q?;
    let lc = state.lifecycle.clone();
    Ok(Json(
        blocking(move || Ok(lc.runs(&app, q.proc.as_deref())?)).await?,
    ))
}

/// The log of one run (its last MiB).
#[utoipa::path(get, path = "/api/v1/apps/{app}/procs/{proc}/runs/{run}/log", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name"),
        ("run" = u32, Path, description = "Run id")),
    responses((status = 200, description = "text/plain"),
        (status = 400, description = "The run id is not a number", body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn log(
    State(state): State<AppState>,
    path: Result<Path<(String, String, u32)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((app, proc, run)) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let lc = state.lifecycle.clone();
    let bytes = blocking(move || Ok(lc.run_log(&app, &proc, run)?)).await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], bytes).into_response())
}

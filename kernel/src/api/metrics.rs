//! Exporter pull paths: what an exporter encodes, served on the path the operator configured
//! (`[monitor.exporters.<name>] pull`), to holders of the `metrics` right.

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::plugin::limits::within_wall_clock;
use axum::extract::{MatchedPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The kernel's metrics as the exporter the operator serves on this path encodes them
/// (`/metrics` by default: the `prometheus` exporter's text format).
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "The samples, in the exporter's format (`text/plain` for `prometheus`)", content_type = "text/plain"),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "Without the `metrics` right", body = ErrorBody),
        (status = 503, description = "The exporter is disabled, quarantined or failed", body = ErrorBody)))]
pub async fn pull(State(state): State<AppState>, matched: MatchedPath) -> Response {
    let path = matched.as_str().to_string();
    let monitor = state.monitor.clone();
    let wall = state.registry.engine().limits().wall();
    match within_wall_clock(wall, move || monitor.scrape(&path)).await {
        Ok(Some(scrape)) => (
            [
                (header::CONTENT_TYPE, scrape.content_type),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            ],
            scrape.body,
        )
            .into_response(),
        _ => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "exporter-unavailable",
            format!(
                "the exporter of {} produced nothing: it is disabled, quarantined or failing (see the kernel's log)",
                matched.as_str()
            ),
        )
        .into_response(),
    }
}

//! `POST /api/v1/validate`: a `lain.yaml` checked by the kernel with its installed proc types.

use super::AppState;
use super::error::{ApiError, blocking};
use crate::plugin::Kind;
use crate::spec::{self, PluginProcTypes, Severity};
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

/// Validates the `lain.yaml` in the body (as text) with the same parser as `lain validate`,
/// the kernel's enabled proc-type plugins and its cluster domains. Always 200 when the file could
/// be checked: `valid` says the verdict, `diagnostics` every problem, `spec` the model.
#[utoipa::path(post, path = "/api/v1/validate", tag = "apps",
    request_body(content = String, content_type = "application/yaml", description = "A lain.yaml"),
    responses((status = 200, description = "{valid, diagnostics, spec}", body = Object),
        (status = 400, description = "The body is not UTF-8 text")))]
pub async fn validate(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let report = blocking(move || {
        let plugins = state.registry.enabled(Kind::ProcType);
        let types = PluginProcTypes::new(plugins, &state.registry.proc_types())
            .map_err(|e| ApiError::internal(format!("proc types: {e}")))?;
        let parsed = spec::parse("lain.yaml", &text, &types, &state.domains);
        let valid = !parsed
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error);
        Ok(json!({ "valid": valid, "diagnostics": parsed.diagnostics, "spec": parsed.spec }))
    })
    .await?;
    Ok(Json(report))
}

//! The API's error type: a status, a stable code and a message, as JSON.

use crate::plugin::InstallError;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered by the API: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable, machine-readable code (`not-found`, `wrong-world`, ...).
    pub code: &'static str,
    /// What went wrong, for people.
    pub message: String,
}

/// The JSON body of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// Details of an error.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 with code `bad-request`.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad-request", message)
    }

    /// 404 with code `not-found`.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not-found", message)
    }

    /// 500 with code `internal`.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<InstallError> for ApiError {
    fn from(e: InstallError) -> ApiError {
        let (status, code) = match &e {
            InstallError::NotAComponent(_) => (StatusCode::UNPROCESSABLE_ENTITY, "not-a-component"),
            InstallError::NoManifest | InstallError::BadManifest(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad-manifest")
            }
            InstallError::WrongWorld { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "wrong-world"),
            InstallError::ForbiddenImport { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "forbidden-import")
            }
            InstallError::Compile(_) => (StatusCode::UNPROCESSABLE_ENTITY, "compile-failed"),
            InstallError::Describe(_) => (StatusCode::UNPROCESSABLE_ENTITY, "describe-failed"),
            InstallError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            InstallError::Downgrade { .. } => (StatusCode::CONFLICT, "downgrade"),
            InstallError::BadConfig { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "bad-config"),
            InstallError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            InstallError::NotMapped(_) => (StatusCode::NOT_FOUND, "not-mapped"),
            InstallError::BuiltIn(..) => (StatusCode::CONFLICT, "built-in"),
            InstallError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(e: axum::extract::rejection::QueryRejection) -> ApiError {
        ApiError::new(e.status(), "bad-request", e.body_text())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> ApiError {
        ApiError::new(e.status(), "bad-request", e.body_text())
    }
}

/// Runs blocking work (plugin calls, compilation, store writes) off the async workers.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("task failed: {e}")))?
}

impl From<crate::lifecycle::LifecycleError> for ApiError {
    fn from(e: crate::lifecycle::LifecycleError) -> ApiError {
        use crate::lifecycle::LifecycleError as L;
        let (status, code) = match &e {
            L::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            L::Invalid(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            L::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            L::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            L::Spec(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid-lain-yaml"),
            L::Build(_) => (StatusCode::UNPROCESSABLE_ENTITY, "build-failed"),
            L::Plugin(_) => (StatusCode::BAD_GATEWAY, "plugin-failed"),
            L::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
            L::Runtime(_) => (StatusCode::BAD_GATEWAY, "runtime-failed"),
            L::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let message = match &e {
            L::Spec(diagnostics) => {
                let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                format!("{e}:\n{}", lines.join("\n"))
            }
            _ => e.to_string(),
        };
        ApiError::new(status, code, message)
    }
}

impl From<crate::lifecycle::maintainers::MaintainerError> for ApiError {
    fn from(e: crate::lifecycle::maintainers::MaintainerError) -> ApiError {
        use crate::auth::maintainers::ChangeError as C;
        use crate::lifecycle::maintainers::MaintainerError as M;
        match e {
            M::App(e) => e.into(),
            M::Refused(C::Store(e)) => e.into(),
            M::Refused(refusal) => {
                let status = match refusal {
                    C::NotAMaintainer { .. } => StatusCode::NOT_FOUND,
                    _ => StatusCode::CONFLICT,
                };
                ApiError::new(status, "maintainers", refusal.to_string())
            }
        }
    }
}

impl From<crate::secrets::vault::SecretError> for ApiError {
    fn from(e: crate::secrets::vault::SecretError) -> ApiError {
        use crate::secrets::vault::SecretError as S;
        let (status, code) = match &e {
            S::InvalidPath { .. } => (StatusCode::BAD_REQUEST, "bad-request"),
            S::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too-large"),
            S::NotFound { .. } => (StatusCode::NOT_FOUND, "not-found"),
            S::Tampered { .. } => (StatusCode::CONFLICT, "tampered"),
            S::KeyFile { .. } | S::KeyMismatch { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "master-key")
            }
            // This kernel cannot serve secrets until the operator gives it the cluster's key.
            S::KeyNotProvisioned { .. } => (StatusCode::SERVICE_UNAVAILABLE, "master-key"),
            S::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            e.to_string(),
        )
    }
}

impl From<crate::backup::BackupError> for ApiError {
    fn from(e: crate::backup::BackupError) -> ApiError {
        use crate::backup::BackupError as B;
        let (status, code) = match &e {
            B::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            B::Invalid(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            B::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            B::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            B::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "store-unavailable"),
            B::Engine(_) => (StatusCode::BAD_GATEWAY, "backup-engine"),
            B::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

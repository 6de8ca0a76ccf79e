//! Route claims (`lain router claims|assign|release`) and stream ports (`lain router streams`): which app each web host and path belongs
//! to; cluster admins reassign and release them.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::auth::Caller;
use crate::lifecycle::route_claims::{ClaimError, RouteClaim, parse_mountpoint};
use crate::router::stream::StreamView;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

/// The route claims of the apps the caller may read (every claim for cluster admins).
#[utoipa::path(get, path = "/api/v1/router/claims", tag = "apps",
    responses((status = 200, body = Vec<RouteClaim>),
        (status = 401, description = "No or invalid credentials", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<RouteClaim>>, ApiError> {
    blocking(move || {
        let claims = state.lifecycle.route_claims()?;
        Ok(Json(state.access.readable(&caller, claims, |c| &c.app)?))
    })
    .await
}

/// The router's stream ports (`lain router streams`) of the apps the caller may read: each
/// source port, its proc and ready instances, and whether it is listened on (why not, if
/// binding failed).
#[utoipa::path(get, path = "/api/v1/router/streams", tag = "apps",
    responses((status = 200, body = Vec<StreamView>),
        (status = 401, description = "No or invalid credentials", body = ErrorBody)))]
pub async fn streams(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<StreamView>>, ApiError> {
    blocking(move || {
        let view = state.router.streams.view();
        Ok(Json(state.access.readable(&caller, view, |v| &v.app)?))
    })
    .await
}

/// An admin's assignment of a mountpoint to an app.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    /// `host` or `host/path`.
    pub mountpoint: String,
    /// The app it is given to.
    pub app: String,
}

/// What an assignment did.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct Assigned {
    /// The new claim.
    pub claim: RouteClaim,
    /// Claims of other apps it replaced.
    pub replaced: Vec<RouteClaim>,
}

/// Gives a mountpoint to an app: every overlapping claim (of any app, default domains
/// included) is replaced. The router follows within a second.
#[utoipa::path(put, path = "/api/v1/router/claims", tag = "apps", request_body = Assign,
    responses((status = 200, body = Assigned),
        (status = 400, description = "Not a mountpoint, or a malformed body", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not a cluster admin", body = ErrorBody),
        (status = 404, description = "No such app", body = ErrorBody)))]
pub async fn assign(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<Assign>, JsonRejection>,
) -> Result<Json<Assigned>, ApiError> {
    let Json(body) = body?;
    let (host, path) = parse_mountpoint(&body.mountpoint).map_err(bad)?;
    let by = caller.id();
    let assignment =
        blocking(move || Ok(state.lifecycle.assign_route(&body.app, &host, &path, &by)?)).await?;
    Ok(Json(Assigned {
        claim: assignment.claim,
        replaced: assignment.replaced,
    }))
}

/// Which claim to release.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Release {
    /// `host` or `host/path`, exactly as claimed.
    pub mountpoint: String,
}

/// Releases a claim: nobody holds the mountpoint until a deploy claims it (a default domain
/// goes back to its app). The router stops serving it within a second.
#[utoipa::path(delete, path = "/api/v1/router/claims", tag = "apps", params(Release),
    responses((status = 200, body = RouteClaim, description = "The released claim"),
        (status = 400, description = "Not a mountpoint, or no `mountpoint` parameter", body = ErrorBody),
        (status = 401, description = "No or invalid credentials", body = ErrorBody),
        (status = 403, description = "Not a cluster admin", body = ErrorBody),
        (status = 404, description = "No claim of exactly this mountpoint", body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    query: Result<Query<Release>, QueryRejection>,
) -> Result<Json<RouteClaim>, ApiError> {
    let Query(query) = query?;
    let (host, path) = parse_mountpoint(&query.mountpoint).map_err(bad)?;
    let claim = blocking(move || {
        Ok(state
            .lifecycle
            .release_route(&query.mountpoint, &host, &path)?)
    })
    .await?;
    Ok(Json(claim))
}

fn bad(e: ClaimError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

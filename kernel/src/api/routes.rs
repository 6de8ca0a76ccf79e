//! Route claims (`lain router claims|assign|release`): which app each web host and path belongs
//! to; cluster admins reassign and release them.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::auth::Caller;
use crate::auth::rights::Right;
use crate::router::claims::{ClaimError, Claims, RouteClaim, listed, parse_mountpoint};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

/// How often an admin's change is tried when deploys keep changing the host's claims.
const ATTEMPTS: usize = 16;

/// The route claims of the apps the caller may read (every claim for cluster admins).
#[utoipa::path(get, path = "/api/v1/router/claims", tag = "apps",
    responses((status = 200, body = Vec<RouteClaim>),
        (status = 401, description = "No or invalid credentials", body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<RouteClaim>>, ApiError> {
    blocking(move || {
        let claims = Claims::all(state.lifecycle.store())?.list();
        let mut visible = Vec::new();
        for claim in claims {
            match state
                .access
                .authorize(&caller, Right::Read, Some(&claim.app))
            {
                Ok(()) => visible.push(claim),
                Err(crate::auth::Denied::Store(e)) => return Err(e.into()),
                Err(_) => {}
            }
        }
        Ok(Json(visible))
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
    blocking(move || {
        let lc = &state.lifecycle;
        lc.app(&body.app)?;
        for _ in 0..ATTEMPTS {
            let mut claims = Claims::of_hosts(lc.store(), [host.as_str()])?;
            let now = crate::clock::unix_secs();
            let replaced = claims.assign(&body.app, &host, &path, &by, now);
            if lc
                .store()
                .apply_if(&claims.expect(), claims.ops()?)?
                .is_none()
            {
                continue;
            }
            lc.wake();
            let listed = claims.list();
            let claim = listed
                .iter()
                .find(|c| c.host == host && c.path == path)
                .cloned()
                .ok_or_else(|| ApiError::internal("the assigned claim is missing"))?;
            return Ok(Json(Assigned { claim, replaced }));
        }
        Err(busy())
    })
    .await
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
    blocking(move || {
        let lc = &state.lifecycle;
        for _ in 0..ATTEMPTS {
            let mut claims = Claims::of_hosts(lc.store(), [host.as_str()])?;
            let held: Vec<String> = claims.list().into_iter().map(|c| c.mountpoint).collect();
            let Some(claim) = claims.release(&host, &path) else {
                return Err(ApiError::not_found(format!(
                    "no claim of exactly `{}`; claims on `{host}`: {}",
                    query.mountpoint,
                    if held.is_empty() {
                        "none".to_string()
                    } else {
                        held.join(", ")
                    }
                )));
            };
            if lc
                .store()
                .apply_if(&claims.expect(), claims.ops()?)?
                .is_none()
            {
                continue;
            }
            lc.wake();
            return Ok(Json(listed(&host, &path, &claim)));
        }
        Err(busy())
    })
    .await
}

fn bad(e: ClaimError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

fn busy() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "the host's claims kept changing; try again",
    )
}

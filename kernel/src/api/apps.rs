//! Apps: builds, deploys, scale, rollback, undeploy, instances and logs. Each handler reads its
//! input, calls one function of the lifecycle and answers with its result.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use super::trail::{AuditTrail, Outcome};
use crate::auth::{Caller, Denied};
use crate::lifecycle::LifecycleError;
use crate::lifecycle::logs::LogRequest;
use crate::lifecycle::records::{AppRecord, ReleaseRecord, Scale};
use crate::lifecycle::view::AppView;
use crate::router::nginx::Listen;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The answer to a change the reconciler carries out: 202 and the app as it is now.
type Accepted = (StatusCode, Json<AppView>);

fn accepted(state: &AppState, record: AppRecord) -> Accepted {
    (
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    )
}

/// One line of `GET /api/v1/apps`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AppSummary {
    /// App name.
    pub name: String,
    /// Deployed release.
    pub release: Option<String>,
    /// Instances running or completed.
    pub instances: usize,
    /// Whether everything runs as deployed.
    pub converged: bool,
    /// The last deploy or rollout failure, else the first problem that keeps a proc from
    /// converging (e.g. no node fits it), prefixed with the proc's name.
    pub last_error: Option<String>,
    /// How its volume backups stand: a volume whose latest backup failed or was interrupted
    /// shows here until a later backup of it succeeds. Absent when no backup of it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<crate::backup::BackupState>,
}

/// The apps the caller may read: every app for cluster admins, the apps they maintain for others.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", responses((status = 200, body = Vec<AppSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<AppSummary>>, ApiError> {
    let (lc, access, backups) = (
        state.lifecycle.clone(),
        state.access.clone(),
        state.backups.clone(),
    );
    let apps = blocking(move || {
        let apps = access.readable(&caller, lc.apps()?, |a| &a.name)?;
        let mut out = Vec::with_capacity(apps.len());
        for app in apps {
            let last_backup = backup_state(&backups, &app.name);
            out.push((app, last_backup));
        }
        Ok(out)
    })
    .await?;
    Ok(Json(
        apps.into_iter()
            .map(|(app, last_backup)| {
                let mut view = state.lifecycle.status().view(app);
                view.last_backup = last_backup;
                AppSummary::from(view)
            })
            .collect(),
    ))
}

/// How `app`'s backups stand; a store that cannot say is logged, not an error of the view.
fn backup_state(backups: &crate::backup::Backups, app: &str) -> Option<crate::backup::BackupState> {
    backups.state(app).unwrap_or_else(|e| {
        tracing::warn!(app, "cannot read how the app's backups stand: {e}");
        None
    })
}

impl From<AppView> for AppSummary {
    fn from(view: AppView) -> AppSummary {
        let problem = view.procs.iter().find_map(|p| {
            p.problem
                .as_ref()
                .map(|problem| format!("{}: {problem}", p.name))
        });
        AppSummary {
            name: view.app.name,
            release: view.release,
            instances: view.instances.len(),
            converged: view.converged,
            last_error: view.app.last_error.or(problem),
            last_backup: view.last_backup,
        }
    }
}

/// An app with its procs and instances (`lain ps`).
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    let (lc, backups) = (state.lifecycle.clone(), state.backups.clone());
    let (record, last_backup) = blocking(move || {
        let record = lc.app(&app)?;
        let last_backup = backup_state(&backups, &app);
        Ok((record, last_backup))
    })
    .await?;
    let mut view = state.lifecycle.status().view(record);
    view.last_backup = last_backup;
    Ok(Json(view))
}

/// Builds a release from a build context: a tar holding `lain.yaml` (`lain build` sends the app's
/// directory). Answers with one JSON event per line as the build goes (`step`, `output`,
/// `warning`, then `done` or `failed`). Building an existing app needs the `operate` right on
/// it; registering a new app needs the `register` right, and its registrant becomes its
/// maintainer. The values of the variables `build_arg`s name (`$VAR`) come from the client, in
/// the `X-Lain-Build-Args` header (base64 of a JSON object; see `runtime::build_args`), never
/// from the kernel's environment.
#[utoipa::path(post, path = "/api/v1/builds", tag = "apps",
    params(("x-lain-build-args" = Option<String>, Header,
        description = "base64 of a JSON object: the client's values of the variables build_args name")),
    request_body(content = String, content_type = "application/x-tar", description = "Build context"),
    responses((status = 200, description = "application/x-ndjson stream of build events"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn build(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    trail: Option<Extension<AuditTrail>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let build_args = match headers.get(crate::runtime::build_args::HEADER) {
        Some(value) => {
            crate::runtime::build_args::decode(value.as_bytes()).map_err(ApiError::bad_request)?
        }
        None => Default::default(),
    };
    let trail = trail.map(|Extension(t)| t);
    let (access, named) = (state.access.clone(), trail.clone());
    let admit = Arc::new(move |app: &str, exists: bool| {
        if let Some(trail) = &named {
            trail.set_app(app);
        }
        access
            .admit_build(&caller, app, exists)
            .map_err(|denied| match denied {
                Denied::Store(e) => LifecycleError::Store(e),
                denied => LifecycleError::Forbidden(denied.to_string()),
            })
    });
    let finished = {
        let trail = trail.clone();
        move |result: &Result<ReleaseRecord, LifecycleError>| {
            let outcome = match result {
                Ok(_) => Outcome::Ok,
                Err(LifecycleError::Forbidden(why)) => Outcome::Denied(why.clone()),
                Err(e) => Outcome::Failed(e.to_string()),
            };
            if let Some(trail) = trail {
                trail.finish(outcome);
            }
        }
    };
    let lc = state.lifecycle.clone();
    // A refusal comes before the stream starts: a plain 403.
    let events = blocking(move || Ok(lc.start_build(body, build_args, admit, finished)?)).await?;
    // From here the answer is 200 and the outcome is the last event: the audit record waits for it.
    if let Some(trail) = &trail {
        trail.defer();
    }
    let stream = futures::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), events))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// The built releases of an app, oldest first.
#[utoipa::path(get, path = "/api/v1/apps/{app}/releases", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 200, body = Vec<ReleaseRecord>)))]
pub async fn releases(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<Vec<ReleaseRecord>>, ApiError> {
    let lc = state.lifecycle.clone();
    Ok(Json(blocking(move || Ok(lc.releases(&app)?)).await?))
}

/// What to deploy.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployRequest {
    /// Release version; default the newest.
    pub release: Option<String>,
}

/// Deploys a release; the reconciler rolls it out (poll `GET /api/v1/apps/{app}`).
#[utoipa::path(post, path = "/api/v1/apps/{app}/deploy", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    request_body = DeployRequest,
    responses((status = 202, body = AppView),
        (status = 400, description = "Not a deploy request, or a proc type rendered a route that is no mountpoint", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "A route belongs to another app (named), or a secret file is missing", body = ErrorBody),
        (status = 422, description = "lain.yaml no longer valid with the installed proc types", body = ErrorBody)))]
pub async fn deploy(
    State(state): State<AppState>,
    Path(app): Path<String>,
    body: Bytes,
) -> Result<Accepted, ApiError> {
    // The body is optional: none (or `{}`) deploys the newest release.
    let request: DeployRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DeployRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid deploy request: {e}")))?
    };
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.deploy(&app, request.release.as_deref())?)).await?;
    Ok(accepted(&state, record))
}

/// Goes back to the previous deployment.
#[utoipa::path(post, path = "/api/v1/apps/{app}/rollback", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 202, body = AppView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Accepted, ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.rollback(&app)?)).await?;
    Ok(accepted(&state, record))
}

/// Stops every instance of an app; releases and history stay.
#[utoipa::path(delete, path = "/api/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 202, body = AppView), (status = 404, body = ErrorBody)))]
pub async fn undeploy(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Accepted, ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.undeploy(&app)?)).await?;
    Ok(accepted(&state, record))
}

/// Sets instances, memory (bytes) or cpu (milli-cores) of a proc; memory changes apply to
/// running instances in place.
#[utoipa::path(patch, path = "/api/v1/apps/{app}/procs/{proc}", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = Scale,
    responses((status = 202, body = AppView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The app is not deployed", body = ErrorBody)))]
pub async fn scale(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    scale: Result<Json<Scale>, axum::extract::rejection::JsonRejection>,
) -> Result<Accepted, ApiError> {
    let Json(scale) = scale?;
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.scale(&app, &proc, scale)?)).await?;
    Ok(accepted(&state, record))
}

/// Options of the logs endpoint.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Bytes of each instance's log sent first (default 64 KiB, at most 16 MiB).
    pub tail: Option<u64>,
    /// The web router's access log of the proc instead of its instances' output.
    #[serde(default)]
    pub access: bool,
    /// A log file the proc declares (`logs`, relative to `/lain/logs`), collected from each
    /// instance, instead of its output.
    pub file: Option<String>,
}

/// The logs of every instance of a proc, each line prefixed with `[<instance>]`.
#[utoipa::path(get, path = "/api/v1/apps/{app}/procs/{proc}/logs", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name"), LogsQuery),
    responses((status = 200, description = "text/plain"), (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    q: Result<Query<LogsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    if q.access && q.file.is_some() {
        return Err(ApiError::bad_request(
            "`access` and `file` name different logs: ask for one",
        ));
    }
    let request = LogRequest {
        follow: q.follow,
        tail: q.tail.unwrap_or(64 << 10),
        access: q.access,
    };
    let lc = state.lifecycle.clone();
    let reader = blocking(move || {
        Ok(match &q.file {
            Some(file) => lc.proc_file_logs(&app, &proc, file, request)?,
            None => lc.proc_logs(&app, &proc, request)?,
        })
    })
    .await?;
    let stream = futures::StreamExt::map(reader.stream(), |chunk| {
        Ok::<_, std::convert::Infallible>(Bytes::from(chunk))
    });
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Options of the nginx export.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NginxQuery {
    /// The `listen` of the generated servers (default `80`).
    pub listen: Option<String>,
}

/// The router's current routes as an nginx configuration snippet (`upstream` and `server`
/// blocks for the `http` context).
#[utoipa::path(get, path = "/api/v1/router/nginx", tag = "apps", params(NginxQuery),
    responses((status = 200, description = "text/plain nginx configuration")))]
pub async fn nginx(
    State(state): State<AppState>,
    q: Result<Query<NginxQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q?;
    let listen = Listen::parse(q.listen.as_deref().unwrap_or("80"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let lc = state.lifecycle.clone();
    let config = blocking(move || Ok(crate::router::nginx::export(&lc, &listen)?)).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        config,
    )
        .into_response())
}

//! Apps: builds, deploys, scale, rollback, undeploy, instances and logs.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use super::trail::{AuditTrail, Outcome};
use crate::auth::Caller;
use crate::auth::rights::Right;
use crate::lifecycle::LifecycleError;
use crate::lifecycle::build::BuildEvent;
use crate::lifecycle::records::{ReleaseRecord, Scale};
use crate::lifecycle::view::AppView;
use crate::store::Op;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek};

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
    /// The last deploy or rollout failure.
    pub last_error: Option<String>,
}

/// The apps the caller may read: every app for cluster admins, the apps they maintain for others.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", responses((status = 200, body = Vec<AppSummary>)))]
pub async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<AppSummary>>, ApiError> {
    let lc = state.lifecycle.clone();
    let access = state.access.clone();
    let apps = blocking(move || {
        let mut visible = Vec::new();
        for app in lc.apps()? {
            if access
                .authorize(&caller, Right::Read, Some(&app.name))
                .is_ok()
            {
                visible.push(app);
            }
        }
        Ok(visible)
    })
    .await?;
    Ok(Json(
        apps.into_iter()
            .map(|app| {
                let view = state.lifecycle.status().view(app);
                AppSummary {
                    name: view.app.name.clone(),
                    release: view.release.clone(),
                    instances: view.instances.len(),
                    converged: view.converged,
                    last_error: view.app.last_error.clone(),
                }
            })
            .collect(),
    ))
}

/// An app with its procs and instances (`lain ps`).
#[utoipa::path(get, path = "/api/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 200, body = AppView), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<Json<AppView>, ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.app(&app)?)).await?;
    Ok(Json(state.lifecycle.status().view(record)))
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
    let access = state.access.clone();
    let store = state.lifecycle.store_handle();
    let trail = trail.map(|Extension(t)| t);
    let named = trail.clone();
    let admit = move |app: &str, exists: bool| -> Result<Vec<Op>, LifecycleError> {
        if let Some(trail) = &named {
            trail.set_app(app);
        }
        // A new app needs the `register` right; its registrant becomes its maintainer.
        let right = if exists {
            Right::Operate
        } else {
            Right::Register
        };
        match access.authorize(&caller, right, Some(app)) {
            Ok(()) if !exists => Ok(vec![crate::auth::maintainers::first(app, &caller.id())?]),
            Ok(()) => Ok(Vec::new()),
            Err(crate::auth::Denied::Store(e)) => Err(e.into()),
            Err(denied) => Err(LifecycleError::Forbidden(denied.to_string())),
        }
    };
    // Refused before the stream starts, so a refusal is a plain 403.
    let context = body.clone();
    let admit = blocking(move || {
        if let Some(app) = crate::lifecycle::build::context_appname(&context) {
            let exists = store
                .get(&crate::lifecycle::records::app_key(&app))
                .map_err(ApiError::from)?
                .is_some();
            admit(&app, exists)?;
        }
        Ok(admit)
    })
    .await?;
    // From here the answer is 200 and the outcome is the last event: the audit record waits for it.
    if let Some(trail) = &trail {
        trail.defer();
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<BuildEvent>();
    let lc = state.lifecycle.clone();
    tokio::task::spawn_blocking(move || {
        let mut send = |e: BuildEvent| {
            let _ = tx.send(e);
        };
        let result = lc.build_as(&body, &build_args, &mut send, &admit);
        let outcome = match &result {
            Ok(_) => Outcome::Ok,
            Err(LifecycleError::Forbidden(why)) => Outcome::Denied(why.clone()),
            Err(e) => Outcome::Failed(e.to_string()),
        };
        let last = match result {
            Ok(release) => BuildEvent::Done { release },
            Err(LifecycleError::Spec(diagnostics)) => BuildEvent::Failed {
                message: "lain.yaml has errors".into(),
                diagnostics,
            },
            Err(e) => BuildEvent::Failed {
                message: e.to_string(),
                diagnostics: Vec::new(),
            },
        };
        send(last);
        if let Some(trail) = trail {
            trail.finish(outcome);
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let event = rx.recv().await?;
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
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
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    // The body is optional: none (or `{}`) deploys the newest release.
    let request: DeployRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DeployRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid deploy request: {e}")))?
    };
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.deploy(&app, request.release.as_deref())?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Goes back to the previous deployment.
#[utoipa::path(post, path = "/api/v1/apps/{app}/rollback", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 202, body = AppView), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn rollback(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.rollback(&app)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Stops every instance of an app; releases and history stay.
#[utoipa::path(delete, path = "/api/v1/apps/{app}", tag = "apps",
    params(("app" = String, Path, description = "App name")),
    responses((status = 202, body = AppView), (status = 404, body = ErrorBody)))]
pub async fn undeploy(
    State(state): State<AppState>,
    Path(app): Path<String>,
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.undeploy(&app)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
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
) -> Result<(StatusCode, Json<AppView>), ApiError> {
    let Json(scale) = scale?;
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.scale(&app, &proc, scale)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Options of the logs endpoint.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Keep the response open and send new lines as they are written.
    #[serde(default)]
    pub follow: bool,
    /// Bytes of each instance's log sent first (default 64 KiB).
    pub tail: Option<u64>,
    /// The web router's access log of the proc instead of its instances' output.
    #[serde(default)]
    pub access: bool,
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
    let lc = state.lifecycle.clone();
    let (app2, proc2) = (app.clone(), proc.clone());
    let record = blocking(move || Ok(lc.app(&app2)?)).await?;
    let plan = record
        .deployed
        .iter()
        .chain(record.history.iter().rev())
        .flat_map(|d| &d.procs)
        .find(|p| p.name == proc2)
        .ok_or_else(|| ApiError::not_found(format!("app `{app}` has no proc `{proc}`")))?;
    let dir = state.lifecycle.log_file(&app, &plan.name, 0)?;
    let dir = dir
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    let tail = q.tail.unwrap_or(64 << 10);
    let (follow, access) = (q.follow, q.access);
    let stream = futures::stream::unfold(
        (dir, Vec::new(), true),
        move |(dir, mut offsets, first)| async move {
            if first {
                let chunk = read_new(&dir, &mut offsets, tail, access);
                return Some((
                    Ok::<_, std::convert::Infallible>(Bytes::from(chunk)),
                    (dir, offsets, false),
                ));
            }
            if !follow {
                return None;
            }
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                let chunk = read_new(&dir, &mut offsets, 0, access);
                if !chunk.is_empty() {
                    return Some((Ok(Bytes::from(chunk)), (dir, offsets, false)));
                }
            }
        },
    );
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// What each `<n>.log` in `dir` gained since its offset in `offsets`, whole lines only, each
/// prefixed with `[<n>] `. A file seen for the first time starts `tail` bytes before its end (at
/// a line start); a file shorter than its offset was rotated and is read from the start.
/// With `access`, the router's `access.log` is read instead, without prefixes.
fn read_new(
    dir: &std::path::Path,
    offsets: &mut Vec<(u32, u64)>,
    tail: u64,
    access: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<(u32, std::path::PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if access {
                return (name == crate::router::access::ACCESS_LOG).then(|| (0, e.path()));
            }
            let no = name.strip_suffix(".log")?.parse().ok()?;
            Some((no, e.path()))
        })
        .collect();
    files.sort();
    for (no, path) in files {
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let len = file.metadata().map_or(0, |m| m.len());
        let known = offsets.iter().position(|(n, _)| *n == no);
        let start = match known.map(|i| offsets[i].1) {
            Some(off) if off <= len => off,
            Some(_) => 0,
            None => len.saturating_sub(tail),
        };
        let mut buf = Vec::new();
        if file.seek(std::io::SeekFrom::Start(start)).is_ok() {
            let _ = file.take(len - start).read_to_end(&mut buf);
        }
        let end = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let skip = if known.is_none() && start > 0 {
            buf[..end]
                .iter()
                .position(|b| *b == b'\n')
                .map_or(end, |i| i + 1)
        } else {
            0
        };
        for line in buf[skip..end].split_inclusive(|b| *b == b'\n') {
            if !access {
                out.extend_from_slice(format!("[{no}] ").as_bytes());
            }
            out.extend_from_slice(line);
        }
        let consumed = start + end as u64;
        match known {
            Some(i) => offsets[i].1 = consumed,
            None => offsets.push((no, consumed)),
        }
    }
    out
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
    let listen = q.listen.unwrap_or_else(|| "80".into());
    if listen.is_empty()
        || !listen
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:[]".contains(c))
    {
        return Err(ApiError::bad_request(format!(
            "invalid listen `{listen}`: e.g. 80 or 127.0.0.1:8081"
        )));
    }
    let lc = state.lifecycle.clone();
    let (apps, claims) =
        blocking(move || Ok((lc.apps()?, crate::router::claims::Claims::all(lc.store())?))).await?;
    let (_, instances) = state.lifecycle.status().snapshot();
    let table = crate::router::table::RouteTable::build(
        &apps,
        &claims,
        &state.lifecycle.config().domains,
        &instances,
    );
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::router::nginx::render(&table, &listen),
    )
        .into_response())
}

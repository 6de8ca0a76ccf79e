//! One proc of an app: deploy or undeploy it alone, restart its instances, run a command in
//! one of them. Every route needs the `operate` right on the app and is audited.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use super::trail::{AuditTrail, Outcome};
use crate::lifecycle::view::AppView;
use crate::runtime::ExecChunk;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The answer to a change the reconciler carries out: 202 and the app as it is now.
type Accepted = (StatusCode, Json<AppView>);

/// The request body, or the default when the body is empty.
fn optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("invalid {what}: {e}")))
}

/// What to deploy of one proc.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcDeployRequest {
    /// Release version; must be the deployed one (a proc runs its app's release).
    pub release: Option<String>,
}

/// Deploys one proc of a deployed app from its deployed release, as its proc type renders it
/// now; the other procs are left as they are. Brings back a proc undeployed alone.
#[utoipa::path(post, path = "/api/v1/apps/{app}/procs/{proc}/deploy", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = ProcDeployRequest,
    responses((status = 202, body = AppView),
        (status = 400, description = "Not a deploy request, or another release named", body = ErrorBody),
        (status = 404, description = "No such app, or no such proc in the release", body = ErrorBody),
        (status = 409, description = "The app is not deployed, a route belongs to another app, or a secret file is missing", body = ErrorBody),
        (status = 422, description = "lain.yaml no longer valid with the installed proc types", body = ErrorBody)))]
pub async fn deploy(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    body: Bytes,
) -> Result<Accepted, ApiError> {
    let request: ProcDeployRequest = optional_body(&body, "deploy request")?;
    let lc = state.lifecycle.clone();
    let record =
        blocking(move || Ok(lc.deploy_proc(&app, &proc, request.release.as_deref())?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Undeploys one proc: its instances stop, the other procs are left as they are. The next
/// deploy of the whole app runs it again.
#[utoipa::path(delete, path = "/api/v1/apps/{app}/procs/{proc}", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    responses((status = 202, body = AppView), (status = 404, body = ErrorBody),
        (status = 409, description = "The app is not deployed", body = ErrorBody)))]
pub async fn undeploy(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
) -> Result<Accepted, ApiError> {
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.undeploy_proc(&app, &proc)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Which instances to restart.
#[derive(Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestartRequest {
    /// Instance number; default every instance of the proc.
    pub instance: Option<u32>,
}

/// Restarts one instance of a proc, or all of them: each is replaced by a new instance, one
/// instance number at a time, the next once the previous new one is ready.
#[utoipa::path(post, path = "/api/v1/apps/{app}/procs/{proc}/restart", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = RestartRequest,
    responses((status = 202, body = AppView),
        (status = 400, description = "Not a restart request, or the proc runs to completion", body = ErrorBody),
        (status = 404, description = "No such app, proc or instance", body = ErrorBody),
        (status = 409, description = "The app is not deployed", body = ErrorBody)))]
pub async fn restart(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    body: Bytes,
) -> Result<Accepted, ApiError> {
    let request: RestartRequest = optional_body(&body, "restart request")?;
    let lc = state.lifecycle.clone();
    let record = blocking(move || Ok(lc.restart(&app, &proc, request.instance)?)).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(state.lifecycle.status().view(record)),
    ))
}

/// Longest a command may run (seconds).
pub const EXEC_TIMEOUT_MAX: u64 = 3600;
/// How long a command runs when the request does not say (seconds).
pub const EXEC_TIMEOUT_DEFAULT: u64 = 60;
/// Most arguments of a command, and most bytes of them together.
const EXEC_ARGS_MAX: (usize, usize) = (1024, 64 << 10);

/// A command to run in an instance.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    /// The command and its arguments (no shell; give `sh -c '...'` for one).
    pub command: Vec<String>,
    /// Instance number; default the lowest-numbered running instance.
    pub instance: Option<u32>,
    /// Seconds before the command is killed (default 60, at most 3600).
    pub timeout: Option<u64>,
}

/// Whether `command` is one a caller may ask to run: a program, bounded arguments, no NUL.
pub(super) fn check_command(command: &[String]) -> Result<(), ApiError> {
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::bad_request("give the command to run"));
    }
    let bytes: usize = command.iter().map(String::len).sum();
    if command.len() > EXEC_ARGS_MAX.0 || bytes > EXEC_ARGS_MAX.1 {
        return Err(ApiError::bad_request(format!(
            "a command has at most {} arguments of {} KiB together",
            EXEC_ARGS_MAX.0,
            EXEC_ARGS_MAX.1 >> 10
        )));
    }
    if command.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::bad_request("an argument holds a NUL byte"));
    }
    Ok(())
}

/// How an exec ended, for its audit record.
pub(super) fn exec_outcome(
    ended: &Result<crate::runtime::ExecOutput, crate::runtime::RuntimeError>,
    timeout: u64,
) -> Outcome {
    match ended {
        Ok(out) if out.timed_out => Outcome::Failed(format!("killed at its timeout of {timeout}s")),
        Ok(out) => match out.code {
            Some(0) => Outcome::Ok,
            Some(code) => Outcome::Failed(format!("exit status {code}")),
            None => Outcome::Failed("killed by a signal".into()),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// One line of `POST /api/v1/apps/{app}/procs/{proc}/exec`'s answer.
#[derive(Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum ExecEvent {
    /// The command started in this instance.
    Started {
        /// The instance's runtime name.
        name: String,
        /// The instance number.
        instance: u32,
    },
    /// Bytes it wrote to its standard output (base64).
    Stdout {
        /// Base64 of the bytes.
        data: String,
    },
    /// Bytes it wrote to its standard error (base64).
    Stderr {
        /// Base64 of the bytes.
        data: String,
    },
    /// It ended: the last line.
    Exited {
        /// Exit status; none when it was killed (by a signal, or at its timeout).
        code: Option<i32>,
        /// Whether it was killed at its timeout.
        timed_out: bool,
    },
    /// The runtime failed to run it or to follow it: the last line.
    Failed {
        /// What went wrong.
        message: String,
    },
}

/// Runs a command in a running instance of a proc, as the instance runs (its user,
/// environment, `/lain/app` and volumes), without a terminal or input. Answers with one JSON
/// event per line as it goes: `started`, its output as written (`stdout`, `stderr`, base64),
/// then `exited` with its status (or `failed`). A client that goes away kills the command when
/// it next writes (on Docker, which cannot stop an exec, it is left to end). The audit record
/// says how the command ended: `ok` for exit status 0, else `failed` with the status.
#[utoipa::path(post, path = "/api/v1/apps/{app}/procs/{proc}/exec", tag = "apps",
    params(("app" = String, Path, description = "App name"), ("proc" = String, Path, description = "Proc name")),
    request_body = ExecRequest,
    responses((status = 200, description = "application/x-ndjson stream of ExecEvent", body = ExecEvent,
            content_type = "application/x-ndjson"),
        (status = 400, description = "Not a command request", body = ErrorBody),
        (status = 404, description = "No such app or proc", body = ErrorBody),
        (status = 409, description = "No such instance running", body = ErrorBody)))]
pub async fn exec(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    trail: Option<Extension<AuditTrail>>,
    request: Result<Json<ExecRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = request?;
    check_command(&request.command)?;
    let timeout = request.timeout.unwrap_or(EXEC_TIMEOUT_DEFAULT);
    if timeout == 0 || timeout > EXEC_TIMEOUT_MAX {
        return Err(ApiError::bad_request(format!(
            "timeout is 1 to {EXEC_TIMEOUT_MAX} seconds"
        )));
    }
    let lc = state.lifecycle.clone();
    let instance = request.instance;
    let (name, number) = blocking(move || Ok(lc.exec_target(&app, &proc, instance)?)).await?;
    let (sink, chunks) = tokio::sync::mpsc::channel(16);
    let runtime = state.lifecycle.runtime();
    let started = ExecEvent::Started {
        name: name.clone(),
        instance: number,
    };
    // From here the answer is 200: the audit record waits for how the command ended.
    let trail = trail.map(|Extension(t)| t);
    if let Some(trail) = &trail {
        trail.defer();
    }
    let run = tokio::spawn(async move {
        let ended = runtime
            .exec_stream(&name, &request.command, Duration::from_secs(timeout), sink)
            .await;
        if let Some(trail) = trail {
            let outcome = exec_outcome(&ended, timeout);
            // Writing the record blocks on the store.
            let _ = tokio::task::spawn_blocking(move || trail.finish(outcome)).await;
        }
        ended
    });
    // Output while the command runs; once the runtime let go of the sender, how it ended.
    let events = futures::stream::once(async move { started }).chain(futures::stream::unfold(
        (chunks, Some(run)),
        |(mut chunks, run)| async move {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD;
            if let Some(chunk) = chunks.recv().await {
                let event = match chunk {
                    ExecChunk::Stdout(b) => ExecEvent::Stdout {
                        data: b64.encode(b),
                    },
                    ExecChunk::Stderr(b) => ExecEvent::Stderr {
                        data: b64.encode(b),
                    },
                };
                return Some((event, (chunks, run)));
            }
            let event = match run?.await {
                Ok(Ok(out)) => ExecEvent::Exited {
                    code: out.code,
                    timed_out: out.timed_out,
                },
                Ok(Err(e)) => ExecEvent::Failed {
                    message: e.to_string(),
                },
                Err(e) => ExecEvent::Failed {
                    message: format!("the command's task failed: {e}"),
                },
            };
            Some((event, (chunks, None)))
        },
    ));
    let lines = events.map(|event| {
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
}

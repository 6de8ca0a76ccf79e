//! `GET /api/v1/apps/{app}/procs/{proc}/exec/tty`: a command on a terminal in an instance
//! (`lain exec -t`), over a WebSocket, because a terminal needs both directions at once and
//! window resizes beside the bytes.
//!
//! The request is checked (rights, query, instance) before the upgrade, so a bad one gets its
//! HTTP error. After the upgrade:
//! - the client sends **binary** messages (bytes typed, at most [`MESSAGE_MAX`]) and **text**
//!   messages that are a [`TtyClientMessage`] (a resize); closing the socket hangs up (the
//!   command is killed where the runtime can);
//! - the kernel sends a text [`ExecEvent::Started`], then the terminal's output as **binary**
//!   messages, then a text [`ExecEvent::Exited`] or [`ExecEvent::Failed`], and closes.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use super::procs::{EXEC_TIMEOUT_MAX, ExecEvent, check_command, exec_outcome};
use super::trail::{AuditTrail, Outcome};
use crate::runtime::Runtime;
use crate::runtime::tty::{TTY_CHUNK_MAX, TtyCommand, TtyInput, TtySize, check_term};
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::{SinkExt as _, StreamExt as _};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// The largest WebSocket message either side may send.
pub const MESSAGE_MAX: usize = 2 * TTY_CHUNK_MAX;

/// A text message from the client.
#[derive(Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum TtyClientMessage {
    /// The client's window changed size.
    Resize(TtySize),
}

/// What the query of the request asks for.
#[derive(Debug, PartialEq)]
struct TtyQuery {
    command: Vec<String>,
    instance: Option<u32>,
    timeout: u64,
    size: TtySize,
    term: String,
}

impl TtyQuery {
    /// Reads `command` (repeated, one per argument), `instance`, `timeout` (seconds, default
    /// and at most [`EXEC_TIMEOUT_MAX`]), `rows`, `cols` (default 24x80) and `term` (default
    /// `xterm`); anything else is refused.
    fn parse(query: &str) -> Result<TtyQuery, ApiError> {
        let bad = |m: String| ApiError::bad_request(m);
        let number = |key: &str, value: &str| {
            value
                .parse::<u64>()
                .map_err(|_| bad(format!("`{key}` is a number, not {value:?}")))
        };
        let (mut command, mut instance, mut timeout) = (Vec::new(), None, EXEC_TIMEOUT_MAX);
        let (mut rows, mut cols, mut term) = (24, 80, "xterm".to_string());
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let small = |n: u64| u16::try_from(n).unwrap_or(u16::MAX);
            match &*key {
                "command" => command.push(value.into_owned()),
                "instance" => {
                    let n = number(&key, &value)?;
                    instance = Some(u32::try_from(n).map_err(|_| bad(format!("no instance {n}")))?);
                }
                "timeout" => timeout = number(&key, &value)?,
                "rows" => rows = small(number(&key, &value)?),
                "cols" => cols = small(number(&key, &value)?),
                "term" => term = value.into_owned(),
                other => {
                    return Err(bad(format!(
                        "unknown parameter `{other}` (command, instance, timeout, rows, cols, term)"
                    )));
                }
            }
        }
        check_command(&command)?;
        if timeout == 0 || timeout > EXEC_TIMEOUT_MAX {
            return Err(bad(format!("timeout is 1 to {EXEC_TIMEOUT_MAX} seconds")));
        }
        check_term(&term).map_err(bad)?;
        let size = TtySize::checked(rows, cols).map_err(bad)?;
        Ok(TtyQuery {
            command,
            instance,
            timeout,
            size,
            term,
        })
    }
}

/// Runs a command on a terminal in a running instance of a proc, as the instance runs, over a
/// WebSocket (see the module documentation of `kernel/src/api/terminal.rs` for the messages).
/// Query: `command` once per argument (no shell), `instance`, `timeout` (seconds, default 3600),
/// `rows` and `cols` (default 24 and 80), `term` (`TERM`, default `xterm`). The audit record
/// says how the command ended.
#[utoipa::path(get, path = "/api/v1/apps/{app}/procs/{proc}/exec/tty", tag = "apps",
    params(("app" = String, Path, description = "App name"),
        ("proc" = String, Path, description = "Proc name"),
        ("command" = Vec<String>, Query, description = "The command, one parameter per argument"),
        ("instance" = Option<u32>, Query, description = "Instance number; default the lowest running"),
        ("timeout" = Option<u64>, Query, description = "Seconds before it is killed (default and at most 3600)"),
        ("rows" = Option<u16>, Query, description = "Terminal rows (default 24)"),
        ("cols" = Option<u16>, Query, description = "Terminal columns (default 80)"),
        ("term" = Option<String>, Query, description = "TERM (default xterm)")),
    responses((status = 101, description = "WebSocket: binary messages carry the terminal's bytes, text messages an ExecEvent (kernel) or a TtyClientMessage (client)"),
        (status = 400, description = "Not a command request", body = ErrorBody),
        (status = 404, description = "No such app or proc", body = ErrorBody),
        (status = 409, description = "No such instance running", body = ErrorBody),
        (status = 426, description = "Not a WebSocket request", body = ErrorBody)))]
pub async fn exec_tty(
    State(state): State<AppState>,
    Path((app, proc)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    trail: Option<Extension<AuditTrail>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let query = TtyQuery::parse(query.as_deref().unwrap_or_default())?;
    let lc = state.lifecycle.clone();
    let instance = query.instance;
    let (name, number) = blocking(move || Ok(lc.exec_target(&app, &proc, instance)?)).await?;
    let upgrade = upgrade.map_err(|e| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "websocket-required",
            format!("this route is a WebSocket (`lain exec -t` speaks it): {e}"),
        )
    })?;
    // From here the audit record waits for how the command ended.
    let trail = trail.map(|Extension(t)| t);
    if let Some(trail) = &trail {
        trail.defer();
    }
    let failed_trail = trail.clone();
    let runtime = state.lifecycle.runtime();
    let session = Session {
        runtime,
        name,
        number,
        command: TtyCommand {
            argv: query.command,
            term: query.term,
            size: query.size,
            timeout: Duration::from_secs(query.timeout),
        },
    };
    let timeout = query.timeout;
    Ok(upgrade
        .max_message_size(MESSAGE_MAX)
        .max_frame_size(MESSAGE_MAX)
        .on_failed_upgrade(move |e| {
            if let Some(trail) = failed_trail {
                let outcome = Outcome::Failed(format!("the WebSocket upgrade failed: {e}"));
                tokio::task::spawn_blocking(move || trail.finish(outcome));
            }
        })
        .on_upgrade(move |socket| async move {
            let ended = session.run(socket).await;
            if let Some(trail) = trail {
                let outcome = exec_outcome(&ended, timeout);
                // Writing the record blocks on the store.
                let _ = tokio::task::spawn_blocking(move || trail.finish(outcome)).await;
            }
        }))
}

/// One command on a terminal, relayed between its WebSocket and the runtime.
struct Session {
    runtime: Arc<dyn Runtime>,
    name: String,
    number: u32,
    command: TtyCommand,
}

impl Session {
    /// Relays until the command ends or the client leaves; returns how it ended.
    async fn run(
        self,
        socket: WebSocket,
    ) -> Result<crate::runtime::ExecOutput, crate::runtime::RuntimeError> {
        let (mut sink, mut stream) = socket.split();
        let started = ExecEvent::Started {
            name: self.name.clone(),
            instance: self.number,
        };
        let _ = sink.send(event(&started)).await;
        let (typed, input) = mpsc::channel(16);
        let (output, mut terminal) = mpsc::channel(16);
        let (runtime, name, command) = (self.runtime, self.name, self.command);
        let run =
            tokio::spawn(async move { runtime.exec_tty(&name, &command, input, output).await });
        // The client's messages; dropping `typed` tells the runtime that the client left.
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let input = match message {
                    Message::Binary(bytes) => TtyInput::Data(bytes.to_vec()),
                    Message::Text(text) => match serde_json::from_str(&text) {
                        Ok(TtyClientMessage::Resize(size)) => {
                            match TtySize::checked(size.rows, size.cols) {
                                Ok(size) => TtyInput::Resize(size),
                                Err(e) => return Some(e),
                            }
                        }
                        Err(e) => return Some(format!("a text message is a resize: {e}")),
                    },
                    Message::Close(_) => return None,
                    Message::Ping(_) | Message::Pong(_) => continue,
                };
                if typed.send(input).await.is_err() {
                    return None;
                }
            }
            None
        });
        while let Some(bytes) = terminal.recv().await {
            if sink.send(Message::Binary(bytes.into())).await.is_err() {
                break;
            }
        }
        // Nobody reads any more: a runtime still running the command sees its output refused.
        drop(terminal);
        let ended = match run.await {
            Ok(ended) => ended,
            Err(e) => Err(crate::runtime::RuntimeError::Failed(format!(
                "the command's task failed: {e}"
            ))),
        };
        reader.abort();
        // A client that broke the protocol is told why its command was ended.
        let refused = match reader.await {
            Ok(Some(why)) => Some(why),
            _ => None,
        };
        let last = match (&ended, refused) {
            (Ok(out), _) => ExecEvent::Exited {
                code: out.code,
                timed_out: out.timed_out,
            },
            (Err(_), Some(why)) => ExecEvent::Failed {
                message: format!("the client sent what this route does not take: {why}"),
            },
            (Err(e), None) => ExecEvent::Failed {
                message: e.to_string(),
            },
        };
        let _ = sink.send(event(&last)).await;
        let _ = sink.close().await;
        ended
    }
}

fn event(event: &ExecEvent) -> Message {
    Message::Text(serde_json::to_string(event).unwrap_or_default().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_with_defaults_and_anything_else_is_refused() {
        let q = TtyQuery::parse("command=sh&command=-c&command=echo%20a%26b").expect("valid");
        assert_eq!(q.command, ["sh", "-c", "echo a&b"]);
        assert_eq!(
            (q.size, q.timeout, q.term.as_str()),
            (TtySize { rows: 24, cols: 80 }, EXEC_TIMEOUT_MAX, "xterm")
        );
        let q =
            TtyQuery::parse("command=sh&rows=50&cols=200&term=xterm-256color&instance=2&timeout=5")
                .expect("valid");
        assert_eq!(
            (q.size.rows, q.size.cols, q.instance, q.timeout),
            (50, 200, Some(2), 5)
        );
        for bad in [
            "",
            "command=",
            "command=sh&rows=0",
            "command=sh&cols=99999",
            "command=sh&timeout=0",
            "command=sh&timeout=3601",
            "command=sh&term=a%0Ab",
            "command=sh&instance=-1",
            "command=sh&user=root",
            "command=a%00b",
        ] {
            assert!(TtyQuery::parse(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_resize_is_the_only_text_message() {
        let resize: TtyClientMessage =
            serde_json::from_str(r#"{"resize":{"rows":40,"cols":120}}"#).expect("resize");
        assert_eq!(
            resize,
            TtyClientMessage::Resize(TtySize {
                rows: 40,
                cols: 120
            })
        );
        assert!(serde_json::from_str::<TtyClientMessage>(r#"{"signal":9}"#).is_err());
    }
}

//! `GET /api/v1/watch`: changes of apps (with their procs and instances), nodes and plugins as
//! server-sent events or NDJSON, for routers, monitors, consoles and scripts (LAIN's lainlet).
//!
//! Contract:
//! - Without `from` (and without `Last-Event-ID`), the stream starts with a snapshot: one
//!   `snapshot` event per visible object, then a `synced` event whose id is the store revision
//!   the snapshot was read at; changes after it follow.
//! - With `from=ID` (or `Last-Event-ID: ID`, which wins), it sends every change after `ID` with
//!   no gap and no duplicate: ids are `REV` (every change of store revision `REV` sent) or
//!   `REV.N` (the first `N + 1` events of `REV` sent), so a stream cut in the middle of one
//!   revision's events resumes after the last one it delivered. A `from` whose history the store
//!   no longer keeps answers 410 `compacted`: re-list (watch without `from`).
//! - Events carry the object as the API shows it when the event is made (its current state);
//!   `status` events (an app's instances changed, as the reconciler saw them) are not store
//!   changes: they have no id and are not replayed, and a resumed stream first sends the current
//!   status of every visible app.
//! - Rights: apps the caller may not read yield nothing, checked at every event; nodes and
//!   plugins are seen by every authenticated caller (as their lists are), and not when the
//!   watch is narrowed to one app.
//! - Bounds: at most [`MAX_WATCHERS`] watches at once (503 beyond); each holds at most
//!   [`BUFFER`] events for its client; a client that leaves it full for [`PATIENCE`] is sent a
//!   final `error` event (`too-slow`) and dropped, and resumes from its last id.

mod events;
mod position;

pub use events::{WatchAction, WatchEvent, WatchKind};

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::auth::Caller;
use crate::auth::rights::Right;
use crate::store::{Change, Watch};
use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use events::Filter;
use position::Position;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Most watches open at once.
pub const MAX_WATCHERS: usize = 256;
/// Events a watch holds for its client.
pub const BUFFER: usize = 128;
/// How long a full buffer may stay full before its client is dropped.
pub const PATIENCE: Duration = Duration::from_secs(2);
/// How often a watch with nothing to send looks at the reconciler's status.
const STATUS_POLL: Duration = Duration::from_millis(50);

static WATCHERS: AtomicUsize = AtomicUsize::new(0);

/// What to watch.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WatchQuery {
    /// Resume after this event id (`REV` or `REV.N`); absent: start with a snapshot.
    /// `Last-Event-ID` wins over it.
    pub from: Option<String>,
    /// Only this app (nodes and plugins are then left out). 403 if the caller may not read it.
    pub app: Option<String>,
    /// Comma-separated kinds to follow: `app`, `node`, `plugin` (default: all).
    pub kinds: Option<String>,
    /// `sse` (default) or `ndjson` (one JSON object a line, its `event` field naming it).
    pub format: Option<String>,
}

/// One server-sent event of the watch, as it goes over the wire (for the OpenAPI document).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SseEvent {
    /// `app`, `node`, `plugin`, `synced` or `error`.
    pub event: String,
    /// JSON: a [`WatchEvent`] for `app`, `node` and `plugin`; `{"revision": N}` for `synced`;
    /// `{"code": ..., "message": ...}` for `error`.
    pub data: String,
    /// The position after this event (absent on snapshot, status and error events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// One frame for the client: an SSE event name, its id, its JSON data.
struct Frame {
    event: &'static str,
    id: Option<String>,
    data: serde_json::Value,
}

/// Streams changes; see the module docs for the contract.
#[utoipa::path(get, path = "/api/v1/watch", tag = "watch", params(WatchQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id (wins over `from`)")),
    responses(
        (status = 200, description = "Server-sent events (`text/event-stream`): events `app`, `node` and `plugin` with a WatchEvent as data, `synced` with `{revision}`, `error` with `{code, message}`; or NDJSON with `format=ndjson` (the same objects, one a line, with `event` and `id` fields)", body = SseEvent, content_type = "text/event-stream"),
        (status = 400, description = "Bad `from`, `kinds` or `format`", body = ErrorBody),
        (status = 410, description = "`from` is older than the history the store keeps: re-list", body = ErrorBody),
        (status = 503, description = "Too many watches open", body = ErrorBody)))]
pub async fn watch(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<WatchQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let kinds = parse_kinds(q.kinds.as_deref())?;
    let ndjson = match q.format.as_deref() {
        None | Some("sse") => false,
        Some("ndjson") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format `{other}`: expected `sse` or `ndjson`"
            )));
        }
    };
    let resume = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("Last-Event-ID: not text"))
        })
        .transpose()?
        .or(q.from);
    let resume = resume.as_deref().map(Position::parse).transpose()?;
    if let Some(app) = &q.app {
        let (access, who, app) = (state.access.clone(), caller.clone(), app.clone());
        super::error::blocking(move || {
            access
                .authorize(&who, Right::Read, Some(&app))
                .map_err(|e| match e {
                    crate::auth::Denied::Store(e) => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "store-unavailable",
                        format!("cannot check access: {e}"),
                    ),
                    denied => ApiError::new(StatusCode::FORBIDDEN, "forbidden", denied.to_string()),
                })
        })
        .await?;
    }
    let slot = Slot::take()?;
    let filter = Filter {
        state: state.clone(),
        caller,
        kinds,
        app: q.app,
        sent: HashMap::new(),
    };
    // A resumed watch is opened before answering, so a compacted `from` is a 410.
    let opened = match resume {
        Some(position) => {
            let store = state.lifecycle.store_handle();
            let watch = super::error::blocking(move || {
                store.watch("", position.watch_from()).map_err(|e| {
                    if e.0.starts_with("compacted") {
                        ApiError::new(StatusCode::GONE, "compacted", e.0)
                    } else {
                        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store-unavailable", e.0)
                    }
                })
            })
            .await?;
            Some((position, watch))
        }
        None => None,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let overflow = Arc::new(AtomicBool::new(false));
    let producer = Producer {
        filter,
        tx,
        status: state.lifecycle.status().subscribe(),
        overflow: overflow.clone(),
        _slot: slot,
    };
    std::thread::Builder::new()
        .name("lain-api-watch".into())
        .spawn(move || producer.run(opened))
        .map_err(|e| ApiError::internal(format!("cannot start the watch: {e}")))?;
    let frames = futures::stream::unfold((rx, Some(overflow)), |(mut rx, overflow)| async move {
        if let Some(frame) = rx.recv().await {
            return Some((frame, (rx, overflow)));
        }
        // The producer is gone: say why, once, if it was the client's slowness.
        let overflow = overflow?;
        overflow.load(Ordering::SeqCst).then(|| {
            (
                error_frame(
                    "too-slow",
                    format!(
                        "the client left {BUFFER} events unread for {}s; watch again from the \
                         last event id",
                        PATIENCE.as_secs()
                    ),
                ),
                (rx, None),
            )
        })
    });
    use futures::StreamExt as _;
    Ok(if ndjson {
        let lines = frames.map(|f| {
            let mut line = match f.data {
                serde_json::Value::Object(map) => map,
                other => {
                    let mut map = serde_json::Map::new();
                    map.insert("data".into(), other);
                    map
                }
            };
            line.insert("event".into(), f.event.into());
            if let Some(id) = f.id {
                line.insert("id".into(), id.into());
            }
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
        });
        (
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(lines),
        )
            .into_response()
    } else {
        let events = frames.map(|f| {
            let mut event = Event::default().event(f.event).data(f.data.to_string());
            if let Some(id) = f.id {
                event = event.id(id);
            }
            Ok::<_, std::convert::Infallible>(event)
        });
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response()
    })
}

fn parse_kinds(kinds: Option<&str>) -> Result<BTreeSet<WatchKind>, ApiError> {
    let Some(kinds) = kinds else {
        return Ok(WatchKind::ALL.into_iter().collect());
    };
    kinds
        .split(',')
        .map(|k| {
            WatchKind::parse(k.trim()).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "kinds: unknown kind `{k}`; expected some of app, node, plugin"
                ))
            })
        })
        .collect()
}

fn error_frame(code: &str, message: String) -> Frame {
    Frame {
        event: "error",
        id: None,
        data: serde_json::json!({ "code": code, "message": message }),
    }
}

/// One of the [`MAX_WATCHERS`] places, given back when dropped.
struct Slot;

impl Slot {
    fn take() -> Result<Slot, ApiError> {
        let taken = WATCHERS.fetch_add(1, Ordering::SeqCst);
        if taken >= MAX_WATCHERS {
            WATCHERS.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too-many-watchers",
                format!("{MAX_WATCHERS} watches are open; try again later"),
            ));
        }
        Ok(Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        WATCHERS.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The thread that makes one watch's events.
struct Producer {
    filter: Filter,
    tx: mpsc::Sender<Frame>,
    status: tokio::sync::watch::Receiver<u64>,
    overflow: Arc<AtomicBool>,
    _slot: Slot,
}

impl Producer {
    /// Sends the snapshot (or the current status, on a resumed watch), then changes until the
    /// client goes, is too slow, or the store fails.
    fn run(mut self, opened: Option<(Position, Watch)>) {
        if let Err(e) = self.follow(opened) {
            let _ = self.tx.try_send(error_frame("store", format!("{e:#}")));
        }
    }

    fn follow(&mut self, opened: Option<(Position, Watch)>) -> anyhow::Result<()> {
        let store = self.filter.state.lifecycle.store_handle();
        let (mut position, watch) = match opened {
            Some((position, watch)) => {
                for event in self.filter.status(position.revision)? {
                    if !self.send(event_frame(event)) {
                        return Ok(());
                    }
                }
                (position, watch)
            }
            None => {
                // Listed before the watch is opened, so a slow reader of a large snapshot
                // holds no store feed meanwhile.
                let revision = store.revision()?;
                for event in self.filter.snapshot(revision)? {
                    if !self.send(event_frame(event)) {
                        return Ok(());
                    }
                }
                let synced = Frame {
                    event: "synced",
                    id: Some(revision.to_string()),
                    data: serde_json::json!({ "revision": revision }),
                };
                if !self.send(synced) {
                    return Ok(());
                }
                (Position::at(revision), store.watch("", revision)?)
            }
        };
        let mut pending: Option<Change> = None;
        loop {
            if self.tx.is_closed() {
                return Ok(());
            }
            let first = match pending.take() {
                Some(change) => Some(change),
                None => watch.recv_timeout(STATUS_POLL)?,
            };
            if let Some(first) = first {
                let mut batch = vec![first];
                // The changes of one revision arrive together.
                while let Some(next) = watch.recv_timeout(Duration::ZERO)? {
                    if next.revision == batch[0].revision {
                        batch.push(next);
                    } else {
                        pending = Some(next);
                        break;
                    }
                }
                let events = self.filter.changes(&batch)?;
                for frame in position.number(batch[0].revision, events) {
                    if !self.send(frame) {
                        return Ok(());
                    }
                }
            }
            if self.status.has_changed().unwrap_or(false) {
                self.status.borrow_and_update();
                for event in self.filter.status(position.revision)? {
                    if !self.send(event_frame(event)) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Sends `frame`, waiting at most [`PATIENCE`] for room; false when the watch must end.
    fn send(&self, frame: Frame) -> bool {
        let deadline = Instant::now() + PATIENCE;
        let mut frame = frame;
        loop {
            match self.tx.try_send(frame) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
                Err(mpsc::error::TrySendError::Full(back)) => {
                    if Instant::now() >= deadline {
                        self.overflow.store(true, Ordering::SeqCst);
                        tracing::info!("a watch client read too slowly: dropped");
                        return false;
                    }
                    frame = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}

/// The frame of a watch event.
fn event_frame(event: WatchEvent) -> Frame {
    Frame {
        event: event.kind.name(),
        id: event.id.clone(),
        data: serde_json::to_value(&event).unwrap_or_default(),
    }
}

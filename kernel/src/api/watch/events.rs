//! What a watch sends: [`WatchEvent`]s made from store changes and from the reconciler's
//! published status, each checked against the caller's rights when it is made.

use crate::api::AppState;
use crate::auth::rights::Right;
use crate::auth::{Caller, Denied};
use crate::lifecycle::records::{APPS, NODES, NodeRecord, RELEASES};
use crate::store::{Change, Op};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};

/// Where installed plugins' records live in the store.
const PLUGINS: &str = "plugins/records/";

/// What a watch can follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WatchKind {
    /// An app as `GET /api/v1/apps/{app}` shows it: its record, procs and instances.
    App,
    /// A node as `GET /api/v1/nodes` shows it.
    Node,
    /// A plugin as `GET /api/v1/plugins` shows it.
    Plugin,
}

impl WatchKind {
    /// Every kind.
    pub const ALL: [WatchKind; 3] = [WatchKind::App, WatchKind::Node, WatchKind::Plugin];

    /// Its name in `kinds=` and in the events.
    pub fn name(self) -> &'static str {
        match self {
            WatchKind::App => "app",
            WatchKind::Node => "node",
            WatchKind::Plugin => "plugin",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<WatchKind> {
        WatchKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// What happened to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WatchAction {
    /// Listed at the start of a watch without `from` (the snapshot).
    Snapshot,
    /// Written in the store (created or changed).
    Put,
    /// Removed from the store.
    Delete,
    /// Its instances changed as the reconciler saw them (not a store change: instance state
    /// is observed, not stored, so these events are sent live and are not replayed).
    Status,
}

/// One event of `GET /api/v1/watch`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct WatchEvent {
    /// Where the stream is after this event, the SSE event id: `REV` once every change of
    /// store revision `REV` was sent, `REV.N` after the first `N + 1` events of revision `REV`.
    /// Absent on snapshot events (a stream cut during its snapshot starts over).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The store revision the event comes from (for status events: the last one sent).
    pub revision: u64,
    /// What kind of object.
    pub kind: WatchKind,
    /// The object's name (app, node or plugin name).
    pub name: String,
    /// What happened.
    pub action: WatchAction,
    /// The object as the API shows it when the event is made (its current state, not the one
    /// of that revision); absent for deletes and when it is gone meanwhile.
    #[schema(value_type = Option<Object>)]
    pub object: Option<serde_json::Value>,
}

/// What one watch may see and has sent, shared by its snapshot, changes and status events.
pub struct Filter {
    pub state: AppState,
    pub caller: Caller,
    pub kinds: BTreeSet<WatchKind>,
    pub app: Option<String>,
    /// The last status view sent per app (without its pass number), to send only changes.
    pub sent: HashMap<String, serde_json::Value>,
}

impl Filter {
    /// Whether the caller may see app `app` now (rights may change during a watch).
    fn may_read(&self, app: &str) -> Result<bool, crate::store::StoreError> {
        if self.app.as_deref().is_some_and(|a| a != app) {
            return Ok(false);
        }
        match self
            .state
            .access
            .authorize(&self.caller, Right::Read, Some(app))
        {
            Ok(()) => Ok(true),
            Err(Denied::Store(e)) => Err(e),
            Err(Denied::Right { .. }) => Ok(false),
        }
    }

    /// The object and event of store key `key`, if the watch follows it: (kind, name).
    fn subject(&self, key: &str) -> Option<(WatchKind, String)> {
        let (kind, name) = if let Some(app) = key.strip_prefix(APPS) {
            (WatchKind::App, app)
        } else if let Some(rest) = key.strip_prefix(RELEASES) {
            (WatchKind::App, rest.split('/').next()?)
        } else if let Some(node) = key.strip_prefix(NODES) {
            (WatchKind::Node, node)
        } else if let Some(plugin) = key.strip_prefix(PLUGINS) {
            (WatchKind::Plugin, plugin)
        } else {
            return None;
        };
        (self.kinds.contains(&kind) && !name.is_empty() && !name.contains('/'))
            .then(|| (kind, name.to_string()))
    }

    /// The view of app `name` as `GET /api/v1/apps/{app}` shows it, if it exists.
    fn app_view(&self, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        match self.state.lifecycle.app(name) {
            Ok(record) => Ok(Some(serde_json::to_value(
                self.state.lifecycle.status().view(record),
            )?)),
            Err(crate::lifecycle::LifecycleError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The current view of `kind` `name`, if it exists.
    fn object(&self, kind: WatchKind, name: &str) -> anyhow::Result<Option<serde_json::Value>> {
        Ok(match kind {
            WatchKind::App => self.app_view(name)?,
            WatchKind::Node => self
                .state
                .lifecycle
                .nodes()?
                .into_iter()
                .find(|n| n.name == name)
                .map(|n: NodeRecord| serde_json::to_value(n))
                .transpose()?,
            WatchKind::Plugin => self
                .state
                .registry
                .list()
                .into_iter()
                .find(|p| p.name == name)
                .map(serde_json::to_value)
                .transpose()?,
        })
    }

    /// Whether the caller sees objects of `kind` named `name`.
    fn visible(&self, kind: WatchKind, name: &str) -> anyhow::Result<bool> {
        Ok(match kind {
            WatchKind::App => self.may_read(name)?,
            // Listed to every authenticated caller by the API.
            WatchKind::Node | WatchKind::Plugin => self.app.is_none(),
        })
    }

    /// The snapshot at `revision`: every visible object of the watched kinds.
    pub fn snapshot(&mut self, revision: u64) -> anyhow::Result<Vec<WatchEvent>> {
        let mut out = Vec::new();
        let mut names: Vec<(WatchKind, String)> = Vec::new();
        if self.kinds.contains(&WatchKind::App) {
            names.extend(
                self.state
                    .lifecycle
                    .apps()?
                    .into_iter()
                    .map(|a| (WatchKind::App, a.name)),
            );
        }
        if self.kinds.contains(&WatchKind::Node) {
            names.extend(
                self.state
                    .lifecycle
                    .nodes()?
                    .into_iter()
                    .map(|n| (WatchKind::Node, n.name)),
            );
        }
        if self.kinds.contains(&WatchKind::Plugin) {
            names.extend(
                self.state
                    .registry
                    .list()
                    .into_iter()
                    .map(|p| (WatchKind::Plugin, p.name)),
            );
        }
        for (kind, name) in names {
            if !self.visible(kind, &name)? {
                continue;
            }
            let Some(object) = self.object(kind, &name)? else {
                continue;
            };
            if kind == WatchKind::App {
                self.sent.insert(name.clone(), without_pass(&object));
            }
            out.push(WatchEvent {
                id: None,
                revision,
                kind,
                name,
                action: WatchAction::Snapshot,
                object: Some(object),
            });
        }
        Ok(out)
    }

    /// The events of the changes of one store revision, in order, without ids (the caller
    /// numbers them); one event per object, at the place of its last change.
    pub fn changes(&mut self, batch: &[Change]) -> anyhow::Result<Vec<WatchEvent>> {
        let mut last: Vec<(WatchKind, String, bool)> = Vec::new();
        for change in batch {
            let Some((kind, name)) = self.subject(change.op.key()) else {
                continue;
            };
            // A release write is a put of its app, whatever happened to the release.
            let deleted =
                matches!(change.op, Op::Delete(_)) && !change.op.key().starts_with(RELEASES);
            last.retain(|(k, n, _)| !(*k == kind && *n == name));
            last.push((kind, name, deleted));
        }
        let mut out = Vec::new();
        for (kind, name, deleted) in last {
            if !self.visible(kind, &name)? {
                continue;
            }
            let object = if deleted {
                None
            } else {
                self.object(kind, &name)?
            };
            if kind == WatchKind::App {
                match &object {
                    Some(o) => self.sent.insert(name.clone(), without_pass(o)),
                    None => self.sent.remove(&name),
                };
            }
            out.push(WatchEvent {
                id: None,
                revision: batch.first().map_or(0, |c| c.revision),
                kind,
                name,
                action: if deleted {
                    WatchAction::Delete
                } else {
                    WatchAction::Put
                },
                object,
            });
        }
        Ok(out)
    }

    /// Status events: the visible apps whose view changed since it was last sent (the
    /// reconciler published a pass), or never sent on this watch.
    pub fn status(&mut self, revision: u64) -> anyhow::Result<Vec<WatchEvent>> {
        if !self.kinds.contains(&WatchKind::App) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for app in self.state.lifecycle.apps()? {
            if !self.may_read(&app.name)? {
                continue;
            }
            let name = app.name.clone();
            let view = serde_json::to_value(self.state.lifecycle.status().view(app))?;
            let bare = without_pass(&view);
            if self.sent.get(&name) == Some(&bare) {
                continue;
            }
            self.sent.insert(name.clone(), bare);
            out.push(WatchEvent {
                id: None,
                revision,
                kind: WatchKind::App,
                name,
                action: WatchAction::Status,
                object: Some(view),
            });
        }
        Ok(out)
    }
}

/// An app view without the number of the pass it comes from (which changes every pass).
fn without_pass(view: &serde_json::Value) -> serde_json::Value {
    let mut bare = view.clone();
    if let Some(map) = bare.as_object_mut() {
        map.remove("pass");
    }
    bare
}

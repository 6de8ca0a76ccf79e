//! The scheduling pipeline as operators change it while the kernel runs.
//!
//! The pipeline (members in order, scorer weights) is kept in the state store under
//! [`PIPELINE_KEY`]. The kernel configuration's `[scheduler]` section only seeds it: the first
//! kernel to open a store without a pipeline writes its `[scheduler]` there; from then on the
//! store's copy is the one in force, changed with `PUT /api/v1/scheduler` (`lain scheduler set`),
//! and a kernel whose `[scheduler]` differs from it says so in its log. Each reconciler pass reads
//! the stored pipeline and rebuilds its scheduling pipeline when it changed, then checks the
//! instances already placed against it: those the new pipeline would not put on their node are
//! *misfits*, published per kernel under [`MISFITS_PREFIX`] and moved (stateless ones only) when
//! an operator asks ([`MOVES_KEY`]).

use super::Config;
use crate::plugin::bindings::scheduling::Roles;
use crate::plugin::kinds::scheduler::LiveScheduler;
use crate::plugin::registry::Registry;
use crate::plugin::{Cause, Kind};
use crate::store::{Expect, Op, Store, StoreError, get_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Store key of the pipeline in force (JSON [`Config`]).
pub const PIPELINE_KEY: &str = "scheduler/pipeline";
/// Store key of the instances an operator asked to move (JSON [`Moves`]).
pub const MOVES_KEY: &str = "scheduler/moves";
/// Store prefix of the misfits each kernel found (JSON list of [`Misfit`] per kernel id).
pub const MISFITS_PREFIX: &str = "scheduler/misfits/";
/// Largest weight of a scorer.
pub const MAX_WEIGHT: u32 = 100;

/// An instance the pipeline in force would not place on the node it runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Misfit {
    /// Instance name.
    pub instance: String,
    /// App name.
    pub app: String,
    /// Proc full name (`app.type.proc`).
    pub proc: String,
    /// Instance number.
    pub number: u32,
    /// The node it runs on.
    pub node: String,
    /// Stateful instances own their node's volumes: they are reported, never moved.
    pub stateful: bool,
    /// The pipeline member that removes its node.
    pub filter: String,
}

impl Misfit {
    /// One line for `lain ps` and LAST ERROR.
    pub fn describe(&self) -> String {
        let what = if self.stateful {
            "it is stateful, so it stays (its volumes are on that node)"
        } else {
            "move it with `lain scheduler check --move`"
        };
        format!(
            "instance {} on {} no longer fits the scheduler pipeline (`{}` removes {}); {what}",
            self.number, self.node, self.filter, self.node
        )
    }
}

/// Instances an operator asked to move to a node the pipeline in force chooses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Moves {
    /// Unix seconds of the request.
    pub requested_at: i64,
    /// Instance names; each is replaced once, then dropped from the list.
    pub instances: Vec<String>,
}

/// Why a pipeline change or read failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The change is refused; nothing changed.
    #[error("scheduler pipeline refused: {0}")]
    Invalid(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored pipeline, misfits and move requests.
#[derive(Clone)]
pub struct Live {
    store: Arc<dyn Store>,
}

impl Live {
    /// Over `store`.
    pub fn new(store: Arc<dyn Store>) -> Live {
        Live { store }
    }

    /// Writes `seed` (the kernel configuration's `[scheduler]`) when the store has no pipeline
    /// yet; returns the pipeline in force.
    pub fn seed(&self, seed: &Config) -> Result<Config, LiveError> {
        let value = serde_json::to_vec(seed).map_err(|e| StoreError(e.to_string()))?;
        let absent = Expect {
            key: PIPELINE_KEY.into(),
            value: None,
        };
        if self
            .store
            .apply_if(&[absent], vec![Op::Put(PIPELINE_KEY.into(), value)])?
            .is_some()
        {
            return Ok(seed.clone());
        }
        let current = self.current()?;
        if current != *seed {
            tracing::warn!(
                "[scheduler] in the kernel config ({:?}) differs from the pipeline in the store \
                 ({:?}, changed with `lain scheduler set`): the store's is in force",
                seed.plugins,
                current.plugins
            );
        }
        Ok(current)
    }

    /// The pipeline in force (the default one when none was ever stored).
    pub fn current(&self) -> Result<Config, LiveError> {
        Ok(get_json::<Config>(self.store.as_ref(), PIPELINE_KEY)?.unwrap_or_default())
    }

    /// Checks `new` against the installed plugins ([`check`]) and puts it in force; a refusal
    /// names every problem and changes nothing.
    pub fn set(&self, registry: &Registry, new: Config) -> Result<Config, LiveError> {
        check(&new, |name| roles_of(registry, name)).map_err(LiveError::Invalid)?;
        let value = serde_json::to_vec(&new).map_err(|e| StoreError(e.to_string()))?;
        // A blind set: the pipeline given replaces the stored one whole, whatever it was.
        self.store
            .apply(vec![Op::Put(PIPELINE_KEY.into(), value)])?;
        Ok(new)
    }

    /// Every kernel's misfits, by instance name.
    pub fn misfits(&self) -> Result<Vec<Misfit>, LiveError> {
        let mut out = Vec::new();
        for (key, value) in self.store.list(MISFITS_PREFIX)? {
            let list: Vec<Misfit> =
                serde_json::from_slice(&value).map_err(|e| StoreError(format!("{key}: {e}")))?;
            out.extend(list);
        }
        out.sort_by(|a, b| (&a.proc, a.number, &a.instance).cmp(&(&b.proc, b.number, &b.instance)));
        Ok(out)
    }

    /// Publishes the misfits kernel `kernel_id` found.
    pub fn publish_misfits(&self, kernel_id: &str, misfits: &[Misfit]) -> Result<(), LiveError> {
        let key = format!("{MISFITS_PREFIX}{kernel_id}");
        let op = if misfits.is_empty() {
            Op::Delete(key)
        } else {
            Op::Put(
                key,
                serde_json::to_vec(misfits).map_err(|e| StoreError(e.to_string()))?,
            )
        };
        // This kernel's own key, written whole from what it found: no read decides it.
        self.store.apply(vec![op])?;
        Ok(())
    }

    /// The instances asked to move.
    pub fn moves(&self) -> Result<Moves, LiveError> {
        Ok(get_json::<Moves>(self.store.as_ref(), MOVES_KEY)?.unwrap_or_default())
    }

    /// Asks for every stateless misfit to move; returns the request (stateful misfits are not in
    /// it).
    pub fn request_moves(&self) -> Result<Moves, LiveError> {
        let misfits: Vec<String> = self
            .misfits()?
            .into_iter()
            .filter(|m| !m.stateful)
            .map(|m| m.instance)
            .collect();
        // Added to the stored request, which a concurrent request or prune may change.
        crate::store::transact(&*self.store, MOVES_KEY, |txn| {
            let mut names: BTreeSet<String> = txn
                .get_json::<Moves>(MOVES_KEY)?
                .unwrap_or_default()
                .instances
                .into_iter()
                .collect();
            names.extend(misfits.iter().cloned());
            let moves = Moves {
                requested_at: crate::clock::unix_secs(),
                instances: names.into_iter().collect(),
            };
            txn.put_json(MOVES_KEY, &moves)?;
            Ok::<_, LiveError>(moves)
        })
    }

    /// Drops the move requests of instances that no longer exist (`live` says which do), if
    /// the request did not change meanwhile.
    pub fn prune_moves(&self, live: impl Fn(&str) -> bool) -> Result<(), LiveError> {
        let Some(old) = self.store.get(MOVES_KEY)? else {
            return Ok(());
        };
        let moves: Moves =
            serde_json::from_slice(&old).map_err(|e| StoreError(format!("{MOVES_KEY}: {e}")))?;
        let kept: Vec<String> = moves
            .instances
            .iter()
            .filter(|n| live(n))
            .cloned()
            .collect();
        if kept.len() == moves.instances.len() {
            return Ok(());
        }
        let op = if kept.is_empty() {
            Op::Delete(MOVES_KEY.into())
        } else {
            let next = Moves {
                instances: kept,
                ..moves
            };
            Op::Put(
                MOVES_KEY.into(),
                serde_json::to_vec(&next).map_err(|e| StoreError(e.to_string()))?,
            )
        };
        let expect = Expect {
            key: MOVES_KEY.into(),
            value: Some(old),
        };
        // A concurrent request wins; the next pass prunes again.
        self.store.apply_if(&[expect], vec![op])?;
        Ok(())
    }
}

/// The roles of the installed, enabled scheduler plugin `name` (asked of a fresh instance), or
/// why it cannot be a member.
pub fn roles_of(registry: &Registry, name: &str) -> Result<Roles, String> {
    let plugin = match registry.get(name) {
        None => return Err(format!("no plugin named `{name}` is installed")),
        Some(Err(Cause::Disabled)) => {
            return Err(format!(
                "`{name}` is disabled (enable it with `lain plugin enable {name}`)"
            ));
        }
        Some(Err(cause)) => return Err(format!("`{name}`: {cause}")),
        Some(Ok(plugin)) => plugin,
    };
    if plugin.kind() != Kind::SchedulerFilter {
        return Err(format!(
            "`{name}` is a {} plugin, not a {} plugin",
            plugin.kind(),
            Kind::SchedulerFilter
        ));
    }
    LiveScheduler::start(plugin)
        .and_then(|mut s| s.describe())
        .map(|info| info.roles)
        .map_err(|e| format!("`{name}` cannot describe itself: {e}"))
}

/// Checks a pipeline: at least one member, each once, each a scheduler plugin that can serve
/// (`roles` says its roles or why not); weights only for members that score, each at most
/// [`MAX_WEIGHT`]. Every problem is named.
pub fn check(config: &Config, roles: impl Fn(&str) -> Result<Roles, String>) -> Result<(), String> {
    let mut problems = Vec::new();
    if config.plugins.is_empty() {
        problems.push("the pipeline needs at least one member".to_string());
    }
    let mut seen = BTreeSet::new();
    let mut known = std::collections::BTreeMap::new();
    for name in &config.plugins {
        if !seen.insert(name.as_str()) {
            problems.push(format!("`{name}` is listed twice"));
            continue;
        }
        match roles(name) {
            Ok(r) if r.intersects(Roles::SCORE | Roles::FILTER) => {
                known.insert(name.as_str(), r);
            }
            Ok(_) => problems.push(format!("`{name}` says it neither filters nor scores")),
            Err(e) => problems.push(e),
        }
    }
    for (name, weight) in &config.weights {
        if !seen.contains(name.as_str()) {
            problems.push(format!("weight for `{name}`, which is not a member"));
        } else if known
            .get(name.as_str())
            .is_some_and(|r| !r.contains(Roles::SCORE))
        {
            problems.push(format!(
                "weight for `{name}`, which only filters (weights apply to scores)"
            ));
        }
        if *weight > MAX_WEIGHT {
            problems.push(format!(
                "weight {weight} for `{name}` is out of range (0 to {MAX_WEIGHT})"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
mod tests;

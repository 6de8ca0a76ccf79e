//! `/api/v1/scheduler`: the scheduling pipeline in force, changed live; the instances that no
//! longer fit it, and moving them (see [`crate::schedule::live`]).

use super::error::{ApiError, ErrorBody, blocking};
use super::{AppState, Json};
use crate::plugin::Kind;
use crate::plugin::bindings::scheduling::Roles;
use crate::plugin::registry::Registry;
use crate::schedule::live::roles_of;
use crate::schedule::{Config, Live, LiveError, Misfit, Moves};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

impl From<LiveError> for ApiError {
    fn from(e: LiveError) -> ApiError {
        match e {
            LiveError::Invalid(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-pipeline",
                e.to_string(),
            ),
            LiveError::Store(e) => e.into(),
        }
    }
}

/// One member of the pipeline.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberView {
    /// Plugin name.
    pub name: String,
    /// What it does: `filter`, `score`.
    pub roles: Vec<String>,
    /// Weight of its scores (scorers only).
    pub weight: Option<u32>,
    /// Why it cannot serve (uninstalled or disabled since the pipeline was set).
    pub problem: Option<String>,
}

/// The pipeline in force.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PipelineView {
    /// Members in order: filters narrow the candidates in this order.
    pub plugins: Vec<String>,
    /// Weights set for scorers (others weigh 1).
    pub weights: BTreeMap<String, u32>,
    /// Each member with its roles.
    pub members: Vec<MemberView>,
    /// Installed, enabled scheduler plugins that are not members (they are never called).
    pub outside: Vec<String>,
}

/// Installed, enabled scheduler plugins that `config` leaves out.
fn outside(registry: &Registry, config: &Config) -> Vec<String> {
    registry
        .list()
        .into_iter()
        .filter(|p| p.kind == Kind::SchedulerFilter && p.enabled)
        .filter(|p| !config.plugins.contains(&p.name))
        .map(|p| p.name)
        .collect()
}

fn view(registry: &Registry, config: Config) -> PipelineView {
    let members = config
        .plugins
        .iter()
        .map(|name| {
            let (roles, problem) = match roles_of(registry, name) {
                Ok(r) => (r, None),
                Err(e) => (Roles::empty(), Some(e)),
            };
            let mut names = Vec::new();
            if roles.contains(Roles::FILTER) {
                names.push("filter".to_string());
            }
            if roles.contains(Roles::SCORE) {
                names.push("score".to_string());
            }
            MemberView {
                name: name.clone(),
                weight: roles
                    .contains(Roles::SCORE)
                    .then(|| config.weights.get(name).copied().unwrap_or(1)),
                roles: names,
                problem,
            }
        })
        .collect();
    PipelineView {
        outside: outside(registry, &config),
        plugins: config.plugins,
        weights: config.weights,
        members,
    }
}

/// The scheduling pipeline in force.
#[utoipa::path(get, path = "/api/v1/scheduler", tag = "scheduler",
    responses((status = 200, body = PipelineView)))]
pub async fn show(State(state): State<AppState>) -> Result<Json<PipelineView>, ApiError> {
    let live = Live::new(state.lifecycle.store_handle());
    let registry = state.registry.clone();
    Ok(Json(
        blocking(move || Ok(view(&registry, live.current()?))).await?,
    ))
}

/// Replaces the scheduling pipeline. Every member must be an installed, enabled scheduler
/// plugin, listed once; weights apply to scorers only, 0 to 100. A refusal names every problem
/// and changes nothing. The reconciler rebuilds its pipeline on its next pass, without a restart,
/// and re-checks the instances already placed (see `GET /api/v1/scheduler/misfits`).
#[utoipa::path(put, path = "/api/v1/scheduler", tag = "scheduler", request_body = Config,
    responses((status = 200, body = PipelineView),
        (status = 422, description = "Refused: unknown, disabled or duplicate member, weight out of range or on a filter", body = ErrorBody)))]
pub async fn set(
    State(state): State<AppState>,
    body: Result<Json<Config>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<PipelineView>, ApiError> {
    let Json(config) = body?;
    let live = Live::new(state.lifecycle.store_handle());
    let registry = state.registry.clone();
    let view = blocking(move || {
        let config = live.set(&registry, config)?;
        Ok(view(&registry, config))
    })
    .await?;
    state.lifecycle.wake();
    Ok(Json(view))
}

/// Instances the pipeline in force would not place on their node (checked after each pipeline
/// change; every kernel publishes its own).
#[utoipa::path(get, path = "/api/v1/scheduler/misfits", tag = "scheduler",
    responses((status = 200, body = [Misfit])))]
pub async fn misfits(State(state): State<AppState>) -> Result<Json<Vec<Misfit>>, ApiError> {
    let live = Live::new(state.lifecycle.store_handle());
    Ok(Json(blocking(move || Ok(live.misfits()?)).await?))
}

/// The answer to a move request.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MoveView {
    /// Stateless instances that get a replacement placed by the pipeline in force, one instance
    /// number of a proc at a time; each old one is retired once its replacement is ready.
    pub moving: Moves,
    /// Stateful misfits (stateful, or with volumes): they own their node's volumes and stay.
    pub stay: Vec<Misfit>,
}

/// Moves every stateless misfit to a node the pipeline in force chooses.
#[utoipa::path(post, path = "/api/v1/scheduler/moves", tag = "scheduler",
    responses((status = 200, body = MoveView)))]
pub async fn request_moves(State(state): State<AppState>) -> Result<Json<MoveView>, ApiError> {
    let live = Live::new(state.lifecycle.store_handle());
    let view = blocking(move || {
        let moving = live.request_moves()?;
        let stay = live.misfits()?.into_iter().filter(|m| m.stateful).collect();
        Ok(MoveView { moving, stay })
    })
    .await?;
    state.lifecycle.wake();
    Ok(Json(view))
}

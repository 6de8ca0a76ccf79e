//! Nodes: list, add, drain, remove.

use super::AppState;
use super::error::{ApiError, ErrorBody, blocking};
use crate::lifecycle::records::{NodeRecord, NodeState};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Every node.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, body = Vec<NodeRecord>)))]
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<NodeRecord>>, ApiError> {
    let lc = state.lifecycle.clone();
    Ok(Json(blocking(move || Ok(lc.nodes()?)).await?))
}

/// A node to add.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNode {
    /// Node name.
    pub name: String,
    /// Where its runtime is reached (`local` for this host).
    #[serde(default = "local")]
    pub address: String,
    /// Labels for scheduling filters.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Memory for instances, bytes.
    pub memory: u64,
    /// CPU for instances, milli-cores.
    #[serde(default)]
    pub cpu: u32,
}

fn local() -> String {
    "local".into()
}

/// Adds a node, or replaces the labels and capacity of an existing one.
#[utoipa::path(post, path = "/api/v1/nodes", tag = "nodes", request_body = NewNode,
    responses((status = 201, body = NodeRecord), (status = 400, body = ErrorBody)))]
pub async fn add(
    State(state): State<AppState>,
    node: Result<Json<NewNode>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<NodeRecord>), ApiError> {
    let Json(node) = node?;
    let lc = state.lifecycle.clone();
    let record = NodeRecord {
        name: node.name,
        address: node.address,
        labels: node.labels,
        memory: node.memory,
        cpu: node.cpu,
        state: NodeState::Ready,
        added_at: crate::clock::unix_secs(),
    };
    lc.admit_node(&record).await?;
    let node = blocking(move || Ok(lc.add_node(record)?)).await?;
    Ok((StatusCode::CREATED, Json(node)))
}

/// Maintenance switch.
#[derive(Deserialize, utoipa::ToSchema)]
pub struct Maintain {
    /// True drains the node; false returns it to service.
    pub on: bool,
}

/// Puts a node in or out of maintenance.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/maintain", tag = "nodes",
    params(("name" = String, Path, description = "Node name")), request_body = Maintain,
    responses((status = 200, body = NodeRecord), (status = 404, body = ErrorBody)))]
pub async fn maintain(
    State(state): State<AppState>,
    Path(name): Path<String>,
    m: Result<Json<Maintain>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<NodeRecord>, ApiError> {
    let Json(m) = m?;
    let lc = state.lifecycle.clone();
    Ok(Json(
        blocking(move || Ok(lc.set_maintenance(&name, m.on)?)).await?,
    ))
}

/// Removes a node that runs nothing.
#[utoipa::path(delete, path = "/api/v1/nodes/{name}", tag = "nodes",
    params(("name" = String, Path, description = "Node name")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let lc = state.lifecycle.clone();
    blocking(move || Ok(lc.remove_node(&name)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

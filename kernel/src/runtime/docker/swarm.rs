//! Overlay mode (`[docker] network = "overlay"`): the engines are members of one Docker swarm,
//! and each app's network is a swarm-scope attachable overlay network created through a manager
//! engine, so that its containers reach each other by name on whichever engine they run.

use crate::runtime::RuntimeError;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::LocalNodeState;
use std::collections::HashMap;

/// An engine's place in a swarm, from its `/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Its swarm node id.
    pub node_id: String,
    /// Whether it is a manager (can create swarm-scope networks).
    pub manager: bool,
}

/// The engine at `address`'s swarm membership; an error naming the engine when it is not an
/// active member of a swarm.
pub async fn membership(docker: &Docker, address: &str) -> Result<Membership, RuntimeError> {
    let info = docker
        .info()
        .await
        .map_err(|e| RuntimeError::Failed(format!("engine {address}: {e}")))?;
    let swarm = info.swarm.unwrap_or_default();
    let state = swarm.local_node_state.unwrap_or(LocalNodeState::EMPTY);
    match (state, swarm.node_id.filter(|id| !id.is_empty())) {
        (LocalNodeState::ACTIVE, Some(node_id)) => Ok(Membership {
            node_id,
            manager: swarm.control_available.unwrap_or(false),
        }),
        (state, _) => Err(RuntimeError::Invalid {
            name: address.to_string(),
            reason: format!(
                "[docker] network = \"overlay\" needs every node's engine in the swarm, and \
                 engine {address} is not an active swarm member (swarm state `{state}`{}): run \
                 `docker swarm join` on it first",
                swarm
                    .error
                    .filter(|e| !e.is_empty())
                    .map(|e| format!(", error: {e}"))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// Whether swarm node `node_id` (an engine at `address`) belongs to the swarm that `manager`
/// (at `manager_address`) manages; an error naming both when not.
pub async fn check_member(
    manager: &Docker,
    manager_address: &str,
    node_id: &str,
    address: &str,
) -> Result<(), RuntimeError> {
    match manager.inspect_node(node_id).await {
        Ok(_) => Ok(()),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Err(RuntimeError::Invalid {
            name: address.to_string(),
            reason: format!(
                "engine {address} is in a swarm (node {node_id}), but not in the one managed by \
                 engine {manager_address}: the nodes of one kernel must share one swarm"
            ),
        }),
        Err(e) => Err(RuntimeError::Failed(format!(
            "asking manager engine {manager_address} about swarm node {node_id}: {e}"
        ))),
    }
}

/// Makes sure the attachable overlay network `name` exists in the swarm, created through
/// `manager` with `labels`.
pub async fn ensure_overlay(
    manager: &Docker,
    manager_address: &str,
    name: &str,
    labels: HashMap<String, String>,
) -> Result<(), RuntimeError> {
    if let Some(scope) = scope_of(manager, name).await? {
        return expect_swarm_scope(&scope, name, manager_address);
    }
    let request = bollard::models::NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("overlay".into()),
        attachable: Some(true),
        labels: Some(labels),
        ..Default::default()
    };
    match manager.create_network(request).await {
        Ok(_) => Ok(()),
        // Created meanwhile (swarm network names are unique): fine if it is one.
        Err(e) => match scope_of(manager, name).await? {
            Some(scope) => expect_swarm_scope(&scope, name, manager_address),
            None => Err(RuntimeError::Failed(format!(
                "overlay network {name} through manager engine {manager_address}: {e}"
            ))),
        },
    }
}

/// Refuses an engine holding a local network of the app's name (a bridge left from bridge
/// mode): a container started there would join it instead of the overlay.
pub async fn refuse_local_network(
    docker: &Docker,
    address: &str,
    name: &str,
) -> Result<(), RuntimeError> {
    match scope_of(docker, name).await? {
        Some(scope) if scope == "local" => Err(RuntimeError::Invalid {
            name: address.to_string(),
            reason: format!(
                "engine {address} has a local network {name} (from bridge mode?), which would \
                 shadow the app's overlay network: remove it (`docker network rm {name}`, after \
                 its containers) before running the app in overlay mode"
            ),
        }),
        _ => Ok(()),
    }
}

/// The scope (`local`, `swarm`) of network `name` on an engine, `None` when it has none.
async fn scope_of(docker: &Docker, name: &str) -> Result<Option<String>, RuntimeError> {
    match docker.inspect_network(name, None).await {
        Ok(network) => Ok(Some(network.scope.unwrap_or_default())),
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(RuntimeError::Failed(format!("network {name}: {e}"))),
    }
}

fn expect_swarm_scope(scope: &str, name: &str, manager_address: &str) -> Result<(), RuntimeError> {
    if scope == "swarm" {
        return Ok(());
    }
    Err(RuntimeError::Invalid {
        name: name.to_string(),
        reason: format!(
            "manager engine {manager_address} has a {scope}-scope network {name} (from bridge \
             mode?) where the app's overlay network should be: remove it (`docker network rm \
             {name}`, after its containers) before running the app in overlay mode"
        ),
    })
}

//! Nodes: the embedded default registers this host; operators add, remove and drain others.

use super::records::{self, NodeRecord, NodeState};
use super::{Lifecycle, LifecycleError};
use crate::runtime::LOCAL_NODE as LOCAL;
use crate::store::{Op, put_json, transact};
use std::collections::BTreeMap;

impl Lifecycle {
    /// Every node, by name.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, LifecycleError> {
        self.records.nodes()
    }

    /// Registers this host as node `local` the first time the kernel starts.
    pub fn register_local_node(&self) -> Result<(), LifecycleError> {
        const DONE: &str = "kernel/local-node-registered";
        if self.records.store.get(DONE)?.is_some() {
            return Ok(());
        }
        let node = NodeRecord {
            name: LOCAL.into(),
            address: "local".into(),
            labels: default_labels(),
            memory: host_memory(),
            cpu: std::thread::available_parallelism().map_or(1, |n| n.get() as u32) * 1000,
            state: NodeState::Ready,
            added_at: crate::clock::unix_secs(),
        };
        // Once per store, even when two kernels start at once: the second finds DONE.
        transact(&*self.records.store, DONE, |txn| {
            if txn.get(DONE)?.is_none() {
                txn.put_json(&records::node_key(LOCAL), &node)?;
                txn.write(Op::Put(DONE.into(), b"1".to_vec()));
            }
            Ok::<_, LifecycleError>(())
        })
    }

    /// Adds (or updates) a node; without a `group` label it joins LAIN's `default` group.
    pub fn add_node(&self, mut node: NodeRecord) -> Result<NodeRecord, LifecycleError> {
        if !node.labels.contains_key("group") {
            node.labels.extend(default_labels());
        }
        if !records::valid_name(&node.name) {
            return Err(LifecycleError::Invalid(format!(
                "invalid node name `{}`: use a-z 0-9 - _ .",
                node.name
            )));
        }
        let engine = node.address.starts_with("unix://")
            || node.address.starts_with("tcp://")
            || node.address.starts_with("http://");
        if self.runtime.name() == "docker" && node.address != "local" && !engine {
            return Err(LifecycleError::Invalid(format!(
                "node address `{}`: a Docker engine is unix:///path, tcp://host:port or \
                 http://host:port (or `local`)",
                node.address
            )));
        }
        if node.address != "local" && self.runtime.name() == "process" {
            return Err(LifecycleError::Invalid(format!(
                "the process runtime runs instances on this host only: node address must be \
                 `local`, not `{}`",
                node.address
            )));
        }
        if node.memory == 0 {
            return Err(LifecycleError::Invalid("a node needs memory > 0".into()));
        }
        // A blind set: the whole record comes from the request, nothing read decides it.
        self.records
            .store
            .apply(vec![put_json(&records::node_key(&node.name), &node)?])?;
        self.records.wake();
        Ok(node)
    }

    /// Checks with the runtime that `node`'s engine can take instances (in Docker overlay mode:
    /// that it is a member of the nodes' swarm), before [`Lifecycle::add_node`].
    pub async fn admit_node(&self, node: &NodeRecord) -> Result<(), LifecycleError> {
        let address = match node.address.as_str() {
            "local" if self.runtime.name() == "docker" => self.config.docker.local.clone(),
            "local" => return Ok(()),
            other => other.to_string(),
        };
        self.runtime.admit_node(&address).await.map_err(|e| {
            let why = match e {
                crate::runtime::RuntimeError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            LifecycleError::Invalid(format!("node `{}`: {why}", node.name))
        })
    }

    /// Puts a node in or out of maintenance: in maintenance it takes no new instance and its
    /// stateless instances move to other nodes.
    pub fn set_maintenance(&self, name: &str, on: bool) -> Result<NodeRecord, LifecycleError> {
        let key = records::node_key(name);
        let node = transact(&*self.records.store, &key, |txn| {
            let mut node: NodeRecord = txn
                .get_json(&key)?
                .ok_or_else(|| LifecycleError::NotFound(format!("no node named `{name}`")))?;
            node.state = if on {
                NodeState::Maintenance
            } else {
                NodeState::Ready
            };
            txn.put_json(&key, &node)?;
            Ok::<_, LifecycleError>(node)
        })?;
        self.records.wake();
        Ok(node)
    }

    /// Removes a node that runs no instance (drain it with maintenance first).
    pub fn remove_node(&self, name: &str) -> Result<(), LifecycleError> {
        let key = records::node_key(name);
        transact(&*self.records.store, &key, |txn| {
            if txn.get(&key)?.is_none() {
                return Err(LifecycleError::NotFound(format!("no node named `{name}`")));
            }
            let running = self.status.instances_on(name);
            if running > 0 {
                return Err(LifecycleError::Conflict(format!(
                    "node `{name}` still runs {running} instance(s): `lain node maintain {name}` \
                     drains it first"
                )));
            }
            txn.delete(&key);
            Ok(())
        })?;
        self.records.wake();
        Ok(())
    }
}

/// LAIN's node group: procs without a `group` filter get `constraint:group==default`.
fn default_labels() -> BTreeMap<String, String> {
    BTreeMap::from([("group".to_string(), "default".to_string())])
}

/// Total memory of this host in bytes (`/proc/meminfo`), or 1 GiB if unknown.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1 << 30, |kib| kib * 1024)
}

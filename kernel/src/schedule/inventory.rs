//! The kernel's authoritative copy of what scheduler plugins mirror.

use crate::plugin::bindings::scheduling::{
    LabelDef, Node, NodeState, NodeUsage, Placement, ProcRequirements,
};
use std::collections::HashMap;

/// Dense node id, reused after a node is removed.
pub type NodeId = u32;
/// Dense proc id, reused after a proc is forgotten.
pub type ProcId = u32;

/// Nodes, interned labels, procs and placements.
#[derive(Default)]
pub struct Inventory {
    labels: Vec<LabelDef>,
    label_ids: HashMap<(String, String), u32>,
    nodes: Vec<Option<(String, Node)>>,
    node_ids: HashMap<String, NodeId>,
    usage: Vec<NodeUsage>,
    procs: Vec<Option<ProcRequirements>>,
    proc_ids: HashMap<String, ProcId>,
    /// Per proc id: instance count per node id.
    counts: Vec<Vec<u32>>,
    present: Vec<u64>,
}

impl Inventory {
    /// Interns `key=value`, returning its id and whether it is new.
    pub fn intern(&mut self, key: &str, value: &str) -> (u32, bool) {
        if let Some(&id) = self.label_ids.get(&(key.to_string(), value.to_string())) {
            return (id, false);
        }
        let id = self.labels.len() as u32;
        self.labels.push(LabelDef {
            id,
            key: key.into(),
            value: value.into(),
        });
        self.label_ids.insert((key.into(), value.into()), id);
        (id, true)
    }

    /// Adds or replaces a node; returns it and the labels it interned for the first time.
    pub fn upsert_node(
        &mut self,
        name: &str,
        labels: &[(String, String)],
        memory: u64,
        cpu: u32,
    ) -> (Node, Vec<LabelDef>) {
        let mut new_labels = Vec::new();
        let mut ids = Vec::with_capacity(labels.len() + 1);
        for (k, v) in labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("node", name)])
        {
            let (id, new) = self.intern(k, v);
            if new {
                new_labels.push(self.labels[id as usize].clone());
            }
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let id = match self.node_ids.get(name) {
            Some(&id) => id,
            None => {
                let id = self
                    .nodes
                    .iter()
                    .position(Option::is_none)
                    .unwrap_or(self.nodes.len()) as NodeId;
                self.node_ids.insert(name.to_string(), id);
                id
            }
        };
        let node = Node {
            id,
            labels: ids,
            memory,
            cpu,
        };
        let i = id as usize;
        if self.nodes.len() <= i {
            self.nodes.resize(i + 1, None);
            self.usage.resize(i + 1, idle(0));
        }
        self.nodes[i] = Some((name.to_string(), node.clone()));
        if self.usage[i].id != id || self.usage[i].state == NodeState::Down {
            self.usage[i] = idle(id);
        }
        set_bit(&mut self.present, id, true);
        (node, new_labels)
    }

    /// Removes a node; returns its id if it existed. Its placements are dropped.
    pub fn remove_node(&mut self, name: &str) -> Option<NodeId> {
        let id = self.node_ids.remove(name)?;
        self.nodes[id as usize] = None;
        self.usage[id as usize] = idle(id);
        set_bit(&mut self.present, id, false);
        for counts in &mut self.counts {
            if let Some(c) = counts.get_mut(id as usize) {
                *c = 0;
            }
        }
        Some(id)
    }

    /// Sets a node's state and outside usage.
    pub fn set_usage(&mut self, usage: NodeUsage) {
        if let Some(slot) = self.usage.get_mut(usage.id as usize) {
            *slot = usage;
        }
    }

    /// The id of a node.
    pub fn node_id(&self, name: &str) -> Option<NodeId> {
        self.node_ids.get(name).copied()
    }

    /// The name of a node.
    pub fn node_name(&self, id: NodeId) -> Option<&str> {
        self.nodes
            .get(id as usize)?
            .as_ref()
            .map(|(n, _)| n.as_str())
    }

    /// Allocates (or finds) the id of a proc by name.
    pub fn proc_id(&mut self, name: &str) -> ProcId {
        if let Some(&id) = self.proc_ids.get(name) {
            return id;
        }
        let id = self
            .procs
            .iter()
            .position(Option::is_none)
            .unwrap_or(self.procs.len()) as ProcId;
        if self.procs.len() <= id as usize {
            self.procs.resize(id as usize + 1, None);
            self.counts.resize(id as usize + 1, Vec::new());
        }
        self.proc_ids.insert(name.to_string(), id);
        id
    }

    /// The current requirements of a proc.
    pub fn proc(&self, id: ProcId) -> Option<&ProcRequirements> {
        self.procs.get(id as usize)?.as_ref()
    }

    /// Stores a proc's requirements (after every member accepted them).
    pub fn set_proc(&mut self, req: ProcRequirements) {
        let i = req.id as usize;
        self.procs[i] = Some(req);
    }

    /// Forgets a proc and its placements; returns its id if it existed.
    pub fn forget_proc(&mut self, name: &str) -> Option<ProcId> {
        let id = self.proc_ids.remove(name)?;
        self.procs[id as usize] = None;
        self.counts[id as usize].clear();
        Some(id)
    }

    /// Records `count` more (or fewer) instances of `proc` on `node`.
    pub fn record(&mut self, p: &Placement) {
        let Some(counts) = self.counts.get_mut(p.proc as usize) else {
            return;
        };
        if counts.len() <= p.node as usize {
            counts.resize(p.node as usize + 1, 0);
        }
        let c = &mut counts[p.node as usize];
        *c = c.saturating_add_signed(p.count);
    }

    /// Instances of `proc` on `node`.
    pub fn count(&self, proc: ProcId, node: NodeId) -> u32 {
        self.counts
            .get(proc as usize)
            .and_then(|c| c.get(node as usize))
            .copied()
            .unwrap_or(0)
    }

    /// Bitmap of the nodes that exist.
    pub fn present(&self) -> &[u64] {
        &self.present
    }

    /// Everything a fresh plugin instance needs, in the order it must be sent.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            labels: self.labels.clone(),
            nodes: self
                .nodes
                .iter()
                .flatten()
                .map(|(_, n)| n.clone())
                .collect(),
            usage: self
                .nodes
                .iter()
                .flatten()
                .map(|(_, n)| self.usage[n.id as usize])
                .collect(),
            procs: self.procs.iter().flatten().cloned().collect(),
            placements: self
                .counts
                .iter()
                .enumerate()
                .flat_map(|(p, counts)| {
                    counts
                        .iter()
                        .enumerate()
                        .filter(|(_, c)| **c > 0)
                        .map(move |(n, c)| Placement {
                            proc: p as u32,
                            node: n as u32,
                            count: i32::try_from(*c).unwrap_or(i32::MAX),
                        })
                })
                .collect(),
        }
    }
}

/// The full state, for replay into a fresh plugin instance.
pub struct Snapshot {
    /// All interned labels.
    pub labels: Vec<LabelDef>,
    /// All nodes.
    pub nodes: Vec<Node>,
    /// Usage of every node.
    pub usage: Vec<NodeUsage>,
    /// All procs.
    pub procs: Vec<ProcRequirements>,
    /// Non-zero instance counts.
    pub placements: Vec<Placement>,
}

fn idle(id: NodeId) -> NodeUsage {
    NodeUsage {
        id,
        state: NodeState::Ready,
        memory_reserved: 0,
        cpu_reserved: 0,
    }
}

fn set_bit(words: &mut Vec<u64>, id: u32, on: bool) {
    let (w, b) = ((id / 64) as usize, id % 64);
    if words.len() <= w {
        words.resize(w + 1, 0);
    }
    if on {
        words[w] |= 1 << b;
    } else {
        words[w] &= !(1 << b);
    }
}

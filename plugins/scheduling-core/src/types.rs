//! Plain data types mirroring the records of the `scheduling` WIT interface.

use crate::bitmap;

/// An interned node label: the kernel maps each distinct `key=value` to one id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelDef {
    /// Label id, dense and kernel-assigned.
    pub id: u32,
    /// Label key, e.g. `group`; every node carries `node=<node name>`.
    pub key: String,
    /// Label value, e.g. `default`.
    pub value: String,
}

/// Static facts of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// Node id, dense (`0..n`) and kernel-assigned.
    pub id: u32,
    /// Interned label ids (see [`LabelDef`]).
    pub labels: Vec<u32>,
    /// Allocatable memory in bytes.
    pub memory: u64,
    /// Allocatable CPU in milli-cores; 0 means CPU is not accounted on this node.
    pub cpu: u32,
}

/// Scheduling state of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum NodeState {
    /// Takes new instances (the state of a node until told otherwise).
    #[default]
    Ready,
    /// Being drained by an operator: keeps what runs, takes nothing new.
    Maintenance,
    /// Not answering.
    Down,
}

/// State and usage of a node not caused by the placements the algorithm was told about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeUsage {
    /// Node id.
    pub id: u32,
    /// Scheduling state.
    pub state: NodeState,
    /// Memory in bytes reserved by instances not reported as placements.
    pub memory_reserved: u64,
    /// CPU in milli-cores reserved likewise.
    pub cpu_reserved: u32,
}

/// What a proc needs from a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcRequirements {
    /// Proc id, dense, kernel-assigned and reused after a forget.
    pub id: u32,
    /// Full name `<app>.<type>.<proc>`.
    pub name: String,
    /// App name.
    pub app: String,
    /// Memory per instance in bytes.
    pub memory: u64,
    /// CPU per instance in milli-cores; 0 means none requested.
    pub cpu: u32,
    /// LAIN scheduling filters, e.g. `constraint:group==default`, `affinity:proctype!=~db`.
    pub filters: Vec<String>,
    /// The proc's container labels as `key=value`.
    pub labels: Vec<String>,
}

/// A change in where instances run: `count` instances of `proc` added (positive) or removed
/// (negative) on `node`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Proc id.
    pub proc: u32,
    /// Node id.
    pub node: u32,
    /// Instances added (positive) or removed (negative).
    pub count: i32,
}

/// What an algorithm does in the pipeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles {
    /// `evaluate` narrows the candidate set; the kernel ANDs the results.
    pub filter: bool,
    /// `evaluate` writes scores; the kernel sums them over the feasible nodes.
    pub score: bool,
}

/// Values per node and level (WIT `score-rows`, `rank-rows`): a default row of `levels` values
/// for every node, and the rows of the nodes that differ from it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rows<T> {
    /// The row of every node not in `nodes`; empty: no table.
    pub default: Vec<T>,
    /// Nodes with their own row, in increasing id order.
    pub nodes: Vec<u32>,
    /// Their rows, one after the other.
    pub rows: Vec<T>,
}

impl<T: Copy + PartialEq> Rows<T> {
    /// A table whose every node has the row `default`.
    pub fn new(default: Vec<T>) -> Self {
        Rows {
            default,
            nodes: Vec::new(),
            rows: Vec::new(),
        }
    }

    /// Gives `node` the row `row` (of the default's length) unless it equals the default. Nodes
    /// must be given in increasing id order.
    pub fn set(&mut self, node: u32, row: &[T]) {
        if row != self.default.as_slice() {
            self.nodes.push(node);
            self.rows.extend_from_slice(row);
        }
    }
}

/// An answer for several instances of one proc (WIT `scheduling-levels.levels-verdict`): what
/// most nodes share said once, the exceptions listed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelsVerdict {
    /// Filter role: the nodes with room for at least `levels` more instances (a bitmap).
    pub open: Vec<u64>,
    /// Filter role: `(node, room)` of the nodes with room for 1 to `levels - 1`, in increasing id
    /// order. Every other node takes none.
    pub limited: Vec<(u32, u32)>,
    /// Filter role, optional: preference ranks; of the candidates still in the running, only
    /// those of the highest rank pass.
    pub rank: Rows<u32>,
    /// Score role: scores (`0..=1000`).
    pub scores: Rows<u16>,
}

impl LevelsVerdict {
    /// Records that `node` has room for `room` more instances, out of a table of `levels`
    /// levels. Nodes must be given in increasing id order.
    pub fn set_room(&mut self, node: u32, room: u32, levels: usize) {
        if room as usize >= levels {
            bitmap::set(&mut self.open, node);
        } else if room > 0 {
            self.limited.push((node, room));
        }
    }
}

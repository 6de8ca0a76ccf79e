//! Plain data types mirroring the records of the `scheduling` WIT interface.

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

/// An answer for several instances of one proc (WIT `scheduling-levels.levels-verdict`).
///
/// Tables are indexed by node id over `candidates.len() * 64` ids; the level tables are
/// node-major with `levels` entries per node: entry `node * levels + k` is for the node's
/// (k+1)-th new instance of the proc.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelsVerdict {
    /// Filter role: how many more instances each node may take (0: none).
    pub room: Vec<u32>,
    /// Filter role, optional: a preference rank per node and level; of the candidates still in
    /// the running, only those of the highest rank pass. Empty: no preference.
    pub rank: Vec<u32>,
    /// Score role: a score (`0..=1000`) per node and level.
    pub scores: Vec<u16>,
}

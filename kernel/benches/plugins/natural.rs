//! Variant c: the scheduler a kernel without plugins would plausibly have, over string data.

use crate::scheduling::{Cluster, Placer};
use crate::{NODE_CPU, NODE_MEMORY, PROC_CPU, PROC_MEMORY, PROCS, strings};
use anyhow::{Context, Result, bail, ensure};
use lain::plugin::bindings::scheduling::NodeState;
use std::cmp::Reverse;
use std::collections::HashMap;

/// Variant c: the scheduler a kernel without plugins would plausibly have.
///
/// Nodes are structs with string labels; each placement loops over every node, checks its state
/// and free memory and CPU, then the proc's filters (parsed once per proc, matched against label
/// strings per node; `affinity:` looks through the procs running on the node), applies the soft
/// filters to the survivors, and takes the best spread score, lowest id on ties: the rule the
/// pipeline applies. Of LAIN's filter syntax it lacks only globs, which [`PROCS`] do not use.
pub struct Natural {
    nodes: Vec<NaturalNode>,
    procs: Vec<NaturalProc>,
    /// Instances per (proc, node).
    instances: HashMap<(usize, usize), u32>,
}

/// A node as variant c keeps it.
struct NaturalNode {
    name: String,
    labels: Vec<(String, String)>,
    ready: bool,
    free_memory: u64,
    free_cpu: u32,
}

/// A proc as variant c keeps it: its filters parsed once.
struct NaturalProc {
    memory: u64,
    cpu: u32,
    /// Container labels, `key=value`.
    labels: Vec<String>,
    filters: Vec<NaturalFilter>,
}

/// `(constraint|affinity):<key>(==|!=)[~]<value>`, split once.
struct NaturalFilter {
    affinity: bool,
    key: String,
    negate: bool,
    soft: bool,
    value: String,
}

impl NaturalFilter {
    fn parse(text: &str) -> Result<NaturalFilter> {
        let (kind, expr) = text
            .split_once(':')
            .with_context(|| format!("filter {text}: no kind"))?;
        let affinity = match kind {
            "constraint" => false,
            "affinity" => true,
            _ => bail!("filter {text}: unknown kind {kind}"),
        };
        let (key, negate, value) = match (expr.split_once("=="), expr.split_once("!=")) {
            (Some((key, value)), _) => (key, false, value),
            (None, Some((key, value))) => (key, true, value),
            (None, None) => bail!("filter {text}: no == or !="),
        };
        let (soft, value) = match value.strip_prefix('~') {
            Some(value) => (true, value),
            None => (false, value),
        };
        ensure!(
            !value.contains('*'),
            "filter {text}: the natural baseline has no globs"
        );
        Ok(NaturalFilter {
            affinity,
            key: key.to_string(),
            negate,
            soft,
            value: value.to_string(),
        })
    }
}

impl Natural {
    pub fn new(cluster: &Cluster) -> Result<Natural> {
        let nodes = cluster
            .nodes
            .iter()
            .map(|n| NaturalNode {
                name: n.name.clone(),
                labels: n.labels.clone(),
                ready: n.state == NodeState::Ready,
                free_memory: NODE_MEMORY.saturating_sub(n.memory_reserved),
                free_cpu: NODE_CPU,
            })
            .collect();
        let procs = PROCS
            .iter()
            .map(|p| {
                Ok(NaturalProc {
                    memory: PROC_MEMORY,
                    cpu: PROC_CPU,
                    labels: strings(p.labels),
                    filters: p
                        .filters
                        .iter()
                        .map(|f| NaturalFilter::parse(f))
                        .collect::<Result<_>>()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Natural {
            nodes,
            procs,
            instances: HashMap::new(),
        })
    }

    /// Instances of `proc` on node `id`.
    fn count(&self, proc: usize, id: usize) -> u32 {
        self.instances.get(&(proc, id)).copied().unwrap_or(0)
    }

    /// Whether node `id` passes filter `f`.
    fn satisfies(&self, f: &NaturalFilter, id: usize, node: &NaturalNode) -> bool {
        let matched = if f.affinity {
            self.procs.iter().enumerate().any(|(q, proc)| {
                self.count(q, id) > 0
                    && proc
                        .labels
                        .iter()
                        .any(|l| l.split_once('=') == Some((f.key.as_str(), f.value.as_str())))
            })
        } else {
            (f.key == "node" && node.name == f.value)
                || node
                    .labels
                    .iter()
                    .any(|(k, v)| *k == f.key && *v == f.value)
        };
        matched != f.negate
    }
}

impl Placer for Natural {
    fn place(&mut self, proc: usize) -> Result<Option<u32>> {
        let p = self
            .procs
            .get(proc)
            .with_context(|| format!("no proc #{proc}"))?;
        let mut candidates: Vec<usize> = self
            .nodes
            .iter()
            .enumerate()
            .filter(|&(id, node)| {
                node.ready
                    && node.free_memory >= p.memory
                    && node.free_cpu >= p.cpu
                    && p.filters
                        .iter()
                        .filter(|f| !f.soft)
                        .all(|f| self.satisfies(f, id, node))
            })
            .map(|(id, _)| id)
            .collect();
        for f in p.filters.iter().filter(|f| f.soft) {
            let passes = |&id: &usize| {
                self.nodes
                    .get(id)
                    .is_some_and(|node| self.satisfies(f, id, node))
            };
            if candidates.iter().any(passes) {
                candidates.retain(passes);
            }
        }
        let spread = |id: usize| 1000 / (1 + self.count(proc, id));
        let Some(best) = candidates
            .into_iter()
            .max_by_key(|&id| (spread(id), Reverse(id)))
        else {
            return Ok(None);
        };
        let (memory, cpu) = (p.memory, p.cpu);
        *self.instances.entry((proc, best)).or_default() += 1;
        if let Some(node) = self.nodes.get_mut(best) {
            node.free_memory -= memory;
            node.free_cpu -= cpu;
        }
        Ok(Some(u32::try_from(best)?))
    }

    fn release(&mut self, proc: usize, node: u32) {
        let id = node as usize;
        let Some(count) = self.instances.get_mut(&(proc, id)).filter(|c| **c > 0) else {
            return;
        };
        *count -= 1;
        if let (Some(p), Some(node)) = (self.procs.get(proc), self.nodes.get_mut(id)) {
            node.free_memory += p.memory;
            node.free_cpu += p.cpu;
        }
    }
}

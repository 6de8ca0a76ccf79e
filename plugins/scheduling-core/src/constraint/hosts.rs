//! The instance side of `affinity:` filters: which nodes host instances carrying which container
//! labels. Kept up to date from placements, so an affinity filter is a bitmap operation.

use std::collections::HashMap;

use crate::bitmap;
use crate::counts::NodeCounts;

/// Interned container labels and, per label, the nodes hosting instances that carry it.
#[derive(Debug, Default)]
pub(crate) struct Hosts {
    /// `key=value` -> label id.
    ids: HashMap<String, u32>,
    /// Key -> ids of the labels with that key.
    by_key: HashMap<String, Vec<u32>>,
    /// Label id -> value.
    values: Vec<String>,
    /// Label id -> instances carrying the label, per node.
    counts: Vec<NodeCounts>,
    /// Label id -> nodes where that count is above zero.
    hosting: Vec<Vec<u64>>,
}

impl Hosts {
    /// Number of labels interned so far; it only grows, so it serves as a generation counter.
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    /// The id of the label `text` = `key=value`, interning it if new.
    pub(crate) fn intern(&mut self, text: &str, key: &str, value: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.values.len() as u32;
        self.ids.insert(text.to_string(), id);
        self.by_key.entry(key.to_string()).or_default().push(id);
        self.values.push(value.to_string());
        self.counts.push(NodeCounts::default());
        self.hosting.push(Vec::new());
        id
    }

    /// Ids of the labels with key `key` and a value accepted by `matches`.
    pub(crate) fn resolve(&self, key: &str, matches: impl Fn(&str) -> bool) -> Vec<u32> {
        let ids = self.by_key.get(key).map_or(&[][..], Vec::as_slice);
        ids.iter()
            .copied()
            .filter(|&id| self.values.get(id as usize).is_some_and(|v| matches(v)))
            .collect()
    }

    /// Nodes hosting at least one instance carrying `label`.
    pub(crate) fn hosting(&self, label: u32) -> &[u64] {
        self.hosting.get(label as usize).map_or(&[], Vec::as_slice)
    }

    /// Adds `delta` instances carrying `label` on `node`.
    pub(crate) fn add(&mut self, label: u32, node: u32, delta: i64) {
        let i = label as usize;
        if let (Some(counts), Some(bits)) = (self.counts.get_mut(i), self.hosting.get_mut(i)) {
            let (now, _) = counts.add(node, delta);
            bitmap::assign(bits, node, now > 0);
        }
    }

    /// Forgets every instance on `node`.
    pub(crate) fn remove_node(&mut self, node: u32) {
        for (counts, bits) in self.counts.iter_mut().zip(&mut self.hosting) {
            counts.remove(node);
            bitmap::clear(bits, node);
        }
    }
}

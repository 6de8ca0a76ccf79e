//! The node side of `constraint:` filters: which nodes carry which labels.

use std::collections::HashMap;

use crate::types::{LabelDef, Node};
use crate::{bitmap, ids};

/// Interned node labels and the nodes carrying them.
#[derive(Debug, Default)]
pub(crate) struct Inventory {
    /// Label id -> (key, value).
    labels: Vec<Option<(String, String)>>,
    /// Key -> ids of the labels with that key.
    by_key: HashMap<String, Vec<u32>>,
    /// Node id -> its label ids (sorted, no duplicates); `None` for nodes absent.
    nodes: Vec<Option<Vec<u32>>>,
    /// Label id -> ids of the present nodes carrying it (sorted).
    carriers: Vec<Vec<u32>>,
    /// Bumped by every change that can change the nodes a filter matches.
    generation: u64,
}

impl Inventory {
    /// Counter of changes; node sets computed at one generation stay valid until it moves.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of bitmap words covering every node id seen.
    pub(crate) fn words(&self) -> usize {
        bitmap::words_for(self.nodes.len())
    }

    /// Adds or replaces label definitions.
    pub(crate) fn define_labels(&mut self, defs: &[LabelDef]) {
        for def in defs {
            let Some(slot) = ids::entry(&mut self.labels, def.id) else {
                continue;
            };
            let new = (def.key.clone(), def.value.clone());
            if slot.as_ref() == Some(&new) {
                continue;
            }
            if let Some((old_key, _)) = slot.replace(new)
                && let Some(list) = self.by_key.get_mut(&old_key)
            {
                list.retain(|&id| id != def.id);
            }
            self.by_key.entry(def.key.clone()).or_default().push(def.id);
            self.generation += 1;
        }
    }

    /// Adds or replaces a node.
    pub(crate) fn upsert(&mut self, node: &Node) {
        let mut labels = node.labels.clone();
        labels.sort_unstable();
        labels.dedup();
        labels.retain(|&l| l < ids::MAX_ID);
        let Some(slot) = ids::entry(&mut self.nodes, node.id) else {
            return;
        };
        if slot.as_ref() == Some(&labels) {
            return;
        }
        let old = slot.replace(labels.clone()).unwrap_or_default();
        self.unlink(node.id, &old);
        for l in labels {
            if let Some(list) = ids::entry(&mut self.carriers, l)
                && let Err(i) = list.binary_search(&node.id)
            {
                list.insert(i, node.id);
            }
        }
        self.generation += 1;
    }

    /// Forgets a node.
    pub(crate) fn remove(&mut self, node: u32) {
        if let Some(old) = self.nodes.get_mut(node as usize).and_then(Option::take) {
            self.unlink(node, &old);
            self.generation += 1;
        }
    }

    /// Removes `node` from the carriers of `labels`.
    fn unlink(&mut self, node: u32, labels: &[u32]) {
        for &l in labels {
            if let Some(list) = self.carriers.get_mut(l as usize)
                && let Ok(i) = list.binary_search(&node)
            {
                list.remove(i);
            }
        }
    }

    /// Bitmap of the nodes carrying a label with key `key` and a value accepted by `matches`.
    pub(crate) fn matching(&self, key: &str, matches: impl Fn(&str) -> bool) -> Vec<u64> {
        let mut mask = vec![0; self.words()];
        for &id in self.by_key.get(key).map_or(&[][..], Vec::as_slice) {
            let Some(Some((_, value))) = self.labels.get(id as usize) else {
                continue;
            };
            if matches(value) {
                for &node in self
                    .carriers
                    .get(id as usize)
                    .map_or(&[][..], Vec::as_slice)
                {
                    bitmap::set(&mut mask, node);
                }
            }
        }
        mask
    }
}

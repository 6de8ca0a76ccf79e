//! Instance counts per (proc, node), kept sparse: memory grows with the instances placed, not
//! with procs x nodes.

use crate::ids;
use crate::types::Placement;

/// Counts per node of one thing (a proc's instances, a label's hosts): `(node, count)` pairs
/// sorted by node, with counts above zero only.
#[derive(Clone, Debug, Default)]
pub(crate) struct NodeCounts(Vec<(u32, u32)>);

impl NodeCounts {
    /// The `(node, count)` pairs, sorted by node.
    pub(crate) fn entries(&self) -> &[(u32, u32)] {
        &self.0
    }

    /// Adds `delta` to the count of `node`, clamped to `0..=u32::MAX`; returns the new count and
    /// the change actually made.
    pub(crate) fn add(&mut self, node: u32, delta: i64) -> (u32, i64) {
        let pos = self.0.binary_search_by_key(&node, |&(n, _)| n);
        let old = pos.ok().and_then(|i| self.0.get(i)).map_or(0, |&(_, c)| c);
        let new = (i64::from(old) + delta).clamp(0, i64::from(u32::MAX)) as u32;
        match pos {
            Ok(i) if new == 0 => {
                self.0.remove(i);
            }
            Ok(i) => {
                if let Some(e) = self.0.get_mut(i) {
                    e.1 = new;
                }
            }
            Err(i) if new > 0 => self.0.insert(i, (node, new)),
            Err(_) => {}
        }
        (new, i64::from(new) - i64::from(old))
    }

    /// Drops the count of `node`; returns it.
    pub(crate) fn remove(&mut self, node: u32) -> u32 {
        match self.0.binary_search_by_key(&node, |&(n, _)| n) {
            Ok(i) => self.0.remove(i).1,
            Err(_) => 0,
        }
    }
}

/// Instances of every proc per node, as told by placements.
#[derive(Debug, Default)]
pub(crate) struct Instances {
    /// Indexed by proc id.
    procs: Vec<NodeCounts>,
}

impl Instances {
    /// The `(node, count)` pairs of `proc`, sorted by node.
    pub(crate) fn of(&self, proc: u32) -> &[(u32, u32)] {
        self.procs
            .get(proc as usize)
            .map_or(&[], NodeCounts::entries)
    }

    /// Applies a placement; returns the change of the count actually made (0 for ids at or above
    /// [`ids::MAX_ID`]).
    pub(crate) fn add(&mut self, p: Placement) -> i64 {
        if p.node >= ids::MAX_ID {
            return 0;
        }
        ids::entry(&mut self.procs, p.proc).map_or(0, |c| c.add(p.node, i64::from(p.count)).1)
    }

    /// Forgets the instances of `proc`; returns them.
    pub(crate) fn take(&mut self, proc: u32) -> NodeCounts {
        self.procs
            .get_mut(proc as usize)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Forgets every instance on `node`.
    pub(crate) fn remove_node(&mut self, node: u32) {
        for c in &mut self.procs {
            c.remove(node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_sorted_and_clamped() {
        let mut c = NodeCounts::default();
        assert_eq!(c.add(5, 2), (2, 2));
        assert_eq!(c.add(1, 1), (1, 1));
        assert_eq!(c.add(9, -3), (0, 0));
        assert_eq!(c.entries(), &[(1, 1), (5, 2)]);
        assert_eq!(c.add(5, -7), (0, -2));
        assert_eq!(c.entries(), &[(1, 1)]);
        assert_eq!(c.remove(1), 1);
        assert!(c.entries().is_empty());
    }

    #[test]
    fn instances_per_proc() {
        let mut i = Instances::default();
        assert_eq!(
            i.add(Placement {
                proc: 2,
                node: 3,
                count: 2
            }),
            2
        );
        assert_eq!(
            i.add(Placement {
                proc: 0,
                node: 3,
                count: 1
            }),
            1
        );
        assert_eq!(
            i.add(Placement {
                proc: 0,
                node: ids::MAX_ID,
                count: 1
            }),
            0
        );
        assert_eq!(i.of(2), &[(3, 2)]);
        i.remove_node(3);
        assert!(i.of(2).is_empty() && i.of(0).is_empty() && i.of(77).is_empty());
        i.add(Placement {
            proc: 2,
            node: 4,
            count: 1,
        });
        assert_eq!(i.take(2).entries(), &[(4, 1)]);
        assert!(i.of(2).is_empty());
    }
}

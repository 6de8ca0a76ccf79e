//! Placement modes: how many instances a proc has and where they go (`placement-mode` in
//! `lain:plugin@0.2.0`'s proc-type plan).

use std::collections::{BTreeMap, BTreeSet};

/// How many instances a proc has and where they go.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    /// `num_instances` instances placed by the scheduler pipeline (services).
    #[default]
    Spread,
    /// One instance on every ready node that passes the pipeline's filters for the proc
    /// (daemons); instance numbers follow the node.
    PerNode,
    /// Exactly one instance, ever: on an upgrade or a move the old one is stopped before the new
    /// one starts.
    Singleton,
}

/// Instance numbers of a per-node proc, by number: each node in `eligible` keeps the number of
/// the instance already on it (`existing`: number and node of each instance, any release); a
/// node without one gets the lowest number no instance holds. So numbers stay stable when other
/// nodes come and go, and a node added later gets a number of its own.
pub fn per_node_numbers(existing: &[(u32, &str)], eligible: &[&str]) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let mut taken: BTreeSet<u32> = existing.iter().map(|(no, _)| *no).collect();
    let mut fresh = Vec::new();
    for node in eligible {
        // The lowest number among the instances on the node (a replacement during a rollout
        // carries the same number).
        let mine = existing
            .iter()
            .filter(|(no, n)| n == node && !out.contains_key(no))
            .map(|(no, _)| *no)
            .min();
        match mine {
            Some(no) => {
                out.insert(no, (*node).to_string());
            }
            None => fresh.push(*node),
        }
    }
    let mut next = 1;
    for node in fresh {
        while taken.contains(&next) || out.contains_key(&next) {
            next += 1;
        }
        taken.insert(next);
        out.insert(next, node.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::per_node_numbers;

    fn numbers(existing: &[(u32, &str)], eligible: &[&str]) -> Vec<(u32, String)> {
        per_node_numbers(existing, eligible).into_iter().collect()
    }

    #[test]
    fn numbers_follow_the_node_and_stay_stable() {
        assert_eq!(
            numbers(&[], &["a", "b", "c"]),
            [(1, "a".into()), (2, "b".into()), (3, "c".into())]
        );
        // `b` left: `a` and `c` keep 1 and 3; a new node `d` takes 2, the lowest free number.
        assert_eq!(
            numbers(&[(1, "a"), (3, "c")], &["a", "c", "d"]),
            [(1, "a".into()), (2, "d".into()), (3, "c".into())]
        );
        // A number still held by an instance on a node that is no longer eligible (it is being
        // retired) is not given to a new node.
        assert_eq!(
            numbers(&[(1, "a"), (2, "gone")], &["a", "e"]),
            [(1, "a".into()), (3, "e".into())]
        );
        // Two instances on one node (a rollout): the node keeps the lowest number.
        assert_eq!(
            numbers(&[(2, "a"), (2, "a"), (1, "b")], &["a", "b"]),
            [(1, "b".into()), (2, "a".into())]
        );
    }
}

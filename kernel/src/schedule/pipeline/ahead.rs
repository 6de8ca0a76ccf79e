//! Placing a batch of instances of one proc over the members' level tables (WIT
//! `scheduling-levels`), without calling the members again.
//!
//! Each member answered once for the whole batch: per node, the room it allows, a preference rank
//! and a score for the node's k-th new instance. [`plan`] then replays, instance after instance,
//! exactly what [`Pipeline::place`](super::Pipeline::place) does with `evaluate` verdicts: the
//! members' filters narrow the candidates in order (room first, then, for a member with ranks,
//! only the highest rank among the candidates still in the running), and the feasible node with
//! the highest weighted score total wins, the lowest id on ties. Only the counts added to each
//! node change from one instance to the next, so each step is a few bitmap operations and one
//! walk over the remaining candidates.

use super::ones;
use crate::plugin::bindings::scheduling_levels::LevelsVerdict;
use crate::schedule::inventory::NodeId;

/// One member's tables, checked against the shape asked for.
pub(super) struct Tables {
    /// Whether the member filters (room and rank apply).
    pub filter: bool,
    /// Weight of its scores.
    pub weight: u32,
    /// Its answer.
    pub verdict: LevelsVerdict,
}

/// Why a member's tables cannot be used: the text of a bad-result error.
pub(super) fn check_shape(t: &Tables, nodes: usize, levels: usize) -> Result<(), String> {
    let v = &t.verdict;
    let table = nodes * levels;
    if t.filter && v.room.len() != nodes {
        return Err(format!(
            "room has {} entries for {nodes} node ids",
            v.room.len()
        ));
    }
    if t.filter && !v.rank.is_empty() && v.rank.len() != table {
        return Err(format!(
            "rank has {} entries for {nodes} node ids x {levels} levels",
            v.rank.len()
        ));
    }
    if !v.scores.is_empty() && v.scores.len() != table {
        return Err(format!(
            "scores has {} entries for {nodes} node ids x {levels} levels",
            v.scores.len()
        ));
    }
    Ok(())
}

/// How a plan ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum End {
    /// All `count` instances are placed.
    Done,
    /// No candidate fits the next instance (the caller places it the usual way, to explain why).
    NoFit,
    /// A node that may still be chosen used up its `levels` rows: ask again with more levels.
    OutOfLevels,
}

/// Places up to `count` instances over `tables` (members in pipeline order, shapes checked) of
/// `levels` rows, starting from `candidates`; returns the nodes chosen in order and why it
/// stopped.
pub(super) fn plan(
    candidates: &[u64],
    tables: &[Tables],
    levels: usize,
    count: u32,
) -> (Vec<NodeId>, End) {
    let words = candidates.len();
    let nodes = words * 64;
    // Instances added per node so far.
    let mut added = vec![0usize; nodes];
    // Per filtering member, the nodes it still allows by room.
    let mut allowed: Vec<Option<Vec<u64>>> = tables
        .iter()
        .map(|t| {
            t.filter.then(|| {
                let mut bits = vec![0u64; words];
                for (id, &room) in t.verdict.room.iter().enumerate() {
                    if room > 0 {
                        bits[id / 64] |= 1 << (id % 64);
                    }
                }
                bits
            })
        })
        .collect();
    let scorers: Vec<&Tables> = tables
        .iter()
        .filter(|t| !t.verdict.scores.is_empty())
        .collect();
    let total = |id: usize, k: usize| -> u32 {
        scorers
            .iter()
            .map(|t| {
                let score = t.verdict.scores.get(id * levels + k).copied().unwrap_or(0);
                t.weight * u32::from(score.min(1000))
            })
            .sum()
    };
    let ranked = tables
        .iter()
        .any(|t| t.filter && !t.verdict.rank.is_empty());
    let mut totals: Vec<u32> = (0..nodes).map(|id| total(id, 0)).collect();
    let mut chosen = Vec::with_capacity(count as usize);
    let mut running = vec![0u64; words];
    for _ in 0..count {
        running.copy_from_slice(candidates);
        for (t, bits) in tables.iter().zip(&allowed) {
            let Some(bits) = bits else { continue };
            for (c, b) in running.iter_mut().zip(bits) {
                *c &= b;
            }
            if !t.verdict.rank.is_empty() {
                keep_highest_rank(&mut running, &t.verdict.rank, &added, levels);
            }
        }
        let Some(best) = best(&running, &totals, scorers.is_empty()) else {
            return (chosen, End::NoFit);
        };
        chosen.push(best as NodeId);
        added[best] += 1;
        let k = added[best];
        let mut open = true;
        for (t, bits) in tables.iter().zip(&mut allowed) {
            if let Some(bits) = bits
                && k >= t.verdict.room.get(best).map_or(0, |&r| r as usize)
            {
                bits[best / 64] &= !(1 << (best % 64));
                open = false;
            }
        }
        if k < levels {
            totals[best] = total(best, k);
        } else if chosen.len() < count as usize && (open || ranked) {
            // The node may be chosen again, or a rank is compared at its next level (a member
            // that ranks may come before the one whose room closed it): no row for that.
            return (chosen, End::OutOfLevels);
        }
    }
    (chosen, End::Done)
}

/// Keeps the candidates of the highest rank at their current level.
fn keep_highest_rank(running: &mut [u64], rank: &[u32], added: &[usize], levels: usize) {
    // Every candidate left has a row at its level (see `plan`); a missing one ranks lowest.
    let at = |id: usize| rank.get(id * levels + added[id]).copied().unwrap_or(0);
    let mut top = None;
    for_each(running, |id| top = top.max(Some(at(id))));
    let Some(top) = top else { return };
    for (w, word) in running.iter_mut().enumerate() {
        let mut bits = *word;
        while bits != 0 {
            let b = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if at(w * 64 + b) != top {
                *word &= !(1 << b);
            }
        }
    }
}

/// The feasible node with the highest total (lowest id on ties); without scorers, the lowest id.
fn best(running: &[u64], totals: &[u32], unscored: bool) -> Option<usize> {
    if ones(running) == 0 {
        return None;
    }
    let mut best: Option<(u32, usize)> = None;
    for_each(running, |id| {
        if unscored {
            best = best.or(Some((0, id)));
        } else if best.is_none_or(|(b, _)| totals[id] > b) {
            best = Some((totals[id], id));
        }
    });
    best.map(|(_, id)| id)
}

/// Calls `f` with every set bit's id, in increasing order.
fn for_each(words: &[u64], mut f: impl FnMut(usize)) {
    for (w, &word) in words.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            f(w * 64 + bits.trailing_zeros() as usize);
            bits &= bits - 1;
        }
    }
}

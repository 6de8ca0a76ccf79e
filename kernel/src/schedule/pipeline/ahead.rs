//! Placing a batch of instances of one proc over the members' level tables (WIT
//! `scheduling-levels`), without calling the members again.
//!
//! Each member answered once for the whole batch: the room it allows each node, and a preference
//! rank and a score per node and level (level k: the node's (k+1)-th new instance). [`plan`]
//! replays, instance after instance, exactly what [`Pipeline::place`](super::Pipeline::place)
//! does with `evaluate` verdicts: the members' filters narrow the candidates in order (room
//! first, then, for a member with ranks, only the highest rank among the candidates still in the
//! running), and the feasible node with the highest weighted score total wins, the lowest id on
//! ties.
//!
//! Speed: the tables say what most nodes share once (a bitmap of open nodes, a default row) and
//! list the exceptions. Every node with default rows in every table and no instance added yet
//! has the same rank and total, so that whole group is one bitmap, of which only the lowest id
//! can win; only the listed nodes and those already chosen ("special" nodes) are looked at one by
//! one. A placement costs a few bitmap operations over the node words plus a walk over the
//! special nodes, not a walk over every candidate.

use crate::plugin::bindings::scheduling_levels::{LevelsVerdict, RankRows, ScoreRows};
use crate::schedule::inventory::NodeId;

/// One member's answer, with what the pipeline knows of the member.
pub(super) struct Tables {
    /// Whether the member filters (room and rank apply).
    pub filter: bool,
    /// Weight of its scores.
    pub weight: u32,
    /// Its answer.
    pub verdict: LevelsVerdict,
}

/// Why a member's tables cannot be used: the text of a bad-result error. `nodes` is the number
/// of node ids of the call's candidates.
pub(super) fn check_shape(t: &Tables, nodes: usize, levels: usize) -> Result<(), String> {
    let v = &t.verdict;
    if t.filter {
        if v.open.len() * 64 > nodes {
            return Err(format!(
                "open has {} words for {nodes} node ids",
                v.open.len()
            ));
        }
        let mut last = None;
        for r in &v.limited {
            if r.node as usize >= nodes || last.is_some_and(|l| r.node <= l) {
                return Err(format!(
                    "limited node {} is out of range or out of order",
                    r.node
                ));
            }
            if r.room == 0 || r.room as usize >= levels || bit(&v.open, r.node) {
                return Err(format!(
                    "limited node {} has room {} (1 to {} and not open)",
                    r.node,
                    r.room,
                    levels - 1
                ));
            }
            last = Some(r.node);
        }
        check_rows(
            "rank",
            &v.rank.default,
            &v.rank.nodes,
            v.rank.rows.len(),
            nodes,
            levels,
        )?;
    }
    let s = &v.scores;
    check_rows("scores", &s.default, &s.nodes, s.rows.len(), nodes, levels)
}

fn check_rows(
    what: &str,
    default: &[impl Sized],
    listed: &[u32],
    rows: usize,
    nodes: usize,
    levels: usize,
) -> Result<(), String> {
    if default.is_empty() {
        return match (listed.is_empty(), rows) {
            (true, 0) => Ok(()),
            _ => Err(format!("{what} lists rows without a default row")),
        };
    }
    if default.len() != levels {
        return Err(format!(
            "{what} has a default row of {} for {levels} levels",
            default.len()
        ));
    }
    if rows != listed.len() * levels {
        return Err(format!(
            "{what} has {rows} entries for {} listed nodes x {levels} levels",
            listed.len()
        ));
    }
    let ordered = listed.windows(2).all(|w| w[0] < w[1]);
    if !ordered || listed.last().is_some_and(|&n| n as usize >= nodes) {
        return Err(format!("{what} lists nodes out of range or out of order"));
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

/// A rank or score table as the planner reads it.
trait Table {
    type Value: Copy;
    fn default_row(&self) -> &[Self::Value];
    fn listed(&self) -> &[u32];
    fn rows(&self) -> &[Self::Value];
}

impl Table for RankRows {
    type Value = u32;
    fn default_row(&self) -> &[u32] {
        &self.default
    }
    fn listed(&self) -> &[u32] {
        &self.nodes
    }
    fn rows(&self) -> &[u32] {
        &self.rows
    }
}

impl Table for ScoreRows {
    type Value = u16;
    fn default_row(&self) -> &[u16] {
        &self.default
    }
    fn listed(&self) -> &[u32] {
        &self.nodes
    }
    fn rows(&self) -> &[u16] {
        &self.rows
    }
}

/// Where each special node's row is in one table: its index among the listed nodes, or the
/// default row.
fn row_index<T: Table>(t: &T, node: u32) -> Option<usize> {
    t.listed().binary_search(&node).ok()
}

/// The value of `t` for the node whose row is `row`, at level `k`.
fn value<T: Table>(t: &T, row: Option<usize>, levels: usize, k: usize) -> Option<T::Value> {
    match row {
        Some(i) => t.rows().get(i * levels + k).copied(),
        None => t.default_row().get(k).copied(),
    }
}

/// A node looked at one by one: listed in some table, or chosen already.
struct Special {
    node: u32,
    /// Instances added to it so far.
    added: usize,
    /// Per member: its row in the member's rank and score tables.
    rows: Vec<(Option<usize>, Option<usize>)>,
}

/// Places up to `count` instances over `tables` (members in pipeline order, shapes checked) of
/// `levels` levels, starting from `candidates`; returns the nodes chosen in order and why it
/// stopped.
pub(super) fn plan(
    candidates: &[u64],
    tables: &[Tables],
    levels: usize,
    count: u32,
) -> (Vec<NodeId>, End) {
    let words = candidates.len();
    // Per filtering member: the nodes it still allows, and the room of its limited nodes.
    let mut allowed: Vec<Option<Vec<u64>>> = tables
        .iter()
        .map(|t| {
            t.filter.then(|| {
                let mut bits = vec![0u64; words];
                for (b, o) in bits.iter_mut().zip(&t.verdict.open) {
                    *b = *o;
                }
                for r in &t.verdict.limited {
                    set(&mut bits, r.node);
                }
                bits
            })
        })
        .collect();
    let ranked: Vec<bool> = tables
        .iter()
        .map(|t| t.filter && !t.verdict.rank.default.is_empty())
        .collect();
    let any_ranked = ranked.iter().any(|&r| r);
    // The special nodes, in increasing id order, and their bitmap.
    let mut specials: Vec<Special> = Vec::new();
    let mut special_bits = vec![0u64; words];
    let mut listed: Vec<u32> = tables
        .iter()
        .zip(&ranked)
        .flat_map(|(t, &r)| {
            let rank = if r { &t.verdict.rank.nodes[..] } else { &[] };
            rank.iter().chain(&t.verdict.scores.nodes).copied()
        })
        .filter(|&n| bit(candidates, n))
        .collect();
    listed.sort_unstable();
    listed.dedup();
    for node in listed {
        specials.push(special(tables, node));
        set(&mut special_bits, node);
    }
    // What every other node scores and ranks at level 0.
    let default_total: u32 = tables
        .iter()
        .map(|t| {
            let s = t.verdict.scores.default.first().copied().unwrap_or(0);
            t.weight * u32::from(s.min(1000))
        })
        .sum();

    let mut chosen = Vec::with_capacity(count as usize);
    let mut running = vec![0u64; words];
    for _ in 0..count {
        running.copy_from_slice(candidates);
        for (m, t) in tables.iter().enumerate() {
            if let Some(bits) = &allowed[m] {
                for (c, b) in running.iter_mut().zip(bits) {
                    *c &= b;
                }
            }
            if ranked[m] {
                keep_highest_rank(&mut running, &special_bits, &specials, m, t, levels);
            }
        }
        let Some(best) = best(
            &running,
            &special_bits,
            &specials,
            tables,
            levels,
            default_total,
        ) else {
            return (chosen, End::NoFit);
        };
        chosen.push(best);
        let at = match specials.binary_search_by_key(&best, |s| s.node) {
            Ok(i) => i,
            Err(i) => {
                specials.insert(i, special(tables, best));
                set(&mut special_bits, best);
                i
            }
        };
        specials[at].added += 1;
        let k = specials[at].added;
        let mut open = true;
        for (t, bits) in tables.iter().zip(&mut allowed) {
            let Some(bits) = bits else { continue };
            let room = match t.verdict.limited.binary_search_by_key(&best, |r| r.node) {
                Ok(i) => t.verdict.limited[i].room as usize,
                Err(_) => usize::MAX,
            };
            if k >= room {
                clear(bits, best);
                open = false;
            }
        }
        // Nothing is known of level `levels` (an open node's room is only known to be at least
        // `levels`): stop if the node may be chosen again, or if a rank is compared at its next
        // level (a member that ranks may come before the one whose room closed it).
        if k >= levels && chosen.len() < count as usize && (open || any_ranked) {
            return (chosen, End::OutOfLevels);
        }
    }
    (chosen, End::Done)
}

/// A special node's rows in every table.
fn special(tables: &[Tables], node: u32) -> Special {
    Special {
        node,
        added: 0,
        rows: tables
            .iter()
            .map(|t| {
                (
                    row_index(&t.verdict.rank, node),
                    row_index(&t.verdict.scores, node),
                )
            })
            .collect(),
    }
}

/// Keeps the candidates of member `m`'s highest rank at their current level. The nodes outside
/// `special_bits` share the default row at level 0.
fn keep_highest_rank(
    running: &mut [u64],
    special_bits: &[u64],
    specials: &[Special],
    m: usize,
    t: &Tables,
    levels: usize,
) {
    let rank = &t.verdict.rank;
    let rank_of = |s: &Special| value(rank, s.rows[m].0, levels, s.added).unwrap_or(0);
    let ordinary = running.iter().zip(special_bits).any(|(r, s)| r & !s != 0);
    let mut top = ordinary.then(|| rank.default.first().copied().unwrap_or(0));
    for s in specials.iter().filter(|s| bit(running, s.node)) {
        top = top.max(Some(rank_of(s)));
    }
    let Some(top) = top else { return };
    if ordinary && rank.default.first().copied().unwrap_or(0) != top {
        for (r, s) in running.iter_mut().zip(special_bits) {
            *r &= s;
        }
    }
    for s in specials {
        if bit(running, s.node) && rank_of(s) != top {
            clear(running, s.node);
        }
    }
}

/// The feasible node with the highest total (lowest id on ties); without scorers, the lowest
/// id. Of the ordinary nodes (outside `special_bits`), all of the same total, only the lowest
/// id can win.
fn best(
    running: &[u64],
    special_bits: &[u64],
    specials: &[Special],
    tables: &[Tables],
    levels: usize,
    default_total: u32,
) -> Option<NodeId> {
    let ordinary = running
        .iter()
        .zip(special_bits)
        .enumerate()
        .find_map(|(w, (r, s))| {
            let bits = r & !s;
            (bits != 0).then(|| w as u32 * 64 + bits.trailing_zeros())
        });
    let mut best: Option<(u32, NodeId)> = ordinary.map(|id| (default_total, id));
    for s in specials.iter().filter(|s| bit(running, s.node)) {
        let total: u32 = tables
            .iter()
            .zip(&s.rows)
            .map(|(t, (_, row))| {
                let score = value(&t.verdict.scores, *row, levels, s.added).unwrap_or(0);
                t.weight * u32::from(score.min(1000))
            })
            .sum();
        let id = s.node;
        let better = match best {
            None => true,
            Some((b, b_id)) => total > b || (total == b && id < b_id),
        };
        if better {
            best = Some((total, id));
        }
    }
    best.map(|(_, id)| id)
}

/// Whether node `id` is set in `words`.
fn bit(words: &[u64], id: u32) -> bool {
    words
        .get(id as usize / 64)
        .is_some_and(|w| w & (1 << (id % 64)) != 0)
}

/// Sets node `id` (within the words present).
fn set(words: &mut [u64], id: u32) {
    if let Some(w) = words.get_mut(id as usize / 64) {
        *w |= 1 << (id % 64);
    }
}

/// Clears node `id`.
fn clear(words: &mut [u64], id: u32) {
    if let Some(w) = words.get_mut(id as usize / 64) {
        *w &= !(1 << (id % 64));
    }
}

//! Spread: the instances of one proc go to different nodes.
//!
//! LAIN got this from Swarm through the soft anti-affinity deployd adds to every container,
//! `affinity:cc.bdp.lain.deployd.pg_name!=~<pg>` (LAIN reference §resources, §scheduling), which
//! "tries" to spread instances while Swarm's resource scoring may still stack them. Here it is a
//! scorer: a node that runs fewer instances of the proc scores higher. With `hard` it is also a
//! filter that keeps only the candidates running the fewest instances, so instances never stack
//! while a node with fewer is available.

use crate::counts::Instances;
use crate::types::{LevelsVerdict, Placement, ProcRequirements, Roles, Rows};
use crate::{Algorithm, bitmap, ids, level_shape, undefined};

/// Score of a node already running `count` instances of the proc: `1000 / (1 + count)`.
pub fn spread_score(count: u32) -> u16 {
    // At most 1000, so the narrowing cannot truncate.
    (1000 / (1 + u64::from(count))) as u16
}

/// State of the spread algorithm: instance counts per (proc, node).
#[derive(Debug, Default)]
pub struct Spread {
    hard: bool,
    /// Indexed by proc id.
    defined: Vec<bool>,
    instances: Instances,
}

impl Spread {
    /// A spread scorer; with `hard`, also a filter keeping the least loaded candidates.
    pub fn new(hard: bool) -> Self {
        Spread {
            hard,
            ..Spread::default()
        }
    }
}

impl Algorithm for Spread {
    fn roles(&self) -> Roles {
        Roles {
            filter: self.hard,
            score: true,
        }
    }

    fn sync_nodes(&mut self, _upsert: &[crate::Node], remove: &[u32]) {
        for &node in remove {
            self.instances.remove_node(node);
        }
    }

    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), String> {
        let slot = ids::entry(&mut self.defined, req.id).ok_or_else(|| ids::too_large(req.id))?;
        *slot = true;
        Ok(())
    }

    fn forget_proc(&mut self, proc: u32) {
        if let Some(d) = self.defined.get_mut(proc as usize) {
            *d = false;
        }
        self.instances.take(proc);
    }

    fn record_placement(&mut self, placement: Placement) {
        self.instances.add(placement);
    }

    /// Scores every node by [`spread_score`] (O(nodes) fill plus O(nodes running the proc));
    /// with `hard`, keeps the candidates with the fewest instances (O(words + nodes running it)).
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &mut [u64],
        scores: &mut Vec<u16>,
    ) -> Result<(), String> {
        if !self.defined.get(proc as usize).is_some_and(|&d| d) {
            return Err(undefined(proc));
        }
        let running = self.instances.of(proc);
        scores.clear();
        scores.resize(candidates.len() * 64, spread_score(0));
        for &(node, count) in running {
            if let Some(s) = scores.get_mut(node as usize) {
                *s = spread_score(count);
            }
        }
        if self.hard {
            keep_least_loaded(candidates, running);
        }
        Ok(())
    }

    /// Scores by count per level: a default row for the nodes without the proc, a row per node
    /// running it (O(words + nodes running it x levels)). A hard spread keeps the least loaded
    /// candidates: as a rank that falls with the count, whose highest value among the candidates
    /// in the running is exactly their least load.
    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, String> {
        if !self.defined.get(proc as usize).is_some_and(|&d| d) {
            return Err(undefined(proc));
        }
        let Some((nodes, levels)) = level_shape(candidates, levels) else {
            return Ok(None);
        };
        let at = |count: u32, k: usize| count.saturating_add(k as u32);
        let score_row =
            |count: u32| -> Vec<u16> { (0..levels).map(|k| spread_score(at(count, k))).collect() };
        let rank_row =
            |count: u32| -> Vec<u32> { (0..levels).map(|k| u32::MAX - at(count, k)).collect() };
        let mut verdict = LevelsVerdict {
            scores: Rows::new(score_row(0)),
            ..LevelsVerdict::default()
        };
        if self.hard {
            verdict.open = candidates.to_vec();
            verdict.rank = Rows::new(rank_row(0));
        }
        for &(node, count) in self.instances.of(proc) {
            if node as usize >= nodes || !bitmap::get(candidates, node) {
                continue;
            }
            verdict.scores.set(node, &score_row(count));
            if self.hard {
                verdict.rank.set(node, &rank_row(count));
            }
        }
        Ok(Some(verdict))
    }
}

/// Clears the candidates that run more instances than the least loaded candidate. `running` lists
/// the nodes with a count above zero; every other node counts zero.
fn keep_least_loaded(candidates: &mut [u64], running: &[(u32, u32)]) {
    let (mut loaded, mut min) = (0u32, u32::MAX);
    for &(node, count) in running {
        if bitmap::get(candidates, node) {
            loaded += 1;
            min = min.min(count);
        }
    }
    if loaded == 0 {
        return;
    }
    if bitmap::count(candidates) > loaded {
        min = 0;
    }
    for &(node, count) in running {
        if count > min {
            bitmap::clear(candidates, node);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(s: &mut Spread, proc: u32, node: u32, count: i32) {
        s.record_placement(Placement { proc, node, count });
    }

    fn defined(hard: bool) -> Spread {
        let mut s = Spread::new(hard);
        for id in [0, 1] {
            let req = ProcRequirements {
                id,
                ..Default::default()
            };
            assert_eq!(s.define_proc(&req), Ok(()));
        }
        s
    }

    /// Evaluates proc 0 on candidates 0..4; returns (feasible ids, scores of 0..4).
    fn eval(s: &mut Spread, cands: u64) -> (Vec<u32>, Vec<u16>) {
        let mut c = vec![cands];
        let mut scores = vec![7; 3];
        assert_eq!(s.evaluate(0, &mut c, &mut scores), Ok(()));
        assert_eq!(scores.len(), 64);
        let ids = (0..64).filter(|&i| bitmap::get(&c, i)).collect();
        (ids, scores[..4].to_vec())
    }

    #[test]
    fn scores_decrease_with_instances() {
        let mut s = defined(false);
        place(&mut s, 0, 1, 1);
        place(&mut s, 0, 2, 3);
        place(&mut s, 1, 0, 5); // another proc: does not count
        let (ids, scores) = eval(&mut s, 0b1111);
        assert_eq!(ids, vec![0, 1, 2, 3], "a soft spread does not filter");
        assert_eq!(scores, vec![1000, 500, 250, 1000]);
        assert_eq!((spread_score(999), spread_score(u32::MAX)), (1, 0));
        assert_eq!(
            s.roles(),
            Roles {
                filter: false,
                score: true
            }
        );
    }

    #[test]
    fn removals_and_forget() {
        let mut s = defined(false);
        place(&mut s, 0, 1, 2);
        place(&mut s, 0, 1, -1);
        assert_eq!(eval(&mut s, 0b11).1[1], 500);
        place(&mut s, 0, 1, -5);
        assert_eq!(eval(&mut s, 0b11).1[1], 1000, "counts never go negative");
        place(&mut s, 0, 2, 1);
        s.sync_nodes(&[], &[2]);
        assert_eq!(
            eval(&mut s, 0b111).1[2],
            1000,
            "a removed node drops its instances"
        );
        place(&mut s, 0, 3, 1);
        s.forget_proc(0);
        let mut scores = Vec::new();
        assert_eq!(
            s.evaluate(0, &mut [1], &mut scores),
            Err("proc 0 was never defined".into())
        );
        s.define_proc(&ProcRequirements::default()).ok();
        assert_eq!(
            eval(&mut s, 0b1111).1[3],
            1000,
            "forget drops the instances"
        );
    }

    #[test]
    fn hard_keeps_least_loaded_candidates() {
        let mut s = defined(true);
        assert_eq!(
            s.roles(),
            Roles {
                filter: true,
                score: true
            }
        );
        place(&mut s, 0, 0, 2);
        place(&mut s, 0, 1, 1);
        place(&mut s, 0, 2, 1);
        assert_eq!(eval(&mut s, 0b1111).0, vec![3], "an empty node wins");
        assert_eq!(
            eval(&mut s, 0b0111).0,
            vec![1, 2],
            "else the least loaded ones"
        );
        assert_eq!(eval(&mut s, 0b0001).0, vec![0], "a lone candidate stays");
        assert_eq!(eval(&mut s, 0).0, Vec::<u32>::new());
    }

    #[test]
    fn refuses_huge_ids() {
        let mut s = Spread::new(false);
        let req = ProcRequirements {
            id: ids::MAX_ID,
            ..Default::default()
        };
        assert!(s.define_proc(&req).is_err());
    }
}

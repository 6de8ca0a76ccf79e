//! Resources: an instance only goes to a ready node with room for its memory and CPU.
//!
//! LAIN's deployd only checked memory, and only on spec changes (LAIN reference
//! §resources), while Swarm reserved memory per container; CPU was a quota, not a
//! reservation (§resources, §scheduling), and nodes under maintenance took nothing new (§scheduling
//! cluster constraints). Here every placement reserves the proc's memory and CPU on its node:
//!
//! `free = allocatable - reserved outside placements - sum(instances x requirement)`
//!
//! and a node fits a proc if it is ready, its free memory covers the proc's memory and, when both
//! the proc and the node account CPU (non-zero), its free CPU covers the proc's CPU.
//!
//! Accounting on redefinition: the placements of a proc are charged at the proc's *current*
//! requirements. When a proc is redefined with a new size, its running instances are re-charged
//! at the new size at once. This keeps the books exact (a later removal subtracts exactly what is
//! charged, whatever the order of changes, since placements do not name instances) and matches
//! LAIN, where a spec change rolls every instance over to the new limits (§rolling) and deployd
//! checks capacity with the new limit.
//!
//! Speed: procs with the same (memory, CPU) share a requirement class holding the bitmap of the
//! nodes that fit it. A placement or usage change updates the node's bit in every class, so
//! `evaluate` is one bitmap AND, O(words).

use crate::counts::Instances;
use crate::types::{
    LevelsVerdict, Node, NodeState, NodeUsage, Placement, ProcRequirements, Roles, Rows,
};
use crate::{Algorithm, bitmap, ids, level_shape, undefined};

/// Whether and how [`Resources`] scores nodes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scoring {
    /// Filter only.
    #[default]
    None,
    /// Also score: the more of a node is free, the higher (1000 x free / allocatable, averaged
    /// over memory and, where the node accounts it, CPU). The score is the node's current free
    /// share, not counting the instance being placed, so it is the same for every proc and is
    /// kept up to date per node instead of computed per call.
    LeastAllocated,
}

/// Capacity and bookings of one node.
#[derive(Clone, Debug, Default)]
struct NodeBook {
    present: bool,
    state: NodeState,
    memory: u64,
    cpu: u32,
    reserved_memory: u64,
    reserved_cpu: u32,
    /// Sum over procs of instances x memory (wide enough never to overflow).
    placed_memory: u128,
    /// Sum over procs of instances x CPU.
    placed_cpu: u128,
}

impl NodeBook {
    /// Free memory and CPU, zero when overbooked.
    fn free(&self) -> (u64, u64) {
        let mem = u128::from(self.memory)
            .saturating_sub(u128::from(self.reserved_memory))
            .saturating_sub(self.placed_memory);
        let cpu = u128::from(self.cpu)
            .saturating_sub(u128::from(self.reserved_cpu))
            .saturating_sub(self.placed_cpu);
        // Both are at most their allocatable value, a u64 / u32.
        (mem as u64, cpu as u64)
    }

    /// Books `delta` instances of a proc of `demand` (negative `delta` frees them).
    fn charge(&mut self, delta: i64, demand: Demand) {
        let n = u128::from(delta.unsigned_abs());
        let (mem, cpu) = (n * u128::from(demand.memory), n * u128::from(demand.cpu));
        if delta >= 0 {
            self.placed_memory = self.placed_memory.saturating_add(mem);
            self.placed_cpu = self.placed_cpu.saturating_add(cpu);
        } else {
            self.placed_memory = self.placed_memory.saturating_sub(mem);
            self.placed_cpu = self.placed_cpu.saturating_sub(cpu);
        }
    }

    /// Least-allocated score (see [`Scoring::LeastAllocated`]).
    fn score(&self) -> u16 {
        let (free_mem, free_cpu) = self.free();
        let share = |free: u64, total: u64| match total {
            0 => 0,
            t => u128::from(free) * 1000 / u128::from(t),
        };
        let mem = share(free_mem, self.memory);
        let both = match self.cpu {
            0 => mem,
            cpu => (mem + share(free_cpu, u64::from(cpu))) / 2,
        };
        // free <= total, so both <= 1000.
        both as u16
    }
}

/// What one instance of a proc books.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Demand {
    memory: u64,
    cpu: u32,
}

impl Demand {
    /// How many more instances fit a node with `free` memory and CPU, capped at `u32::MAX`;
    /// `node_cpu` 0 means the node does not account CPU. Positive exactly when [`Demand::fits`].
    fn room(self, (free_mem, free_cpu): (u64, u64), node_cpu: u32) -> u32 {
        let of = |free: u64, need: u64| free.checked_div(need).unwrap_or(u64::MAX);
        let mem = of(free_mem, self.memory);
        let cpu = if node_cpu == 0 {
            u64::MAX
        } else {
            of(free_cpu, u64::from(self.cpu))
        };
        u32::try_from(mem.min(cpu)).unwrap_or(u32::MAX)
    }

    /// Whether a node with `free` memory and CPU fits one instance; `node_cpu` 0 means the node
    /// does not account CPU.
    fn fits(self, (free_mem, free_cpu): (u64, u64), node_cpu: u32) -> bool {
        free_mem >= self.memory
            && (self.cpu == 0 || node_cpu == 0 || free_cpu >= u64::from(self.cpu))
    }
}

/// The procs sharing one demand, and the nodes that fit it.
#[derive(Debug, Default)]
struct Class {
    demand: Demand,
    /// Procs in the class; 0 marks a free slot.
    users: u32,
    fits: Vec<u64>,
}

/// A defined proc: its demand and requirement class.
#[derive(Clone, Copy, Debug)]
struct ProcBook {
    demand: Demand,
    class: usize,
}

/// State of the resources algorithm.
#[derive(Debug, Default)]
pub struct Resources {
    scoring: Scoring,
    /// Indexed by node id.
    nodes: Vec<NodeBook>,
    /// Least-allocated score per node id; maintained only when scoring.
    scores: Vec<u16>,
    /// Indexed by proc id.
    procs: Vec<Option<ProcBook>>,
    classes: Vec<Class>,
    instances: Instances,
}

impl Resources {
    /// A memory and CPU fit filter, scoring as `scoring` says.
    pub fn new(scoring: Scoring) -> Self {
        Resources {
            scoring,
            ..Resources::default()
        }
    }

    /// The demand of `proc`: its requirements once defined, nothing before.
    fn demand(&self, proc: u32) -> Demand {
        self.procs
            .get(proc as usize)
            .copied()
            .flatten()
            .map_or(Demand::default(), |p| p.demand)
    }

    /// Recomputes the bits of `node` in every class, and its score.
    fn refresh(&mut self, node: u32) {
        let Some(book) = self.nodes.get(node as usize) else {
            return;
        };
        let usable = book.present && book.state == NodeState::Ready;
        let free = book.free();
        for class in self.classes.iter_mut().filter(|c| c.users > 0) {
            let fits = usable && class.demand.fits(free, book.cpu);
            bitmap::assign(&mut class.fits, node, fits);
        }
        if self.scoring == Scoring::LeastAllocated
            && let Some(slot) = ids::entry(&mut self.scores, node)
        {
            *slot = if usable { book.score() } else { 0 };
        }
    }

    /// Joins the class of `demand`, making it if needed; returns its index.
    fn join_class(&mut self, demand: Demand) -> usize {
        if let Some(i) = self
            .classes
            .iter()
            .position(|c| c.users > 0 && c.demand == demand)
        {
            if let Some(c) = self.classes.get_mut(i) {
                c.users += 1;
            }
            return i;
        }
        let mut fits = Vec::new();
        for (id, book) in (0u32..).zip(&self.nodes) {
            if book.present && book.state == NodeState::Ready && demand.fits(book.free(), book.cpu)
            {
                bitmap::set(&mut fits, id);
            }
        }
        let class = Class {
            demand,
            users: 1,
            fits,
        };
        match self.classes.iter().position(|c| c.users == 0) {
            Some(i) => {
                if let Some(slot) = self.classes.get_mut(i) {
                    *slot = class;
                }
                i
            }
            None => {
                self.classes.push(class);
                self.classes.len() - 1
            }
        }
    }

    /// Leaves class `i`, freeing its slot when it was the last user.
    fn leave_class(&mut self, i: usize) {
        if let Some(c) = self.classes.get_mut(i) {
            c.users = c.users.saturating_sub(1);
            if c.users == 0 {
                c.fits = Vec::new();
            }
        }
    }

    /// Moves the bookings of `proc`'s instances from demand `old` to `new`.
    fn recharge(&mut self, proc: u32, old: Demand, new: Demand) {
        for &(node, count) in self.instances.of(proc) {
            if let Some(book) = self.nodes.get_mut(node as usize) {
                book.charge(-i64::from(count), old);
                book.charge(i64::from(count), new);
            }
        }
    }

    /// Refreshes every node running `proc`.
    fn refresh_nodes_of(&mut self, proc: u32) {
        let nodes: Vec<u32> = self.instances.of(proc).iter().map(|&(n, _)| n).collect();
        for node in nodes {
            self.refresh(node);
        }
    }
}

impl Algorithm for Resources {
    fn roles(&self) -> Roles {
        Roles {
            filter: true,
            score: self.scoring == Scoring::LeastAllocated,
        }
    }

    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) {
        for node in upsert {
            if let Some(book) = ids::entry(&mut self.nodes, node.id) {
                book.present = true;
                book.memory = node.memory;
                book.cpu = node.cpu;
                self.refresh(node.id);
            }
        }
        for &id in remove {
            if let Some(book) = self.nodes.get_mut(id as usize) {
                *book = NodeBook::default();
                self.instances.remove_node(id);
                self.refresh(id);
            }
        }
    }

    fn sync_usage(&mut self, usage: &[NodeUsage]) {
        for u in usage {
            if let Some(book) = ids::entry(&mut self.nodes, u.id) {
                book.state = u.state;
                book.reserved_memory = u.memory_reserved;
                book.reserved_cpu = u.cpu_reserved;
                self.refresh(u.id);
            }
        }
    }

    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), String> {
        if req.id >= ids::MAX_ID {
            return Err(ids::too_large(req.id));
        }
        let old = self.procs.get(req.id as usize).copied().flatten();
        let new = Demand {
            memory: req.memory,
            cpu: req.cpu,
        };
        if old.is_some_and(|p| p.demand == new) {
            return Ok(());
        }
        self.recharge(req.id, self.demand(req.id), new);
        if let Some(p) = old {
            self.leave_class(p.class);
        }
        let class = self.join_class(new);
        if let Some(slot) = ids::entry(&mut self.procs, req.id) {
            *slot = Some(ProcBook { demand: new, class });
        }
        self.refresh_nodes_of(req.id);
        Ok(())
    }

    fn forget_proc(&mut self, proc: u32) {
        let Some(book) = self.procs.get_mut(proc as usize).and_then(Option::take) else {
            self.instances.take(proc);
            return;
        };
        self.recharge(proc, book.demand, Demand::default());
        self.refresh_nodes_of(proc);
        self.instances.take(proc);
        self.leave_class(book.class);
    }

    fn record_placement(&mut self, placement: Placement) {
        let delta = self.instances.add(placement);
        if delta == 0 {
            return;
        }
        let demand = self.demand(placement.proc);
        if let Some(book) = ids::entry(&mut self.nodes, placement.node) {
            book.charge(delta, demand);
            self.refresh(placement.node);
        }
    }

    /// Keeps the candidates that fit the proc: one AND with its class's bitmap, O(words). With
    /// [`Scoring::LeastAllocated`], copies the per-node scores (O(nodes) copy).
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &mut [u64],
        scores: &mut Vec<u16>,
    ) -> Result<(), String> {
        let book = self
            .procs
            .get(proc as usize)
            .copied()
            .flatten()
            .ok_or_else(|| undefined(proc))?;
        let fits = self.classes.get(book.class).map_or(&[][..], |c| &c.fits);
        bitmap::and_with(candidates, fits, 0);
        scores.clear();
        if self.scoring == Scoring::LeastAllocated {
            let len = candidates.len() * 64;
            scores.extend_from_slice(self.scores.get(..len).unwrap_or(&self.scores));
            scores.resize(len, 0);
        }
        Ok(())
    }

    /// The room of every candidate from its free memory and CPU (O(nodes)); with
    /// [`Scoring::LeastAllocated`], the score after each level's bookings, listed for the nodes
    /// whose row differs from the first usable candidate's (O(nodes x levels)).
    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, String> {
        let demand = self
            .procs
            .get(proc as usize)
            .copied()
            .flatten()
            .ok_or_else(|| undefined(proc))?
            .demand;
        let Some((nodes, levels)) = level_shape(candidates, levels) else {
            return Ok(None);
        };
        let scoring = self.scoring == Scoring::LeastAllocated;
        let mut verdict = LevelsVerdict {
            open: vec![0; candidates.len()],
            ..LevelsVerdict::default()
        };
        // Room for every level is a fit of `levels` instances at once: no division.
        let all = Demand {
            memory: demand.memory.saturating_mul(levels as u64),
            cpu: u32::try_from(u64::from(demand.cpu) * levels as u64).unwrap_or(u32::MAX),
        };
        let mut row = Vec::with_capacity(levels);
        for (id, book) in (0u32..).zip(self.nodes.iter().take(nodes)) {
            if !(book.present && book.state == NodeState::Ready && bitmap::get(candidates, id)) {
                continue;
            }
            let free = book.free();
            if all.fits(free, book.cpu) {
                if let Some(word) = verdict.open.get_mut(id as usize / 64) {
                    *word |= 1 << (id % 64);
                }
            } else {
                verdict.set_room(id, demand.room(free, book.cpu), levels);
            }
            if scoring {
                let mut b = book.clone();
                row.clear();
                for _ in 0..levels {
                    row.push(b.score());
                    b.charge(1, demand);
                }
                if verdict.scores.default.is_empty() {
                    verdict.scores = Rows::new(row.clone());
                } else {
                    verdict.scores.set(id, &row);
                }
            }
        }
        if scoring && verdict.scores.default.is_empty() {
            // No usable candidate: any row will do, none is read.
            verdict.scores = Rows::new(vec![0; levels]);
        }
        Ok(Some(verdict))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn node(id: u32, memory: u64, cpu: u32) -> Node {
        Node {
            id,
            labels: vec![],
            memory,
            cpu,
        }
    }

    fn proc(id: u32, memory: u64, cpu: u32) -> ProcRequirements {
        ProcRequirements {
            id,
            memory,
            cpu,
            ..Default::default()
        }
    }

    fn place(r: &mut Resources, proc: u32, node: u32, count: i32) {
        r.record_placement(Placement { proc, node, count });
    }

    /// Feasible ids of `proc` among nodes 0..64.
    fn feasible(r: &mut Resources, proc: u32) -> Vec<u32> {
        let mut c = vec![u64::MAX];
        let mut scores = Vec::new();
        assert_eq!(r.evaluate(proc, &mut c, &mut scores), Ok(()));
        (0..64).filter(|&i| bitmap::get(&c, i)).collect()
    }

    /// Three nodes: 4 GiB, 2 GiB, 8 GiB without CPU accounting.
    fn cluster(scoring: Scoring) -> Resources {
        let mut r = Resources::new(scoring);
        r.sync_nodes(
            &[
                node(0, 4 * GIB, 2000),
                node(1, 2 * GIB, 4000),
                node(2, 8 * GIB, 0),
            ],
            &[],
        );
        r
    }

    #[test]
    fn memory_exhaustion() {
        let mut r = cluster(Scoring::None);
        r.define_proc(&proc(0, GIB, 0)).ok();
        assert_eq!(feasible(&mut r, 0), vec![0, 1, 2]);
        place(&mut r, 0, 1, 2);
        assert_eq!(feasible(&mut r, 0), vec![0, 2], "node 1 is full");
        place(&mut r, 0, 1, -1);
        assert_eq!(feasible(&mut r, 0), vec![0, 1, 2]);
        r.sync_usage(&[NodeUsage {
            id: 0,
            state: NodeState::Ready,
            memory_reserved: 3 * GIB + 1,
            cpu_reserved: 0,
        }]);
        assert_eq!(feasible(&mut r, 0), vec![1, 2], "outside usage counts");
        assert_eq!(
            r.roles(),
            Roles {
                filter: true,
                score: false
            }
        );
    }

    #[test]
    fn cpu_counts_only_where_accounted() {
        let mut r = cluster(Scoring::None);
        r.define_proc(&proc(0, 0, 1500)).ok();
        r.define_proc(&proc(1, 0, 0)).ok();
        place(&mut r, 0, 0, 1);
        assert_eq!(
            feasible(&mut r, 0),
            vec![1, 2],
            "node 0 has 500m left; node 2 has no CPU limit"
        );
        assert_eq!(
            feasible(&mut r, 1),
            vec![0, 1, 2],
            "no CPU asked, none needed"
        );
    }

    #[test]
    fn maintenance_and_down_excluded() {
        let mut r = cluster(Scoring::None);
        r.define_proc(&proc(0, GIB, 0)).ok();
        let usage = |id, state| NodeUsage {
            id,
            state,
            memory_reserved: 0,
            cpu_reserved: 0,
        };
        r.sync_usage(&[usage(0, NodeState::Maintenance), usage(2, NodeState::Down)]);
        assert_eq!(feasible(&mut r, 0), vec![1]);
        r.sync_usage(&[usage(0, NodeState::Ready)]);
        assert_eq!(feasible(&mut r, 0), vec![0, 1]);
    }

    #[test]
    fn node_removal_and_unknown_nodes() {
        let mut r = cluster(Scoring::None);
        r.define_proc(&proc(0, GIB, 0)).ok();
        place(&mut r, 0, 1, 2);
        r.sync_nodes(&[], &[1]);
        assert_eq!(
            feasible(&mut r, 0),
            vec![0, 2],
            "removed, and unknown nodes never fit"
        );
        r.sync_nodes(&[node(1, 2 * GIB, 0)], &[]);
        assert_eq!(feasible(&mut r, 0), vec![0, 1, 2], "re-added empty");
        let mut scores = Vec::new();
        assert!(r.evaluate(9, &mut [1], &mut scores).is_err());
    }

    #[test]
    fn redefinition_recharges_running_instances() {
        let mut r = cluster(Scoring::None);
        r.define_proc(&proc(0, GIB, 0)).ok();
        r.define_proc(&proc(1, GIB, 0)).ok();
        place(&mut r, 0, 0, 2);
        assert_eq!(feasible(&mut r, 1), vec![0, 1, 2], "2 GiB left on node 0");
        r.define_proc(&proc(0, 2 * GIB, 0)).ok();
        assert_eq!(
            feasible(&mut r, 1),
            vec![1, 2],
            "node 0 is now fully booked"
        );
        assert_eq!(
            feasible(&mut r, 0),
            vec![1, 2],
            "the new size applies to new instances"
        );
        place(&mut r, 0, 0, -2);
        assert_eq!(
            feasible(&mut r, 1),
            vec![0, 1, 2],
            "removals free the new size exactly"
        );
        r.forget_proc(1);
        assert_eq!(feasible(&mut r, 0), vec![0, 1, 2], "proc 0 kept its class");
    }

    #[test]
    fn placements_before_definition_and_forget() {
        let mut r = cluster(Scoring::None);
        place(&mut r, 5, 1, 1);
        r.define_proc(&proc(5, 2 * GIB, 0)).ok();
        r.define_proc(&proc(6, GIB, 0)).ok();
        assert_eq!(feasible(&mut r, 6), vec![0, 2], "charged once defined");
        r.forget_proc(5);
        assert_eq!(
            feasible(&mut r, 6),
            vec![0, 1, 2],
            "forget frees its instances"
        );
    }

    #[test]
    fn least_allocated_scores() {
        let mut r = cluster(Scoring::LeastAllocated);
        assert_eq!(
            r.roles(),
            Roles {
                filter: true,
                score: true
            }
        );
        r.define_proc(&proc(0, GIB, 1000)).ok();
        place(&mut r, 0, 0, 1);
        place(&mut r, 0, 2, 2);
        let mut c = vec![0b111];
        let mut scores = Vec::new();
        assert_eq!(r.evaluate(0, &mut c, &mut scores), Ok(()));
        assert_eq!(scores.len(), 64);
        // node 0: memory 3/4 free, CPU 1/2 free; node 1 untouched; node 2: 6/8 memory, no CPU.
        assert_eq!(&scores[..4], &[625, 1000, 750, 0]);
    }
}

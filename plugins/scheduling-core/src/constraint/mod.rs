//! Constraint: LAIN's scheduling filters (LAIN reference §proc-keys `filters`, §scheduling), as
//! Swarm classic applied them.
//!
//! - `constraint:<key>==<value>` keeps the nodes carrying a label `key=value`; every node carries
//!   `node=<node name>`, so `constraint:node!=node3` keeps every node but `node3`.
//! - `affinity:<key>==<value>` keeps the nodes hosting at least one instance of a proc whose
//!   container labels include `key=value` (the instance's own proc included), e.g.
//!   `affinity:proctype!=~db` keeps away from other database instances.
//! - `!=` negates; the value is exact, or a glob where `*` matches any run of characters; a `~`
//!   before the value makes the filter soft: it applies only if at least one candidate satisfies
//!   it. Hard filters apply first, then soft ones in the order written.
//!
//! Unlike Swarm, values are never regular expressions (Swarm also read `/.../` as one, and turned
//! globs into regular expressions so that `.` matched any character); `affinity:` keys always name
//! container labels (Swarm also had `affinity:container==` and `affinity:image==`). The default
//! `constraint:group==default` of LAIN is added by whoever builds the proc's filters, not here.
//!
//! Speed: a proc's filters are compiled into node bitmaps (one AND for all hard `constraint:`
//! filters) and cached until the node labels change (or, for a globbed `affinity:` value, until
//! a new container label appears); affinity bitmaps are kept up to date from placements.
//! `evaluate` is a few bitmap operations, O(words x filters).

mod filter;
mod hosts;
mod inventory;

use crate::counts::Instances;
use crate::types::{LabelDef, LevelsVerdict, Node, Placement, ProcRequirements, Roles, Rows};
use crate::{Algorithm, bitmap, ids, level_shape, undefined};
use filter::{Filter, Target, parse_label};
use hosts::Hosts;
use inventory::Inventory;

/// State of the constraint algorithm.
#[derive(Debug, Default)]
pub struct Constraint {
    inventory: Inventory,
    hosts: Hosts,
    /// Indexed by proc id.
    procs: Vec<Option<Rules>>,
    instances: Instances,
    /// Reused by globbed `affinity:` filters to merge several labels' bitmaps.
    scratch: Vec<u64>,
}

/// A defined proc: its filters, container labels and compiled plan.
#[derive(Debug)]
struct Rules {
    filters: Vec<Filter>,
    /// Whether an `affinity:` filter has a glob, so that container labels interned later can
    /// change what it matches (exact ones are interned up front).
    host_globs: bool,
    /// Ids of its container labels in [`Hosts`] (sorted, no duplicates).
    labels: Vec<u32>,
    plan: Plan,
}

/// A proc's filters compiled against the current node labels and container labels.
#[derive(Debug, Default)]
struct Plan {
    /// What the plan was built from (see [`Rules::stamp`]); `None`: never built.
    stamp: Option<(u64, usize)>,
    /// The AND of the hard `constraint:` filters, and the mask of the words past its end (all
    /// ones when only `!=` filters made it, as unknown nodes carry no labels).
    hard: Option<(Vec<u64>, u64)>,
    /// The hard `affinity:` filters, then the soft filters in the order written.
    steps: Vec<Step>,
}

/// One filter evaluated at placement time.
#[derive(Debug)]
struct Step {
    soft: bool,
    negate: bool,
    source: Source,
}

/// The nodes a [`Step`] matches.
#[derive(Debug)]
enum Source {
    /// Fixed until the inventory changes.
    Nodes(Vec<u64>),
    /// The nodes hosting any of these container labels, looked up at each evaluation.
    Hosts(Vec<u32>),
}

impl Rules {
    /// The state a plan depends on: the inventory generation, and the number of container
    /// labels interned if a glob could match new ones.
    fn stamp(&self, inventory: &Inventory, hosts: &Hosts) -> (u64, usize) {
        let labels = if self.host_globs { hosts.len() } else { 0 };
        (inventory.generation(), labels)
    }
}

impl Plan {
    /// Compiles `filters` against the current state, valid while `stamp` holds.
    fn build(
        filters: &[Filter],
        inventory: &Inventory,
        hosts: &Hosts,
        stamp: (u64, usize),
    ) -> Plan {
        let mut hard: Option<(Vec<u64>, u64)> = None;
        let (mut steps, mut soft) = (Vec::new(), Vec::new());
        for f in filters {
            let source = match f.target {
                Target::Node => Source::Nodes(inventory.matching(&f.key, |v| f.matches(v))),
                Target::Host => Source::Hosts(hosts.resolve(&f.key, |v| f.matches(v))),
            };
            match (source, f.soft) {
                (Source::Nodes(nodes), false) => {
                    let (mask, tail) =
                        hard.get_or_insert_with(|| (vec![u64::MAX; inventory.words()], u64::MAX));
                    if f.negate {
                        bitmap::and_not(mask, &nodes);
                    } else {
                        bitmap::and_with(mask, &nodes, 0);
                        *tail = 0;
                    }
                }
                (source, soft_filter) => {
                    let step = Step {
                        soft: soft_filter,
                        negate: f.negate,
                        source,
                    };
                    if soft_filter {
                        soft.push(step)
                    } else {
                        steps.push(step)
                    }
                }
            }
        }
        steps.append(&mut soft);
        Plan {
            stamp: Some(stamp),
            hard,
            steps,
        }
    }
}

impl Step {
    /// The nodes the step matches now; `scratch` holds the union of several labels' hosts.
    fn matched<'a>(&'a self, hosts: &'a Hosts, scratch: &'a mut Vec<u64>) -> &'a [u64] {
        match &self.source {
            Source::Nodes(nodes) => nodes,
            Source::Hosts(labels) => match labels.as_slice() {
                [one] => hosts.hosting(*one),
                several => {
                    scratch.clear();
                    for &l in several {
                        bitmap::or_assign(scratch, hosts.hosting(l));
                    }
                    scratch
                }
            },
        }
    }

    /// Whether an instance of the proc itself makes its node match: an `affinity:` step naming
    /// one of the proc's own container labels (`own`, sorted).
    fn matches_own(&self, own: &[u32]) -> bool {
        match &self.source {
            Source::Nodes(_) => false,
            Source::Hosts(labels) => labels.iter().any(|l| own.binary_search(l).is_ok()),
        }
    }

    /// Narrows `candidates`; a soft step only if that leaves at least one.
    fn apply(&self, candidates: &mut [u64], hosts: &Hosts, scratch: &mut Vec<u64>) {
        let matched = self.matched(hosts, scratch);
        if self.soft {
            let keeps_some = if self.negate {
                !bitmap::is_subset(candidates, matched)
            } else {
                bitmap::intersects(candidates, matched)
            };
            if !keeps_some {
                return;
            }
        }
        if self.negate {
            bitmap::and_not(candidates, matched);
        } else {
            bitmap::and_with(candidates, matched, 0);
        }
    }
}

impl Constraint {
    /// An empty constraint filter.
    pub fn new() -> Self {
        Constraint::default()
    }

    /// The rules of `proc` with their plan brought up to date, and the container-label hosts
    /// and scratch bitmap they are applied with. Errors: `proc` was never defined.
    fn planned(&mut self, proc: u32) -> Result<(&Rules, &Hosts, &mut Vec<u64>), String> {
        let Constraint {
            inventory,
            hosts,
            procs,
            scratch,
            ..
        } = self;
        let rules = procs
            .get_mut(proc as usize)
            .and_then(Option::as_mut)
            .ok_or_else(|| undefined(proc))?;
        let stamp = rules.stamp(inventory, hosts);
        if rules.plan.stamp != Some(stamp) {
            rules.plan = Plan::build(&rules.filters, inventory, hosts, stamp);
        }
        Ok((rules, hosts, scratch))
    }

    /// Moves the instances of `proc` from the container labels `old` to `new`.
    fn relabel(&mut self, proc: u32, old: &[u32], new: &[u32]) {
        for &(node, count) in self.instances.of(proc) {
            for &l in old {
                self.hosts.add(l, node, -i64::from(count));
            }
            for &l in new {
                self.hosts.add(l, node, i64::from(count));
            }
        }
    }
}

impl Algorithm for Constraint {
    fn roles(&self) -> Roles {
        Roles {
            filter: true,
            score: false,
        }
    }

    fn sync_labels(&mut self, labels: &[LabelDef]) {
        self.inventory.define_labels(labels);
    }

    fn sync_nodes(&mut self, upsert: &[Node], remove: &[u32]) {
        for node in upsert {
            self.inventory.upsert(node);
        }
        for &node in remove {
            self.inventory.remove(node);
            self.instances.remove_node(node);
            self.hosts.remove_node(node);
        }
    }

    fn define_proc(&mut self, req: &ProcRequirements) -> Result<(), String> {
        if req.id >= ids::MAX_ID {
            return Err(ids::too_large(req.id));
        }
        let filters = req
            .filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<Vec<_>, _>>()?;
        let pairs = req
            .labels
            .iter()
            .map(|l| parse_label(l).map(|(k, v)| (l, k, v)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut labels: Vec<u32> = pairs
            .into_iter()
            .map(|(text, key, value)| self.hosts.intern(text, key, value))
            .collect();
        let mut host_globs = false;
        for f in filters.iter().filter(|f| f.target == Target::Host) {
            if f.is_glob() {
                host_globs = true;
            } else {
                let text = format!("{}={}", f.key, f.value);
                self.hosts.intern(&text, &f.key, &f.value);
            }
        }
        labels.sort_unstable();
        labels.dedup();
        let old = self
            .procs
            .get_mut(req.id as usize)
            .and_then(Option::take)
            .map_or_else(Vec::new, |r| r.labels);
        if old != labels {
            self.relabel(req.id, &old, &labels);
        }
        if let Some(slot) = ids::entry(&mut self.procs, req.id) {
            *slot = Some(Rules {
                filters,
                host_globs,
                labels,
                plan: Plan::default(),
            });
        }
        Ok(())
    }

    fn forget_proc(&mut self, proc: u32) {
        let labels = self
            .procs
            .get_mut(proc as usize)
            .and_then(Option::take)
            .map_or_else(Vec::new, |r| r.labels);
        self.relabel(proc, &labels, &[]);
        self.instances.take(proc);
    }

    fn record_placement(&mut self, placement: Placement) {
        let delta = self.instances.add(placement);
        if delta == 0 {
            return;
        }
        let Some(Some(rules)) = self.procs.get(placement.proc as usize) else {
            return;
        };
        for &l in &rules.labels {
            self.hosts.add(l, placement.node, delta);
        }
    }

    /// Applies the proc's filters: O(words x filters), plus a rebuild of its plan (O(nodes
    /// matched)) after the node labels changed.
    fn evaluate(
        &mut self,
        proc: u32,
        candidates: &mut [u64],
        scores: &mut Vec<u16>,
    ) -> Result<(), String> {
        let (rules, hosts, scratch) = self.planned(proc)?;
        if let Some((mask, tail)) = &rules.plan.hard {
            bitmap::and_with(candidates, mask, *tail);
        }
        for step in &rules.plan.steps {
            step.apply(candidates, hosts, scratch);
        }
        scores.clear();
        Ok(())
    }

    /// Hard rules become each node's room, soft ones its rank (O(nodes x hard filters) plus
    /// O(nodes matched by a soft filter x levels)).
    ///
    /// A node's match of an `affinity:` filter changes within a batch only where the filter
    /// names one of the proc's own labels: from its first new instance on, the node hosts one.
    /// So a hard `affinity:` filter allows no instance (unmatched), any number (matched), or,
    /// negated and naming the proc itself, one. Soft filters, which apply "only if some
    /// candidate satisfies them" in the order written, are the bits of a rank (the first filter
    /// the highest bit): keeping the candidates of the highest rank is applying them in order.
    /// Nodes matched by no soft filter share the default row. More than 32 soft filters: `None`.
    fn evaluate_levels(
        &mut self,
        proc: u32,
        candidates: &[u64],
        levels: u32,
    ) -> Result<Option<LevelsVerdict>, String> {
        let (rules, hosts, scratch) = self.planned(proc)?;
        let Some((nodes, levels)) = level_shape(candidates, levels) else {
            return Ok(None);
        };
        let steps = &rules.plan.steps;
        let soft: Vec<&Step> = steps.iter().filter(|s| s.soft).collect();
        if soft.len() > 32 {
            return Ok(None);
        }
        // Room: the hard `constraint:` mask, then each hard `affinity:` filter.
        let mut open = candidates.to_vec();
        if let Some((mask, tail)) = &rules.plan.hard {
            bitmap::and_with(&mut open, mask, *tail);
        }
        let mut once = vec![0u64; open.len()];
        for step in steps.iter().filter(|s| !s.soft) {
            let own = step.matches_own(&rules.labels);
            let matched = step.matched(hosts, scratch);
            if !step.negate {
                bitmap::and_with(&mut open, matched, 0);
                bitmap::and_with(&mut once, matched, 0);
            } else if own {
                // Unmatched nodes take one instance: after it, they host the proc itself.
                for (w, (o, m)) in open.iter_mut().zip(&mut once).enumerate() {
                    let hit = matched.get(w).copied().unwrap_or(0);
                    *m = (*m | *o) & !hit;
                    *o = 0;
                }
            } else {
                bitmap::and_not(&mut open, matched);
                bitmap::and_not(&mut once, matched);
            }
        }
        let mut verdict = LevelsVerdict::default();
        if levels == 1 {
            bitmap::or_assign(&mut open, &once);
        } else {
            for (w, &m) in once.iter().enumerate() {
                let mut bits = m;
                while bits != 0 {
                    verdict
                        .limited
                        .push((w as u32 * 64 + bits.trailing_zeros(), 1));
                    bits &= bits - 1;
                }
            }
        }
        verdict.open = open;
        if soft.is_empty() {
            return Ok(Some(verdict));
        }
        // Rank: bit `soft.len() - 1 - j` is soft filter j's verdict at that level.
        let width = soft.len();
        let mut matched_any = vec![0u64; candidates.len()];
        let mut sets = Vec::with_capacity(width);
        for step in &soft {
            let matched = step.matched(hosts, scratch).to_vec();
            bitmap::or_assign(&mut matched_any, &matched);
            sets.push((matched, step.negate, step.matches_own(&rules.labels)));
        }
        let row_of = |id: u32| -> Vec<u32> {
            (0..levels)
                .map(|k| {
                    sets.iter()
                        .enumerate()
                        .fold(0u32, |rank, (j, (m, negate, own))| {
                            let matches = bitmap::get(m, id) || (*own && k > 0);
                            if matches != *negate {
                                rank | 1 << (width - 1 - j)
                            } else {
                                rank
                            }
                        })
                })
                .collect()
        };
        // A node no soft filter matches: its row depends on nothing but the filters.
        verdict.rank = Rows::new(row_of(u32::MAX));
        bitmap::and_with(&mut matched_any, candidates, 0);
        for (w, &word) in matched_any.iter().enumerate().take(nodes.div_ceil(64)) {
            let mut bits = word;
            while bits != 0 {
                let id = w as u32 * 64 + bits.trailing_zeros();
                bits &= bits - 1;
                verdict.rank.set(id, &row_of(id));
            }
        }
        Ok(Some(verdict))
    }
}

#[cfg(test)]
mod tests;

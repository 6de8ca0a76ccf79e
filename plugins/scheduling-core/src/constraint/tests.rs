//! Tests of the constraint algorithm on a four-node cluster.

use super::*;

/// Labels: group=default (0), group=db (1), node=n0..n3 (2..5), disk=ssd (6).
fn labels() -> Vec<LabelDef> {
    let def = |id, key: &str, value: &str| LabelDef {
        id,
        key: key.into(),
        value: value.into(),
    };
    vec![
        def(0, "group", "default"),
        def(1, "group", "db"),
        def(2, "node", "n0"),
        def(3, "node", "n1"),
        def(4, "node", "n2"),
        def(5, "node", "n3"),
        def(6, "disk", "ssd"),
    ]
}

fn node(id: u32, labels: &[u32]) -> Node {
    Node {
        id,
        labels: labels.to_vec(),
        memory: 0,
        cpu: 0,
    }
}

/// n0: default+ssd, n1: default, n2: db+ssd, n3: db.
fn cluster() -> Constraint {
    let mut c = Constraint::new();
    c.sync_labels(&labels());
    c.sync_nodes(
        &[
            node(0, &[0, 2, 6]),
            node(1, &[0, 3]),
            node(2, &[1, 4, 6]),
            node(3, &[1, 5]),
        ],
        &[],
    );
    c
}

fn define(c: &mut Constraint, id: u32, filters: &[&str], labels: &[&str]) -> Result<(), String> {
    c.define_proc(&ProcRequirements {
        id,
        filters: filters.iter().map(|s| s.to_string()).collect(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn place(c: &mut Constraint, proc: u32, node: u32, count: i32) {
    c.record_placement(Placement { proc, node, count });
}

/// Feasible ids among `candidates` (ids below 128) for `proc`.
fn feasible(c: &mut Constraint, proc: u32, candidates: &[u32]) -> Vec<u32> {
    let mut words = vec![0; 2];
    for &id in candidates {
        bitmap::set(&mut words, id);
    }
    let mut scores = vec![1];
    assert_eq!(c.evaluate(proc, &mut words, &mut scores), Ok(()));
    assert!(scores.is_empty(), "a filter gives no scores");
    (0..128).filter(|&i| bitmap::get(&words, i)).collect()
}

/// Defines proc 9 with `filters` and evaluates it on nodes 0..4.
fn with(c: &mut Constraint, filters: &[&str]) -> Vec<u32> {
    assert_eq!(define(c, 9, filters, &[]), Ok(()));
    feasible(c, 9, &[0, 1, 2, 3])
}

#[test]
fn node_constraints() {
    let mut c = cluster();
    assert_eq!(
        c.roles(),
        Roles {
            filter: true,
            score: false
        }
    );
    assert_eq!(with(&mut c, &[]), vec![0, 1, 2, 3]);
    assert_eq!(with(&mut c, &["constraint:group==default"]), vec![0, 1]);
    assert_eq!(with(&mut c, &["constraint:group!=default"]), vec![2, 3]);
    assert_eq!(
        with(
            &mut c,
            &["constraint:group==default", "constraint:disk==ssd"]
        ),
        vec![0]
    );
    assert_eq!(with(&mut c, &["constraint:node!=n1"]), vec![0, 2, 3]);
    assert_eq!(with(&mut c, &["constraint:node==n*"]), vec![0, 1, 2, 3]);
    assert_eq!(
        with(&mut c, &["constraint:group==d*", "constraint:node!=*3"]),
        vec![0, 1, 2]
    );
    assert_eq!(
        with(&mut c, &["constraint:rack==a"]),
        Vec::<u32>::new(),
        "unknown key"
    );
    assert_eq!(
        with(&mut c, &["constraint:disk!=ssd"]),
        vec![1, 3],
        "absent key satisfies !="
    );
}

#[test]
fn unknown_nodes_carry_no_labels() {
    let mut c = cluster();
    define(&mut c, 1, &["constraint:group!=db"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 2, 70]), vec![0, 70]);
    define(
        &mut c,
        1,
        &["constraint:group!=db", "constraint:disk==ssd"],
        &[],
    )
    .ok();
    assert_eq!(feasible(&mut c, 1, &[0, 2, 70]), vec![0]);
}

#[test]
fn soft_constraints_apply_only_when_satisfiable() {
    let mut c = cluster();
    define(&mut c, 1, &["constraint:disk==~ssd"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1, 3]), vec![0]);
    assert_eq!(
        feasible(&mut c, 1, &[1, 3]),
        vec![1, 3],
        "no candidate has ssd: ignored"
    );
    define(&mut c, 1, &["constraint:node!=~n1"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[1, 2]), vec![2]);
    assert_eq!(
        feasible(&mut c, 1, &[1]),
        vec![1],
        "the drained node is the only one left"
    );
    // Soft filters apply in order, after the hard ones.
    define(
        &mut c,
        1,
        &[
            "constraint:node==~n3",
            "constraint:group==db",
            "constraint:disk==~ssd",
        ],
        &[],
    )
    .ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), vec![3]);
}

#[test]
fn affinity_follows_placements() {
    let mut c = cluster();
    define(&mut c, 0, &[], &["proctype=db", "team=dba"]).ok();
    define(&mut c, 1, &["affinity:proctype==db"], &[]).ok();
    define(&mut c, 2, &["affinity:proctype!=db"], &[]).ok();
    define(&mut c, 3, &["affinity:team==d*"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), Vec::<u32>::new());
    assert_eq!(feasible(&mut c, 2, &[0, 1, 2, 3]), vec![0, 1, 2, 3]);
    place(&mut c, 0, 2, 2);
    place(&mut c, 0, 3, 1);
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), vec![2, 3]);
    assert_eq!(feasible(&mut c, 2, &[0, 1, 2, 3]), vec![0, 1]);
    assert_eq!(
        feasible(&mut c, 3, &[0, 1, 2, 3]),
        vec![2, 3],
        "globs match container labels"
    );
    place(&mut c, 0, 2, -1);
    assert_eq!(
        feasible(&mut c, 1, &[0, 1, 2, 3]),
        vec![2, 3],
        "one instance is left on 2"
    );
    place(&mut c, 0, 2, -1);
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), vec![3]);
    c.sync_nodes(&[], &[3]);
    assert_eq!(
        feasible(&mut c, 1, &[0, 1, 2, 3]),
        Vec::<u32>::new(),
        "removal drops instances"
    );
}

#[test]
fn soft_anti_affinity_spreads_a_proc() {
    let mut c = cluster();
    let own = "cc.bdp.lain.deployd.pg_name=hello.web.web";
    define(
        &mut c,
        0,
        &["affinity:cc.bdp.lain.deployd.pg_name!=~hello.web.web"],
        &[own],
    )
    .ok();
    place(&mut c, 0, 0, 1);
    place(&mut c, 0, 1, 1);
    assert_eq!(feasible(&mut c, 0, &[0, 1, 2]), vec![2]);
    assert_eq!(
        feasible(&mut c, 0, &[0, 1]),
        vec![0, 1],
        "every candidate hosts one: ignored"
    );
}

#[test]
fn glob_affinity_sees_labels_defined_later() {
    let mut c = cluster();
    define(&mut c, 1, &["affinity:app==hello*"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1]), Vec::<u32>::new());
    define(&mut c, 0, &[], &["app=hello-world"]).ok();
    place(&mut c, 0, 1, 1);
    assert_eq!(feasible(&mut c, 1, &[0, 1]), vec![1]);
}

#[test]
fn cache_follows_node_and_label_changes() {
    let mut c = cluster();
    define(&mut c, 1, &["constraint:group==default"], &[]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), vec![0, 1]);
    c.sync_nodes(&[node(3, &[0, 5])], &[]);
    assert_eq!(
        feasible(&mut c, 1, &[0, 1, 2, 3]),
        vec![0, 1, 3],
        "relabelled node"
    );
    c.sync_nodes(&[node(4, &[0])], &[0]);
    assert_eq!(
        feasible(&mut c, 1, &[0, 1, 2, 3, 4]),
        vec![1, 3, 4],
        "added and removed"
    );
    c.sync_labels(&[LabelDef {
        id: 0,
        key: "group".into(),
        value: "web".into(),
    }]);
    assert_eq!(
        feasible(&mut c, 1, &[0, 1, 2, 3, 4]),
        Vec::<u32>::new(),
        "label redefined"
    );
}

#[test]
fn redefinition_moves_instances_to_new_labels() {
    let mut c = cluster();
    define(&mut c, 0, &[], &["role=a"]).ok();
    define(&mut c, 1, &["affinity:role==a"], &[]).ok();
    define(&mut c, 2, &["affinity:role==b"], &[]).ok();
    place(&mut c, 0, 1, 1);
    assert_eq!(feasible(&mut c, 1, &[0, 1]), vec![1]);
    define(&mut c, 0, &[], &["role=b"]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1]), Vec::<u32>::new());
    assert_eq!(feasible(&mut c, 2, &[0, 1]), vec![1]);
    c.forget_proc(0);
    assert_eq!(feasible(&mut c, 2, &[0, 1]), Vec::<u32>::new());
}

#[test]
fn placements_before_definition_count() {
    let mut c = cluster();
    place(&mut c, 0, 2, 1);
    define(&mut c, 1, &["affinity:role==a"], &[]).ok();
    define(&mut c, 0, &[], &["role=a"]).ok();
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2]), vec![2]);
}

#[test]
fn bad_definitions_keep_the_previous_one() {
    let mut c = cluster();
    define(&mut c, 1, &["constraint:group==db"], &[]).ok();
    assert_eq!(
        define(
            &mut c,
            1,
            &["constraint:group==default", "constraint:group=default"],
            &[]
        ),
        Err("filter \"constraint:group=default\": expected == or !=".into())
    );
    assert_eq!(
        define(&mut c, 1, &[], &["novalue"]),
        Err("label \"novalue\": expected key=value".into())
    );
    assert_eq!(feasible(&mut c, 1, &[0, 1, 2, 3]), vec![2, 3]);
    let mut scores = Vec::new();
    assert_eq!(
        c.evaluate(5, &mut [1], &mut scores),
        Err("proc 5 was never defined".into())
    );
    c.forget_proc(1);
    assert!(c.evaluate(1, &mut [1], &mut scores).is_err());
    assert!(define(&mut c, ids::MAX_ID, &[], &[]).is_err());
}

#[test]
fn new_container_labels_only_invalidate_globbed_plans() {
    let mut c = cluster();
    define(
        &mut c,
        1,
        &["constraint:group==default", "affinity:role==a"],
        &[],
    )
    .ok();
    define(&mut c, 2, &["affinity:role==a*"], &[]).ok();
    feasible(&mut c, 1, &[0]);
    feasible(&mut c, 2, &[0]);
    define(&mut c, 3, &[], &["unrelated=x"]).ok();
    let fresh = |c: &Constraint, id: usize| {
        c.procs
            .get(id)
            .and_then(Option::as_ref)
            .is_some_and(|r| r.plan.stamp == Some(r.stamp(&c.inventory, &c.hosts)))
    };
    assert!(fresh(&c, 1), "exact filters keep their plan");
    assert!(!fresh(&c, 2), "a glob may match the new label");
    c.sync_nodes(&[node(5, &[0])], &[]);
    assert!(!fresh(&c, 1), "node changes invalidate every plan");
}

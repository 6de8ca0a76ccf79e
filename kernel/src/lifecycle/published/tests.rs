use super::*;
use crate::cluster::fence::{Fence, FencedStore};
use crate::lifecycle::view::{Health, InstanceView, StatusBoard};
use crate::runtime::RunState;
use crate::store::embedded::EmbeddedStore;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("store"));
    (dir, store)
}

fn instance(name: &str, ready: bool, restart_in: Option<u64>) -> InstanceView {
    InstanceView {
        name: name.into(),
        proc: "web".into(),
        instance: 1,
        release: "r1".into(),
        plan_stamp: String::new(),
        secrets_stamp: String::new(),
        restart: 0,
        node: "local".into(),
        state: RunState::Running {
            pid: None,
            started_at: 1,
        },
        health: if ready {
            Health::Healthy
        } else {
            Health::Starting
        },
        ready,
        url: Some("http://127.0.0.1:4000".into()),
        streams: BTreeMap::new(),
        memory: 1,
        restarts: 0,
        attempt: 1,
        labels: BTreeMap::new(),
        restart_in,
        retiring: false,
        failed: None,
    }
}

fn apps(list: &[(&str, InstanceView)]) -> BTreeMap<String, AppStatus> {
    let mut out: BTreeMap<String, AppStatus> = BTreeMap::new();
    for (app, i) in list {
        out.entry(app.to_string())
            .or_default()
            .instances
            .push(i.clone());
    }
    out
}

#[test]
fn only_changed_records_are_written_and_a_new_leader_starts_from_them() {
    let (_dir, store) = store();
    let mut p = Publisher::default();
    let first = apps(&[
        ("a", instance("a1", false, None)),
        ("b", instance("b1", true, None)),
    ]);
    assert_eq!(p.write(&*store, &first).expect("write"), 2);
    let rev = store.revision().expect("rev");
    assert_eq!(
        p.write(&*store, &first).expect("write"),
        0,
        "nothing changed"
    );
    assert_eq!(store.revision().expect("rev"), rev, "nothing written");

    // a1 becomes ready: only a's record is written.
    let second = apps(&[
        ("a", instance("a1", true, None)),
        ("b", instance("b1", true, None)),
    ]);
    assert_eq!(p.write(&*store, &second).expect("write"), 1);
    assert_eq!(load(&*store).expect("load"), second);

    // A countdown that only counts down is not a change.
    let at = crate::clock::unix_secs() + 30;
    let backing = || {
        let left = u64::try_from(at - crate::clock::unix_secs()).expect("ahead");
        apps(&[("a", instance("a1", false, Some(left)))])
    };
    p.write(&*store, &backing()).expect("write");
    let rev = store.revision().expect("rev");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(p.write(&*store, &backing()).expect("write"), 0);
    assert_eq!(store.revision().expect("rev"), rev);
    let read = load(&*store).expect("load");
    assert!(
        read["a"].instances[0].restart_in.is_some_and(|s| s <= 29),
        "{read:?}"
    );
    assert!(!read.contains_key("b"), "b's record is deleted with b");

    // A new leader reads what is stored and writes nothing that did not change.
    let (mut next, seen) = Publisher::load(&*store).expect("load");
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["a"]);
    assert_eq!(next.write(&*store, &backing()).expect("write"), 0);
}

#[test]
fn a_deposed_leader_cannot_publish() {
    let (_dir, inner) = store();
    let fence = Arc::new(Fence::default());
    let fenced = FencedStore::new(inner.clone(), fence.clone());
    inner
        .apply(vec![Op::Put("cluster/leader/1".into(), b"me".to_vec())])
        .expect("elected");
    fence.hold("cluster/leader/1".into(), b"me".to_vec());
    let mut p = Publisher::default();
    p.write(&fenced, &apps(&[("a", instance("a1", true, None))]))
        .expect("the leader publishes");
    inner
        .apply(vec![Op::Delete("cluster/leader/1".into())])
        .expect("lease ended");
    let err = p
        .write(&fenced, &apps(&[("a", instance("a1", false, None))]))
        .expect_err("fenced");
    assert!(
        err.to_string().contains("no longer the cluster's leader"),
        "{err}"
    );
    assert!(
        load(&*inner).expect("load")["a"].instances[0].ready,
        "unchanged"
    );
}

#[test]
fn oversized_and_corrupt_records_are_refused_by_name() {
    let err = decode("published/apps/x", &vec![b' '; MAX_RECORD + 1], 0).expect_err("large");
    assert!(err.to_string().contains("over the"), "{err}");
    let err = decode("published/apps/x", b"{\"instances\": 3}", 0).expect_err("corrupt");
    assert!(
        err.to_string().contains("published/apps/x is corrupt"),
        "{err}"
    );
}

fn wait(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_board_follows_the_records_unless_its_own_reconciler_publishes() {
    let (_dir, store) = store();
    let mut p = Publisher::default();
    p.write(&*store, &apps(&[("a", instance("a1", true, None))]))
        .expect("write");
    let board = StatusBoard::default();
    let alive = Arc::new(());
    follow(store.clone(), board.clone(), Arc::downgrade(&alive));
    let has = |board: &StatusBoard, name: &str| {
        board
            .snapshot()
            .1
            .values()
            .flatten()
            .any(|i| i.name == name)
    };
    wait("the stored record is read", || has(&board, "a1"));
    p.write(&*store, &apps(&[("b", instance("b1", true, None))]))
        .expect("write");
    wait("a change is followed", || {
        has(&board, "b1") && !has(&board, "a1")
    });

    // Its own reconciler publishes: the store is not followed meanwhile.
    board.publish(apps(&[("c", instance("c1", true, None))]));
    p.write(&*store, &apps(&[("d", instance("d1", true, None))]))
        .expect("write");
    std::thread::sleep(Duration::from_millis(300));
    assert!(has(&board, "c1") && !has(&board, "d1"));
    // It stops (leadership lost): the board reads the store again.
    board.release();
    wait("the records are read again", || {
        has(&board, "d1") && !has(&board, "c1")
    });
}

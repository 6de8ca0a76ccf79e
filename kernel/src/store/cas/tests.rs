//! Deterministic interleavings: a concurrent write lands between an attempt's reads and its
//! commit ([`interleave`]), and the result must keep both writes.

use super::*;
use crate::store::embedded::EmbeddedStore;
use crate::store::get_json;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::Arc;

thread_local! {
    static NEXT: RefCell<Vec<Box<dyn FnOnce()>>> = RefCell::new(Vec::new());
}

/// Runs `write` once, on this thread, between the next attempt's reads and its commit: the
/// "concurrent writer" of the tests of every read-modify-write.
pub(crate) fn interleave(write: impl FnOnce() + 'static) {
    NEXT.with(|n| n.borrow_mut().push(Box::new(write)));
}

pub(super) fn run_interleaved() {
    let pending = NEXT.with(|n| std::mem::take(&mut *n.borrow_mut()));
    for write in pending {
        write();
    }
}

pub(crate) fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("store");
    (dir, Arc::new(store))
}

/// Adds `item` to the JSON set at `key`.
fn add(store: &dyn Store, key: &str, item: &str) -> Result<BTreeSet<String>, StoreError> {
    transact(store, "add", |txn| {
        let mut set: BTreeSet<String> = txn.get_json(key)?.unwrap_or_default();
        set.insert(item.to_string());
        txn.put_json(key, &set)?;
        Ok::<_, StoreError>(set)
    })
}

#[test]
fn a_write_overtaken_between_its_read_and_its_commit_retries_and_keeps_both() {
    let (_dir, store) = store();
    add(&*store, "k", "a").expect("a");
    let other = store.clone();
    interleave(move || {
        add(&*other, "k", "b").expect("b");
    });
    let before = conflicts();
    let set = add(&*store, "k", "c").expect("c");
    let names: Vec<&str> = set.iter().map(String::as_str).collect();
    assert_eq!(names, ["a", "b", "c"], "the retry saw b");
    let stored: BTreeSet<String> = get_json(&*store, "k").expect("get").expect("some");
    assert_eq!(stored, set);
    assert!(conflicts() > before, "the conflict is counted");
}

#[test]
fn an_insert_if_absent_sees_a_concurrent_insert() {
    let (_dir, store) = store();
    let other = store.clone();
    interleave(move || {
        other
            .apply(vec![Op::Put("k".into(), b"theirs".to_vec())])
            .expect("put");
    });
    let won = transact(&*store, "create", |txn| {
        if txn.get("k")?.is_some() {
            return Ok::<_, StoreError>(false);
        }
        txn.write(Op::Put("k".into(), b"mine".to_vec()));
        Ok(true)
    })
    .expect("create");
    assert!(!won, "the second look found theirs");
    assert_eq!(
        store.get("k").expect("get").as_deref(),
        Some(&b"theirs"[..])
    );
}

#[test]
fn a_refusal_writes_nothing_and_endless_conflicts_end_in_a_clear_error() {
    let (_dir, store) = store();
    let refused: Result<(), StoreError> = transact(&*store, "refuse", |txn| {
        txn.write(Op::Put("k".into(), b"x".to_vec()));
        Err(StoreError("no".into()))
    });
    assert!(refused.is_err());
    assert_eq!(store.get("k").expect("get"), None);
    let other = store.clone();
    let mut n = 0u32;
    let err = transact(&*store, "set k", |txn| {
        let other = other.clone();
        n += 1;
        interleave(move || {
            other
                .apply(vec![Op::Put("k".into(), n.to_le_bytes().to_vec())])
                .expect("put");
        });
        txn.get("k")?;
        txn.write(Op::Put("k".into(), b"mine".to_vec()));
        Ok::<_, StoreError>(())
    })
    .expect_err("every attempt overtaken");
    assert_eq!(n, MAX_ATTEMPTS);
    assert!(err.0.contains("set k: gave up after 32 attempts"), "{err}");
}

//! The properties every [`Store`] backend must have, each a function over a [`Backend`].

use lain::store::{Change, Expect, Op, Store, StoreError, Watch};
use std::sync::Arc;
use std::time::Duration;

/// A test outcome.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error>>;

/// How long to wait for a change that must come.
pub const WAIT: Duration = Duration::from_secs(10);

/// A backend under test: how to get a store on its data, and backend-specific extras.
pub trait Backend {
    /// The store type.
    type Store: Store + 'static;
    /// A new store on the backend's data: a reopened file, or a new client of the same etcd.
    fn open(&self) -> TestResult<Self::Store>;
    /// Drops history so that watches from before `through` fail as compacted.
    fn compact(store: &Self::Store, through: u64) -> TestResult;
}

fn put(key: &str, value: &[u8]) -> Op {
    Op::Put(key.to_string(), value.to_vec())
}

fn del(key: &str) -> Op {
    Op::Delete(key.to_string())
}

fn change(revision: u64, op: Op) -> Change {
    Change { revision, op }
}

/// The next `n` changes of `watch`, failing if they do not all come within [`WAIT`] each.
fn take(watch: &Watch, n: usize) -> TestResult<Vec<Change>> {
    let mut out = Vec::new();
    while out.len() < n {
        match watch.recv_timeout(WAIT)? {
            Some(change) => out.push(change),
            None => return Err(format!("only {} of {n} changes came: {out:?}", out.len()).into()),
        }
    }
    Ok(out)
}

/// Fails if `watch` delivers anything more.
fn assert_quiet(watch: &Watch) -> TestResult {
    match watch.recv_timeout(Duration::from_millis(300))? {
        None => Ok(()),
        Some(extra) => Err(format!("unexpected change {extra:?}").into()),
    }
}

/// A multi-key apply is seen whole or not at all, by readers and by watchers.
pub fn atomic_multi_key_writes(backend: &impl Backend) -> TestResult {
    let store = Arc::new(backend.open()?);
    let watch = store.watch("t/", store.revision()?)?;
    let keys = ["t/a", "t/b", "t/c"];
    let writer = {
        let store = Arc::clone(&store);
        std::thread::spawn(move || -> Result<Vec<u64>, StoreError> {
            (0..40u8)
                .map(|i| store.apply(keys.iter().map(|k| put(k, &[i])).collect()))
                .collect()
        })
    };
    while !writer.is_finished() {
        let values: Vec<Vec<u8>> = store.list("t/")?.into_iter().map(|(_, v)| v).collect();
        assert!(
            values.is_empty() || (values.len() == 3 && values.iter().all(|v| *v == values[0])),
            "a reader saw a partial write: {values:?}"
        );
    }
    let revisions = writer.join().map_err(|_| "the writer panicked")??;
    for (i, revision) in revisions.iter().enumerate() {
        let changes = take(&watch, 3)?;
        let value = vec![u8::try_from(i)?];
        let expected: Vec<Change> = keys
            .iter()
            .map(|k| change(*revision, put(k, &value)))
            .collect();
        assert_eq!(changes, expected);
    }
    assert_quiet(&watch)
}

/// `list` returns exactly the keys with the prefix, in key order.
pub fn listing_by_prefix(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    store.apply(vec![
        put("app/b", b"2"),
        put("apple", b"3"),
        put("app/a", b"1"),
        put("ap", b"0"),
        put("b/x", b"4"),
    ])?;
    let keys = |prefix: &str| -> TestResult<Vec<String>> {
        Ok(store.list(prefix)?.into_iter().map(|(k, _)| k).collect())
    };
    assert_eq!(keys("app/")?, ["app/a", "app/b"]);
    assert_eq!(keys("app")?, ["app/a", "app/b", "apple"]);
    assert_eq!(keys("")?, ["ap", "app/a", "app/b", "apple", "b/x"]);
    assert!(keys("zzz")?.is_empty());
    assert_eq!(store.list("app/a")?, [("app/a".to_string(), b"1".to_vec())]);
    Ok(())
}

/// Each apply that changes something commits at exactly the next revision; one that changes
/// nothing leaves the revision alone; the last op on a key wins.
pub fn revisions_increase_by_one_per_apply(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    let start = store.revision()?;
    for i in 1..=5u64 {
        assert_eq!(
            store.apply(vec![put("r", &i.to_be_bytes()), put("s", b"x")])?,
            start + i
        );
        assert_eq!(store.revision()?, start + i);
    }
    assert_eq!(store.apply(vec![])?, start + 5);
    assert_eq!(store.apply(vec![del("absent")])?, start + 5);
    assert_eq!(store.revision()?, start + 5);
    let rev = store.apply(vec![
        put("d", b"1"),
        del("d"),
        put("e", b"1"),
        put("e", b"2"),
    ])?;
    assert_eq!(rev, start + 6);
    assert_eq!(store.get("d")?, None);
    assert_eq!(store.get("e")?.as_deref(), Some(&b"2"[..]));
    Ok(())
}

/// Deleted keys are gone from `get` and `list`; deleting a missing key is no error.
pub fn deletes(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    store.apply(vec![put("d/1", b"a"), put("d/2", b"b"), put("d/3", b"c")])?;
    store.apply(vec![del("d/1"), del("d/3"), del("d/never")])?;
    assert_eq!(store.get("d/1")?, None);
    assert_eq!(store.list("d/")?, [("d/2".to_string(), b"b".to_vec())]);
    store.apply(vec![del("d/2")])?;
    assert!(store.list("d/")?.is_empty());
    Ok(())
}

/// A watch from the current revision delivers exactly the later changes under its prefix.
pub fn watch_from_now(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    store.apply(vec![put("w/old", b"0")])?;
    let watch = store.watch("w/", store.revision()?)?;
    let r1 = store.apply(vec![put("w/a", b"1")])?;
    store.apply(vec![put("other/x", b"2")])?;
    let r3 = store.apply(vec![del("w/a"), del("w/absent")])?;
    let r4 = store.apply(vec![
        put("w/b", b"3"),
        put("other/y", b"4"),
        put("w/c", b"5"),
    ])?;
    assert_eq!(
        take(&watch, 4)?,
        [
            change(r1, put("w/a", b"1")),
            change(r3, del("w/a")),
            change(r4, put("w/b", b"3")),
            change(r4, put("w/c", b"5")),
        ]
    );
    assert_quiet(&watch)
}

/// A watch from a past revision replays the history after it, then goes on live.
pub fn watch_from_a_past_revision(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    let before = store.revision()?;
    let r1 = store.apply(vec![put("p/a", b"1")])?;
    let r2 = store.apply(vec![put("p/b", b"2"), del("p/a")])?;
    let r3 = store.apply(vec![put("p/a", b"3")])?;
    let all = store.watch("p/", before)?;
    assert_eq!(
        take(&all, 4)?,
        [
            change(r1, put("p/a", b"1")),
            change(r2, put("p/b", b"2")),
            change(r2, del("p/a")),
            change(r3, put("p/a", b"3")),
        ]
    );
    let resumed = store.watch("p/", r2)?;
    let r4 = store.apply(vec![del("p/b")])?;
    assert_eq!(take(&all, 1)?, [change(r4, del("p/b"))]);
    assert_eq!(
        take(&resumed, 2)?,
        [change(r3, put("p/a", b"3")), change(r4, del("p/b"))]
    );
    assert_quiet(&all)?;
    assert_quiet(&resumed)
}

/// A watch from before the retained history fails with a "compacted" error.
pub fn watch_from_a_compacted_revision_fails<B: Backend>(backend: &B) -> TestResult {
    let store = backend.open()?;
    let revisions: Vec<u64> = (0..5u8)
        .map(|i| store.apply(vec![put("c", &[i])]))
        .collect::<Result<_, _>>()?;
    let [r1, _, r3, r4, r5] = revisions[..] else {
        return Err("five revisions expected".into());
    };
    B::compact(&store, r3)?;
    match store.watch("", r1) {
        Err(e) => assert!(e.to_string().contains("compacted"), "{e}"),
        Ok(_) => return Err("a watch from a compacted revision was accepted".into()),
    }
    let watch = store.watch("", r3)?;
    assert_eq!(
        take(&watch, 2)?,
        [change(r4, put("c", &[3])), change(r5, put("c", &[4]))]
    );
    Ok(())
}

/// Values of 1 MiB (and empty ones) round-trip exactly through get, list and watch.
pub fn values_up_to_one_mebibyte(backend: &impl Backend) -> TestResult {
    let store = backend.open()?;
    let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let watch = store.watch("v/", store.revision()?)?;
    let rev = store.apply(vec![put("v/big", &big)])?;
    store.apply(vec![put("v/empty", b"")])?;
    assert_eq!(store.get("v/big")?.as_deref(), Some(&big[..]));
    assert_eq!(store.get("v/empty")?.as_deref(), Some(&b""[..]));
    assert_eq!(store.list("v/big")?, [("v/big".to_string(), big.clone())]);
    assert_eq!(take(&watch, 1)?, [change(rev, put("v/big", &big))]);
    Ok(())
}

/// Appliers on several threads: every write lands, at its own revision, with no gaps.
pub fn concurrent_appliers_never_lose_a_write(backend: &impl Backend) -> TestResult {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let store = Arc::new(backend.open()?);
    let start = store.revision()?;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> Result<Vec<u64>, StoreError> {
                (0..EACH)
                    .map(|i| store.apply(vec![put(&format!("n/{t}/{i:02}"), b"x")]))
                    .collect()
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for worker in workers {
        revisions.extend(worker.join().map_err(|_| "an applier panicked")??);
    }
    revisions.sort_unstable();
    let expected: Vec<u64> = (start + 1..=start + (THREADS * EACH) as u64).collect();
    assert_eq!(revisions, expected);
    assert_eq!(store.list("n/")?.len(), THREADS * EACH);
    let watch = store.watch("n/", start)?;
    let seen: Vec<u64> = take(&watch, THREADS * EACH)?
        .iter()
        .map(|c| c.revision)
        .collect();
    assert_eq!(seen, expected);
    Ok(())
}

/// Acknowledged writes survive the store going away: a reopened store (or a second etcd
/// client) sees them, and can resume a watch from before them.
pub fn writes_are_durable(backend: &impl Backend) -> TestResult {
    let (start, rev) = {
        let store = backend.open()?;
        let start = store.revision()?;
        store.apply(vec![put("k/1", b"one"), put("k/2", b"two")])?;
        (start, store.apply(vec![del("k/1")])?)
    };
    let store = backend.open()?;
    assert_eq!(store.revision()?, rev);
    assert_eq!(store.list("k/")?, [("k/2".to_string(), b"two".to_vec())]);
    let watch = store.watch("k/", start)?;
    let revisions: Vec<u64> = take(&watch, 3)?.iter().map(|c| c.revision).collect();
    assert_eq!(revisions, [rev - 1, rev - 1, rev]);
    Ok(())
}

/// The blocking API works from tokio's blocking threads, and the store may be dropped inside
/// an async context.
pub fn usable_from_tokio_through_spawn_blocking(backend: &impl Backend) -> TestResult {
    let store: Arc<dyn Store> = Arc::new(backend.open()?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let before = store.revision()?;
        let s = Arc::clone(&store);
        let watch = tokio::task::spawn_blocking(move || s.watch("", before)).await??;
        let s = Arc::clone(&store);
        let rev = tokio::task::spawn_blocking(move || s.apply(vec![put("a", b"1")])).await??;
        let s = Arc::clone(&store);
        let value = tokio::task::spawn_blocking(move || s.get("a")).await??;
        assert_eq!(value.as_deref(), Some(&b"1"[..]));
        let got = tokio::task::spawn_blocking(move || watch.recv_timeout(WAIT)).await??;
        assert_eq!(got, Some(change(rev, put("a", b"1"))));
        drop(store);
        Ok(())
    })
}

/// `apply_if` writes only when every expected value (or absence) still holds, and nothing at
/// all otherwise; increments by read-then-compare-and-set on several threads lose nothing.
pub fn compare_and_set_writes_only_what_was_decided_on(backend: &impl Backend) -> TestResult {
    let store = Arc::new(backend.open()?);
    let expect = |key: &str, value: Option<&[u8]>| Expect {
        key: key.to_string(),
        value: value.map(<[u8]>::to_vec),
    };
    store.apply(vec![put("c/a", b"1")])?;
    let watch = store.watch("c/", store.revision()?)?;
    let rev = store.apply_if(
        &[expect("c/a", Some(b"1")), expect("c/b", None)],
        vec![put("c/a", b"2"), put("c/b", b"x")],
    )?;
    let Some(rev) = rev else {
        return Err("the conditions held, yet nothing was written".into());
    };
    assert_eq!(store.get("c/a")?.as_deref(), Some(&b"2"[..]));
    assert_eq!(take(&watch, 2)?.len(), 2);
    for failing in [
        vec![expect("c/a", Some(b"1"))],
        vec![expect("c/b", None)],
        vec![expect("c/a", Some(b"2")), expect("c/none", Some(b""))],
    ] {
        let result = store.apply_if(&failing, vec![put("c/c", b"no"), del("c/a")])?;
        assert_eq!(result, None, "{failing:?}");
        assert_eq!(store.get("c/c")?, None);
        assert_eq!(store.get("c/a")?.as_deref(), Some(&b"2"[..]));
        assert_eq!(store.revision()?, rev);
    }
    assert_quiet(&watch)?;

    const THREADS: usize = 4;
    const EACH: usize = 15;
    let workers: Vec<_> = (0..THREADS)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || -> Result<usize, StoreError> {
                let mut retries = 0;
                for _ in 0..EACH {
                    loop {
                        let seen = store.get("c/n")?;
                        let n: usize = seen
                            .as_deref()
                            .map_or(0, |v| String::from_utf8_lossy(v).parse().unwrap_or(0));
                        let cond = [Expect {
                            key: "c/n".into(),
                            value: seen,
                        }];
                        let next = (n + 1).to_string().into_bytes();
                        if store.apply_if(&cond, vec![put("c/n", &next)])?.is_some() {
                            break;
                        }
                        retries += 1;
                    }
                }
                Ok(retries)
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked")??;
    }
    assert_eq!(
        store.get("c/n")?.as_deref(),
        Some((THREADS * EACH).to_string().as_bytes())
    );
    Ok(())
}

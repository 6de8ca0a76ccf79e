//! Fencing: the leader's writes are conditional on it still holding the leadership.
//!
//! [`FencedStore`] wraps the kernel's store. While the kernel leads, the [`Fence`] holds the
//! leader's election key and its value, and every [`Store::apply`]/[`Store::apply_if`] adds
//! "this key still holds this value" to its transaction: once the leader's lease ends (a
//! paused leader, a partition), etcd deletes the key and no write of the old leader lands. The
//! first refused write deposes the fence, which refuses every further write until the
//! election loop has stopped the leader's loops and opened it again (a follower's API writes
//! are unconditional; they are requests, not the leader's decisions). Reads pass through.

use crate::store::{Expect, Op, Store, StoreError, Watch};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Where the kernel stands for its writes.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Not leading: writes are unconditional.
    Open,
    /// Leading: writes need `Expect` (the election key with this kernel's id).
    Held(Expect),
    /// Lost the leadership and not yet stepped down: writes are refused.
    Deposed,
}

/// The leadership condition shared by the election loop and the [`FencedStore`].
pub struct Fence {
    state: Mutex<State>,
    /// Counts deposals: wakes the election loop when a write found the leadership gone.
    lost: tokio::sync::watch::Sender<u64>,
    refused: AtomicU64,
}

impl Default for Fence {
    fn default() -> Fence {
        Fence {
            state: Mutex::new(State::Open),
            lost: tokio::sync::watch::Sender::new(0),
            refused: AtomicU64::new(0),
        }
    }
}

impl Fence {
    /// From now on, writes need store key `key` (relative to the store's prefix) to hold `value`.
    pub fn hold(&self, key: String, value: Vec<u8>) {
        *self.state.lock() = State::Held(Expect {
            key,
            value: Some(value),
        });
    }

    /// Refuses every write until [`Fence::open`] (the leadership is lost).
    pub fn depose(&self) {
        let mut state = self.state.lock();
        if *state != State::Open {
            *state = State::Deposed;
        }
        drop(state);
        self.lost.send_modify(|n| *n += 1);
    }

    /// Writes are unconditional again (the leader's loops have stopped).
    pub fn open(&self) {
        *self.state.lock() = State::Open;
    }

    /// Resolves when the fence is deposed (a write found the leadership gone).
    pub async fn lost(&self) {
        let mut deposals = self.lost.subscribe();
        while *self.state.lock() != State::Deposed {
            if deposals.changed().await.is_err() {
                return;
            }
        }
    }

    /// How many writes the fence refused.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    fn refuse(&self, why: &str) -> StoreError {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("fenced write refused: {why}");
        StoreError(format!(
            "fenced: this kernel is no longer the cluster's leader ({why}); the write was \
             refused and the kernel steps down"
        ))
    }
}

/// A [`Store`] whose writes the [`Fence`] conditions; see the module docs.
pub struct FencedStore {
    inner: Arc<dyn Store>,
    fence: Arc<Fence>,
}

impl FencedStore {
    /// `inner` fenced by `fence`.
    pub fn new(inner: Arc<dyn Store>, fence: Arc<Fence>) -> FencedStore {
        FencedStore { inner, fence }
    }
}

impl Store for FencedStore {
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn list(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.list(prefix)
    }

    fn apply(&self, ops: Vec<Op>) -> Result<u64, StoreError> {
        match self.apply_if(&[], ops)? {
            Some(revision) => Ok(revision),
            None => Err(StoreError(
                "a write without conditions of its own failed its fence".into(),
            )),
        }
    }

    fn apply_if(&self, expect: &[Expect], ops: Vec<Op>) -> Result<Option<u64>, StoreError> {
        let state = self.fence.state.lock().clone();
        let guard = match state {
            State::Open => return self.inner.apply_if(expect, ops),
            State::Deposed => return Err(self.fence.refuse("it lost its election key")),
            State::Held(guard) => guard,
        };
        let mut all = expect.to_vec();
        all.push(guard.clone());
        if let Some(revision) = self.inner.apply_if(&all, ops)? {
            return Ok(Some(revision));
        }
        // Failed: the caller's own condition, or the leadership?
        if self.inner.get(&guard.key)? == guard.value {
            return Ok(None);
        }
        self.fence.depose();
        Err(self
            .fence
            .refuse("its election key is gone: its lease ended"))
    }

    fn revision(&self) -> Result<u64, StoreError> {
        self.inner.revision()
    }

    fn watch(&self, prefix: &str, from_revision: u64) -> Result<Watch, StoreError> {
        self.inner.watch(prefix, from_revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    fn put(k: &str) -> Vec<Op> {
        vec![Op::Put(k.into(), b"v".to_vec())]
    }

    #[test]
    fn a_held_fence_lets_writes_through_only_while_its_key_holds_its_value() {
        let dir = tempfile::tempdir().expect("tempdir");
        let inner: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("open"));
        let fence = Arc::new(Fence::default());
        let store = FencedStore::new(inner.clone(), fence.clone());
        store.apply(put("open")).expect("open: unconditional");

        inner
            .apply(vec![Op::Put("election/1".into(), b"me".to_vec())])
            .expect("elected");
        fence.hold("election/1".into(), b"me".to_vec());
        store.apply(put("held")).expect("held: the key holds");
        let absent = Expect {
            key: "held".into(),
            value: None,
        };
        assert_eq!(
            store.apply_if(&[absent], put("x")).expect("own condition"),
            None,
            "the caller's own failed condition is not a lost leadership"
        );

        // The lease ends: etcd deletes the key.
        inner
            .apply(vec![Op::Delete("election/1".into())])
            .expect("expired");
        let err = store.apply(put("late")).expect_err("fenced").to_string();
        assert!(err.contains("no longer the cluster's leader"), "{err}");
        assert_eq!(inner.get("late").expect("get"), None, "nothing written");
        // Deposed: refused without asking the store, until the loops stopped and it opens.
        inner
            .apply(vec![Op::Put("election/1".into(), b"me".to_vec())])
            .expect("same key again");
        assert!(store.apply(put("later")).is_err());
        assert_eq!(fence.refused(), 2);
        fence.open();
        store.apply(put("follower")).expect("open again");
    }
}

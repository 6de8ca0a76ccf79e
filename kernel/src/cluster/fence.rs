//! Fencing: the leader's writes are conditional on it still holding the leadership.
//!
//! [`FencedStore`] wraps the kernel's store. While the kernel leads, the [`Fence`] holds the
//! leader's election key and its value, and every [`Store::apply`]/[`Store::apply_if`] adds
//! "this key still holds this value" to its transaction: once the leader's lease ends (a
//! paused leader, a partition), etcd deletes the key and no write of the old leader lands. The
//! first refused write deposes the fence, which refuses every further write until the
//! election loop has stopped the leader's loops and opened it again (a follower's API writes
//! are unconditional; they are requests, not the leader's decisions). Reads pass through.
//!
//! Runtimes are not transactional, so the leader's runtime calls are fenced by time instead:
//! the election loop records until when its lease is known to live (the sending of the last
//! keep-alive etcd confirmed, plus the TTL, on the monotonic clock), and the reconciler asks
//! [`Fence::may_act`] before each runtime call. A leader paused past that moment (SIGSTOP, a
//! long stall) finds it passed when it resumes, makes no call and steps down, whatever task
//! runs first. What it cannot recall is a call already sent to the engine when it was paused.

use crate::store::{Expect, Op, Store, StoreError, Watch};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

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
    /// Until when the election lease is known to live (see the module docs).
    lease_until: Mutex<Option<Instant>>,
}

impl Default for Fence {
    fn default() -> Fence {
        Fence {
            state: Mutex::new(State::Open),
            lost: tokio::sync::watch::Sender::new(0),
            refused: AtomicU64::new(0),
            lease_until: Mutex::new(None),
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

    /// The election lease is known to live until `until` (etcd confirmed a keep-alive sent a
    /// TTL before it).
    pub fn confirm_lease(&self, until: Instant) {
        let mut lease = self.lease_until.lock();
        if lease.is_none_or(|t| t < until) {
            *lease = Some(until);
        }
    }

    /// Whether the leader may make a runtime call now: always when the fence is open (the
    /// embedded store's one kernel; followers do not reconcile); while it is held, only before
    /// the lease's known end. Past it, the fence is deposed (the kernel steps down) and the
    /// answer says why.
    pub fn may_act(&self) -> Result<(), String> {
        let state = self.state.lock().clone();
        match state {
            State::Open => Ok(()),
            State::Deposed => {
                Err("this kernel is no longer the cluster's leader: no runtime call is made".into())
            }
            State::Held(_) => {
                let until = *self.lease_until.lock();
                let now = Instant::now();
                match until {
                    Some(until) if now < until => Ok(()),
                    _ => {
                        let late = until.map_or(String::new(), |u| {
                            format!(" {} ms ago", now.duration_since(u).as_millis())
                        });
                        self.depose();
                        tracing::warn!(
                            "the leadership's lease lapsed{late}: stepping down before any runtime call"
                        );
                        Err(format!(
                            "this kernel's lease on the leadership lapsed{late} (was it paused?): \
                             no runtime call is made and the kernel steps down"
                        ))
                    }
                }
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

    #[tokio::test]
    async fn a_held_fence_allows_runtime_calls_only_before_the_leases_known_end() {
        let fence = Fence::default();
        assert_eq!(
            fence.may_act(),
            Ok(()),
            "open: the embedded store's kernel acts"
        );
        let unconfirmed = Fence::default();
        unconfirmed.hold("election/1".into(), b"me".to_vec());
        assert!(
            unconfirmed.may_act().is_err(),
            "held without a confirmed lease"
        );
        fence.hold("election/1".into(), b"me".to_vec());
        let now = Instant::now();
        fence.confirm_lease(now + std::time::Duration::from_secs(3));
        assert_eq!(fence.may_act(), Ok(()));
        // An older confirmation does not shorten it.
        fence.confirm_lease(now);
        assert_eq!(fence.may_act(), Ok(()));

        // Paused past the lease's end: refused, deposed (the election loop hears it), and
        // no later confirmation brings it back until the loops stopped and it is held again.
        let fence = Fence::default();
        fence.hold("election/1".into(), b"me".to_vec());
        fence.confirm_lease(Instant::now() + std::time::Duration::from_millis(20));
        std::thread::sleep(std::time::Duration::from_millis(30));
        let err = fence.may_act().expect_err("lapsed");
        assert!(err.contains("lapsed"), "{err}");
        tokio::time::timeout(std::time::Duration::from_secs(1), fence.lost())
            .await
            .expect("the election loop is told");
        fence.confirm_lease(Instant::now() + std::time::Duration::from_secs(3));
        assert!(fence.may_act().is_err(), "deposed stays deposed");
    }
}

//! Read-modify-write of records as compare-and-swap: [`transact`] runs an attempt that reads
//! through a [`Txn`] (each read becomes a condition of the write) and stages its writes; the
//! writes commit only if nothing it read changed meanwhile, else the attempt runs again on the
//! fresh values, up to [`MAX_ATTEMPTS`] times.
//!
//! Conditions compare whole values ([`Expect`]), not per-key revisions: a read-modify-write
//! decides from the value alone, so "the value is what I read" is exactly the condition it needs
//! (a value changed and changed back leads to the same decision), and both backends already
//! check it in the same atomic step as the write.

use super::{Expect, Op, Store, StoreError, put_json};
use std::sync::atomic::{AtomicU64, Ordering};

/// How many times [`transact`] tries before giving up.
pub const MAX_ATTEMPTS: u32 = 32;

/// Conflicts seen by [`transact`] in this process (attempts that lost to a concurrent write).
static CONFLICTS: AtomicU64 = AtomicU64::new(0);

/// How many attempts of [`transact`] lost to a concurrent write since this process started.
pub fn conflicts() -> u64 {
    CONFLICTS.load(Ordering::Relaxed)
}

/// One attempt of a read-modify-write: what it read, and what it writes.
pub struct Txn<'a> {
    store: &'a dyn Store,
    expect: Vec<Expect>,
    ops: Vec<Op>,
}

impl Txn<'_> {
    /// The value of `key`; the write commits only if it still holds it.
    pub fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(seen) = self.expect.iter().find(|e| e.key == key) {
            return Ok(seen.value.clone());
        }
        let value = self.store.get(key)?;
        self.expect.push(Expect {
            key: key.to_string(),
            value: value.clone(),
        });
        Ok(value)
    }

    /// The JSON value of `key`, parsed; a condition of the write like [`Txn::get`].
    pub fn get_json<T: serde::de::DeserializeOwned>(
        &mut self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        match self.get(key)? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StoreError(format!("{key}: corrupt value: {e}"))),
            None => Ok(None),
        }
    }

    /// Stages `op`.
    pub fn write(&mut self, op: Op) {
        self.ops.push(op);
    }

    /// Stages a put of `value` as JSON at `key`.
    pub fn put_json<T: serde::Serialize>(
        &mut self,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        self.ops.push(put_json(key, value)?);
        Ok(())
    }

    /// Stages a delete of `key`.
    pub fn delete(&mut self, key: &str) {
        self.ops.push(Op::Delete(key.to_string()));
    }
}

/// Runs `attempt` until its staged writes commit with everything it read unchanged, and returns
/// its result. An attempt that fails writes nothing and ends the loop with its error; one that
/// stages nothing commits nothing. `what` names the change in the error after [`MAX_ATTEMPTS`]
/// conflicts. `attempt` must decide from what it reads through the [`Txn`] only (it may run
/// several times).
pub fn transact<R, E: From<StoreError>>(
    store: &dyn Store,
    what: &str,
    mut attempt: impl FnMut(&mut Txn<'_>) -> Result<R, E>,
) -> Result<R, E> {
    for n in 1..=MAX_ATTEMPTS {
        let mut txn = Txn {
            store,
            expect: Vec::new(),
            ops: Vec::new(),
        };
        let out = attempt(&mut txn)?;
        #[cfg(test)]
        tests::run_interleaved();
        if txn.ops.is_empty() || store.apply_if(&txn.expect, txn.ops)?.is_some() {
            return Ok(out);
        }
        CONFLICTS.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            what,
            attempt = n,
            "store: a concurrent write changed what this one read; retrying"
        );
        backoff(n);
    }
    Err(StoreError(format!(
        "{what}: gave up after {MAX_ATTEMPTS} attempts, each overtaken by a concurrent write of \
         the same record; try again"
    ))
    .into())
}

/// A short, jittered pause before attempt `n + 1`, growing with `n` (at most ~8 ms), so that
/// writers that keep colliding spread out.
fn backoff(n: u32) {
    use ring::rand::SecureRandom as _;
    if n < 2 {
        return;
    }
    let mut bytes = [0u8; 8];
    // Without randomness the pause is just the cap: still bounded, only less spread.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    let cap_us = 250 * u64::from(n.min(32));
    let pause = u64::from_le_bytes(bytes) % cap_us;
    std::thread::sleep(std::time::Duration::from_micros(pause));
}

#[cfg(test)]
pub(crate) mod tests;

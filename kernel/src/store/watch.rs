//! [`Watch`]: the blocking change feed returned by [`super::Store::watch`].
//!
//! It is a plain blocking iterator over a `std::sync::mpsc` channel, so sync code loops over it
//! and async code reads it inside `tokio::task::spawn_blocking`. Backends push into the channel
//! from their own threads or tasks; dropping the `Watch` ends the feed (and, through its guard,
//! cancels the backend's watcher).

use super::{Op, StoreError};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// One committed change: the op and the revision of the apply that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The revision of the apply that made this change.
    pub revision: u64,
    /// What changed: a put with the new value, or a delete.
    pub op: Op,
}

/// A live feed of [`Change`]s, in revision order.
///
/// Iterating blocks until the next change; the iterator ends when the store goes away, and
/// yields an `Err` (then ends) when the backend fails, e.g. when the history it needed was
/// compacted under it.
pub struct Watch {
    rx: Receiver<Result<Change, StoreError>>,
    _guard: Option<Box<dyn Send>>,
}

impl Watch {
    /// A feed reading `rx`; `guard` is dropped with the feed (backends use it to cancel).
    pub(crate) fn new(
        rx: Receiver<Result<Change, StoreError>>,
        guard: Option<Box<dyn Send>>,
    ) -> Watch {
        Watch { rx, _guard: guard }
    }

    /// The next change, waiting at most `timeout`: `Ok(None)` when none came in time.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Change>, StoreError> {
        match self.rx.recv_timeout(timeout) {
            Ok(item) => item.map(Some),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(StoreError("watch ended".into())),
        }
    }
}

impl Iterator for Watch {
    type Item = Result<Change, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

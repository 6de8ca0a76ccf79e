//! Every kernel's board follows the published records while its own reconciler does not run.

use super::{PREFIX, decode, load};
use crate::lifecycle::view::StatusBoard;
use crate::store::{Op, Store};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long the follower waits before reading the store again after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// How often the follower looks whether the reconciler stopped (a lost leadership).
const CHECK: Duration = Duration::from_millis(200);

/// Whether a change of `key` changes what the router serves besides the instances: apps (their
/// deployments and mountpoints) and route and stream claims.
fn routes_change(key: &str) -> bool {
    [
        crate::lifecycle::records::APPS,
        crate::lifecycle::route_claims::PREFIX,
        crate::lifecycle::stream_claims::PREFIX,
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// Follows the published records into `board` on a thread of its own, until `alive` can no
/// longer be upgraded: reads them all, then applies each change as the store reports it; a
/// change of apps or claims tells the board's users (the router) to look again. While this
/// kernel's reconciler publishes, the board ignores all of it ([`StatusBoard::follow`]); when the
/// reconciler stops ([`StatusBoard::release`]) or the store's feed fails, every record is read
/// again.
pub fn follow(store: Arc<dyn Store>, board: StatusBoard, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("lain-published".into())
        .spawn(move || {
            while alive.upgrade().is_some() {
                if let Err(e) = follow_once(&*store, &board, &alive) {
                    tracing::warn!("following the published instances: {e}");
                    std::thread::sleep(RETRY);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot follow the published instances: {e}");
    }
}

/// Reads every record, then follows changes until the reconciler stops, the feed fails or
/// `alive` is gone.
fn follow_once(
    store: &dyn Store,
    board: &StatusBoard,
    alive: &Weak<()>,
) -> Result<(), crate::store::StoreError> {
    let releases = board.releases();
    let revision = store.revision()?;
    board.follow_all(load(store)?);
    let watch = store.watch("", revision)?;
    loop {
        if alive.upgrade().is_none() || board.releases() != releases {
            return Ok(());
        }
        let Some(change) = watch.recv_timeout(CHECK)? else {
            continue;
        };
        let key = change.op.key();
        if let Some(app) = key.strip_prefix(PREFIX) {
            let status = match &change.op {
                Op::Put(_, bytes) => match decode(key, bytes, crate::clock::unix_secs()) {
                    Ok(s) => Some(s),
                    Err(e) => {
                        tracing::warn!("{e}");
                        continue;
                    }
                },
                Op::Delete(_) => None,
            };
            board.follow(app, status);
        } else if routes_change(key) {
            board.touch();
        }
    }
}

//! Exit events of the process runtime: each running instance's shim is followed through a pidfd
//! (`pidfd_open(2)`, readable once the process ended), awaited by a task on the tokio reactor, so
//! whoever follows the runtime (the reconciler) is woken when an instance ends instead of
//! finding it at its next periodic pass.
//!
//! The shim is what is followed, not the program: it ends after recording the program's exit
//! (and after releasing the instance's lock, which it held to its end), so a pass woken by it
//! sees the instance exited. A shim killed itself ends the same way, without a record. Shims this
//! runtime starts are followed from their start; those it finds running (after a kernel restart)
//! from the first [`super::ProcessRuntime`] listing that sees them, by the shim's process id in
//! the instance's `pid` record.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use tokio::sync::Notify;

/// The shims followed, by instance name, and whom their ends wake.
#[derive(Clone)]
pub struct Exits {
    wake: Arc<Notify>,
    /// Instance name -> the process id of the shim followed for it.
    followed: Arc<Mutex<HashMap<String, u32>>>,
}

impl Exits {
    /// Exit events that notify `wake`.
    pub fn new(wake: Arc<Notify>) -> Exits {
        Exits {
            wake,
            followed: Arc::default(),
        }
    }

    /// Whether instance `name`'s shim `pid` is followed already.
    pub fn follows(&self, name: &str, pid: u32) -> bool {
        self.followed.lock().get(name) == Some(&pid)
    }

    /// Follows shim `pid` of instance `name` until it ends, then wakes. `pid` must be a live
    /// shim of that instance, or a child of this process not reaped yet (then it cannot be
    /// another process's by the time it is opened). One that is gone already wakes at once.
    /// Outside a tokio runtime nothing is followed (the periodic pass still sees the exit).
    pub fn follow(&self, name: &str, pid: u32) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Some(raw) = rustix::process::Pid::from_raw(pid as i32) else {
            return;
        };
        let pidfd = match rustix::process::pidfd_open(raw, rustix::process::PidfdFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::SRCH) => {
                self.wake.notify_one();
                return;
            }
            Err(e) => {
                tracing::debug!(instance = name, "cannot follow its shim: {e}");
                return;
            }
        };
        if self
            .followed
            .lock()
            .insert(name.to_string(), pid)
            .is_some_and(|old| old == pid)
        {
            return; // Followed already by a task of its own.
        }
        let (exits, name) = (self.clone(), name.to_string());
        handle.spawn(async move {
            if let Err(e) = ended(pidfd).await {
                tracing::debug!(instance = %name, "following its shim failed: {e}");
            }
            {
                let mut followed = exits.followed.lock();
                if followed.get(&name) == Some(&pid) {
                    followed.remove(&name);
                }
            }
            exits.wake.notify_one();
        });
    }
}

/// Returns once the process of `pidfd` ended.
async fn ended(pidfd: OwnedFd) -> std::io::Result<()> {
    // SAFETY: the AsyncFd owns the pidfd, which stays open (and the same) until it is dropped.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE)
    }
    .map_err(std::io::Error::from)?;
    let _ready = fd.readable().await?;
    Ok(())
}

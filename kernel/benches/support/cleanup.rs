//! Drop guards that make a bench clean up what it started, whether it ends normally, returns an
//! error or panics: process-runtime instances (they outlive the kernel by design, each supervised
//! by its shim) and plain child processes. Declare a guard after the temporary directory it
//! reads, so that it drops first.

#![allow(dead_code)] // each bench uses part of it

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Kills, on drop, every instance of the process runtimes rooted at the given directories (one
/// sub-directory per instance, with the `pid` record its shim writes), and waits for the shims.
pub struct Instances(Vec<PathBuf>);

impl Instances {
    /// A guard over the instances of the process runtimes rooted at `roots`.
    pub fn under(roots: &[&Path]) -> Instances {
        Instances(roots.iter().map(|r| r.to_path_buf()).collect())
    }
}

impl Drop for Instances {
    fn drop(&mut self) {
        let dirs: Vec<PathBuf> = self
            .0
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flat_map(|entries| entries.flatten().map(|e| e.path()))
            .collect();
        for dir in &dirs {
            let pid = std::fs::read_to_string(dir.join("pid"))
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["pid"].as_i64())
                .and_then(|p| i32::try_from(p).ok())
                .and_then(rustix::process::Pid::from_raw);
            // The instance runs in a process group of its own, led by its main process; its
            // shim exits when that process is gone.
            if let Some(group) = pid {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for dir in &dirs {
            while shim_alive(dir) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Whether the shim of the instance in `dir` still holds its lock.
fn shim_alive(dir: &Path) -> bool {
    let Ok(lock) = std::fs::File::open(dir.join("lock")) else {
        return false;
    };
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared).is_err()
}

/// Child processes killed and reaped on drop.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A task aborted on drop (the reconciler, which would otherwise restart the instances that
/// [`Instances`] kills). Declare it after the [`Instances`] guard, so that it drops first.
pub struct Task<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

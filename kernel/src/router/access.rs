//! Access logs: one line per request, in the log store next to the proc's instance logs
//! (`<data>/logs/<app>/<proc>/access.log`; requests no route matched go to
//! `<data>/logs/.router/unrouted.log`). `lain logs APP PROC --access` reads them.
//!
//! Request handlers never touch a file: they format a line and hand it to one writer thread
//! through a bounded queue. The writer sleeps on the queue while the router is idle; once lines
//! come it writes and flushes them in batches every [`BATCH_WINDOW`] without waiting on the
//! queue, so under load a request costs no wake-up and no system call (a line is on disk
//! within 50 ms). A full
//! queue drops the line and counts it rather than slowing traffic down. Files rotate at
//! [`ROTATE_BYTES`] to `access.log.1`, and are reopened every few seconds so a log directory
//! removed with its app does not keep a deleted file open.

use super::metrics::RouteStats;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

/// A file is rotated when it grows past this.
pub const ROTATE_BYTES: u64 = 16 << 20;
/// Lines waiting for the writer before new ones are dropped.
const QUEUE: usize = 64 * 1024;
/// While lines keep coming, the writer collects them for this long between two writes.
const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Open files are closed (and reopened on the next line) this often.
const REOPEN: Duration = Duration::from_secs(5);

/// The access-log writer.
#[derive(Debug)]
pub struct AccessLog {
    queue: SyncSender<(Arc<RouteStats>, String)>,
    /// Lines dropped because the writer fell behind.
    pub dropped: AtomicU64,
}

/// The file name of a proc's access log in its log directory.
pub const ACCESS_LOG: &str = "access.log";

impl AccessLog {
    /// Starts the writer thread for the log store at `logs_dir`; it ends when the `AccessLog` is
    /// dropped.
    pub fn start(logs_dir: &Path) -> std::io::Result<AccessLog> {
        let (queue, lines) = std::sync::mpsc::sync_channel(QUEUE);
        let dir = logs_dir.to_path_buf();
        std::thread::Builder::new()
            .name("lain-access-log".into())
            .spawn(move || write_lines(&dir, &lines))?;
        Ok(AccessLog {
            queue,
            dropped: AtomicU64::new(0),
        })
    }

    /// Queues `line` (without its newline) for the log of the proc counted by `stats`.
    pub fn write(&self, stats: &Arc<RouteStats>, mut line: String) {
        line.push('\n');
        match self.queue.try_send((stats.clone(), line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The access log of `target` (`app/proc`, or empty for requests without a route) under the log
/// store `logs_dir`; a target whose app or proc is not one path component is logged with the
/// requests without a route, never outside `logs_dir`.
pub fn access_log_path(logs_dir: &Path, target: &str) -> PathBuf {
    use crate::lifecycle::component;
    match target.split_once('/') {
        Some((app, proc)) if component("app", app).is_ok() && component("proc", proc).is_ok() => {
            logs_dir.join(app).join(proc).join(ACCESS_LOG)
        }
        _ => logs_dir.join(".router").join("unrouted.log"),
    }
}

/// One open log file.
struct Open {
    file: std::io::BufWriter<File>,
    len: u64,
}

fn open(path: &Path) -> std::io::Result<Open> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let len = file.metadata()?.len();
    Ok(Open {
        file: std::io::BufWriter::with_capacity(64 << 10, file),
        len,
    })
}

fn write_lines(logs_dir: &Path, lines: &Receiver<(Arc<RouteStats>, String)>) {
    let mut files: HashMap<PathBuf, Open> = HashMap::new();
    let mut paths: HashMap<String, PathBuf> = HashMap::new();
    let mut opened = Instant::now();
    loop {
        // Idle: block until a line comes (the sender wakes this thread once).
        let first = match lines.recv_timeout(REOPEN) {
            Ok(first) => Some(first),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        if opened.elapsed() > REOPEN {
            files.clear();
            opened = Instant::now();
        }
        let mut batch: Vec<_> = first.into_iter().collect();
        // Busy: poll every BATCH_WINDOW without registering as a waiter, so request handlers
        // never pay for a wake-up, until a window brings nothing.
        while !batch.is_empty() {
            for (stats, line) in batch.drain(..) {
                let path = paths
                    .entry(stats.target.clone())
                    .or_insert_with(|| access_log_path(logs_dir, &stats.target));
                if let Err(e) = append(&mut files, path, &line) {
                    tracing::warn!(path = %path.display(), "access log: {e}");
                    files.remove(path.as_path());
                }
            }
            for (path, open) in &mut files {
                if let Err(e) = open.file.flush() {
                    tracing::warn!(path = %path.display(), "access log: {e}");
                }
            }
            std::thread::sleep(BATCH_WINDOW);
            batch.extend(lines.try_iter().take(QUEUE));
        }
    }
}

fn append(files: &mut HashMap<PathBuf, Open>, path: &Path, line: &str) -> std::io::Result<()> {
    if !files.contains_key(path) {
        files.insert(path.to_path_buf(), open(path)?);
    }
    let Some(f) = files.get_mut(path) else {
        return Ok(());
    };
    if f.len + line.len() as u64 > ROTATE_BYTES {
        f.file.flush()?;
        files.remove(path);
        std::fs::rename(path, path.with_extension("log.1"))?;
        files.insert(path.to_path_buf(), open(path)?);
    }
    if let Some(f) = files.get_mut(path) {
        f.file.write_all(line.as_bytes())?;
        f.len += line.len() as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_target_escapes_the_log_store() {
        let logs = Path::new("/data/logs");
        assert_eq!(
            access_log_path(logs, "shop/web"),
            Path::new("/data/logs/shop/web/access.log")
        );
        for target in [
            "shop/../../../canary/x",
            "../x/web",
            "shop/",
            "/web",
            "shop/a\0b",
        ] {
            assert_eq!(
                access_log_path(logs, target),
                Path::new("/data/logs/.router/unrouted.log"),
                "{target}"
            );
        }
    }

    #[test]
    fn lines_reach_the_files_of_their_procs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = AccessLog::start(dir.path()).expect("start");
        let (web, none) = (
            Arc::new(RouteStats::new("shop/web")),
            Arc::new(RouteStats::new("")),
        );
        log.write(&web, "GET / 200".into());
        log.write(&web, "GET /x 404".into());
        log.write(&none, "GET / 404 no route".into());
        let web = dir.path().join("shop/web/access.log");
        let unrouted = dir.path().join(".router/unrouted.log");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let a = std::fs::read_to_string(&web).unwrap_or_default();
            let b = std::fs::read_to_string(&unrouted).unwrap_or_default();
            if a == "GET / 200\nGET /x 404\n" && b == "GET / 404 no route\n" {
                break;
            }
            assert!(Instant::now() < deadline, "{a:?} {b:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(log.dropped.load(Ordering::Relaxed), 0);
    }
}

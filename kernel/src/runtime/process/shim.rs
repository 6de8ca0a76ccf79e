//! `lain-shim DIR`: the supervisor of one process-runtime instance (like containerd's shim).
//!
//! The kernel starts one shim per instance in its own process group, so the instance outlives a
//! kernel restart (even `kill -9`) and Ctrl-C in the kernel's terminal does not reach it. The
//! shim holds an exclusive lock on `DIR/lock` for its whole life: a second shim for the same
//! instance exits once it has tried for [`LOCK_PATIENCE`] (no duplicate), and the kernel knows the instance runs while the lock
//! is held. It joins the instance's memory and cpu cgroups, runs the program in its sandbox (a process
//! group of its own, see [`super::sandbox::Sandbox::command`]), copies its stdout and stderr into
//! the instance's log file (rotated at [`LOG_ROTATE_BYTES`]), and records the exit status the
//! sandbox's init reports in `DIR/exit`, which is how a oneshot's result survives a kernel
//! restart. It tells whoever started it that the program runs (or could not start) by writing
//! [`STARTED_LINE`] to its standard output once `DIR/pid` (or `DIR/exit`) is written, then lets
//! go of it, so the kernel waits for exactly that instead of polling for the file.

use super::sandbox::init::{STARTED, Status};
use super::{
    ExitRecord, PidRecord, StoredSpec, cgroup::Cgroups, instance_jail, read_number, write_atomic,
};
use anyhow::Context;
use std::io::{BufRead, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// The name of the shim executable, installed next to `lain`.
pub const EXECUTABLE: &str = "lain-shim";

/// The shim executable that goes with the `lain` executable `lain`.
pub fn executable(lain: &Path) -> PathBuf {
    lain.with_file_name(EXECUTABLE)
}

/// What a shim writes to its standard output once its program runs or could not start.
pub const STARTED_LINE: &[u8] = b"started\n";

/// The `lain-shim DIR` program: runs [`run`] on its one argument.
pub fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: lain-shim DIR (started by the lain kernel, one per instance)");
        return std::process::ExitCode::from(2);
    };
    match run(Path::new(&dir)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lain-shim: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Tells the kernel waiting on this shim's standard output that the instance runs (or ended),
/// then points standard output at `/dev/null`: the kernel reads one line, and may be gone. Only
/// the first call writes (the exit record follows the pid record).
fn tell_started() {
    static TOLD: std::sync::Once = std::sync::Once::new();
    TOLD.call_once(|| {
        let mut out = std::io::stdout().lock();
        // A kernel that stopped waiting closed its end: EPIPE (SIGPIPE is ignored), nothing lost.
        let _ = out.write_all(STARTED_LINE);
        let _ = out.flush();
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            // SAFETY: replaces descriptor 1 with a descriptor this function owns for the call.
            unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&null), 1) };
        }
    });
}

/// A log file is renamed to `<file>.1` when it grows past this size.
pub const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// How long a shim tries for its instance's lock before concluding that another shim holds it.
/// The kernel's liveness probe takes a shared lock on it for a moment; a shim starting in that
/// moment must not give up (the instance would never start, silently).
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(200);

/// The instance's lock, held exclusively; none when another shim holds it.
fn take_lock(dir: &Path) -> anyhow::Result<Option<std::fs::File>> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .context("cannot open the instance lock")?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(lock)),
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(_) => return Ok(None),
        }
    }
}

/// Runs the instance in `dir` to completion. Returns without doing anything if another shim
/// holds the instance.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let Some(_lock) = take_lock(dir)? else {
        return Ok(());
    };
    let _ = std::fs::remove_file(dir.join("exit"));
    let _ = std::fs::remove_file(dir.join("pid"));
    let spec: StoredSpec = serde_json::from_slice(
        &std::fs::read(dir.join("spec.json")).context("cannot read the instance spec")?,
    )
    .context("corrupt instance spec")?;
    let memory = read_number(&dir.join("memory")).unwrap_or(spec.spec.memory);
    let cpu = read_number(&dir.join("cpu")).unwrap_or(spec.spec.cpu);
    // Every instance gets its groups, limited or not, so a limit can be set in place later.
    if let Some(cgroups) = Cgroups::detect() {
        cgroups
            .join(&spec.spec.name, memory, cpu, std::process::id())
            .context("cannot apply the memory and cpu limits")?;
    }
    let log = Arc::new(Mutex::new(LogFile::open(&spec.spec.log_file)?));
    let outcome = spawn_and_wait(dir, &spec, &log);
    let record = match outcome {
        Ok(status) => {
            if let Some(error) = &status.error {
                log_line(&log, &format!("lain: cannot start the instance: {error}"));
            }
            ExitRecord {
                code: status.code,
                signal: status.signal,
                finished_at: crate::clock::unix_secs(),
                error: status.error,
            }
        }
        Err(e) => {
            log_line(&log, &format!("lain: cannot start the instance: {e:#}"));
            ExitRecord {
                code: Some(127),
                signal: None,
                finished_at: crate::clock::unix_secs(),
                error: Some(format!("{e:#}")),
            }
        }
    };
    write_atomic(&dir.join("exit"), &serde_json::to_vec(&record)?)?;
    tell_started();
    Ok(())
}

/// Runs the instance in its sandbox until it ends; how it ended, as its init reported it (or as
/// the sandbox ended, when the init could not report).
fn spawn_and_wait(
    dir: &Path,
    spec: &StoredSpec,
    log: &Arc<Mutex<LogFile>>,
) -> anyhow::Result<Status> {
    let jail =
        instance_jail(dir, spec, spec.spec.argv()).context("cannot open the instance's files")?;
    let (report, report_w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("cannot create a pipe")?;
    let lain = std::env::current_exe().context("cannot find the lain executable")?;
    let mut cmd = spec.sandbox.command(
        jail,
        &super::sandbox::init::executable(&lain),
        Some(report_w),
    )?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("cannot start the sandbox")?;
    // Only the sandbox keeps the descriptors it was given (the report's write end included).
    drop(cmd);
    let copiers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let log = log.clone();
        std::thread::spawn(move || copy_lines(stream, &log))
    })
    .collect();
    // The sandbox's process group is recorded once the program runs: a stop sent earlier
    // would reach no one who hears it.
    let mut report = std::io::BufReader::new(std::fs::File::from(report).take(64 << 10));
    let mut line = String::new();
    let _ = report.read_line(&mut line);
    if line.trim() == STARTED {
        let pid = PidRecord {
            pid: child.id(),
            started_at: crate::clock::unix_secs(),
            shim: Some(std::process::id()),
        };
        write_atomic(&dir.join("pid"), &serde_json::to_vec(&pid)?)?;
        tell_started();
        line.clear();
        let _ = report.read_line(&mut line);
    }
    let status = child.wait().context("waiting for the instance")?;
    for c in copiers {
        let _ = c.join();
    }
    if let Ok(status) = serde_json::from_str::<Status>(line.trim()) {
        return Ok(status);
    }
    // No report: the sandbox was killed with the program, or never started it.
    Ok(match status.signal() {
        Some(signal) => Status {
            code: None,
            signal: Some(signal),
            error: None,
        },
        None => Status {
            code: status.code(),
            signal: None,
            error: Some(format!(
                "the sandbox ended ({status}) before the program ran; its reason is in the log"
            )),
        },
    })
}

/// Copies `stream` into the log, a line at a time so streams do not tear each other's lines.
fn copy_lines(stream: Box<dyn Read + Send>, log: &Mutex<LogFile>) {
    let mut reader = std::io::BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if let Ok(mut log) = log.lock() {
                    log.write(&line);
                }
            }
        }
    }
}

fn log_line(log: &Mutex<LogFile>, line: &str) {
    if let Ok(mut log) = log.lock() {
        log.write(format!("{line}\n").as_bytes());
    }
}

/// An append-only log file rotated by size.
struct LogFile {
    path: PathBuf,
    file: std::fs::File,
    size: u64,
}

impl LogFile {
    fn open(path: &Path) -> anyhow::Result<LogFile> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the log {}", path.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(LogFile {
            path: path.to_path_buf(),
            file,
            size,
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        if self.size + bytes.len() as u64 > LOG_ROTATE_BYTES {
            let mut rotated = self.path.clone().into_os_string();
            rotated.push(".1");
            if std::fs::rename(&self.path, &rotated).is_ok()
                && let Ok(fresh) = LogFile::open(&self.path)
            {
                *self = fresh;
            }
        }
        if self.file.write_all(bytes).is_ok() {
            self.size += bytes.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_liveness_probe_holding_the_lock_for_a_moment_does_not_stop_a_starting_shim() {
        let dir = tempfile::tempdir().expect("tempdir");
        let probe = std::fs::File::create(dir.path().join("lock")).expect("lock file");
        rustix::fs::flock(&probe, rustix::fs::FlockOperation::NonBlockingLockShared)
            .expect("shared lock");
        let released = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(30));
            drop(probe);
        });
        assert!(take_lock(dir.path()).expect("lock").is_some());
        released.join().expect("probe thread");
        // A shim that holds it for good keeps a second one out.
        let held = take_lock(dir.path()).expect("lock").expect("free");
        assert!(take_lock(dir.path()).expect("lock").is_none());
        drop(held);
    }
}

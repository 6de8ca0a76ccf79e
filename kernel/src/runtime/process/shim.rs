//! `lain shim DIR`: the supervisor of one process-runtime instance (like containerd's shim).
//!
//! The kernel starts one shim per instance in its own process group, so the instance outlives a
//! kernel restart (even `kill -9`) and Ctrl-C in the kernel's terminal does not reach it. The
//! shim holds an exclusive lock on `DIR/lock` for its whole life: a second shim for the same
//! instance exits at once (no duplicate), and the kernel knows the instance runs while the lock
//! is held. It runs the program in a process group of its own, copies its stdout and stderr into
//! the instance's log file (rotated at [`LOG_ROTATE_BYTES`]), and records the exit status in
//! `DIR/exit`, which is how a oneshot's result survives a kernel restart.

use super::{ExitRecord, PidRecord, StoredSpec, cgroup::Cgroups, write_atomic};
use anyhow::Context;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// A log file is renamed to `<file>.1` when it grows past this size.
pub const LOG_ROTATE_BYTES: u64 = 16 << 20;

/// Runs the instance in `dir` to completion. Returns without doing anything if another shim
/// holds the instance.
pub fn run(dir: &Path) -> anyhow::Result<()> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .context("cannot open the instance lock")?;
    if rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(());
    }
    let _ = std::fs::remove_file(dir.join("exit"));
    let _ = std::fs::remove_file(dir.join("pid"));
    let spec: StoredSpec = serde_json::from_slice(
        &std::fs::read(dir.join("spec.json")).context("cannot read the instance spec")?,
    )
    .context("corrupt instance spec")?;
    let memory = std::fs::read_to_string(dir.join("memory"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(spec.spec.memory);
    if memory > 0
        && let Some(cgroups) = Cgroups::detect()
    {
        cgroups
            .join(&spec.spec.name, memory, std::process::id())
            .context("cannot apply the memory limit")?;
    }
    let log = Arc::new(Mutex::new(LogFile::open(&spec.spec.log_file)?));
    let outcome = spawn_and_wait(dir, &spec, &log);
    let record = match outcome {
        Ok(status) => ExitRecord {
            code: status.code(),
            signal: status.signal(),
            finished_at: crate::clock::unix_secs(),
            error: None,
        },
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
    Ok(())
}

fn spawn_and_wait(
    dir: &Path,
    spec: &StoredSpec,
    log: &Arc<Mutex<LogFile>>,
) -> anyhow::Result<std::process::ExitStatus> {
    let argv = spec.spec.argv();
    let (program, args) = argv.split_first().context("the instance has no command")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{program}` in {}", spec.cwd.display()))?;
    let pid = PidRecord {
        pid: child.id(),
        started_at: crate::clock::unix_secs(),
    };
    write_atomic(&dir.join("pid"), &serde_json::to_vec(&pid)?)?;
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
    let status = child.wait().context("waiting for the instance")?;
    for c in copiers {
        let _ = c.join();
    }
    Ok(status)
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

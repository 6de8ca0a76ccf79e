//! The backup engine: the `restic` program, run as a child process of the kernel.
//!
//! restic keeps a content-addressed, deduplicated and encrypted repository (AES-256 in counter
//! mode with Poly1305-AES authentication; every blob is named by its SHA-256 and checked against
//! it when read back). Each backup is a snapshot: a complete tree that restores on its own, in
//! which only the chunks the repository did not hold yet are stored. Restores run with
//! `--verify`, which reads every restored file back and compares it with the hashes of the
//! snapshot.
//!
//! Every run is bounded: its JSON output is read a line at a time (a line longer than
//! [`MAX_LINE`] fails the run), only the end of its standard error is kept ([`STDERR_TAIL`]),
//! it is killed at its timeout, and it dies with the kernel (`PR_SET_PDEATHSIG`): a kernel that
//! is killed leaves no restic writing behind it.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Longest line of restic's JSON output accepted.
pub const MAX_LINE: usize = 1 << 20;
/// Bytes of restic's standard error kept for an error message (its end).
pub const STDERR_TAIL: usize = 8 << 10;

/// A failure of the engine, with what restic said.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// restic could not be started (not installed?).
    #[error("cannot run restic ({program}): {error}; install it (Debian package `restic`)")]
    Missing {
        /// The program run.
        program: String,
        /// Why it could not be.
        error: String,
    },
    /// restic ran and failed.
    #[error("restic {action} on {repository} failed ({status}): {stderr}")]
    Failed {
        /// What it was asked to do.
        action: &'static str,
        /// The repository it worked on (a directory or an `s3:` location, never a credential).
        repository: String,
        /// Its exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// restic was killed at its timeout.
    #[error("restic {action} did not finish within {secs} s and was killed")]
    Timeout {
        /// What it was asked to do.
        action: &'static str,
        /// The timeout.
        secs: u64,
    },
    /// Its output was not what restic prints.
    #[error("restic {action}: unexpected output: {detail}")]
    Output {
        /// What it was asked to do.
        action: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The repository's key or directory could not be set up.
    #[error("{0}")]
    Setup(String),
}

/// Progress of a backup, from restic's `status` messages.
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct Progress {
    /// Fraction done, 0 to 1.
    #[serde(default)]
    pub percent_done: f64,
    /// Files found so far.
    #[serde(default)]
    pub total_files: u64,
    /// Files read so far.
    #[serde(default)]
    pub files_done: u64,
    /// Bytes found so far.
    #[serde(default)]
    pub total_bytes: u64,
    /// Bytes read so far.
    #[serde(default)]
    pub bytes_done: u64,
}

/// What a finished backup reports (restic's `summary` message).
#[derive(Clone, Debug, Default, PartialEq, serde::Deserialize)]
pub struct Summary {
    /// Files in the snapshot.
    pub total_files_processed: u64,
    /// Bytes of those files.
    pub total_bytes_processed: u64,
    /// Bytes added to the repository (new chunks, before compression).
    pub data_added: u64,
    /// Files that were not in the parent snapshot.
    #[serde(default)]
    pub files_new: u64,
    /// Files that changed since the parent snapshot.
    #[serde(default)]
    pub files_changed: u64,
    /// The new snapshot's id (short form).
    pub snapshot_id: String,
}

/// One backup to take.
pub struct BackupArgs<'a> {
    /// The volume's directory: restic runs there, and the snapshot's tree is rooted there.
    pub root: &'a Path,
    /// Paths relative to `root` to include.
    pub include: &'a [String],
    /// Paths relative to `root` to leave out.
    pub exclude: &'a [String],
    /// The snapshot whose unchanged files are not read again (an incremental backup).
    pub parent: Option<&'a str>,
    /// Read every file again, whatever the metadata says (a full backup).
    pub force: bool,
    /// Tags of the snapshot.
    pub tags: &'a [String],
    /// Where the include and exclude lists are written for restic (a private directory).
    pub scratch: &'a Path,
}

/// Where a repository lives.
#[derive(Clone, Debug)]
pub enum Repository {
    /// A local directory.
    Local(PathBuf),
    /// S3-compatible object storage.
    S3(super::s3::Remote),
}

impl std::fmt::Display for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Repository::Local(dir) => write!(f, "{}", dir.display()),
            Repository::S3(remote) => f.write_str(remote.location()),
        }
    }
}

impl From<&Path> for Repository {
    fn from(dir: &Path) -> Self {
        Repository::Local(dir.to_path_buf())
    }
}

impl From<&PathBuf> for Repository {
    fn from(dir: &PathBuf) -> Self {
        Repository::Local(dir.clone())
    }
}

/// The restic program and one repository.
#[derive(Clone, Debug)]
pub struct Restic {
    program: PathBuf,
    repository: Repository,
    password_file: PathBuf,
    cache_dir: PathBuf,
    timeout: Duration,
    /// Set once the S3 repository is known to exist (a local one is looked at instead).
    initialized: Arc<AtomicBool>,
}

impl Restic {
    /// The `repository` (a local directory or S3 storage), encrypted with the password in
    /// `password_file`, run as `program`; each run is killed after `timeout`.
    pub fn new(
        program: &Path,
        repository: impl Into<Repository>,
        password_file: &Path,
        cache_dir: &Path,
        timeout: Duration,
    ) -> Restic {
        Restic {
            program: program.to_path_buf(),
            repository: repository.into(),
            password_file: password_file.to_path_buf(),
            cache_dir: cache_dir.to_path_buf(),
            timeout,
            initialized: Arc::default(),
        }
    }

    /// Where the repository lives.
    pub fn repository(&self) -> &Repository {
        &self.repository
    }

    /// Creates the password file (0600, 32 random bytes as hex) and the repository when they
    /// are missing. An existing password file is used as it is. In S3 storage, `restic init`
    /// is tried (it creates the bucket when missing) and its "already initialized" answer
    /// taken as there being one; an error (wrong credentials, no such host) names the storage.
    pub fn ensure(&self) -> Result<(), EngineError> {
        ensure_password(&self.password_file)?;
        match &self.repository {
            Repository::Local(dir) => {
                if dir.join("config").exists() {
                    return Ok(());
                }
                if let Some(parent) = dir.parent() {
                    private_dir(parent)?;
                }
                self.run("init", &["init"], None, None, &mut |_| {})?;
            }
            Repository::S3(_) => {
                if self.initialized.load(Ordering::Acquire) {
                    return Ok(());
                }
                match self.run("init", &["init"], None, None, &mut |_| {}) {
                    Err(EngineError::Failed { stderr, .. })
                        if stderr.contains("already initialized") => {}
                    other => drop(other?),
                }
                self.initialized.store(true, Ordering::Release);
            }
        }
        Ok(())
    }

    /// Removes locks left by restic processes that no longer run (after a kernel kill -9).
    pub fn unlock(&self) -> Result<(), EngineError> {
        match &self.repository {
            Repository::Local(dir) if !dir.join("config").exists() => return Ok(()),
            Repository::Local(_) => {}
            Repository::S3(_) => {
                return match self.run("unlock", &["unlock"], None, None, &mut |_| {}) {
                    // No repository yet: no lock either.
                    Err(EngineError::Failed { stderr, .. })
                        if stderr.contains("unable to open config file")
                            && stderr.contains("key does not exist") =>
                    {
                        Ok(())
                    }
                    other => other.map(drop),
                };
            }
        }
        self.run("unlock", &["unlock"], None, None, &mut |_| {})
            .map(drop)
    }

    /// Takes a backup; `progress` sees each status message.
    pub fn backup(
        &self,
        args: &BackupArgs<'_>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Summary, EngineError> {
        let setup = |e: std::io::Error| EngineError::Setup(format!("backup lists: {e}"));
        let includes = args.scratch.join("include");
        let excludes = args.scratch.join("exclude");
        let mut list = String::new();
        for path in args.include {
            list.push_str(path);
            list.push('\n');
        }
        std::fs::write(&includes, list).map_err(setup)?;
        // restic's exclude patterns are globs matched against absolute paths: each excluded
        // path is anchored at the volume and its glob characters escaped, so it means itself.
        let mut list = String::new();
        for path in args.exclude {
            list.push_str(&glob_escape(&args.root.join(path).to_string_lossy()));
            list.push('\n');
        }
        std::fs::write(&excludes, list).map_err(setup)?;
        let mut argv: Vec<String> = [
            "backup",
            "--json",
            "--host",
            "lain",
            "--files-from-verbatim",
        ]
        .map(String::from)
        .to_vec();
        argv.push(includes.to_string_lossy().into_owned());
        argv.push("--exclude-file".into());
        argv.push(excludes.to_string_lossy().into_owned());
        for tag in args.tags {
            argv.extend(["--tag".to_string(), tag.clone()]);
        }
        if let Some(parent) = args.parent {
            argv.extend(["--parent".to_string(), parent.to_string()]);
        }
        if args.force {
            argv.push("--force".into());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut summary = None;
        self.run("backup", &argv, Some(args.root), None, &mut |line| {
            #[derive(serde::Deserialize)]
            struct Kind {
                message_type: String,
            }
            match serde_json::from_str::<Kind>(line).map(|k| k.message_type) {
                Ok(t) if t == "status" => {
                    if let Ok(p) = serde_json::from_str::<Progress>(line) {
                        progress(p);
                    }
                }
                Ok(t) if t == "summary" => summary = serde_json::from_str::<Summary>(line).ok(),
                _ => {}
            }
        })?;
        summary.ok_or(EngineError::Output {
            action: "backup",
            detail: "no summary".into(),
        })
    }

    /// The full id of snapshot `short` (restic's summary names it by its short id).
    pub fn snapshot_id(&self, short: &str) -> Result<String, EngineError> {
        let list = self.snapshot_ids(&["snapshots", "--json", short])?;
        match list.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(EngineError::Output {
                action: "snapshots",
                detail: format!("{} snapshots match `{short}`", list.len()),
            }),
        }
    }

    /// The full ids of every snapshot in the repository.
    pub fn snapshots(&self) -> Result<Vec<String>, EngineError> {
        self.snapshot_ids(&["snapshots", "--json"])
    }

    /// The ids `restic <args>` lists (`args` is a `snapshots --json` command).
    fn snapshot_ids(&self, args: &[&str]) -> Result<Vec<String>, EngineError> {
        let mut out = String::new();
        self.run("snapshots", args, None, None, &mut |line| {
            out.push_str(line)
        })?;
        #[derive(serde::Deserialize)]
        struct Snapshot {
            id: String,
        }
        let list: Vec<Snapshot> = serde_json::from_str(&out).map_err(|e| EngineError::Output {
            action: "snapshots",
            detail: e.to_string(),
        })?;
        Ok(list.into_iter().map(|s| s.id).collect())
    }

    /// Removes `snapshots` and the data only they held (`forget --prune`).
    pub fn forget(&self, snapshots: &[String]) -> Result<(), EngineError> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let mut argv = vec!["forget", "--prune"];
        argv.extend(snapshots.iter().map(String::as_str));
        self.run("forget", &argv, None, None, &mut |_| {}).map(drop)
    }

    /// Restores `snapshot` into the empty directory `target`, reading every file back and
    /// checking it against the snapshot's hashes (`--verify`).
    pub fn restore(&self, snapshot: &str, target: &Path) -> Result<(), EngineError> {
        let target = target.to_string_lossy().into_owned();
        let argv = ["restore", snapshot, "--target", &target, "--verify"];
        let mut problems = Vec::new();
        self.run("restore", &argv, None, None, &mut |line| {
            // `--verify` reports each mismatch on its own line and exits 0 in some versions:
            // any line naming one fails the restore.
            if line.contains("Verification failed") || line.contains("verification failed") {
                problems.push(line.to_string());
            }
        })?;
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EngineError::Failed {
                action: "restore",
                repository: self.repository.to_string(),
                status: "verification".into(),
                stderr: self.redact(&problems.join("; ")),
            })
        }
    }

    /// Runs restic with `argv` in `cwd`, handing each line of its standard output to `line`;
    /// returns the end of its standard error.
    fn run(
        &self,
        action: &'static str,
        argv: &[&str],
        cwd: Option<&Path>,
        timeout: Option<Duration>,
        line: &mut dyn FnMut(&str),
    ) -> Result<String, EngineError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(argv)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.cache_dir)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            .env("RESTIC_CACHE_DIR", &self.cache_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        match &self.repository {
            Repository::Local(dir) => cmd.env("RESTIC_REPOSITORY", dir),
            // The access key goes to this child's environment alone (the kernel's own was
            // cleared above and never holds it).
            Repository::S3(remote) => cmd
                .env("RESTIC_REPOSITORY", remote.location())
                .envs(remote.env()),
        };
        if let Some(cwd) = cwd {
            cmd.current_dir(cwd);
        }
        // SAFETY: prctl(PR_SET_PDEATHSIG) is one system call, async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            })
        };
        let mut child = cmd.spawn().map_err(|e| EngineError::Missing {
            program: self.program.display().to_string(),
            error: e.to_string(),
        })?;
        let pid = child.id();
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(EngineError::Setup(
                "restic's output pipes are missing".into(),
            ));
        };
        let errors = std::thread::spawn(move || tail(stderr, STDERR_TAIL));
        let limit = timeout.unwrap_or(self.timeout);
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            let expired = matches!(
                finished.recv_timeout(limit),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout)
            );
            if expired
                && let Some(pid) = i32::try_from(pid)
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
            expired
        });
        let read = read_lines(stdout, line);
        let status = child.wait();
        let _ = done.send(());
        let expired = watchdog.join().unwrap_or(false);
        let stderr = self.redact(&errors.join().unwrap_or_default());
        if expired {
            return Err(EngineError::Timeout {
                action,
                secs: limit.as_secs(),
            });
        }
        let status = status.map_err(|e| EngineError::Setup(format!("waiting for restic: {e}")))?;
        if !status.success() {
            return Err(EngineError::Failed {
                action,
                repository: self.repository.to_string(),
                status: status.to_string(),
                stderr: stderr.trim().to_string(),
            });
        }
        read.map_err(|detail| EngineError::Output { action, detail })?;
        Ok(stderr)
    }
}

impl Restic {
    /// `text` without the storage's credentials (local repositories have none).
    fn redact(&self, text: &str) -> String {
        match &self.repository {
            Repository::Local(_) => text.to_string(),
            Repository::S3(remote) => remote.redact(text),
        }
    }
}

/// Reads `from` a line at a time (each at most [`MAX_LINE`] bytes) into `line`, to its end.
fn read_lines(from: impl Read, line: &mut dyn FnMut(&str)) -> Result<(), String> {
    let mut reader = BufReader::new(from);
    let mut buf = Vec::new();
    let mut too_long = false;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        if buf.len() > MAX_LINE && !buf.ends_with(b"\n") {
            // Drain the rest of the line, then keep reading so restic is never blocked.
            too_long = true;
            let mut rest = Vec::new();
            let _ = (&mut reader).take(u64::MAX).read_until(b'\n', &mut rest);
            continue;
        }
        line(String::from_utf8_lossy(&buf).trim_end());
    }
    if too_long {
        return Err(format!("a line longer than {MAX_LINE} bytes"));
    }
    Ok(())
}

/// The last `max` bytes of `from`, read to its end; when that cut a line, from the next line
/// on (a cut word, perhaps part of a credential, could not be recognised and redacted).
fn tail(mut from: impl Read, max: usize) -> String {
    let (mut kept, mut buf, mut cut) = (Vec::new(), vec![0u8; 8192], false);
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > max {
            cut = cut || kept[kept.len() - max - 1] != b'\n';
            kept.drain(..kept.len() - max);
        }
    }
    if cut {
        let start = kept
            .iter()
            .position(|b| *b == b'\n')
            .map_or(kept.len(), |i| i + 1);
        kept.drain(..start);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// `path` with restic's glob characters (`*`, `?`, `[`, `\`) escaped.
pub fn glob_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Creates `dir` (and its parents) 0700 if missing.
fn private_dir(dir: &Path) -> Result<(), EngineError> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| EngineError::Setup(format!("cannot create {}: {e}", dir.display())))
}

/// Creates the repository password file (0600, 32 random bytes as 64 hex digits) if missing;
/// an existing one must be a regular file the kernel alone can read.
pub fn ensure_password(path: &Path) -> Result<(), EngineError> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let setup = |e: std::io::Error| {
        EngineError::Setup(format!("backup password file {}: {e}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.is_file() => {
            return Err(EngineError::Setup(format!(
                "backup password file {} is not a regular file",
                path.display()
            )));
        }
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            return Err(EngineError::Setup(format!(
                "backup password file {} is readable by others (mode {:o}): make it 0600",
                path.display(),
                meta.permissions().mode() & 0o777
            )));
        }
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(setup(e)),
    }
    if let Some(parent) = path.parent() {
        private_dir(parent)?;
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
        .map_err(|_| EngineError::Setup("no randomness for the backup password".into()))?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(setup)?;
    file.write_all(hex::encode(key).as_bytes()).map_err(setup)?;
    file.sync_all().map_err(setup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("/v/a*b?[c]\\d"), "/v/a\\*b\\?\\[c\\]\\\\d");
        assert_eq!(glob_escape("/v/plain"), "/v/plain");
    }

    #[test]
    fn long_lines_fail_the_read_but_the_rest_is_read() {
        let mut text = "a\n".to_string();
        text.push_str(&"x".repeat(MAX_LINE + 10));
        text.push_str("\nb\n");
        let mut seen = Vec::new();
        let r = read_lines(text.as_bytes(), &mut |l| seen.push(l.to_string()));
        assert!(r.is_err());
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn the_tail_of_standard_error_starts_at_a_whole_line() {
        assert_eq!(tail("ab\ncd\n".as_bytes(), 100), "ab\ncd\n");
        // "secret" cut to "cret": dropped with the rest of its line.
        assert_eq!(tail("x secret\nerror\n".as_bytes(), 11), "error\n");
        // The cut fell exactly at a line's start: that line is whole and kept.
        assert_eq!(tail("x secret\nerror\n".as_bytes(), 6), "error\n");
        assert_eq!(tail("x secret\nerror\n".as_bytes(), 7), "error\n");
        // The last line cut too: nothing whole is left.
        assert_eq!(tail("x secret\nerror\n".as_bytes(), 3), "");
    }

    #[test]
    fn the_password_file_is_made_private_once_and_a_readable_one_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys/backup.key");
        ensure_password(&path).expect("created");
        let first = std::fs::read_to_string(&path).expect("read");
        assert_eq!(first.len(), 64);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        ensure_password(&path).expect("kept");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), first);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(ensure_password(&path).is_err());
    }
}

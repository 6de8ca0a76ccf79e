//! Collecting the log files a proc declares (`logs`): files its instances write under
//! `/lain/logs` (their per-instance `/lain/logs` volume) are copied into the log store beside
//! their output, `<logs>/<app>/<proc>/files/<name>/<n>.log` (rotated at [`ROTATE_AT`] into
//! `<n>.log.1`, as the shim rotates output), and read with `lain logs PROC --file NAME`.
//!
//! Each source is followed by identity and size: a file renamed away (a rotation) is read to its
//! end before the new file at its path; a file that became shorter (truncated in place) is read
//! again from its start after a [`TRUNCATED`] marker. Where the copy stands (the source's
//! identity and offset) is kept beside the copy (`<n>.pos`) after every append, so a kernel
//! restart (kill -9 included) resumes where it stopped: lines appended after the last record and
//! before the kill may be copied twice; a file rotated while the kernel was down is read from
//! the start of the new one (the rest of the old one is not collected).
//!
//! Sources are opened through a capability on the instance's `/lain/logs` volume (a symlink
//! cannot lead out of it), non-blocking (a FIFO never blocks the collector) and only when they
//! are regular files. Every read is bounded ([`CHUNK`] per source per pass). The volumes read are
//! the ones on this host: the process runtime's, and on Docker those of node `local` only.

use super::{TRUNCATED, proc_dir};
use crate::lifecycle::records::ProcPlan;
use std::collections::HashMap;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Bytes read from one source per pass.
const CHUNK: u64 = 1 << 20;
/// A line longer than this is copied in pieces.
const MAX_LINE: usize = 64 << 10;
/// A copy larger than this is rotated to `<n>.log.1`.
pub const ROTATE_AT: u64 = 16 << 20;

/// The directory of the collected copies of log file `name` of proc `proc` of `app`.
pub fn file_dir(
    logs_root: &Path,
    app: &str,
    proc: &str,
    name: &str,
) -> Result<PathBuf, crate::lifecycle::LifecycleError> {
    let encoded = name.replace('%', "%25").replace('/', "%2F");
    Ok(proc_dir(logs_root, app, proc)?
        .join("files")
        .join(crate::lifecycle::component("log file", &encoded)?))
}

/// Where a source stands: its identity and how much of it is copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Position {
    dev: u64,
    ino: u64,
    pos: u64,
}

/// One source being followed.
struct Follow {
    file: std::fs::File,
    at: Position,
    /// The start of a line whose end is not read yet.
    carry: Vec<u8>,
}

/// The collector: the sources it follows, by copy path.
#[derive(Default)]
pub struct Collector {
    follows: HashMap<PathBuf, Follow>,
}

impl Collector {
    /// One pass: for every proc in `procs` (app, plan) that declares log files, every instance
    /// volume under `volumes` (`<volumes>/<app>/<proc>/<n>`), copies what its files gained into
    /// the store under `logs`. Returns the bytes copied; problems are logged and skipped.
    pub fn pass(&mut self, logs: &Path, volumes: &Path, procs: &[(String, ProcPlan)]) -> u64 {
        let mut copied = 0;
        let mut seen = Vec::new();
        for (app, plan) in procs {
            if plan.logs.is_empty() {
                continue;
            }
            let proc_volumes = volumes.join(app).join(&plan.name);
            let Ok(entries) = std::fs::read_dir(&proc_volumes) else {
                continue;
            };
            for entry in entries.flatten() {
                let Some(no) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                let source_dir = entry.path().join("lain/logs");
                for name in &plan.logs {
                    let Ok(dir) = file_dir(logs, app, &plan.name, name) else {
                        continue;
                    };
                    let copy = dir.join(format!("{no}.log"));
                    seen.push(copy.clone());
                    match self.collect(&source_dir, name, &copy) {
                        Ok(n) => copied += n,
                        Err(e) => tracing::debug!(app = %app, proc = %plan.name, instance = no,
                            file = %name, "log file not collected: {e:#}"),
                    }
                }
            }
        }
        self.follows.retain(|copy, _| seen.contains(copy));
        copied
    }

    /// Copies what source `name` under `source_dir` gained into `copy`.
    fn collect(&mut self, source_dir: &Path, name: &str, copy: &Path) -> anyhow::Result<u64> {
        use anyhow::Context as _;
        let Some(current) = open_source(source_dir, name)? else {
            return Ok(0);
        };
        let meta = current.metadata().context("stat")?;
        let id = (meta.dev(), meta.ino());
        let mut out = Vec::new();
        let follow = match self.follows.remove(copy) {
            Some(mut f) if (f.at.dev, f.at.ino) != id => {
                // Rotated: the rest of the old file first, then the new one from its start.
                read_new(&mut f, &mut out)?;
                flush_carry(&mut f.carry, &mut out);
                new_follow(current, id, 0)
            }
            Some(f) => f,
            None => {
                let resume = read_position(copy)
                    .filter(|p| (p.dev, p.ino) == id)
                    .map_or(0, |p| p.pos);
                new_follow(current, id, resume)
            }
        };
        let mut follow = follow;
        if meta.len() < follow.at.pos {
            out.extend_from_slice(TRUNCATED.as_bytes());
            out.push(b'\n');
            follow.at.pos = 0;
            follow.carry.clear();
        }
        read_new(&mut follow, &mut out)?;
        let n = out.len() as u64;
        if !out.is_empty() {
            append(copy, &out)?;
        }
        if n > 0 || read_position(copy) != Some(follow.at) {
            write_position(copy, follow.at)?;
        }
        self.follows.insert(copy.to_path_buf(), follow);
        Ok(n)
    }
}

fn new_follow(file: std::fs::File, (dev, ino): (u64, u64), pos: u64) -> Follow {
    Follow {
        file,
        at: Position { dev, ino, pos },
        carry: Vec::new(),
    }
}

/// Opens log file `name` in `dir` (the instance's `/lain/logs`) through a capability, without
/// blocking and only if it is a regular file; `None` when there is none (yet).
fn open_source(dir: &Path, name: &str) -> anyhow::Result<Option<std::fs::File>> {
    use cap_std::fs::OpenOptionsExt as _;
    let dir = match cap_std::fs::Dir::open_ambient_dir(dir, cap_std::ambient_authority()) {
        Ok(dir) => dir,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).custom_flags(libc::O_NONBLOCK);
    let file = match dir.open_with(name, &options) {
        Ok(file) => file.into_std(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if !file.metadata()?.is_file() {
        anyhow::bail!("not a regular file");
    }
    Ok(Some(file))
}

/// Reads what `f` gained since its position (at most [`CHUNK`]) into `out`, complete lines
/// only (a longer line than [`MAX_LINE`] in pieces), and advances its position.
fn read_new(f: &mut Follow, out: &mut Vec<u8>) -> std::io::Result<()> {
    f.file.seek(SeekFrom::Start(f.at.pos))?;
    let mut buf = Vec::new();
    (&mut f.file).take(CHUNK).read_to_end(&mut buf)?;
    f.at.pos += buf.len() as u64;
    f.carry.extend_from_slice(&buf);
    match f.carry.iter().rposition(|b| *b == b'\n') {
        Some(end) => {
            out.extend(f.carry.drain(..=end));
        }
        None if f.carry.len() > MAX_LINE => flush_carry(&mut f.carry, out),
        None => {}
    }
    Ok(())
}

/// Ends a partial line: what is carried goes out with a newline.
fn flush_carry(carry: &mut Vec<u8>, out: &mut Vec<u8>) {
    if !carry.is_empty() {
        out.append(carry);
        out.push(b'\n');
    }
}

/// Appends `bytes` to `copy`, rotating it to `<copy>.1` first when it is large.
fn append(copy: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(parent) = copy.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    if std::fs::metadata(copy).is_ok_and(|m| m.len() >= ROTATE_AT) {
        let mut rotated = copy.as_os_str().to_owned();
        rotated.push(".1");
        std::fs::rename(copy, rotated)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(copy)?
        .write_all(bytes)
}

fn position_path(copy: &Path) -> PathBuf {
    copy.with_extension("pos")
}

fn read_position(copy: &Path) -> Option<Position> {
    let bytes = std::fs::read(position_path(copy)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn write_position(copy: &Path, at: Position) -> std::io::Result<()> {
    let json = serde_json::to_vec(&at).map_err(std::io::Error::other)?;
    crate::runtime::process::write_atomic(&position_path(copy), &json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(c: &mut Collector, src: &Path, copy: &Path) -> String {
        c.collect(src, "app.log", copy).expect("collect");
        std::fs::read_to_string(copy).unwrap_or_default()
    }

    #[test]
    fn lines_are_copied_across_rotation_truncation_and_a_restart() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        let copy = tmp.path().join("store/1.log");
        let log = src.join("app.log");
        let mut c = Collector::default();
        assert_eq!(collect(&mut c, &src, &copy), "", "no file yet");
        std::fs::write(&log, "one\ntw").expect("write");
        assert_eq!(collect(&mut c, &src, &copy), "one\n", "complete lines only");
        std::fs::write(&log, "one\ntwo\n").expect("write");
        assert_eq!(collect(&mut c, &src, &copy), "one\ntwo\n");
        // Rotation by rename: the old file's last line, then the new file.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(b"three\n"))
            .expect("append");
        std::fs::rename(&log, src.join("app.log.1")).expect("rotate");
        std::fs::write(&log, "four\n").expect("write");
        assert_eq!(collect(&mut c, &src, &copy), "one\ntwo\nthree\nfour\n");
        // Truncation in place.
        std::fs::write(&log, "").expect("truncate");
        std::fs::write(&log, "5\n").expect("write");
        let text = collect(&mut c, &src, &copy);
        assert!(text.ends_with(&format!("four\n{TRUNCATED}\n5\n")), "{text}");
        // A new collector (a kernel restart) resumes where the copy stands.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(b"six\n"))
            .expect("append");
        let mut again = Collector::default();
        let text = collect(&mut again, &src, &copy);
        assert!(
            text.ends_with("5\nsix\n") && text.matches("5\n").count() == 1,
            "{text}"
        );
    }

    #[test]
    fn a_fifo_or_a_symlink_out_of_the_volume_is_not_read() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(&src).expect("mkdir");
        std::fs::write(tmp.path().join("secret"), "secret\n").expect("write");
        std::os::unix::fs::symlink(tmp.path().join("secret"), src.join("app.log")).expect("ln");
        let mut c = Collector::default();
        let copy = tmp.path().join("store/1.log");
        assert!(c.collect(&src, "app.log", &copy).is_err());
        std::fs::remove_file(src.join("app.log")).expect("rm");
        let fifo =
            std::ffi::CString::new(src.join("app.log").to_string_lossy().as_bytes()).expect("path");
        assert_eq!(unsafe_free_mkfifo(&fifo), 0);
        assert!(
            c.collect(&src, "app.log", &copy).is_err(),
            "a FIFO is refused"
        );
        assert!(!copy.exists());
    }

    fn unsafe_free_mkfifo(path: &std::ffi::CStr) -> i32 {
        match rustix::fs::mkfifoat(
            rustix::fs::CWD,
            path,
            rustix::fs::Mode::from_raw_mode(0o600),
        ) {
            Ok(()) => 0,
            Err(_) => -1,
        }
    }
}

//! `lain-sandbox-init [--status-fd N] -- PROGRAM ARGS...`: pid 1 of every sandbox.
//!
//! It runs as the sandbox's user with no capabilities. It marks every inherited descriptor
//! above stderr close-on-exec (so nothing the launcher passed reaches the program), makes itself
//! undumpable (its `/proc/1` is closed to the program), restores SIGTERM's default for the
//! program (its launcher ignores it, so that only the program hears a stop), runs the program in
//! its launcher's process group (or, when its standard input is a terminal, for `lain exec -t`,
//! in a session of its own with that terminal as its controlling terminal), reaps every orphan,
//! and reports exactly how the program ended: as its own exit status (128 + signal for a signal)
//! and, with `--status-fd`, on that pipe: a [`STARTED`] line once the program runs (a stop sent
//! before would be lost), then a [`Status`] line.
//! When it exits the kernel ends every process left in the sandbox.

use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::ExitCode;

/// How the program of a sandbox ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Why it could not be started, if it could not.
    pub error: Option<String>,
}

/// Exit code of a program that could not be started (as a shell's).
pub const CANNOT_RUN: i32 = 127;

/// The report's first line once the program runs (and hears SIGTERM).
pub const STARTED: &str = "started";

/// The name of the init executable, installed next to `lain`.
pub const EXECUTABLE: &str = "lain-sandbox-init";

/// The init executable that goes with the `lain` executable `lain`.
pub fn executable(lain: &std::path::Path) -> std::path::PathBuf {
    lain.with_file_name(EXECUTABLE)
}

/// The `lain-sandbox-init` program: its arguments, then [`run`].
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (status_fd, rest) = match args.split_first() {
        Some((flag, rest)) if flag == "--status-fd" => match rest.split_first() {
            Some((fd, rest)) => (fd.parse().ok(), rest),
            None => (None, rest),
        },
        _ => (None, &args[..]),
    };
    match rest.split_first() {
        Some((dashes, argv)) if dashes == "--" && !argv.is_empty() => run(status_fd, argv),
        _ => {
            eprintln!("usage: {EXECUTABLE} [--status-fd N] -- PROGRAM ARGS...");
            ExitCode::from(2)
        }
    }
}

/// Runs `argv` to its end; see the module documentation.
pub fn run(status_fd: Option<i32>, argv: &[String]) -> ExitCode {
    // SAFETY: the launcher passes this descriptor to init alone, for this report.
    let report = status_fd.map(|fd| std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
    close_inherited();
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    // SAFETY: restores the default disposition; no handler is installed.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_DFL) };
    let status = run_program(argv, report.as_ref());
    if status.error.is_some() && report.is_none() {
        eprintln!("lain: {}", status.error.as_deref().unwrap_or_default());
    }
    if let Some(mut report) = report.as_ref()
        && let Ok(mut line) = serde_json::to_vec(&status)
    {
        line.push(b'\n');
        let _ = report.write_all(&line);
    }
    let code = match (status.code, status.signal) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => CANNOT_RUN,
    };
    ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))
}

fn run_program(argv: &[String], report: Option<&std::fs::File>) -> Status {
    let failed = |error: String| Status {
        code: Some(CANNOT_RUN),
        signal: None,
        error: Some(error),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("no program to run".into());
    };
    let mut command = std::process::Command::new(program);
    command.args(args);
    if rustix::termios::isatty(std::io::stdin()) {
        // `lain exec -t`: the terminal becomes the program's controlling terminal in a session
        // of its own, so Ctrl-C, job control and a hang-up reach it.
        // SAFETY: setsid and ioctl are async-signal-safe system calls; nothing is allocated.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                rustix::process::setsid()?;
                rustix::process::ioctl_tiocsctty(std::io::stdin())?;
                Ok(())
            })
        };
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let cwd = std::env::current_dir().unwrap_or_default();
            return failed(format!("cannot run `{program}` in {}: {e}", cwd.display()));
        }
    };
    let pid = rustix::process::Pid::from_child(&child);
    if let Some(mut report) = report {
        let _ = report.write_all(format!("{STARTED}\n").as_bytes());
    }
    loop {
        match rustix::process::wait(rustix::process::WaitOptions::empty()) {
            Ok(Some((reaped, status))) if reaped == pid => {
                return Status {
                    code: status.exit_status(),
                    signal: status.terminating_signal(),
                    error: None,
                };
            }
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return failed(format!("waiting for `{program}`: {e}")),
        }
    }
}

/// Every descriptor above stderr is closed when the program starts.
fn close_inherited() {
    // SAFETY: marks descriptors close-on-exec; closes nothing this process uses.
    let done = unsafe { libc::close_range(3, u32::MAX, libc::CLOSE_RANGE_CLOEXEC as i32) } == 0;
    if done {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
    {
        if fd > 2 {
            // SAFETY: borrowed for one fcntl; the descriptor is not closed.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
        }
    }
}

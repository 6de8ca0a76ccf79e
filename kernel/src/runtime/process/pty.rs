//! `lain exec -t` on the process runtime: the command runs in the instance's sandbox with a
//! pseudo-terminal of the host as its standard streams. The kernel keeps the pty's master end
//! and relays it; the sandbox's init makes the terminal the command's controlling terminal in a
//! session of its own (`sandbox::init`), so Ctrl-C, job control and hang-ups reach the command.

use super::ProcessRuntime;
use crate::runtime::tty::{TTY_CHUNK_MAX, TtyCommand, TtyInput, TtySize};
use crate::runtime::{ExecOutput, RuntimeError};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// A new pty of `size`: its master (non-blocking, for the kernel) and its slave (for the
/// command). Neither becomes the kernel's controlling terminal.
fn open(size: TtySize) -> io::Result<(OwnedFd, OwnedFd)> {
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    rustix::pty::grantpt(&master)?;
    rustix::pty::unlockpt(&master)?;
    let name = rustix::pty::ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    resize(&master, size)?;
    rustix::io::ioctl_fionbio(&master, true)?;
    Ok((master, slave))
}

fn resize(master: &OwnedFd, size: TtySize) -> io::Result<()> {
    let winsize = rustix::termios::Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    Ok(rustix::termios::tcsetwinsize(master, winsize)?)
}

/// `fd` in tokio's reactor.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `AsyncFd` owns `fd`, so it stays open and the same until the `AsyncFd` drops.
    unsafe { AsyncFd::register(fd) }.map_err(|e| io::Error::other(e.to_string()))
}

/// Reads what the command wrote; empty once every copy of the slave is closed (Linux answers
/// EIO then).
async fn read(master: &AsyncFd<OwnedFd>) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; TTY_CHUNK_MAX];
    loop {
        let mut ready = master.readable().await?;
        match ready.try_io(|fd| rustix::io::read(fd.get_ref(), &mut buf).map_err(io::Error::from)) {
            Ok(Ok(n)) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(Vec::new()),
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
}

/// Types `bytes` into the terminal.
async fn write(master: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut ready = master.writable().await?;
        match ready.try_io(|fd| rustix::io::write(fd.get_ref(), bytes).map_err(io::Error::from)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// Why a command on a terminal is killed.
enum Kill {
    Timeout,
    ClientLeft,
}

/// How typing into a terminal ended.
enum Typist {
    /// The client's input closed: it left.
    ClientLeft,
    /// The terminal refused input: the command is ending.
    TerminalGone,
}

/// Types what the client sends into the terminal and passes on its resizes, until either end
/// goes. A command that stopped reading fills the terminal's buffer: typing then waits, as on a
/// local terminal.
async fn type_in(master: &AsyncFd<OwnedFd>, input: &mut mpsc::Receiver<TtyInput>) -> Typist {
    while let Some(typed) = input.recv().await {
        match typed {
            TtyInput::Data(bytes) => {
                if write(master, &bytes).await.is_err() {
                    return Typist::TerminalGone;
                }
            }
            // The kernel's pty driver sends SIGWINCH to the terminal's foreground group.
            TtyInput::Resize(size) => {
                let _ = resize(master.get_ref(), size);
            }
        }
    }
    Typist::ClientLeft
}

impl ProcessRuntime {
    /// [`crate::runtime::Runtime::exec_tty`] on this runtime.
    pub(super) async fn exec_on_pty(
        &self,
        name: &str,
        command: &TtyCommand,
        mut input: mpsc::Receiver<TtyInput>,
        out: mpsc::Sender<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError> {
        let failed =
            |e: &dyn std::fmt::Display| RuntimeError::Failed(format!("exec in {name}: {e}"));
        let (master, slave) =
            open(command.size).map_err(|e| failed(&format!("no terminal: {e}")))?;
        let env = [("TERM".to_string(), command.term.clone())];
        let mut cmd = self.exec_command(name, &command.argv, &env)?;
        let stdio = |fd: &OwnedFd| fd.try_clone().map(std::process::Stdio::from);
        cmd.stdin(stdio(&slave).map_err(|e| failed(&e))?)
            .stdout(stdio(&slave).map_err(|e| failed(&e))?)
            .stderr(stdio(&slave).map_err(|e| failed(&e))?);
        let mut child = cmd.spawn().map_err(|e| failed(&e))?;
        // Only the command holds the slave now: its output ends when the sandbox is gone.
        drop((cmd, slave));
        let typing = master.try_clone().map_err(|e| failed(&e))?;
        let master = register(master).map_err(|e| failed(&e))?;
        let mut typist = tokio::spawn(async move {
            let Ok(typing) = register(typing) else {
                return Typist::TerminalGone;
            };
            type_in(&typing, &mut input).await
        });
        let deadline = tokio::time::sleep(command.timeout);
        tokio::pin!(deadline);
        let mut typing = true;
        // Relay until the terminal's output ends; `Some(reason)` when the command must be killed.
        let killed = loop {
            tokio::select! {
                read = read(&master) => match read {
                    Ok(bytes) if !bytes.is_empty() => {
                        if out.send(bytes).await.is_err() {
                            break Some(Kill::ClientLeft);
                        }
                    }
                    _ => break None,
                },
                typed = &mut typist, if typing => match typed {
                    Ok(Typist::ClientLeft) => break Some(Kill::ClientLeft),
                    // Typing failed: the terminal is going; its output says when it is gone.
                    _ => typing = false,
                },
                () = &mut deadline => break Some(Kill::Timeout),
            }
        };
        typist.abort();
        if let Some(kill) = killed {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return match kill {
                Kill::Timeout => Ok(ExecOutput {
                    code: None,
                    timed_out: true,
                    output: Vec::new(),
                }),
                Kill::ClientLeft => Err(failed(&"the client left: killed")),
            };
        }
        // The output ended: the sandbox is gone or going (its init exits with the command).
        match tokio::time::timeout_at(deadline.deadline(), child.wait()).await {
            Ok(Ok(status)) => Ok(ExecOutput {
                code: status.code(),
                timed_out: false,
                output: Vec::new(),
            }),
            Ok(Err(e)) => Err(failed(&e)),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                Ok(ExecOutput {
                    code: None,
                    timed_out: true,
                    output: Vec::new(),
                })
            }
        }
    }
}

//! A program run on a real pseudo-terminal, as a person at a terminal runs it: keys are typed
//! into the pty's master, its screen is read back, its window can be resized.

use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process whose standard streams are a pty's slave.
pub struct Terminal {
    master: std::fs::File,
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    /// Rows and columns now.
    size: (u16, u16),
}

impl Terminal {
    /// Starts `cmd` on a new pty of `rows`x`cols`.
    pub fn start(mut cmd: Command, rows: u16, cols: u16) -> Terminal {
        use rustix::pty::OpenptFlags;
        let master = rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        rustix::pty::grantpt(&master).expect("grantpt");
        rustix::pty::unlockpt(&master).expect("unlockpt");
        let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
        let slave: OwnedFd = rustix::fs::open(
            name.as_c_str(),
            rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
            rustix::fs::Mode::empty(),
        )
        .expect("open the slave");
        let master = std::fs::File::from(master);
        Terminal::size(&master, rows, cols);
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup"));
        cmd.stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave));
        let child = cmd.spawn().expect("spawn on the terminal");
        drop(slave);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().expect("dup the master");
        let shown = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                shown.lock().expect("screen").extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            master,
            child,
            screen,
            size: (rows, cols),
        }
    }

    fn size(master: &std::fs::File, rows: u16, cols: u16) {
        let winsize = rustix::termios::Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(master, winsize).expect("set the window size");
    }

    /// Types `keys`.
    pub fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).expect("type");
    }

    /// Resizes the window and tells the program, as a terminal emulator does.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        Terminal::size(&self.master, rows, cols);
        self.size = (rows, cols);
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::WINCH).expect("SIGWINCH");
    }

    /// Everything shown so far.
    pub fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// Waits up to `within` for `text` to be shown after byte `from` of the screen; the screen's
    /// length after it.
    pub fn expect(&self, from: usize, text: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let screen = self.screen.lock().expect("screen").clone();
            let shown = String::from_utf8_lossy(&screen[from.min(screen.len())..]).into_owned();
            if let Some(at) = shown.find(text) {
                return from + at + text.len();
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} not shown within {within:?}; the screen after byte {from}:\n{shown}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `keys` every 300 ms until `text` is shown after byte `from` (for what follows
    /// an event the program handles on its own time, such as a resize); the screen's length
    /// after it.
    pub fn retype_until(&mut self, from: usize, keys: &str, text: &str, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            self.type_keys(keys);
            std::thread::sleep(Duration::from_millis(300));
            let screen = self.screen();
            if let Some(at) = screen.get(from..).and_then(|s| s.find(text)) {
                return from + at + text.len();
            }
            assert!(
                Instant::now() < deadline,
                "{text:?} not shown within {within:?}:\n{screen}"
            );
        }
    }

    /// Drives the shell running on this terminal as a person would and checks what a terminal
    /// gives it: `stty size` shows the window, `shown` (typed
    /// in double quotes, so `$VAR` expands) prints `expect`, a resize to `resized` reaches it,
    /// Ctrl-C interrupts `sleep 60` and not the shell; then it exits with `code`, and lain's
    /// exit status is returned. `first` bounds the wait for the first answer (a cold start).
    pub fn check_shell(
        &mut self,
        (shown, expect): (&str, &str),
        resized: (u16, u16),
        code: i32,
        first: Duration,
    ) -> ExitStatus {
        // What the terminal echoes is the typed text; only the output shows the expansions.
        self.type_keys(&format!("stty size; test -t 0 && echo \"{shown}\"\r"));
        let at = self.expect(0, &format!("{} {}", self.size.0, self.size.1), first);
        let at = self.expect(at, expect, Duration::from_secs(10));
        // A resize reaches the command's terminal (SIGWINCH to lain, a message to the kernel).
        self.resize(resized.0, resized.1);
        let size = format!("{} {}", resized.0, resized.1);
        let at = self.retype_until(at, "stty size\r", &size, Duration::from_secs(10));
        // Ctrl-C interrupts the command in the foreground and leaves the shell.
        self.type_keys("sleep 60\r");
        std::thread::sleep(Duration::from_millis(500));
        self.type_keys("\x03");
        self.type_keys("echo after-$((6*7))\r");
        self.expect(at, "after-42", Duration::from_secs(15));
        self.type_keys(&format!("exit {code}\r"));
        self.wait(Duration::from_secs(30))
    }

    /// Waits up to `within` for the program to exit.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "still running after {within:?}; the screen:\n{}",
                    self.screen()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

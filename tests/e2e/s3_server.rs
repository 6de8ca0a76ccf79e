//! A real S3 server for the tests: `s3s-fs` (crates.io; `scripts/setup` installs it) serving a
//! directory, started on a free port and killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `s3s-fs`.
pub struct S3Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The directory it serves: bucket `b` is `root/b`, its object `k` the file `root/b/k`.
    pub root: PathBuf,
}

/// The `s3s-fs` program: `$LAIN_TEST_S3S_FS`, else on `PATH`, else in cargo's bin directory.
/// A test that needs it fails (never skips) when it is missing.
fn program() -> PathBuf {
    if let Some(p) = std::env::var_os("LAIN_TEST_S3S_FS") {
        return PathBuf::from(p);
    }
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|c| c.join("bin"));
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(cargo_bin)
        .map(|dir| dir.join("s3s-fs"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "s3s-fs, the S3 server these tests start, is not installed: run scripts/setup \
                 (cargo install s3s-fs) or point LAIN_TEST_S3S_FS at it"
            )
        })
}

impl S3Server {
    /// Serves `root` (created if missing) to the holder of `access_key` and `secret_key`.
    pub fn start(root: &Path, access_key: &str, secret_key: &str) -> S3Server {
        std::fs::create_dir_all(root).expect("s3 root");
        let program = program();
        // The port was free when picked; another process may take it first: pick again then.
        for _ in 0..4 {
            let port = crate::support::free_port();
            let mut child = Command::new(&program)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .args(["--access-key", access_key, "--secret-key", secret_key])
                .arg(root)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    eprintln!("s3s-fs on port {port} exited with {status}; trying another port");
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return S3Server {
                        child,
                        endpoint: format!("http://127.0.0.1:{port}"),
                        root: root.to_path_buf(),
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("s3s-fs ({}) did not start listening", program.display());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

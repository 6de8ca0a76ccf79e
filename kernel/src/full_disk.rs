//! Test support: a small tmpfs that tests fill up, to see how the kernel behaves on a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a new temporary directory, unmounted when dropped.
pub(crate) struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`); `None`, said loudly on stderr, where mounting is
    /// impossible (the tests that need one are skipped there, not passed quietly).
    pub(crate) fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().ok()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status();
        match status {
            Ok(s) if s.success() => Some(SmallDisk { dir }),
            other => {
                eprintln!(
                    "\n!!!!!!!!!! SKIPPED: cannot mount a tmpfs ({other:?}); this full-disk test \
                     needs root (mount -t tmpfs) !!!!!!!!!!\n"
                );
                None
            }
        }
    }

    /// The mount point.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the disk with one file, written until the disk says it is full; returns its path.
    pub(crate) fn fill(&self) -> PathBuf {
        use std::io::Write as _;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0u8; 64 << 10];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

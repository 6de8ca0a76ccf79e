//! A kernel's own identity and its exclusive hold on its data dir.
//!
//! Every kernel has an id of its own, kept in `<data dir>/kernel-id`: it names the kernel in
//! the leader election, in `GET /api/v1/cluster` and in its logs. It differs from the cluster
//! id (the stored `kernel/id`, which labels the cluster's instances whoever leads).
//!
//! One kernel holds a data dir at a time: [`DataDirLock`] takes an exclusive `flock` on
//! `<data dir>/kernel.lock` for the kernel's life (the kernel's state, runtime and keys live
//! there; two kernels on one data dir would run every instance twice).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// Why a kernel cannot take its data dir.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Another kernel holds the data dir.
    #[error(
        "data dir {dir} is in use by another lain kernel{holder}: one kernel per data dir; stop \
         that kernel first, or give this one another --data-dir"
    )]
    InUse {
        /// The data dir.
        dir: PathBuf,
        /// ` (pid N)` when the holder wrote its pid.
        holder: String,
    },
    /// A file of the data dir cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// `kernel-id` holds something that is not an id.
    #[error(
        "{path}: not a kernel id (expected 1-64 characters a-z 0-9 -); remove it to get a new one"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
    },
}

/// The exclusive lock on a data dir, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

impl DataDirLock {
    /// Takes the lock on `dir` (which must exist), or says which kernel holds it.
    pub fn take(dir: &Path) -> Result<DataDirLock, IdentityError> {
        let path = dir.join("kernel.lock");
        let io = |source| IdentityError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        if rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_err() {
            let mut pid = String::new();
            // A pid is a few digits: the read is bounded all the same.
            let _ = (&mut file).take(64).read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(IdentityError::InUse {
                dir: dir.to_path_buf(),
                holder: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                },
            });
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(DataDirLock { _file: file })
    }
}

/// This kernel's id from `<dir>/kernel-id`, created (random) the first time.
pub fn kernel_id(dir: &Path) -> Result<String, IdentityError> {
    let path = dir.join("kernel-id");
    // An id is at most 64 bytes (checked below); a larger file is corrupt, so more is not read.
    let read = std::fs::File::open(&path).and_then(|f| {
        let mut id = String::new();
        f.take(128).read_to_string(&mut id).map(|_| id)
    });
    match read {
        Ok(id) => {
            let id = id.trim();
            let valid = !id.is_empty()
                && id.len() <= 64
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if valid {
                Ok(id.to_string())
            } else {
                Err(IdentityError::Corrupt { path })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = crate::lifecycle::new_kernel_id();
            let tmp = dir.join("kernel-id.tmp");
            let write = std::fs::write(&tmp, format!("{id}\n"))
                .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
                .and_then(|()| std::fs::rename(&tmp, &path));
            write.map_err(|source| IdentityError::Io { path, source })?;
            Ok(id)
        }
        Err(source) => Err(IdentityError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_of_a_data_dir_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDirLock::take(dir.path()).expect("first");
        let err = DataDirLock::take(dir.path())
            .expect_err("second")
            .to_string();
        assert!(
            err.contains("is in use by another lain kernel")
                && err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(first);
        DataDirLock::take(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn the_kernel_id_is_kept_and_a_corrupt_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let id = kernel_id(dir.path()).expect("new");
        assert_eq!(kernel_id(dir.path()).expect("again"), id);
        std::fs::write(dir.path().join("kernel-id"), "../x\n").expect("write");
        let err = kernel_id(dir.path()).expect_err("corrupt").to_string();
        assert!(err.contains("kernel-id: not a kernel id"), "{err}");
        // A huge file is read no further than an id could reach, and is corrupt.
        std::fs::write(dir.path().join("kernel-id"), "a".repeat(8 << 20)).expect("write");
        let err = kernel_id(dir.path()).expect_err("corrupt").to_string();
        assert!(err.contains("not a kernel id"), "{err}");
    }
}

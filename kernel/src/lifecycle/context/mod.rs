//! Build contexts: a tar from the network, unpacked into a staging directory without trusting it.
//!
//! Everything goes through a `cap-std` capability directory, so no path can reach outside the
//! staging directory by construction; on top of that the unpacker keeps its own [`tree::Tree`] of
//! what it made, so it never resolves anything through a symlink. The rules, each refused with an
//! error naming the entry:
//! - paths are relative and without `..`, at most [`Limits::max_depth`] components and
//!   [`Limits::max_path_bytes`] bytes; an entry's parents must be directories of the context;
//! - regular files, directories, symlinks and hard links only: devices, FIFOs and other types are
//!   refused; an entry appears once;
//! - symlinks are created as symlinks and never followed; once everything is unpacked each one
//!   must resolve inside the context (absolute targets, and targets that climb out, are refused);
//! - hard links only to an earlier regular file of the context;
//! - modes are normalised: directories 0755, files 0644, or 0755 if the tar gave any execute
//!   bit; never setuid, setgid, sticky or world-writable; owners, times and xattrs are not kept;
//! - at most [`Limits::max_entries`] paths, [`Limits::max_bytes`] unpacked bytes (declared sizes,
//!   sparse files at their full size, checked before writing and bounded while writing), and
//!   [`Limits::max_time`] of wall time.

mod tree;

#[cfg(test)]
mod tests;

use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
use cap_std::fs::{Dir, File, OpenOptions, OpenOptionsExt, Permissions, PermissionsExt};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tar::EntryType;
pub use tree::{Node, Tree};

/// Bounds of one unpack.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most paths (entries, and the directories made for them).
    pub max_entries: usize,
    /// Most components in a path.
    pub max_depth: usize,
    /// Longest path or symlink target, in bytes.
    pub max_path_bytes: usize,
    /// Most bytes unpacked, all files together.
    pub max_bytes: u64,
    /// Longest an unpack may take.
    pub max_time: Duration,
}

impl Default for Limits {
    /// 100,000 paths, 64 levels, 1,024-byte paths, 256 MiB (four times the largest request body)
    /// and 60 seconds.
    fn default() -> Limits {
        Limits {
            max_entries: 100_000,
            max_depth: 64,
            max_path_bytes: 1024,
            max_bytes: 256 << 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// Why a build context was refused. Nothing outside the staging directory was touched.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The bytes are not a tar archive.
    #[error("the build context is not a valid tar: {0}")]
    NotATar(std::io::Error),
    /// Too many paths.
    #[error("the build context has more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// The unpack ran out of time.
    #[error("unpacking the build context took longer than {}s (stopped at `{entry}`)", .max.as_secs())]
    TimedOut {
        /// Where it stopped.
        entry: String,
        /// The limit.
        max: Duration,
    },
    /// One entry breaks a rule.
    #[error("build context entry `{entry}`: {problem}")]
    Entry {
        /// The entry's path, as the tar gives it.
        entry: String,
        /// The rule it breaks.
        problem: Problem,
    },
    /// Writing an entry failed.
    #[error("cannot unpack `{entry}`: {source}")]
    Io {
        /// The entry's path.
        entry: String,
        /// The error.
        source: std::io::Error,
    },
}

/// The rule an entry breaks.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// `/...`.
    #[error("absolute paths are not allowed")]
    Absolute,
    /// `..` in the path.
    #[error("`..` is not allowed in paths")]
    ParentDir,
    /// Too many components.
    #[error("nested more than {max} levels deep")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// Too long a path.
    #[error("the path is {len} bytes long, more than {max}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A file entry naming the context itself.
    #[error("a {0} cannot replace the build context's top directory")]
    Root(&'static str),
    /// A device, FIFO or other special entry.
    #[error("{0} entries are not allowed (only files, directories, symlinks and hard links)")]
    Special(String),
    /// The same path twice.
    #[error("it appears twice in the build context (first as a {0})")]
    Duplicate(&'static str),
    /// A parent that is not a directory.
    #[error("its parent `{parent}` is a {kind}, not a directory (links are not followed)")]
    ParentNotDir {
        /// The parent.
        parent: String,
        /// What it is.
        kind: &'static str,
    },
    /// A symlink that does not stay inside the context.
    #[error("symlink to `{target}` {why}")]
    Link {
        /// Its target.
        target: String,
        /// Why it is refused.
        why: &'static str,
    },
    /// A hard link to something else than an earlier regular file.
    #[error("hard link to `{target}`: {why}")]
    HardLink {
        /// Its target.
        target: String,
        /// Why it is refused.
        why: String,
    },
    /// A link without a target.
    #[error("the link has no target")]
    NoTarget,
    /// Over the total size.
    #[error("the build context unpacks to more than {max} bytes")]
    TooLarge {
        /// The limit.
        max: u64,
    },
}

/// What an unpack made.
#[derive(Debug)]
pub struct Unpacked {
    /// Every path.
    pub tree: Tree,
    /// Bytes written.
    pub bytes: u64,
}

/// Unpacks the tar `context` into `dest`, which must be empty and written by nothing else
/// meanwhile (see the module docs for the rules). On error, `dest` holds part of the context and
/// should be removed.
pub fn unpack(context: &[u8], dest: &Dir, limits: &Limits) -> Result<Unpacked, ContextError> {
    let started = Instant::now();
    let mut unpacker = Unpacker {
        dest,
        limits,
        tree: Tree::default(),
        bytes: 0,
    };
    let mut archive = tar::Archive::new(context);
    let mut seen = 0usize;
    for entry in archive.entries().map_err(ContextError::NotATar)? {
        let mut entry = entry.map_err(ContextError::NotATar)?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        seen += 1;
        if seen > limits.max_entries || unpacker.tree.count() > limits.max_entries {
            return Err(ContextError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        if started.elapsed() > limits.max_time {
            return Err(ContextError::TimedOut {
                entry: name,
                max: limits.max_time,
            });
        }
        unpacker.entry(&mut entry, &name)?;
    }
    if unpacker.tree.count() > limits.max_entries {
        return Err(ContextError::TooManyEntries {
            max: limits.max_entries,
        });
    }
    for link in unpacker.tree.links() {
        let entry = link.display().to_string();
        if started.elapsed() > limits.max_time {
            return Err(ContextError::TimedOut {
                entry,
                max: limits.max_time,
            });
        }
        unpacker
            .tree
            .check_link(link)
            .map_err(|problem| ContextError::Entry { entry, problem })?;
    }
    Ok(Unpacked {
        tree: unpacker.tree,
        bytes: unpacker.bytes,
    })
}

struct Unpacker<'a> {
    dest: &'a Dir,
    limits: &'a Limits,
    tree: Tree,
    bytes: u64,
}

impl Unpacker<'_> {
    fn entry(&mut self, entry: &mut tar::Entry<'_, &[u8]>, name: &str) -> Result<(), ContextError> {
        let refuse = |problem| ContextError::Entry {
            entry: name.to_string(),
            problem,
        };
        let io = |source| ContextError::Io {
            entry: name.to_string(),
            source,
        };
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            // Archive-wide metadata (`git archive` writes its commit there): nothing to unpack.
            return Ok(());
        }
        let raw = entry.path().map_err(ContextError::NotATar)?;
        let path =
            tree::clean(&raw, self.limits.max_depth, self.limits.max_path_bytes).map_err(refuse)?;
        let special = match kind {
            EntryType::Char | EntryType::Block => Some("device".to_string()),
            EntryType::Fifo => Some("FIFO".to_string()),
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link => None,
            other => Some(format!("type {:?}", other.as_byte() as char)),
        };
        if let Some(special) = special {
            return Err(refuse(Problem::Special(special)));
        }
        if path.as_os_str().is_empty() {
            return match kind {
                EntryType::Directory => Ok(()),
                _ => Err(refuse(Problem::Root(kind_name(kind)))),
            };
        }
        match self.tree.get(&path) {
            Some(Node::Dir) if kind == EntryType::Directory => return Ok(()),
            Some(first) => return Err(refuse(Problem::Duplicate(first.kind()))),
            None => {}
        }
        for parent in self.tree.missing_parents(&path).map_err(refuse)? {
            self.mkdir(&parent).map_err(io)?;
            self.tree.insert(parent, Node::Dir);
        }
        let node = match kind {
            EntryType::Directory => {
                self.mkdir(&path).map_err(io)?;
                Node::Dir
            }
            EntryType::Symlink => {
                let target = self.link_name(entry, name)?;
                if target.is_absolute() {
                    return Err(refuse(Problem::Link {
                        target: target.display().to_string(),
                        why: "is absolute: links must stay inside the build context",
                    }));
                }
                // Created as a link and never followed here; checked once the tree is complete.
                self.dest.symlink(&target, &path).map_err(io)?;
                Node::Symlink(target)
            }
            EntryType::Link => {
                let target = self.link_name(entry, name)?;
                let file = self.earlier_file(&target).map_err(|why| {
                    refuse(Problem::HardLink {
                        target: target.display().to_string(),
                        why,
                    })
                })?;
                self.dest.hard_link(&file, self.dest, &path).map_err(io)?;
                Node::File
            }
            _ => {
                self.file(entry, &path, name)?;
                Node::File
            }
        };
        self.tree.insert(path, node);
        Ok(())
    }

    /// A regular (or sparse) file: its full size counted before anything is written, the copy
    /// bounded by what is left, its mode normalised.
    fn file(
        &mut self,
        entry: &mut tar::Entry<'_, &[u8]>,
        path: &Path,
        name: &str,
    ) -> Result<(), ContextError> {
        let io = |source| ContextError::Io {
            entry: name.to_string(),
            source,
        };
        let too_large = || ContextError::Entry {
            entry: name.to_string(),
            problem: Problem::TooLarge {
                max: self.limits.max_bytes,
            },
        };
        let header = entry.header();
        let declared = match header
            .as_gnu()
            .filter(|_| header.entry_type().is_gnu_sparse())
        {
            Some(gnu) => gnu.real_size().map_err(ContextError::NotATar)?,
            None => entry.size(),
        };
        let left = self.limits.max_bytes.saturating_sub(self.bytes);
        if declared > left {
            return Err(too_large());
        }
        let executable = header.mode().map_err(ContextError::NotATar)? & 0o111 != 0;
        let mut file = self.dest.open_with(path, &new_file()).map_err(io)?;
        let written =
            std::io::copy(&mut entry.take(left.saturating_add(1)), &mut file).map_err(io)?;
        if written > left {
            return Err(too_large());
        }
        self.bytes += written;
        let mode = if executable { 0o755 } else { 0o644 };
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(io)
    }

    /// The earlier regular file of the context a hard link names, or why it cannot be linked.
    fn earlier_file(&self, target: &Path) -> Result<PathBuf, String> {
        let inside = tree::clean(target, self.limits.max_depth, usize::MAX)
            .map_err(|problem| problem.to_string())?;
        match self.tree.get(&inside) {
            Some(Node::File) => Ok(inside),
            Some(other) => Err(format!("it is a {}", other.kind())),
            None => Err("no earlier regular file of the build context".into()),
        }
    }

    fn mkdir(&self, path: &Path) -> std::io::Result<()> {
        self.dest.create_dir(path)?;
        self.dest
            .set_permissions(path, Permissions::from_mode(0o755))
    }

    fn link_name(
        &self,
        entry: &tar::Entry<'_, &[u8]>,
        name: &str,
    ) -> Result<PathBuf, ContextError> {
        let refuse = |problem| ContextError::Entry {
            entry: name.to_string(),
            problem,
        };
        let target = entry
            .link_name()
            .map_err(ContextError::NotATar)?
            .map(|t| t.into_owned())
            .filter(|t| !t.as_os_str().is_empty())
            .ok_or_else(|| refuse(Problem::NoTarget))?;
        let len = target.as_os_str().len();
        if len > self.limits.max_path_bytes {
            return Err(refuse(Problem::TooLong {
                len,
                max: self.limits.max_path_bytes,
            }));
        }
        Ok(target)
    }
}

/// Options for a new file: created exclusively (never through an existing path or a symlink),
/// owner-only until its final mode is set.
fn new_file() -> OpenOptions {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .create_new(true)
        .follow(FollowSymlinks::No)
        .mode(0o600);
    options
}

fn kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Symlink => "symlink",
        EntryType::Link => "hard link",
        _ => "file",
    }
}

/// Why an input file of the context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not in the context.
    #[error("not found")]
    NotFound,
    /// A symlink (never followed).
    #[error("it is a symlink: the build context must hold the file itself")]
    Symlink,
    /// A directory or another non-file.
    #[error("it is not a regular file")]
    NotAFile,
    /// Opening or reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens the regular file `name` of the unpacked context for reading: a symlink is refused, never
/// followed (the caller bounds the read).
pub fn open_file(dir: &Dir, name: &Path) -> Result<File, ReadError> {
    match dir.symlink_metadata(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ReadError::NotFound),
        Err(e) => return Err(e.into()),
        Ok(m) if m.file_type().is_symlink() => return Err(ReadError::Symlink),
        Ok(m) if !m.is_file() => return Err(ReadError::NotAFile),
        Ok(_) => {}
    }
    let mut options = OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No);
    let file = dir.open_with(name, &options)?;
    if !file.metadata()?.is_file() {
        return Err(ReadError::NotAFile);
    }
    Ok(file)
}

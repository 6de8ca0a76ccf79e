//! The file trees the process runtime prepares for its sandboxes: an instance's own `/lain/app`,
//! a build context handed to the build's user, and a build's output normalised into a release.
//!
//! Every walk goes through `cap-std` directories (no `..`, no symlink leaves the tree), never
//! follows a symlink (links are recreated, not resolved), and stops at [`MAX_DEPTH`].

use cap_std::fs::{Dir, MetadataExt as _};
use std::path::{Path, PathBuf};

/// Deepest directory nesting a release (or build context) may have.
pub const MAX_DEPTH: usize = 128;

/// Why a tree could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A file-system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// Where, relative to the tree.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The tree nests deeper than [`MAX_DEPTH`].
    #[error("{0}: deeper than {MAX_DEPTH} directories")]
    TooDeep(PathBuf),
}

/// A uid and gid.
pub type Owner = (u32, u32);

fn at(path: &Path) -> impl Fn(std::io::Error) -> TreeError + '_ {
    move |source| TreeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn open(path: &Path) -> Result<Dir, TreeError> {
    Dir::open_ambient_dir(path, cap_std::ambient_authority()).map_err(at(path))
}

fn chown(dir: &Dir, name: &Path, owner: Owner, path: &Path) -> Result<(), TreeError> {
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(owner.0)),
        Some(rustix::fs::Gid::from_raw(owner.1)),
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|e| at(path)(e.into()))
}

fn chmod(dir: &Dir, name: &Path, mode: u32, path: &Path) -> Result<(), TreeError> {
    rustix::fs::chmodat(
        dir,
        name,
        rustix::fs::Mode::from_raw_mode(mode),
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| at(path)(e.into()))
}

/// Creates `dest` (a new directory) as an instance's own view of `release`. With `owner` (the
/// kernel is root) directories are new, owned by `owner`, and files are hard links to the
/// release's files, which the kernel owns and `owner` cannot write: an instance may replace a
/// file but never change the release. Without one, files are copies.
pub fn farm(release: &Path, dest: &Path, owner: Option<Owner>) -> Result<(), TreeError> {
    std::fs::create_dir(dest).map_err(at(dest))?;
    let parent = dest.parent().unwrap_or(Path::new("/"));
    let name = dest.file_name().map(Path::new).unwrap_or(Path::new("."));
    let parent_dir = open(parent)?;
    if let Some(owner) = owner {
        chown(&parent_dir, name, owner, dest)?;
    }
    let mode =
        std::os::unix::fs::MetadataExt::mode(&std::fs::metadata(release).map_err(at(release))?);
    chmod(&parent_dir, name, (mode & 0o7777) | 0o700, dest)?;
    farm_dir(&open(release)?, &open(dest)?, owner, Path::new(""), 0)
}

fn farm_dir(
    from: &Dir,
    to: &Dir,
    owner: Option<Owner>,
    rel: &Path,
    depth: usize,
) -> Result<(), TreeError> {
    if depth >= MAX_DEPTH {
        return Err(TreeError::TooDeep(rel.to_path_buf()));
    }
    for entry in from.entries().map_err(at(rel))? {
        let entry = entry.map_err(at(rel))?;
        let name = PathBuf::from(entry.file_name());
        let path = rel.join(&name);
        let meta = from.symlink_metadata(&name).map_err(at(&path))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            to.create_dir(&name).map_err(at(&path))?;
            if let Some(owner) = owner {
                chown(to, &name, owner, &path)?;
            }
            chmod(to, &name, (meta.mode() & 0o7777) | 0o700, &path)?;
            let (sub_from, sub_to) = (
                from.open_dir(&name).map_err(at(&path))?,
                to.open_dir(&name).map_err(at(&path))?,
            );
            farm_dir(&sub_from, &sub_to, owner, &path, depth + 1)?;
        } else if kind.is_symlink() {
            let target = from.read_link_contents(&name).map_err(at(&path))?;
            to.symlink_contents(&target, &name).map_err(at(&path))?;
            if let Some(owner) = owner {
                chown(to, &name, owner, &path)?;
            }
        } else if kind.is_file() {
            // A copy where a link is impossible (another file system) is the kernel's too.
            let linked = owner.is_some()
                && match from.hard_link(&name, to, &name) {
                    Ok(()) => true,
                    Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => false,
                    Err(e) => return Err(at(&path)(e)),
                };
            if !linked {
                from.copy(&name, to, &name).map_err(at(&path))?;
            }
        }
    }
    Ok(())
}

/// Copies into directory `to` what of directory `from` it lacks: a missing entry is copied
/// (files as copies, links recreated, never followed), a directory both have is merged, and
/// any other entry `to` has wins. This is how a build's context lands on its prepared state.
pub fn fill(from: &Path, to: &Path) -> Result<(), TreeError> {
    fill_dir(&open(from)?, &open(to)?, Path::new(""), 0)
}

fn fill_dir(from: &Dir, to: &Dir, rel: &Path, depth: usize) -> Result<(), TreeError> {
    if depth >= MAX_DEPTH {
        return Err(TreeError::TooDeep(rel.to_path_buf()));
    }
    for entry in from.entries().map_err(at(rel))? {
        let entry = entry.map_err(at(rel))?;
        let name = PathBuf::from(entry.file_name());
        let path = rel.join(&name);
        let meta = from.symlink_metadata(&name).map_err(at(&path))?;
        let kind = meta.file_type();
        match to.symlink_metadata(&name) {
            Ok(there) if there.is_dir() && kind.is_dir() => {
                let (sub_from, sub_to) = (
                    from.open_dir(&name).map_err(at(&path))?,
                    to.open_dir(&name).map_err(at(&path))?,
                );
                fill_dir(&sub_from, &sub_to, &path, depth + 1)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if kind.is_dir() {
                    to.create_dir(&name).map_err(at(&path))?;
                    chmod(to, &name, (meta.mode() & 0o7777) | 0o700, &path)?;
                    let (sub_from, sub_to) = (
                        from.open_dir(&name).map_err(at(&path))?,
                        to.open_dir(&name).map_err(at(&path))?,
                    );
                    farm_dir(&sub_from, &sub_to, None, &path, depth + 1)?;
                } else if kind.is_symlink() {
                    let target = from.read_link_contents(&name).map_err(at(&path))?;
                    to.symlink_contents(&target, &name).map_err(at(&path))?;
                } else if kind.is_file() {
                    from.copy(&name, to, &name).map_err(at(&path))?;
                }
            }
            Err(e) => return Err(at(&path)(e)),
        }
    }
    Ok(())
}

/// The bytes of the regular files under `path` (links not followed).
pub fn size(path: &Path) -> Result<u64, TreeError> {
    let mut total = 0u64;
    walk(&open(path)?, Path::new(""), 0, &mut |_, _, meta, _| {
        if meta.is_file() {
            total = total.saturating_add(meta.len());
        }
        Ok(Keep::Yes)
    })?;
    Ok(total)
}

/// Removes the tree at `path`, first making its directories the owner's to empty (a sandbox
/// running as the kernel's user may have closed some).
pub fn remove(path: &Path) -> Result<(), TreeError> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().map(Path::new).unwrap_or(Path::new("."));
    chmod(&open(parent)?, name, 0o700, path)?;
    walk(
        &open(path)?,
        Path::new(""),
        0,
        &mut |dir, name, meta, rel| {
            if meta.file_type().is_dir() {
                chmod(dir, name, 0o700, rel)?;
            }
            Ok(Keep::Yes)
        },
    )?;
    std::fs::remove_dir_all(path).map_err(at(path))
}

/// Hands a build context over to the build's user `owner`: everything in it becomes theirs.
/// A file with more than one link is first replaced by a copy, so no inode outside the context
/// changes owner.
pub fn hand_over(context: &Path, owner: Owner) -> Result<(), TreeError> {
    let parent = context.parent().unwrap_or(Path::new("/"));
    let name = context.file_name().map(Path::new).unwrap_or(Path::new("."));
    chown(&open(parent)?, name, owner, context)?;
    walk(
        &open(context)?,
        Path::new(""),
        0,
        &mut |dir, name, meta, path| {
            if meta.file_type().is_file() && meta.nlink() > 1 {
                unlink_copy(dir, name, path)?;
            }
            chown(dir, name, owner, path)?;
            Ok(Keep::Yes)
        },
    )
}

/// Normalises a build's output before it becomes a release: owned by `owner` (the kernel, when
/// root), directories 0700, files 0644 (0755 when the owner may execute: sandboxes read them
/// through hard links, never through these directories), no setuid or setgid, no file sharing
/// its inode with anything else; fifos, sockets and devices are removed. Returns what was
/// removed.
pub fn normalize(context: &Path, owner: Option<Owner>) -> Result<Vec<PathBuf>, TreeError> {
    let parent = context.parent().unwrap_or(Path::new("/"));
    let name = context.file_name().map(Path::new).unwrap_or(Path::new("."));
    let parent_dir = open(parent)?;
    if let Some(owner) = owner {
        chown(&parent_dir, name, owner, context)?;
    }
    chmod(&parent_dir, name, 0o700, context)?;
    let mut removed = Vec::new();
    walk(
        &open(context)?,
        Path::new(""),
        0,
        &mut |dir, name, meta, path| {
            let kind = meta.file_type();
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                dir.remove_file(name).map_err(at(path))?;
                removed.push(path.to_path_buf());
                return Ok(Keep::No);
            }
            if kind.is_file() && meta.nlink() > 1 {
                unlink_copy(dir, name, path)?;
            }
            if let Some(owner) = owner {
                chown(dir, name, owner, path)?;
            }
            if kind.is_dir() {
                chmod(dir, name, 0o700, path)?;
            } else if kind.is_file() {
                let exec = meta.mode() & 0o100 != 0;
                chmod(dir, name, if exec { 0o755 } else { 0o644 }, path)?;
            }
            Ok(Keep::Yes)
        },
    )?;
    Ok(removed)
}

enum Keep {
    Yes,
    No,
}

type Visit<'a> =
    dyn FnMut(&Dir, &Path, &cap_std::fs::Metadata, &Path) -> Result<Keep, TreeError> + 'a;

/// Visits every entry under `dir` (a directory before its contents), without following links.
fn walk(dir: &Dir, rel: &Path, depth: usize, visit: &mut Visit<'_>) -> Result<(), TreeError> {
    if depth >= MAX_DEPTH {
        return Err(TreeError::TooDeep(rel.to_path_buf()));
    }
    for entry in dir.entries().map_err(at(rel))? {
        let entry = entry.map_err(at(rel))?;
        let name = PathBuf::from(entry.file_name());
        let path = rel.join(&name);
        let meta = dir.symlink_metadata(&name).map_err(at(&path))?;
        let keep = visit(dir, &name, &meta, &path)?;
        if meta.file_type().is_dir() && matches!(keep, Keep::Yes) {
            let sub = dir.open_dir(&name).map_err(at(&path))?;
            walk(&sub, &path, depth + 1, visit)?;
        }
    }
    Ok(())
}

/// Replaces file `name` by a copy of itself (a new inode).
fn unlink_copy(dir: &Dir, name: &Path, path: &Path) -> Result<(), TreeError> {
    let mut tmp = name.as_os_str().to_owned();
    tmp.push(".lain-unlink");
    dir.copy(name, dir, &tmp).map_err(at(path))?;
    dir.rename(&tmp, dir, name).map_err(at(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn release(root: &Path) -> PathBuf {
        let r = root.join("release");
        std::fs::create_dir_all(r.join("sub/deeper")).expect("mkdir");
        std::fs::write(r.join("app.py"), "print(1)").expect("write");
        std::fs::write(r.join("sub/deeper/data"), "d").expect("write");
        std::os::unix::fs::symlink("/lain/app/app.py", r.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../etc/passwd", r.join("sub/rel")).expect("symlink");
        r
    }

    #[test]
    fn a_farm_copies_without_an_owner_and_recreates_links_without_following_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = release(tmp.path());
        let dest = tmp.path().join("farm");
        farm(&r, &dest, None).expect("farm");
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/deeper/data")).expect("read"),
            "d"
        );
        assert_eq!(
            std::fs::read_link(dest.join("abs")).expect("link"),
            Path::new("/lain/app/app.py")
        );
        assert_eq!(
            std::fs::read_link(dest.join("sub/rel")).expect("link"),
            Path::new("../../etc/passwd")
        );
        let (a, b) = (
            std::fs::metadata(r.join("app.py")).expect("meta"),
            std::fs::metadata(dest.join("app.py")).expect("meta"),
        );
        assert_ne!(a.ino(), b.ino(), "a copy, not a link");
        std::fs::write(dest.join("app.py"), "changed").expect("the copy is writable");
        assert_eq!(
            std::fs::read_to_string(r.join("app.py")).expect("read"),
            "print(1)"
        );
    }

    #[test]
    fn fill_adds_what_is_missing_and_what_is_there_wins() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = release(tmp.path());
        let to = tmp.path().join("to");
        std::fs::create_dir_all(to.join("sub")).expect("mkdir");
        std::fs::write(to.join("app.py"), "mine").expect("write");
        std::fs::write(to.join("sub/own"), "own").expect("write");
        fill(&r, &to).expect("fill");
        let read = |p: &str| std::fs::read_to_string(to.join(p)).expect("read");
        assert_eq!(read("app.py"), "mine");
        assert_eq!(read("sub/own"), "own");
        assert_eq!(read("sub/deeper/data"), "d");
        assert_eq!(
            std::fs::read_link(to.join("sub/rel")).expect("link"),
            Path::new("../../etc/passwd")
        );
        assert_eq!(size(&to).expect("size"), 4 + 3 + 1);
    }

    #[test]
    fn too_deep_trees_are_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut deep = tmp.path().join("release");
        for _ in 0..=MAX_DEPTH {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).expect("mkdir");
        let err = farm(&tmp.path().join("release"), &tmp.path().join("farm"), None)
            .expect_err("too deep");
        assert!(matches!(err, TreeError::TooDeep(_)), "{err}");
        let err = normalize(&tmp.path().join("release"), None).expect_err("too deep");
        assert!(matches!(err, TreeError::TooDeep(_)), "{err}");
    }

    #[test]
    fn normalize_fixes_modes_breaks_shared_inodes_and_drops_special_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let r = release(tmp.path());
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "keep me").expect("write");
        std::fs::hard_link(&outside, r.join("linked")).expect("link");
        std::fs::set_permissions(r.join("app.py"), std::fs::Permissions::from_mode(0o6777))
            .expect("chmod");
        std::fs::set_permissions(r.join("sub"), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.join("fifo").as_path(),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o666),
            0,
        )
        .expect("fifo");
        let removed = normalize(&r, None).expect("normalize");
        assert_eq!(removed, [PathBuf::from("fifo")]);
        let mode = |p: &str| std::fs::symlink_metadata(r.join(p)).expect("meta").mode() & 0o7777;
        assert_eq!(
            mode("app.py"),
            0o755,
            "no setuid, setgid or group/other write"
        );
        assert_eq!(mode("sub"), 0o700);
        assert_eq!(mode("sub/deeper/data") & 0o022, 0);
        std::fs::set_permissions(r.join("linked"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert_eq!(
            std::fs::metadata(&outside).expect("meta").mode() & 0o777,
            0o644,
            "the outside inode is untouched: the link was broken first"
        );
        assert_eq!(
            std::fs::read_to_string(r.join("linked")).expect("read"),
            "keep me"
        );
    }
}

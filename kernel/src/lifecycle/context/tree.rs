//! What the unpacker has made, path by path: entry paths are cleaned here, every entry's parent
//! is checked to be a directory the unpacker made (so nothing is ever resolved through a symlink
//! while unpacking), and every symlink is resolved through the finished tree to prove it stays
//! inside the context.

use super::Problem;
use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// Most symlinks one resolution goes through (a chain or a loop beyond it is refused).
const MAX_HOPS: usize = 16;

/// One unpacked path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file (or a hard link to one).
    File,
    /// A symlink, with its target as written.
    Symlink(PathBuf),
}

impl Node {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Dir => "directory",
            Node::File => "file",
            Node::Symlink(_) => "symlink",
        }
    }
}

/// Every path unpacked so far (the staging directory was empty before, and only the unpacker
/// writes to it, so this is what is on disk).
#[derive(Debug, Default)]
pub struct Tree {
    nodes: HashMap<PathBuf, Node>,
    links: Vec<PathBuf>,
}

impl Tree {
    /// What `path` is, if it was unpacked.
    pub fn get(&self, path: &Path) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// How many paths were unpacked (directories made for entries included).
    pub fn count(&self) -> usize {
        self.nodes.len()
    }

    /// Records `path` as `node` (its parents must be recorded directories).
    pub fn insert(&mut self, path: PathBuf, node: Node) {
        if matches!(node, Node::Symlink(_)) {
            self.links.push(path.clone());
        }
        self.nodes.insert(path, node);
    }

    /// The symlinks, in the order they were unpacked.
    pub fn links(&self) -> &[PathBuf] {
        &self.links
    }

    /// The parent directories of `path` that do not exist yet, outermost first; refused when a
    /// parent is a file or a symlink. (A recorded directory's own parents are all directories, so
    /// the walk stops at the first one.)
    pub fn missing_parents(&self, path: &Path) -> Result<Vec<PathBuf>, Problem> {
        let mut missing = Vec::new();
        let mut parent = path.parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            match self.nodes.get(p) {
                Some(Node::Dir) => break,
                Some(other) => {
                    return Err(Problem::ParentNotDir {
                        parent: p.display().to_string(),
                        kind: other.kind(),
                    });
                }
                None => missing.push(p.to_path_buf()),
            }
            parent = p.parent();
        }
        missing.reverse();
        Ok(missing)
    }

    /// Whether the symlink at `link` resolves inside the context, following the symlinks of the
    /// tree the way the kernel would (a `..` after a symlink leaves the symlink's target). A
    /// component that does not exist is taken lexically.
    pub fn check_link(&self, link: &Path) -> Result<(), Problem> {
        let Some(Node::Symlink(target)) = self.nodes.get(link) else {
            return Ok(());
        };
        let refuse = |why: &'static str| Problem::Link {
            target: target.display().to_string(),
            why,
        };
        let mut here = link.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut pending: VecDeque<OsString> = VecDeque::new();
        push_front(&mut pending, target).map_err(refuse)?;
        let mut hops = 0;
        while let Some(part) = pending.pop_front() {
            if part == ".." {
                if !here.pop() {
                    return Err(refuse("points outside the build context"));
                }
                continue;
            }
            here.push(&part);
            if let Some(Node::Symlink(next)) = self.nodes.get(&here) {
                hops += 1;
                if hops > MAX_HOPS {
                    return Err(refuse("goes through more than 16 symlinks (a loop?)"));
                }
                here.pop();
                push_front(&mut pending, next).map_err(refuse)?;
            }
        }
        Ok(())
    }
}

/// Puts the parts of `target` before `pending` (`.` dropped); refuses absolute targets.
fn push_front(pending: &mut VecDeque<OsString>, target: &Path) -> Result<(), &'static str> {
    let mut parts = Vec::new();
    for c in target.components() {
        match c {
            Component::Normal(n) => parts.push(n.to_os_string()),
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err("is absolute: links must stay inside the build context");
            }
        }
    }
    for part in parts.into_iter().rev() {
        pending.push_front(part);
    }
    Ok(())
}

/// An entry's path, relative and without `.`: absolute paths and `..` refused, at most
/// `max_depth` components and `max_bytes` bytes. The empty path is the context itself.
pub fn clean(raw: &Path, max_depth: usize, max_bytes: usize) -> Result<PathBuf, Problem> {
    let len = raw.as_os_str().len();
    if len > max_bytes {
        return Err(Problem::TooLong {
            len,
            max: max_bytes,
        });
    }
    let mut out = PathBuf::new();
    let mut depth = 0;
    for c in raw.components() {
        match c {
            Component::Normal(n) => {
                depth += 1;
                if depth > max_depth {
                    return Err(Problem::TooDeep { max: max_depth });
                }
                out.push(n);
            }
            Component::CurDir => {}
            Component::ParentDir => return Err(Problem::ParentDir),
            Component::RootDir | Component::Prefix(_) => return Err(Problem::Absolute),
        }
    }
    Ok(out)
}

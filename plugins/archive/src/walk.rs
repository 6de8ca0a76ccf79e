//! Walks a volume and collects the paths that exclude patterns match.

use crate::glob::Pattern;
use std::fs::{self, DirEntry};
use std::path::{Path, PathBuf};

/// Most symbolic links followed on one path before the walk stops descending (Linux's limit).
const MAX_SYMLINK_HOPS: u32 = 40;

/// How the volume is walked.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Walk into symbolic links to directories.
    pub follow_symlinks: bool,
    /// The walk fails when it meets more entries than this.
    pub max_entries: u64,
}

/// What a walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Walk {
    /// Excluded paths relative to the root, sorted.
    pub excluded: Vec<String>,
    /// Entries met, excluded ones included.
    pub entries: u64,
    /// Things the operator should know (symbolic links not followed, names that are not UTF-8).
    pub warnings: Vec<String>,
}

/// A directory waiting to be read.
struct Dir {
    /// Where to read it.
    path: PathBuf,
    /// Its path as walked from the root (through followed links), `""` for the root.
    rel: String,
    /// Its location once links are resolved, lexically; used to detect link cycles.
    real: String,
    /// Symbolic links followed to reach it.
    hops: u32,
}

/// Walks the directory `root`. An entry matching any pattern is excluded, and an excluded directory
/// is not descended into. Errors: an unreadable directory, or more than `max_entries` entries.
pub fn walk(root: &Path, patterns: &[Pattern], options: Options) -> Result<Walk, String> {
    let mut walk = Walk::default();
    let mut stack = vec![Dir {
        path: root.to_path_buf(),
        rel: String::new(),
        real: String::new(),
        hops: 0,
    }];
    while let Some(dir) = stack.pop() {
        let shown = if dir.rel.is_empty() {
            "."
        } else {
            dir.rel.as_str()
        };
        let mut entries = fs::read_dir(&dir.path)
            .and_then(|it| it.collect::<Result<Vec<DirEntry>, _>>())
            .map_err(|e| format!("cannot read {shown}: {e}"))?;
        // Name order, so that warnings come in the same order on every run.
        entries.sort_by_key(DirEntry::file_name);
        let mut subdirs = Vec::new();
        for entry in entries {
            walk.entries += 1;
            if walk.entries > options.max_entries {
                return Err(format!(
                    "the volume holds more than {} entries (config `max_entries`)",
                    options.max_entries
                ));
            }
            let file_name = entry.file_name();
            let name = file_name.to_string_lossy();
            let rel = join(&dir.rel, &name);
            let real = join(&dir.real, &name);
            let kind = entry
                .file_type()
                .map_err(|e| format!("cannot stat {rel}: {e}"))?;
            let next = if kind.is_dir() {
                Some(Dir {
                    path: entry.path(),
                    rel: rel.clone(),
                    real,
                    hops: dir.hops,
                })
            } else if kind.is_symlink() && options.follow_symlinks {
                follow(&entry.path(), &dir, rel.clone(), &real, &mut walk.warnings)
            } else {
                None
            };
            if patterns.iter().any(|p| p.matches(&rel, next.is_some())) {
                if file_name.to_str().is_none() {
                    walk.warnings
                        .push(format!("{rel}: name is not UTF-8, it cannot be excluded"));
                }
                walk.excluded.push(rel);
            } else if let Some(next) = next {
                subdirs.push(next);
            }
        }
        // Reversed so that the first subdirectory is read first.
        stack.extend(subdirs.into_iter().rev());
    }
    walk.excluded.sort();
    Ok(walk)
}

/// The directory a symbolic link at `link` leads to, if it is one and following it stays inside
/// the volume without a cycle; otherwise `None`, with a warning when the link was refused.
fn follow(
    link: &Path,
    parent: &Dir,
    rel: String,
    real: &str,
    warnings: &mut Vec<String>,
) -> Option<Dir> {
    if !fs::metadata(link).is_ok_and(|m| m.is_dir()) {
        return None;
    }
    let target = fs::read_link(link).ok()?;
    let refused = |why: &str| format!("{rel}: symbolic link not followed: {why}");
    let Some(resolved) = target.to_str().and_then(|t| resolve(&parent.real, t)) else {
        warnings.push(refused("it leads outside the volume"));
        return None;
    };
    if resolved.is_empty() || real == resolved || real.starts_with(&format!("{resolved}/")) {
        warnings.push(refused("it leads to a directory that contains it"));
        return None;
    }
    if parent.hops >= MAX_SYMLINK_HOPS {
        warnings.push(refused("too many links on the way"));
        return None;
    }
    Some(Dir {
        path: link.to_path_buf(),
        rel,
        real: resolved,
        hops: parent.hops + 1,
    })
}

/// `parent/name`, or `name` at the root.
fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Resolves the relative link `target` found in directory `base`, lexically. `None` if it is
/// absolute or climbs above the root.
fn resolve(base: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = base.split('/').filter(|p| !p.is_empty()).collect();
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            _ => parts.push(part),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A directory tree under the system's temporary directory, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(name: &str, files: &[&str]) -> Tree {
            let root =
                std::env::temp_dir().join(format!("lain-archive-{name}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&root);
            for file in files {
                let path = root.join(file);
                if let Some(dir) = file.strip_suffix('/') {
                    fs::create_dir_all(root.join(dir)).unwrap();
                } else {
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    fs::write(path, b"x").unwrap();
                }
            }
            Tree(root)
        }

        fn link(&self, at: &str, target: &str) {
            symlink(target, self.0.join(at)).unwrap();
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn patterns(texts: &[&str]) -> Vec<Pattern> {
        texts.iter().map(|t| Pattern::parse(t).unwrap()).collect()
    }

    const OPTIONS: Options = Options {
        follow_symlinks: false,
        max_entries: 1000,
    };

    #[test]
    fn excludes_matches_and_does_not_descend_into_excluded_directories() {
        let tree = Tree::new(
            "basic",
            &[
                "a.tmp",
                "data/db.sql",
                "data/x.swp",
                "lost+found/",
                "cache/big/1.tmp",
                "keep/cache",
            ],
        );
        let walk = walk(
            &tree.0,
            &patterns(&["*.tmp", "*.swp", "lost+found", "cache/"]),
            OPTIONS,
        )
        .unwrap();
        assert_eq!(
            walk.excluded,
            ["a.tmp", "cache", "data/x.swp", "lost+found"]
        );
        // a.tmp, cache, data, data/db.sql, data/x.swp, keep, keep/cache, lost+found: cache/big unseen.
        assert_eq!(walk.entries, 8);
        assert!(walk.warnings.is_empty());
    }

    #[test]
    fn fails_past_max_entries() {
        let tree = Tree::new("max", &["a", "b", "c"]);
        let small = Options {
            max_entries: 2,
            ..OPTIONS
        };
        assert_eq!(
            walk(&tree.0, &[], small),
            Err("the volume holds more than 2 entries (config `max_entries`)".into())
        );
        assert_eq!(
            walk(
                &tree.0,
                &[],
                Options {
                    max_entries: 3,
                    ..OPTIONS
                }
            )
            .map(|w| w.entries),
            Ok(3)
        );
    }

    #[test]
    fn an_unreadable_volume_is_an_error() {
        let missing = std::env::temp_dir().join("lain-archive-does-not-exist");
        assert!(walk(&missing, &[], OPTIONS).is_err_and(|e| e.starts_with("cannot read .:")));
    }

    #[test]
    fn symbolic_links_are_followed_only_when_asked_and_without_cycles() {
        let tree = Tree::new("links", &["real/x.tmp", "real/sub/"]);
        tree.link("alias", "real");
        tree.link("real/sub/up", "..");
        tree.link("outside", "../..");
        let excludes = patterns(&["*.tmp"]);

        let plain = walk(&tree.0, &excludes, OPTIONS).unwrap();
        assert_eq!(plain.excluded, ["real/x.tmp"]);
        assert!(plain.warnings.is_empty());

        let followed = walk(
            &tree.0,
            &excludes,
            Options {
                follow_symlinks: true,
                ..OPTIONS
            },
        )
        .unwrap();
        assert_eq!(followed.excluded, ["alias/x.tmp", "real/x.tmp"]);
        assert_eq!(
            followed.warnings,
            [
                "outside: symbolic link not followed: it leads outside the volume",
                "alias/sub/up: symbolic link not followed: it leads to a directory that contains it",
                "real/sub/up: symbolic link not followed: it leads to a directory that contains it",
            ]
        );
    }

    #[test]
    fn links_resolve_lexically() {
        assert_eq!(resolve("a/b", "../c/./d"), Some("a/c/d".into()));
        assert_eq!(resolve("", "x"), Some("x".into()));
        assert_eq!(resolve("a", "../.."), None);
        assert_eq!(resolve("a", "/etc"), None);
    }
}

//! Glob patterns for backup excludes: `*`, `?` and `**`.
//!
//! Rules (close to `.gitignore`, without negation or character classes):
//! - `*` matches any run of characters within one path component, `?` exactly one character;
//!   both match a leading dot too. Every other character matches itself.
//! - `**` as a whole component matches zero or more components (`logs/**/*.gz`); elsewhere it
//!   behaves like `*`.
//! - A pattern without `/` is matched against the entry's name, at any depth (`*.tmp`).
//! - A pattern with `/` is matched against the whole path from the volume root; a leading `/` only
//!   makes that explicit (`/cache` is the root's `cache` only).
//! - A trailing `/` restricts the pattern to directories (`cache/` is any directory named `cache`).

/// A parsed exclude pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// The components of the pattern, split on `/`.
    components: Vec<Component>,
    /// Matched against the entry's name rather than its whole path.
    name_only: bool,
    /// Matches directories only.
    dir_only: bool,
}

/// One `/`-separated component of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Component {
    /// `**`: zero or more path components.
    AnyDepth,
    /// A glob over one path component, as characters.
    Glob(Vec<char>),
}

impl Pattern {
    /// Parses `text`. Errors: empty, only slashes, a `!` negation, or a `..` component.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with('!') {
            return Err(format!("`{text}`: negation (`!`) is not supported"));
        }
        let dir_only = text.ends_with('/');
        let anchored = text.starts_with('/');
        let body = text.trim_matches('/');
        let mut components = Vec::new();
        for part in body.split('/').filter(|p| !p.is_empty() && *p != ".") {
            if part == ".." {
                return Err(format!("`{text}`: `..` is not allowed"));
            }
            components.push(if part == "**" {
                Component::AnyDepth
            } else {
                Component::Glob(part.chars().collect())
            });
        }
        if components.is_empty() {
            return Err(format!("`{text}`: pattern matches nothing"));
        }
        Ok(Pattern {
            name_only: !anchored && !body.contains('/'),
            components,
            dir_only,
        })
    }

    /// Whether the entry at `path` (relative to the volume root, `/`-separated) matches.
    pub fn matches(&self, path: &str, is_dir: bool) -> bool {
        if self.dir_only && !is_dir {
            return false;
        }
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if self.name_only {
            return match parts.last() {
                Some(name) => components_match(&self.components, &[name]),
                None => false,
            };
        }
        components_match(&self.components, &parts)
    }
}

/// Whether `pattern` matches the whole of `path`, component by component.
///
/// Dynamic programming over path prefixes, so that many `**` cost `O(pattern × path)`, never more.
fn components_match(pattern: &[Component], path: &[&str]) -> bool {
    // reach[j]: the pattern components seen so far match exactly `path[..j]`.
    let mut reach = vec![false; path.len() + 1];
    if let Some(first) = reach.first_mut() {
        *first = true;
    }
    for component in pattern {
        let next = match component {
            Component::AnyDepth => reach
                .iter()
                .scan(false, |seen, &r| {
                    *seen |= r;
                    Some(*seen)
                })
                .collect(),
            Component::Glob(glob) => std::iter::once(false)
                .chain(
                    reach
                        .iter()
                        .zip(path)
                        .map(|(&r, part)| r && wildcard_match(glob, part)),
                )
                .collect(),
        };
        reach = next;
    }
    reach.last().copied().unwrap_or(false)
}

/// Matches one path component against a glob of `*` and `?` (linear backtracking).
fn wildcard_match(glob: &[char], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut g, mut t) = (0, 0);
    // Position after the last `*` seen, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while let Some(&c) = text.get(t) {
        match glob.get(g) {
            Some('*') => {
                star = Some((g + 1, t));
                g += 1;
            }
            Some(&p) if p == '?' || p == c => {
                g += 1;
                t += 1;
            }
            _ => match star {
                Some((after_star, matched)) => {
                    star = Some((after_star, matched + 1));
                    g = after_star;
                    t = matched + 1;
                }
                None => return false,
            },
        }
    }
    glob.get(g..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, path: &str) -> bool {
        Pattern::parse(pattern).map(|p| p.matches(path, false)) == Ok(true)
    }

    #[test]
    fn star_and_question_mark_stay_within_a_component() {
        assert!(matches("*.tmp", "a.tmp"));
        assert!(matches("*.tmp", ".tmp"));
        assert!(matches("*.tmp", "x.y.tmp"));
        assert!(!matches("*.tmp", "a.tmp.gz"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("a?c", "aéc"));
        assert!(matches("*a*b*", "xxaxxbxx"));
        assert!(!matches("*a*b*", "xxbxxaxx"));
        assert!(!matches("data/*.db", "data/sub/x.db"));
        assert!(matches("data/*.db", "data/x.db"));
    }

    #[test]
    fn patterns_without_slash_match_names_at_any_depth() {
        assert!(matches("lost+found", "lost+found"));
        assert!(matches("*.sock", "run/mysql/mysqld.sock"));
        assert!(!matches("run", "run/mysql"));
    }

    #[test]
    fn patterns_with_slash_match_from_the_root() {
        assert!(matches("cache/tmp", "cache/tmp"));
        assert!(!matches("cache/tmp", "app/cache/tmp"));
        assert!(matches("/cache", "cache"));
        assert!(!matches("/cache", "app/cache"));
        assert!(matches("./cache", "cache"));
    }

    #[test]
    fn double_star_matches_any_number_of_components() {
        assert!(matches("**/*.log", "a.log"));
        assert!(matches("**/*.log", "x/y/z/a.log"));
        assert!(matches("logs/**/*.gz", "logs/a.gz"));
        assert!(matches("logs/**/*.gz", "logs/2024/01/a.gz"));
        assert!(!matches("logs/**/*.gz", "other/logs/a.gz"));
        assert!(matches("logs/**", "logs/a/b"));
        assert!(matches("**", "anything/at/all"));
        assert!(matches("a/**/b/**/c", "a/x/b/y/z/c"));
        assert!(!matches("a/**/b/**/c", "a/x/c"));
        // `**` inside a component is a plain `*`.
        assert!(matches("a**b", "axxb"));
        assert!(!matches("a**b", "ax/xb"));
    }

    #[test]
    fn trailing_slash_matches_directories_only() {
        let pattern = Pattern::parse("cache/").map_err(|e| e.to_string());
        assert_eq!(
            pattern.as_ref().map(|p| p.matches("app/cache", true)),
            Ok(true)
        );
        assert_eq!(pattern.map(|p| p.matches("app/cache", false)), Ok(false));
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in ["", "/", "//", ".", "!keep.tmp", "a/../b"] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn many_double_stars_stay_cheap() {
        let pattern = "**/".repeat(50) + "x";
        let path = "a/".repeat(200) + "y";
        assert!(!matches(&pattern, &path));
        assert!(matches(&pattern, &(path + "/x")));
    }
}

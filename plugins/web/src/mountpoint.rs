//! Mountpoints of web procs: LAIN's defaults and relative entries (LAIN reference §mountpoints),
//! and the routes they become.
//!
//! A mountpoint is `host[/path]`. Expanded mountpoints are kept in a canonical form: the host in
//! lower case, the path without a trailing `/` (`Books.example.org/books/` is
//! `books.example.org/books`), so that duplicates are recognised.

use lain_sdk_guest::proc_type::Route;
use lain_sdk_guest::{PluginError, Problem};

/// LAIN's default mountpoints `DM`: `<app_domain>.<d>` for each cluster domain `d`, then
/// `<app_domain>.lain` (LAIN reference §mountpoints).
pub fn defaults(app_domain: &str, cluster_domains: &[String]) -> Vec<String> {
    cluster_domains
        .iter()
        .map(|d| format!("{app_domain}.{d}"))
        .chain([format!("{app_domain}.lain")])
        .collect()
}

/// Expands the mountpoints the user wrote, as LAIN's parser did (LAIN reference §mountpoints):
///
/// 1. entries `host[/path]` are kept in order;
/// 2. a proc named `web` gets `defaults` appended;
/// 3. each relative entry `/x` then adds `m/x` for every `m` in `defaults`; a bare `/` adds nothing.
///
/// Duplicates are dropped (the first one stays). A web proc not named `web` must end up with at
/// least one mountpoint. Problems are pushed to `problems`; faulty entries are left out.
pub fn expand(
    proc_name: &str,
    written: &[String],
    defaults: &[String],
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let mut absolute = Vec::new();
    let mut relative = Vec::new();
    let mut faulty = false;
    for (index, entry) in written.iter().enumerate() {
        match parse(entry) {
            Ok(Entry::Absolute(mountpoint)) => absolute.push(mountpoint),
            Ok(Entry::Relative(path)) if path.is_empty() => {}
            Ok(Entry::Relative(path)) => relative.push(path),
            Err(fault) => {
                faulty = true;
                problems.push(fault.at(index));
            }
        }
    }
    if proc_name == "web" {
        absolute.extend(defaults.iter().cloned());
    }
    let expanded = absolute.into_iter().chain(
        relative
            .iter()
            .flat_map(|path| defaults.iter().map(move |d| format!("{d}{path}"))),
    );
    let mut unique: Vec<String> = Vec::new();
    for mountpoint in expanded {
        if !unique.contains(&mountpoint) {
            unique.push(mountpoint);
        }
    }
    if unique.is_empty() && !faulty && proc_name != "web" {
        problems.push(
            Problem::at(
                &["mountpoint"],
                "proc (type is web but name is not web) should have own mountpoint",
            )
            .with_hint(format!(
                "list at least one `host[/path]`, or a `/path` served under {}; a bare `/` adds nothing",
                defaults.join(", ")
            )),
        );
    }
    unique
}

/// The route of an expanded mountpoint: its host, and its path (`/` when it has none).
///
/// Errors: a relative mountpoint, i.e. the proc was not validated (`invalid-input`).
pub fn route(mountpoint: &str, https_only: bool) -> Result<Route, PluginError> {
    let (host, path) = match mountpoint.split_once('/') {
        Some(("", _)) => {
            return Err(PluginError::InvalidInput(format!(
                "mountpoint {mountpoint} is relative: the proc was not validated"
            )));
        }
        Some((host, path)) => (host, format!("/{path}")),
        None => (mountpoint, "/".to_string()),
    };
    Ok(Route {
        host: host.to_string(),
        path,
        https_only,
    })
}

/// A mountpoint entry as written, in canonical form.
enum Entry {
    /// `host[/path]`.
    Absolute(String),
    /// `/path` (empty for a bare `/`), to be served under every default mountpoint.
    Relative(String),
}

/// Why an entry is not a mountpoint.
struct Fault {
    message: String,
    hint: &'static str,
}

impl Fault {
    /// The problem for the entry at `index` of the `mountpoint` list.
    fn at(self, index: usize) -> Problem {
        Problem::at(&["mountpoint", &index.to_string()], self.message).with_hint(self.hint)
    }
}

/// Parses one entry: `/path` or `host[/path]`, without scheme, port, spaces, query or fragment.
fn parse(entry: &str) -> Result<Entry, Fault> {
    const FORM: &str = "write `host[/path]` (e.g. `example.org/books`) or `/path`";
    if entry.is_empty() {
        return Err(Fault {
            message: "mountpoint is empty".into(),
            hint: FORM,
        });
    }
    if entry.contains("://") {
        return Err(Fault {
            message: format!("mountpoint `{entry}` has a URL scheme"),
            hint: "write the host and path only, e.g. `example.org/books` for `https://example.org/books`",
        });
    }
    let (host, path) = match entry.find('/') {
        Some(slash) => entry.split_at(slash),
        None => (entry, ""),
    };
    if let Some(c) = path.chars().find(|c| !path_char(*c)) {
        return Err(Fault {
            message: format!("path of mountpoint `{entry}` contains {c:?}"),
            hint: "a mountpoint path is a plain URL path prefix: letters, digits, `%` escapes and \
                   `-._~!$&'()*+,=:@/`; no spaces, `;`, quotes, braces, query or fragment",
        });
    }
    let path = path.trim_end_matches('/');
    if host.is_empty() {
        return Ok(Entry::Relative(path.to_string()));
    }
    if !is_dns_name(host) {
        return Err(Fault {
            message: format!("`{host}` in mountpoint `{entry}` is not a valid host name"),
            hint: "a host name is dot-separated labels of letters, digits and `-`, without a port",
        });
    }
    Ok(Entry::Absolute(format!(
        "{}{path}",
        host.to_ascii_lowercase()
    )))
}

/// Whether `c` may appear in a mountpoint's path: RFC 3986's path characters without `;`,
/// which the kernel also refuses (its nginx export writes paths into a configuration file).
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~%!$&'()*+,=:@/".contains(c)
}

/// Whether `host` is a DNS name: at most 253 characters of dot-separated labels, each 1-63
/// letters, digits or `-`, not starting or ending with `-`.
fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn lain_local() -> Vec<String> {
        defaults("bookshelf", &strings(&["lain.local"]))
    }

    #[test]
    fn defaults_follow_cluster_domains_then_lain() {
        assert_eq!(
            defaults("hello.redis.resource", &strings(&["a.org", "b.org"])),
            strings(&[
                "hello.redis.resource.a.org",
                "hello.redis.resource.b.org",
                "hello.redis.resource.lain"
            ])
        );
    }

    /// LAIN reference §mountpoints, its example: the derived mountpoints of `web` and `web.admin`.
    #[test]
    fn example_a_is_reproduced() {
        let mut problems = Vec::new();
        let web = expand(
            "web",
            &strings(&["books.example.org", "www.example.org/books", "/v1"]),
            &lain_local(),
            &mut problems,
        );
        assert_eq!(
            web,
            strings(&[
                "books.example.org",
                "www.example.org/books",
                "bookshelf.lain.local",
                "bookshelf.lain",
                "bookshelf.lain.local/v1",
                "bookshelf.lain/v1",
            ])
        );
        let admin = expand(
            "admin",
            &strings(&["/admin", "admin.example.org"]),
            &lain_local(),
            &mut problems,
        );
        assert_eq!(
            admin,
            strings(&[
                "admin.example.org",
                "bookshelf.lain.local/admin",
                "bookshelf.lain/admin",
            ])
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn web_without_mountpoints_gets_the_defaults() {
        let mut problems = Vec::new();
        let web = expand("web", &[], &lain_local(), &mut problems);
        assert_eq!(web, strings(&["bookshelf.lain.local", "bookshelf.lain"]));
        assert!(problems.is_empty());
    }

    #[test]
    fn duplicates_and_trailing_slashes_collapse() {
        let mut problems = Vec::new();
        let web = expand(
            "web",
            &strings(&[
                "bookshelf.lain",
                "Books.Example.org/a/",
                "books.example.org/a",
                "/",
                "/v1/",
                "/v1",
            ]),
            &lain_local(),
            &mut problems,
        );
        assert_eq!(
            web,
            strings(&[
                "bookshelf.lain",
                "books.example.org/a",
                "bookshelf.lain.local",
                "bookshelf.lain.local/v1",
                "bookshelf.lain/v1",
            ])
        );
        assert!(problems.is_empty());
    }

    #[test]
    fn other_web_procs_need_their_own_mountpoint() {
        for written in [vec![], strings(&["/"])] {
            let mut problems = Vec::new();
            assert!(expand("admin", &written, &lain_local(), &mut problems).is_empty());
            assert_eq!(problems.len(), 1);
            assert_eq!(problems[0].path, strings(&["mountpoint"]));
            assert_eq!(
                problems[0].message,
                "proc (type is web but name is not web) should have own mountpoint"
            );
            assert!(problems[0].hint.is_some());
        }
    }

    #[test]
    fn every_faulty_entry_is_reported_with_its_index() {
        let mut problems = Vec::new();
        let kept = expand(
            "admin",
            &strings(&[
                "ok.example.org",
                "http://x.org",
                "bad_host.org/a",
                "x.org/a b",
                "",
                "host:8080/x",
                "-x.org",
                "/q?x=1",
            ]),
            &lain_local(),
            &mut problems,
        );
        assert_eq!(kept, strings(&["ok.example.org"]));
        let paths: Vec<Vec<String>> = problems.iter().map(|p| p.path.clone()).collect();
        let expected: Vec<Vec<String>> = (1..=7)
            .map(|i| strings(&["mountpoint", &i.to_string()]))
            .collect();
        assert_eq!(paths, expected);
        assert!(problems[0].message.contains("scheme"));
        assert!(problems[1].message.contains("not a valid host name"));
        assert!(problems[2].message.contains("' '"));
    }

    #[test]
    fn paths_hold_url_path_characters_only() {
        for bad in [
            "x.org/a;b",
            "x.org/a{",
            "x.org/a}",
            "x.org/\"a",
            "x.org/a\\b",
            "/a\u{1b}[2J",
        ] {
            let mut problems = Vec::new();
            let kept = expand("admin", &strings(&[bad]), &lain_local(), &mut problems);
            assert!(kept.is_empty(), "{bad}");
            assert_eq!(problems.len(), 1, "{bad}");
            assert!(problems[0].message.contains("contains"), "{bad}");
        }
        let mut problems = Vec::new();
        let kept = expand(
            "admin",
            &strings(&["x.org/a-b_c.d~e/%20/!$&'()*+,=:@"]),
            &lain_local(),
            &mut problems,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(kept.len(), 1);
    }

    #[test]
    fn only_faulty_entries_do_not_add_the_missing_mountpoint_problem() {
        let mut problems = Vec::new();
        expand("admin", &strings(&["a b"]), &lain_local(), &mut problems);
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].path, strings(&["mountpoint", "0"]));
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_name("a-1.example.org"));
        assert!(is_dns_name("localhost"));
        assert!(!is_dns_name("a..b"));
        assert!(!is_dns_name("a.b-"));
        assert!(!is_dns_name(&"a".repeat(64)));
        assert!(!is_dns_name(&["a"; 128].join(".")));
    }

    #[test]
    fn routes_split_host_and_path() {
        let route = route("www.example.org/books", true).map_err(|e| e.to_string());
        let route = route
            .as_ref()
            .map(|r| (r.host.as_str(), r.path.as_str(), r.https_only));
        assert_eq!(route, Ok(("www.example.org", "/books", true)));
        let root = super::route("bookshelf.lain", false).map_err(|e| e.to_string());
        let root = root
            .as_ref()
            .map(|r| (r.host.as_str(), r.path.as_str(), r.https_only));
        assert_eq!(root, Ok(("bookshelf.lain", "/", false)));
        assert!(super::route("/v1", false).is_err());
    }
}

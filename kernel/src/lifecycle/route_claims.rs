//! Route claims: which app a web host, or a path under it, belongs to, so that no app takes
//! another app's traffic.
//!
//! - A host `h` under a cluster domain `d` (or LAIN's `.lain`) is the **default domain** of the
//!   app whose app domain is the rest (`appa.lain.local` is `appa`'s): it belongs to that app,
//!   registered or not, so that registering a name always brings its domain with it.
//! - Any other host, or a path under one, belongs to the first app that deploys a route on it
//!   (its **claim**). Claims compare paths by whole segments, as the router matches them: a
//!   claim of `h` (path `/`) covers every path under `h`; `h/api` covers `h/api/v2` but not
//!   `h/apix`. Two apps may share a host with disjoint paths.
//! - A deploy whose routes overlap another app's claim, or fall on another app's default domain,
//!   is refused naming the owner; the claims and the deploy are written in one compare-and-set
//!   ([`crate::store::Store::apply_if`]), so two concurrent deploys cannot both win.
//! - A cluster admin may assign a path under another app's claim: it is carved out of it (the
//!   router matches the longest prefix), and the owner of the broader claim keeps the rest.
//! - Claims are kept in the store under `routes/<host>`. They survive restarts, undeploys and
//!   deploys that no longer mount them, so that a route never changes hands behind its owner's
//!   back (a rollback must find its routes still there); only a cluster admin releases or
//!   reassigns one (`lain router release|assign`), and an assignment beats the default domain.
//! - The router serves a route only for the app that owns it ([`Claims::serves`]), whatever the
//!   deployments in the store say.

use super::records::valid_name;
use crate::spec::app_domain;
use crate::store::{Expect, Op, Store, StoreError, put_json};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Prefix of the claim records: `routes/<host>`.
pub const PREFIX: &str = "routes/";
/// Set once the routes of deployments made before claims existed have been claimed.
pub const MIGRATED: &str = "kernel/route-claims";

/// The claims on one host, by path (`/` for the whole host). No two of them overlap.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostClaims {
    /// Path -> its claim.
    pub paths: BTreeMap<String, Claim>,
}

/// One app's hold on a host or path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The app.
    pub app: String,
    /// Unix seconds when it was claimed or assigned.
    pub since: i64,
    /// The cluster admin who assigned it (`provider:subject`); none when a deploy claimed it.
    #[serde(default)]
    pub assigned_by: Option<String>,
}

/// A claim as the API lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RouteClaim {
    /// `host` or `host/path`.
    pub mountpoint: String,
    /// The host.
    pub host: String,
    /// The path (`/`: the whole host).
    pub path: String,
    /// The app it belongs to.
    pub app: String,
    /// Unix seconds when it was claimed or assigned.
    pub since: i64,
    /// The cluster admin who assigned it; none when a deploy claimed it.
    pub assigned_by: Option<String>,
}

/// Why a route may not be claimed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// Another app holds an overlapping claim.
    #[error(
        "mountpoint `{mountpoint}` belongs to app `{owner}` (it holds `{held}`): mount another \
         host or path, or ask a cluster admin (`lain router assign`)"
    )]
    Taken {
        /// The route asked for.
        mountpoint: String,
        /// Who holds it.
        owner: String,
        /// The claim it overlaps.
        held: String,
    },
    /// The host is another app's default domain.
    #[error(
        "mountpoint `{mountpoint}` is on `{host}`, the default domain of app `{owner}`: only \
         `{owner}` may mount it, unless a cluster admin assigns it (`lain router assign`)"
    )]
    DefaultDomain {
        /// The route asked for.
        mountpoint: String,
        /// Its host.
        host: String,
        /// The app whose default domain it is.
        owner: String,
    },
    /// Not a mountpoint.
    #[error("`{mountpoint}` is not a mountpoint: {reason}")]
    Invalid {
        /// What was given.
        mountpoint: String,
        /// Why it is refused.
        reason: String,
    },
}

/// Who owns a host and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// The app holding a claim that covers it.
    Claimed(String),
    /// Nobody claims it; it is the default domain of these apps (by name).
    Default(Vec<String>),
    /// Nobody claims it and it is no app's default domain.
    Free,
}

/// `host` or `host/path`, as mountpoints are written.
pub fn mountpoint(host: &str, path: &str) -> String {
    if path == "/" {
        host.to_string()
    } else {
        format!("{host}{path}")
    }
}

/// Whether the claim of path `claimed` covers `path`: equal, or a prefix of whole segments.
pub fn covers(claimed: &str, path: &str) -> bool {
    claimed == "/"
        || claimed == path
        || path
            .strip_prefix(claimed)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The longest claimed path that covers `path`, with its claim.
fn most_specific<'a>(
    paths: &'a BTreeMap<String, Claim>,
    path: &str,
) -> Option<(&'a String, &'a Claim)> {
    paths
        .iter()
        .filter(|(claimed, _)| covers(claimed, path))
        .max_by_key(|(claimed, _)| claimed.len())
}

/// The apps whose default domain `host` is, given the cluster `domains` (LAIN's `.lain` too).
pub fn default_owners(host: &str, domains: &[String]) -> Vec<String> {
    let mut owners: Vec<String> = Vec::new();
    for domain in domains.iter().map(String::as_str).chain(["lain"]) {
        let Some(rest) = host
            .strip_suffix(domain)
            .and_then(|r| r.strip_suffix('.'))
            .filter(|r| !r.is_empty())
        else {
            continue;
        };
        let app = app_domain(rest);
        if valid_name(&app) && !owners.contains(&app) {
            owners.push(app);
        }
    }
    owners
}

/// A route `host` + `path` in canonical form (host in lower case, path without a trailing `/`),
/// or why it cannot be one: a host of DNS labels without a port, a path of non-empty segments
/// other than `.` and `..`, without spaces, query or fragment.
pub fn canonical(host: &str, path: &str) -> Result<(String, String), ClaimError> {
    let invalid = |reason: &str| ClaimError::Invalid {
        mountpoint: format!("{host}{path}"),
        reason: reason.to_string(),
    };
    let host = host.to_ascii_lowercase();
    if !crate::spec::values::is_dns_name(&host) {
        return Err(invalid(
            "the host must be dot-separated labels of letters, digits and `-`, without a port",
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok((host, "/".into()));
    }
    if !trimmed.starts_with('/') {
        return Err(invalid("the path must start with `/`"));
    }
    let bad_segment = trimmed
        .split('/')
        .skip(1)
        .any(|s| s.is_empty() || s == "." || s == "..");
    if bad_segment || !trimmed.bytes().all(path_byte) {
        return Err(invalid(
            "the path must be non-empty segments other than `.` and `..` of letters, digits, \
             `%` escapes and `-._~!$&'()*+,=:@/` (no spaces, `;`, quotes, braces, query or fragment)",
        ));
    }
    Ok((host, trimmed.to_string()))
}

/// Whether `b` may appear in a route's path: RFC 3986's path characters without `;` (the one
/// that ends a directive in the nginx export, which writes paths into its configuration).
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,=:@/".contains(&b)
}

/// Parses `host[/path]` (an admin's argument) into a canonical route.
pub fn parse_mountpoint(text: &str) -> Result<(String, String), ClaimError> {
    if text.is_empty() || text.starts_with('/') {
        return Err(ClaimError::Invalid {
            mountpoint: text.to_string(),
            reason: "name the host: `host[/path]`".into(),
        });
    }
    match text.find('/') {
        Some(slash) => canonical(&text[..slash], &text[slash..]),
        None => canonical(text, "/"),
    }
}

/// Claims as read from the store (all of them, or those of some hosts), changed in memory and
/// written back with [`Claims::expect`] and [`Claims::ops`] in one compare-and-set.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    /// Host -> (the bytes read, the claims now).
    hosts: BTreeMap<String, (Option<Vec<u8>>, HostClaims)>,
}

fn decode(key: &str, bytes: &[u8]) -> Result<HostClaims, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError(format!("{key}: corrupt value: {e}")))
}

impl Claims {
    /// Every claim.
    pub fn all(store: &dyn Store) -> Result<Claims, StoreError> {
        let mut hosts = BTreeMap::new();
        for (key, value) in store.list(PREFIX)? {
            let host = key[PREFIX.len()..].to_string();
            let claims = decode(&key, &value)?;
            hosts.insert(host, (Some(value), claims));
        }
        Ok(Claims { hosts })
    }

    /// The claims on `hosts` (canonical), as they are now.
    pub fn of_hosts<'a>(
        store: &dyn Store,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Claims, StoreError> {
        let mut out = BTreeMap::new();
        for host in hosts {
            if out.contains_key(host) {
                continue;
            }
            let key = format!("{PREFIX}{host}");
            let raw = store.get(&key)?;
            let claims = match &raw {
                Some(bytes) => decode(&key, bytes)?,
                None => HostClaims::default(),
            };
            out.insert(host.to_string(), (raw, claims));
        }
        Ok(Claims { hosts: out })
    }

    /// Adds the hosts `other` read that `self` has not.
    pub fn merge_missing(&mut self, other: Claims) {
        for (host, entry) in other.hosts {
            self.hosts.entry(host).or_insert(entry);
        }
    }

    /// Who owns `path` on `host` (both canonical).
    pub fn owner(&self, host: &str, path: &str, domains: &[String]) -> Owner {
        if let Some((_, claims)) = self.hosts.get(host)
            && let Some((_, claim)) = most_specific(&claims.paths, path)
        {
            return Owner::Claimed(claim.app.clone());
        }
        match default_owners(host, domains) {
            owners if owners.is_empty() => Owner::Free,
            owners => Owner::Default(owners),
        }
    }

    /// Whether the router serves `app`'s route `host` + `path`: the app owns it by a claim, or
    /// nobody claims it and it is the app's default domain.
    pub fn serves(&self, app: &str, host: &str, path: &str, domains: &[String]) -> bool {
        match self.owner(host, path, domains) {
            Owner::Claimed(owner) => owner == app,
            Owner::Default(owners) => owners.iter().any(|o| o == app),
            Owner::Free => false,
        }
    }

    /// Claims `host` + `path` (canonical; the host must have been read) for `app`, or why not.
    /// Nothing changes when it is refused; an own claim that covers it is enough. Refused when
    /// the most specific claim covering it is another app's, when another app's deployed route
    /// lies under it, or when the host is another app's default domain.
    pub fn claim(
        &mut self,
        app: &str,
        host: &str,
        path: &str,
        domains: &[String],
        now: i64,
    ) -> Result<(), ClaimError> {
        let Some((_, claims)) = self.hosts.get_mut(host) else {
            return Err(ClaimError::Invalid {
                mountpoint: mountpoint(host, path),
                reason: "its host's claims were not read (a bug)".into(),
            });
        };
        let taken = |held: &str, owner: &str| ClaimError::Taken {
            mountpoint: mountpoint(host, path),
            owner: owner.to_string(),
            held: mountpoint(host, held),
        };
        if let Some((held, c)) = most_specific(&claims.paths, path) {
            return if c.app == app {
                Ok(())
            } else {
                Err(taken(held, &c.app))
            };
        }
        // Another app's deployed route under it; an admin's assignment under it is carved out.
        if let Some((held, c)) = claims
            .paths
            .iter()
            .find(|(held, c)| c.app != app && c.assigned_by.is_none() && covers(path, held))
        {
            return Err(taken(held, &c.app));
        }
        let owners = default_owners(host, domains);
        if !owners.is_empty() && !owners.iter().any(|o| o == app) {
            return Err(ClaimError::DefaultDomain {
                mountpoint: mountpoint(host, path),
                host: host.to_string(),
                owner: owners[0].clone(),
            });
        }
        // The app's own narrower claims are now covered by this one.
        claims
            .paths
            .retain(|held, c| !(c.app == app && covers(path, held)));
        claims.paths.insert(
            path.to_string(),
            Claim {
                app: app.to_string(),
                since: now,
                assigned_by: None,
            },
        );
        Ok(())
    }

    /// An admin's assignment of `host` + `path` to `app`: the claims it covers (of any app) are
    /// dropped, the other apps' returned; a broader claim of another app stays, with this path
    /// carved out of it (the router matches the longest prefix).
    pub fn assign(
        &mut self,
        app: &str,
        host: &str,
        path: &str,
        by: &str,
        now: i64,
    ) -> Vec<RouteClaim> {
        let claims = &mut self.hosts.entry(host.to_string()).or_default().1;
        let mut dropped = Vec::new();
        claims.paths.retain(|held, c| {
            let keep = !covers(path, held);
            if !keep && c.app != app {
                dropped.push(listed(host, held, c));
            }
            keep
        });
        claims.paths.insert(
            path.to_string(),
            Claim {
                app: app.to_string(),
                since: now,
                assigned_by: Some(by.to_string()),
            },
        );
        dropped
    }

    /// Drops the claim of exactly `host` + `path`; the claim, if there was one.
    pub fn release(&mut self, host: &str, path: &str) -> Option<Claim> {
        self.hosts.get_mut(host)?.1.paths.remove(path)
    }

    /// Drops every claim of `app` (an app that no longer exists) and keeps only the hosts this
    /// changed, so that [`Claims::expect`] and [`Claims::ops`] are about them alone; the
    /// mountpoints released.
    pub fn release_app(&mut self, app: &str) -> Vec<String> {
        let mut released = Vec::new();
        self.hosts.retain(|host, (_, claims)| {
            let before = claims.paths.len();
            claims.paths.retain(|path, c| {
                let keep = c.app != app;
                if !keep {
                    released.push(mountpoint(host, path));
                }
                keep
            });
            claims.paths.len() != before
        });
        released
    }

    /// The conditions of the compare-and-set: every host read is as it was.
    pub fn expect(&self) -> Vec<Expect> {
        self.hosts
            .iter()
            .map(|(host, (raw, _))| Expect {
                key: format!("{PREFIX}{host}"),
                value: raw.clone(),
            })
            .collect()
    }

    /// The writes that store the claims as they are now (only the hosts that changed).
    pub fn ops(&self) -> Result<Vec<Op>, StoreError> {
        let mut ops = Vec::new();
        for (host, (raw, claims)) in &self.hosts {
            let key = format!("{PREFIX}{host}");
            if claims.paths.is_empty() {
                if raw.is_some() {
                    ops.push(Op::Delete(key));
                }
                continue;
            }
            let op = put_json(&key, claims)?;
            if let Op::Put(_, bytes) = &op
                && raw.as_ref() == Some(bytes)
            {
                continue;
            }
            ops.push(op);
        }
        Ok(ops)
    }

    /// Every claim, by host and path.
    pub fn list(&self) -> Vec<RouteClaim> {
        self.hosts
            .iter()
            .flat_map(|(host, (_, claims))| {
                claims
                    .paths
                    .iter()
                    .map(move |(path, c)| listed(host, path, c))
            })
            .collect()
    }
}

/// The claim `c` of `host` + `path` as the API lists it.
pub fn listed(host: &str, path: &str, c: &Claim) -> RouteClaim {
    RouteClaim {
        mountpoint: mountpoint(host, path),
        host: host.to_string(),
        path: path.to_string(),
        app: c.app.clone(),
        since: c.since,
        assigned_by: c.assigned_by.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains() -> Vec<String> {
        vec!["lain.local".into()]
    }

    fn claims(hosts: &[&str]) -> Claims {
        let mut c = Claims::default();
        for h in hosts {
            c.hosts.insert(h.to_string(), (None, HostClaims::default()));
        }
        c
    }

    #[test]
    fn paths_are_compared_by_whole_segments() {
        assert!(covers("/", "/x"));
        assert!(covers("/api", "/api"));
        assert!(covers("/api", "/api/v2"));
        assert!(!covers("/api", "/apix"));
        assert!(!covers("/api/v2", "/api"));
    }

    #[test]
    fn releasing_an_app_drops_its_claims_only_and_writes_only_the_hosts_it_changed() {
        let d = domains();
        let mut c = claims(&["shop.example.org", "other.example.org"]);
        c.claim("gone", "shop.example.org", "/a", &d, 1)
            .expect("free");
        c.claim("kept", "shop.example.org", "/b", &d, 1)
            .expect("free");
        c.claim("kept", "other.example.org", "/", &d, 1)
            .expect("free");
        let mut released = c.clone();
        assert_eq!(released.release_app("gone"), ["shop.example.org/a"]);
        let ops = released.ops().expect("ops");
        assert_eq!(ops.len(), 1, "only the changed host is written");
        assert_eq!(released.expect().len(), 1);
        assert_eq!(
            released
                .list()
                .iter()
                .map(|r| r.app.as_str())
                .collect::<Vec<_>>(),
            ["kept"]
        );
        assert!(c.clone().release_app("nobody").is_empty());
    }

    #[test]
    fn default_domains_belong_to_their_app() {
        let d = domains();
        assert_eq!(default_owners("appa.lain.local", &d), ["appa"]);
        assert_eq!(default_owners("appa.lain", &d), ["appa"]);
        assert_eq!(
            default_owners("hello.redis.resource.lain.local", &d),
            ["resource.redis.hello"]
        );
        assert!(default_owners("lain.local", &d).is_empty());
        assert!(default_owners("shop.example.org", &d).is_empty());
        assert!(default_owners("xlain.local", &d).is_empty());
    }

    #[test]
    fn a_host_claim_covers_its_paths_and_disjoint_paths_share_a_host() {
        let d = domains();
        let mut c = claims(&["shop.example.org", "appa.lain.local"]);
        c.claim("a", "shop.example.org", "/a", &d, 1).expect("free");
        c.claim("b", "shop.example.org", "/b", &d, 1)
            .expect("disjoint");
        c.claim("a", "shop.example.org", "/a/deeper", &d, 1)
            .expect("its own");
        let taken = c.claim("b", "shop.example.org", "/a/x", &d, 1);
        assert!(
            matches!(&taken, Err(ClaimError::Taken { owner, held, .. }) if owner == "a" && held == "shop.example.org/a"),
            "{taken:?}"
        );
        let whole = c.claim("c", "shop.example.org", "/", &d, 1);
        assert!(matches!(whole, Err(ClaimError::Taken { .. })), "{whole:?}");
        let login = c.claim("evil", "appa.lain.local", "/login", &d, 1);
        assert!(
            matches!(&login, Err(ClaimError::DefaultDomain { owner, .. }) if owner == "appa"),
            "{login:?}"
        );
        c.claim("appa", "appa.lain.local", "/", &d, 1)
            .expect("its own domain");
        assert!(c.serves("b", "shop.example.org", "/b/1", &d));
        assert!(!c.serves("b", "shop.example.org", "/a", &d));
        assert!(c.serves("appa", "appa.lain.local", "/login", &d));
        assert!(!c.serves("evil", "appa.lain.local", "/login", &d));
        assert!(!c.serves("evil", "free.example.org", "/", &d), "unclaimed");
    }

    #[test]
    fn an_assignment_carves_out_of_a_broader_claim_and_beats_the_default_domain() {
        let d = domains();
        let mut c = claims(&["appa.lain.local", "shop.example.org"]);
        c.claim("appa", "appa.lain.local", "/", &d, 1).expect("own");
        c.claim("a", "shop.example.org", "/", &d, 1).expect("free");
        let dropped = c.assign("b", "shop.example.org", "/login", "token:root", 2);
        assert!(dropped.is_empty(), "{dropped:?}");
        assert!(c.serves("b", "shop.example.org", "/login/x", &d));
        assert!(c.serves("a", "shop.example.org", "/", &d), "keeps the rest");
        assert!(
            c.claim("a", "shop.example.org", "/", &d, 3).is_ok(),
            "a redeploy"
        );
        assert!(c.claim("a", "shop.example.org", "/login", &d, 3).is_err());
        let dropped = c.assign("b", "appa.lain.local", "/", "token:root", 4);
        let dropped: Vec<(&str, &str, i64)> = dropped
            .iter()
            .map(|c| (c.mountpoint.as_str(), c.app.as_str(), c.since))
            .collect();
        assert_eq!(dropped, [("appa.lain.local", "appa", 1)]);
        assert!(c.serves("b", "appa.lain.local", "/", &d));
        assert!(!c.serves("appa", "appa.lain.local", "/", &d));
        assert!(c.claim("b", "appa.lain.local", "/x", &d, 5).is_ok());
        assert!(c.release("appa.lain.local", "/").is_some());
        assert!(c.release("appa.lain.local", "/").is_none());
        assert!(
            c.serves("appa", "appa.lain.local", "/", &d),
            "back to its app"
        );
    }

    #[test]
    fn mountpoints_are_canonical_or_refused() {
        assert_eq!(
            parse_mountpoint("Shop.Example.org/a/"),
            Ok(("shop.example.org".into(), "/a".into()))
        );
        assert_eq!(
            parse_mountpoint("shop.example.org"),
            Ok(("shop.example.org".into(), "/".into()))
        );
        for bad in [
            "",
            "/x",
            "a..b",
            "a.org:80",
            "a.org/x/../y",
            "a.org//x",
            "a.org/x y",
            "a.org/x;include /etc/shadow",
            "a.org/x{",
            "a.org/x}",
            "a.org/\"x",
            "a.org/x\\y",
            "a.org/x\ny",
            "a.org/x\u{7f}",
            "a.org/ü",
        ] {
            assert!(parse_mountpoint(bad).is_err(), "{bad}");
        }
    }
}

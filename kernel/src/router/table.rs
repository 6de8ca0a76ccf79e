//! The route table: which instances serve a request, from the deployed web procs' routes (LAIN's
//! mountpoint rules, applied by the `web` proc type) and the instances that are ready.

use super::metrics::RouteStats;
use crate::lifecycle::records::AppRecord;
use crate::lifecycle::route_claims::{Claims, canonical};
use crate::lifecycle::view::InstanceView;
use crate::lifecycle::{Lifecycle, LifecycleError};
use crate::plugin::bindings::types::Probe;
use hyper::http::uri::Authority;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One route: a host and path prefix, and the instances behind it.
#[derive(Clone, Debug)]
pub struct Route {
    /// Path prefix (`/` for the whole host); stripped before proxying unless `/`.
    pub prefix: String,
    /// `app/proc`, for logs and metrics.
    pub target: String,
    /// `host:port` of each ready instance.
    pub backends: Vec<String>,
    /// `backends` as URI authorities, parsed once per table rather than once per request (kept
    /// in step by [`Route::prepare`]).
    pub upstreams: Vec<Authority>,
    /// Redirect plain HTTP to HTTPS.
    pub https_only: bool,
    /// Path the router's active health checks GET on each backend (the proc's `healthcheck`).
    pub health: Option<String>,
    /// Request counters of the route's proc, shared by every route of that proc and kept across
    /// table rebuilds by the router.
    pub stats: Arc<RouteStats>,
}

impl Route {
    /// A route to `target` (`app/proc`) under `prefix`, with fresh counters.
    pub fn new(prefix: &str, target: &str, backends: Vec<String>) -> Route {
        Route {
            prefix: normalise(prefix),
            target: target.to_string(),
            backends,
            upstreams: Vec::new(),
            https_only: false,
            health: None,
            stats: Arc::new(RouteStats::new(target)),
        }
        .prepare()
    }

    /// Recomputes `upstreams` from `backends` (a backend that is not a valid authority is
    /// dropped, with a warning).
    pub fn prepare(mut self) -> Route {
        self.refresh_upstreams();
        self
    }

    /// [`Route::prepare`] in place.
    pub fn refresh_upstreams(&mut self) {
        let mut kept = Vec::with_capacity(self.backends.len());
        self.upstreams.clear();
        for b in self.backends.drain(..) {
            match b.parse::<Authority>() {
                Ok(a) => {
                    self.upstreams.push(a);
                    kept.push(b);
                }
                Err(e) => tracing::warn!(backend = %b, target = %self.target, "router: {e}"),
            }
        }
        self.backends = kept;
    }
}

/// Routes by host, longest prefix first.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    hosts: HashMap<String, Vec<Route>>,
}

impl RouteTable {
    /// The table of what `lc` holds now: the deployed apps, their route claims and the
    /// instances the reconciler saw last.
    pub fn read(lc: &Lifecycle) -> Result<RouteTable, LifecycleError> {
        let apps = lc.apps()?;
        let claims = Claims::all(lc.store())?;
        let (_, instances) = lc.status().snapshot();
        Ok(RouteTable::build(
            &apps,
            &claims,
            &lc.config().domains,
            &instances,
        ))
    }

    /// A table of the given `(host, route)` pairs (benchmarks and tools; the kernel builds its
    /// table with [`RouteTable::build`]).
    pub fn from_routes(routes: impl IntoIterator<Item = (String, Route)>) -> RouteTable {
        let mut hosts: HashMap<String, Vec<Route>> = HashMap::new();
        for (host, mut route) in routes {
            route.prefix = normalise(&route.prefix);
            route.refresh_upstreams();
            hosts
                .entry(host.to_ascii_lowercase())
                .or_default()
                .push(route);
        }
        for routes in hosts.values_mut() {
            routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        }
        RouteTable { hosts }
    }

    /// The table for `apps` given the instances the reconciler saw (by app). Instances that are
    /// not ready, or are being retired, take no traffic. A route is served only for the app that
    /// owns it by `claims` (a deployment in the store that mounts another app's route, e.g. one
    /// made before claims existed, is left out), so no app takes over another's traffic.
    pub fn build(
        apps: &[AppRecord],
        claims: &Claims,
        domains: &[String],
        instances: &BTreeMap<String, Vec<InstanceView>>,
    ) -> RouteTable {
        let mut hosts: HashMap<String, Vec<Route>> = HashMap::new();
        for app in apps {
            let Some(deployed) = &app.deployed else {
                continue;
            };
            let seen = instances.get(&app.name).map_or(&[][..], Vec::as_slice);
            for plan in &deployed.procs {
                if plan.plan.routes.is_empty() {
                    continue;
                }
                let mut backends: Vec<String> = seen
                    .iter()
                    .filter(|i| {
                        i.proc == plan.name && i.ready && !i.retiring && i.state.is_running()
                    })
                    .filter_map(|i| i.url.as_deref().and_then(|u| u.strip_prefix("http://")))
                    .map(str::to_string)
                    .collect();
                backends.sort();
                let health = plan.plan.health.as_ref().and_then(|h| match &h.probe {
                    Probe::Http(p) => Some(p.path.clone()),
                    Probe::Command(_) => None,
                });
                let target = format!("{}/{}", app.name, plan.name);
                let stats = Arc::new(RouteStats::new(&target));
                for r in &plan.plan.routes {
                    let owned = canonical(&r.host, &r.path)
                        .is_ok_and(|(host, path)| claims.serves(&app.name, &host, &path, domains));
                    if !owned {
                        tracing::debug!(app = %app.name, host = %r.host, path = %r.path, "router: a route the app does not own is not served");
                        continue;
                    }
                    hosts.entry(r.host.to_ascii_lowercase()).or_default().push(
                        Route {
                            prefix: normalise(&r.path),
                            target: target.clone(),
                            backends: backends.clone(),
                            upstreams: Vec::new(),
                            https_only: r.https_only,
                            health: health.clone(),
                            stats: stats.clone(),
                        }
                        .prepare(),
                    );
                }
            }
        }
        for routes in hosts.values_mut() {
            routes.sort_by(|a, b| {
                b.prefix
                    .len()
                    .cmp(&a.prefix.len())
                    .then(a.prefix.cmp(&b.prefix))
            });
        }
        RouteTable { hosts }
    }

    /// The route for `host` (port ignored) and `path`: the longest prefix that matches whole path
    /// segments.
    pub fn find(&self, host: &str, path: &str) -> Option<&Route> {
        let host = host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let routes = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.hosts.get(&host.to_ascii_lowercase())?
        } else {
            self.hosts.get(host)?
        };
        routes.iter().find(|r| {
            r.prefix == "/"
                || path == r.prefix
                || path
                    .strip_prefix(&r.prefix)
                    .is_some_and(|rest| rest.starts_with('/'))
        })
    }

    /// Every host with a route.
    pub fn hosts(&self) -> impl Iterator<Item = (&String, &Vec<Route>)> {
        self.hosts.iter()
    }

    /// Every route, mutably (the router swaps in its long-lived counters and filters backends).
    pub fn routes_mut(&mut self) -> impl Iterator<Item = &mut Route> {
        self.hosts.values_mut().flatten()
    }

    /// Every route.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.hosts.values().flatten()
    }
}

/// `/api/` -> `/api`; `` -> `/`.
fn normalise(path: &str) -> String {
    let p = path.trim_end_matches('/');
    if p.is_empty() {
        "/".into()
    } else if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

/// The path sent to the instance: the prefix stripped (LAIN's webrouter did for path
/// mountpoints), always starting with `/`.
pub fn forwarded_path(route: &Route, path_and_query: &str) -> String {
    if route.prefix == "/" {
        return path_and_query.to_string();
    }
    let rest = path_and_query
        .strip_prefix(&route.prefix)
        .unwrap_or(path_and_query);
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(routes: &[(&str, &str)]) -> RouteTable {
        let mut hosts: HashMap<String, Vec<Route>> = HashMap::new();
        for (host, prefix) in routes {
            hosts.entry(host.to_string()).or_default().push(Route::new(
                prefix,
                &format!("{host}{prefix}"),
                vec![],
            ));
        }
        for r in hosts.values_mut() {
            r.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        }
        RouteTable { hosts }
    }

    #[test]
    fn longest_whole_segment_prefix_wins() {
        let t = table(&[
            ("a.lain.local", "/"),
            ("a.lain.local", "/api"),
            ("a.lain.local", "/api/v2/"),
        ]);
        let find = |p: &str| t.find("A.lain.local:8080", p).map(|r| r.prefix.clone());
        assert_eq!(find("/"), Some("/".into()));
        assert_eq!(find("/api"), Some("/api".into()));
        assert_eq!(find("/api/x"), Some("/api".into()));
        assert_eq!(
            find("/apix"),
            Some("/".into()),
            "a prefix matches whole segments"
        );
        assert_eq!(find("/api/v2/users"), Some("/api/v2".into()));
        assert!(t.find("b.lain.local", "/").is_none());
    }

    #[test]
    fn path_prefixes_are_stripped() {
        let r = |prefix: &str| Route::new(prefix, "a/web", vec![]);
        assert_eq!(forwarded_path(&r("/"), "/x?y=1"), "/x?y=1");
        assert_eq!(forwarded_path(&r("/books"), "/books/1?a"), "/1?a");
        assert_eq!(forwarded_path(&r("/books"), "/books"), "/");
        assert_eq!(forwarded_path(&r("/books"), "/books?a=b"), "/?a=b");
    }
}

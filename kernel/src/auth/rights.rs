//! The rights table: which right each API endpoint needs. The one place it is written down;
//! [`crate::api::guard`] enforces it on every request and `docs/permissions.md` shows it (a test
//! keeps the two equal).

use axum::http::Method;

/// What a caller must hold to use an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Right {
    /// Anyone, without credentials.
    Public,
    /// Any authenticated principal.
    Authenticated,
    /// See an app: its maintainers and cluster admins.
    Read,
    /// Change what an app runs (deploy, scale, rollback, undeploy, restart, maintainers) and
    /// run commands in its instances (exec): its
    /// maintainers and cluster admins.
    Operate,
    /// Read and write an app's secret files: its maintainers and cluster admins.
    Secrets,
    /// Read what exporters serve on their pull paths (`/metrics`): cluster admins and the
    /// principals in `[auth] metrics_users` / `metrics_groups`.
    Metrics,
    /// The cluster itself (nodes, plugins, the master key, the audit log): cluster admins.
    Admin,
    /// Register a new app (its first build, which makes the caller its maintainer): cluster
    /// admins and the principals of `[auth] register_users` and `register_groups`. Checked by
    /// the build handler once it has read the app's name; no route needs it alone.
    Register,
}

impl Right {
    /// Its name in the docs and in error messages.
    pub fn name(self) -> &'static str {
        match self {
            Right::Public => "public",
            Right::Authenticated => "authenticated",
            Right::Read => "read",
            Right::Operate => "operate",
            Right::Secrets => "secrets",
            Right::Metrics => "metrics",
            Right::Admin => "admin",
            Right::Register => "register",
        }
    }

    /// Whether the right is held per app (the route names the app in `{app}`).
    pub fn per_app(self) -> bool {
        matches!(self, Right::Read | Right::Operate | Right::Secrets)
    }
}

/// One row of the table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// HTTP method.
    pub method: &'static str,
    /// Route, as the router writes it (`{app}` for the app).
    pub path: &'static str,
    /// The right needed.
    pub right: Right,
    /// Recorded in the audit log (every mutating call, and reads of secret contents).
    pub audited: bool,
}

const fn rule(method: &'static str, path: &'static str, right: Right) -> Rule {
    // Every call that is not a read changes something and is audited.
    let audited = !matches!(method.as_bytes(), b"GET");
    Rule {
        method,
        path,
        right,
        audited,
    }
}

use Right::{Admin, Authenticated, Metrics, Operate, Public, Read, Secrets};

/// The rule of every exporter pull path the operator configures (`[monitor.exporters.<name>]
/// pull`); the table shows it at the default path `/metrics`.
pub const PULL_RULE: Rule = rule("GET", "/metrics", Metrics);

/// Every endpoint of the platform API and the right it needs. `POST /api/v1/builds` names its
/// app inside the build context: the build handler checks `operate` on it once it has read the
/// context, or [`Right::Register`] when the app is new (the caller becomes its first maintainer).
pub const RULES: &[Rule] = &[
    rule("GET", "/healthz", Public),
    rule("GET", "/api/openapi.json", Public),
    rule("GET", "/api/v1/whoami", Authenticated),
    rule("GET", "/api/v1/cluster", Authenticated),
    // Checks a lain.yaml and changes nothing.
    Rule {
        audited: false,
        ..rule("POST", "/api/v1/validate", Authenticated)
    },
    rule("GET", "/api/v1/apps", Authenticated),
    // Each event is filtered by the caller's rights (apps they may read).
    rule("GET", "/api/v1/watch", Authenticated),
    rule("GET", "/api/v1/plugins", Authenticated),
    rule("GET", "/api/v1/plugins/{name}", Authenticated),
    rule("GET", "/api/v1/nodes", Authenticated),
    rule("GET", "/api/v1/scheduler", Authenticated),
    PULL_RULE,
    rule("POST", "/api/v1/builds", Authenticated),
    rule("GET", "/api/v1/apps/{app}", Read),
    rule("GET", "/api/v1/apps/{app}/releases", Read),
    rule("GET", "/api/v1/apps/{app}/procs/{proc}/logs", Read),
    rule("GET", "/api/v1/apps/{app}/volumes", Read),
    rule("GET", "/api/v1/apps/{app}/runs", Read),
    rule(
        "GET",
        "/api/v1/apps/{app}/procs/{proc}/runs/{run}/log",
        Read,
    ),
    rule("GET", "/api/v1/apps/{app}/maintainers", Read),
    rule("POST", "/api/v1/apps/{app}/deploy", Operate),
    rule("POST", "/api/v1/apps/{app}/rollback", Operate),
    rule("DELETE", "/api/v1/apps/{app}", Operate),
    rule("PATCH", "/api/v1/apps/{app}/procs/{proc}", Operate),
    rule("DELETE", "/api/v1/apps/{app}/procs/{proc}", Operate),
    rule("POST", "/api/v1/apps/{app}/procs/{proc}/deploy", Operate),
    rule("POST", "/api/v1/apps/{app}/procs/{proc}/restart", Operate),
    // Runs anything the instance could: the same right as changing what it runs.
    rule("POST", "/api/v1/apps/{app}/procs/{proc}/exec", Operate),
    // The same on a terminal (a WebSocket, so a GET), audited as the POST is.
    Rule {
        audited: true,
        ..rule("GET", "/api/v1/apps/{app}/procs/{proc}/exec/tty", Operate)
    },
    rule(
        "PUT",
        "/api/v1/apps/{app}/maintainers/{kind}/{name}",
        Operate,
    ),
    rule(
        "DELETE",
        "/api/v1/apps/{app}/maintainers/{kind}/{name}",
        Operate,
    ),
    rule("GET", "/api/v1/apps/{app}/secrets", Secrets),
    rule("PUT", "/api/v1/apps/{app}/procs/{proc}/secrets", Secrets),
    Rule {
        audited: true,
        ..rule(
            "GET",
            "/api/v1/apps/{app}/procs/{proc}/secrets/content",
            Secrets,
        )
    },
    rule("DELETE", "/api/v1/apps/{app}/procs/{proc}/secrets", Secrets),
    // Backups hold the app's data: the same right as its secret files.
    rule("GET", "/api/v1/apps/{app}/backups", Secrets),
    rule("POST", "/api/v1/apps/{app}/procs/{proc}/backups", Secrets),
    rule("POST", "/api/v1/apps/{app}/backups/{id}/restore", Secrets),
    rule("DELETE", "/api/v1/apps/{app}/backups/{id}", Secrets),
    // A migration restores backups into the volumes: the same right as a restore.
    rule(
        "POST",
        "/api/v1/apps/{app}/procs/{proc}/volumes/{instance}/migrate",
        Secrets,
    ),
    rule("POST", "/api/v1/plugins", Admin),
    rule("PUT", "/api/v1/plugins/{name}", Admin),
    rule("DELETE", "/api/v1/plugins/{name}", Admin),
    rule("POST", "/api/v1/plugins/{name}/enable", Admin),
    rule("POST", "/api/v1/plugins/{name}/disable", Admin),
    rule("PUT", "/api/v1/plugins/{name}/policy", Admin),
    // A plugin's configuration may hold secrets and grants host files: admins only, audited.
    Rule {
        audited: true,
        ..rule("GET", "/api/v1/plugins/{name}/config", Admin)
    },
    rule("PUT", "/api/v1/plugins/{name}/config", Admin),
    rule("DELETE", "/api/v1/plugins/{name}/config", Admin),
    rule("GET", "/api/v1/proc-types", Authenticated),
    rule("PUT", "/api/v1/proc-types/{type}", Admin),
    rule("DELETE", "/api/v1/proc-types/{type}", Admin),
    rule("POST", "/api/v1/nodes", Admin),
    rule("DELETE", "/api/v1/nodes/{name}", Admin),
    rule("POST", "/api/v1/nodes/{name}/maintain", Admin),
    rule("PUT", "/api/v1/scheduler", Admin),
    // Misfits name instances of every app.
    rule("GET", "/api/v1/scheduler/misfits", Admin),
    // Volumes of every app.
    rule("GET", "/api/v1/volumes", Admin),
    rule("POST", "/api/v1/scheduler/moves", Admin),
    rule("GET", "/api/v1/router/nginx", Admin),
    // Route claims: listed for the apps the caller may read; only admins reassign or release.
    rule("GET", "/api/v1/router/claims", Authenticated),
    rule("GET", "/api/v1/router/streams", Authenticated),
    rule("PUT", "/api/v1/router/claims", Admin),
    rule("DELETE", "/api/v1/router/claims", Admin),
    rule("POST", "/api/v1/secrets/rotate-key", Admin),
    rule("GET", "/api/v1/audit", Admin),
];

/// The rule of `method` on the route `path` (as matched by the router); none means no access.
pub fn rule_for(method: &Method, path: &str) -> Option<&'static Rule> {
    RULES
        .iter()
        .find(|r| r.method == method.as_str() && r.path == path)
}

/// The table as Markdown, as `docs/permissions.md` shows it.
pub fn markdown_table() -> String {
    let mut out = String::from("| Method | Endpoint | Right | Audited |\n|---|---|---|---|\n");
    for r in RULES {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            r.method,
            r.path,
            r.right.name(),
            if r.audited { "yes" } else { "" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_openapi_path_has_a_rule_and_every_rule_a_path() {
        let doc = serde_json::to_value(<crate::api::ApiDoc as utoipa::OpenApi>::openapi())
            .expect("openapi");
        let paths = doc["paths"].as_object().expect("paths");
        for (path, ops) in paths {
            for method in ops.as_object().expect("ops").keys() {
                let m = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("m");
                assert!(rule_for(&m, path).is_some(), "no rule for {method} {path}");
            }
        }
        for r in RULES {
            let op = paths
                .get(r.path)
                .and_then(|ops| ops.get(r.method.to_ascii_lowercase()));
            assert!(
                op.is_some(),
                "{} {} is not in the OpenAPI document",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn the_docs_show_this_table() {
        let docs = include_str!("../../../docs/permissions.md");
        assert!(
            docs.contains(&markdown_table()),
            "docs/permissions.md is out of date; its table must read:\n{}",
            markdown_table()
        );
    }

    #[test]
    fn per_app_rules_name_the_app() {
        for r in RULES {
            assert_eq!(r.right.per_app(), r.path.contains("{app}"), "{r:?}");
        }
    }
}

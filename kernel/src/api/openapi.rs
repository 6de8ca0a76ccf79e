//! The OpenAPI 3 document of the platform API, served at `/api/openapi.json`.
//!
//! Handlers document their own results; [`GuardResponses`] adds what every route can answer
//! before or around its handler, from the rights table: the access guard's 401 and 403, the
//! body limit's 413, the JSON and query extractors' 400, 415 and 422 (as [`ErrorBody`]), and
//! 503 when the state store cannot be read to check access. A test validates the served document with `openapi-spec-validator` and checks
//! every status the API answers in its tests against it.

use super::error::ErrorBody;
use super::{Liveness, WhoAmI};
use crate::auth::rights::{Right, rule_for};
use axum::http::Method;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Ref, ResponseBuilder};

/// The OpenAPI document of the platform API.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "lain platform API", description = "Plugins, apps and the cluster of a lain kernel."),
    paths(
        crate::api::healthz, crate::api::openapi, crate::api::whoami, crate::api::cluster, crate::api::metrics::pull,
        crate::api::secrets::list, crate::api::secrets::put, crate::api::secrets::show,
        crate::api::secrets::remove, crate::api::secrets::rotate_key,
        crate::api::backups::list, crate::api::backups::run, crate::api::backups::restore,
        crate::api::backups::delete,
        crate::api::access::list, crate::api::access::add, crate::api::access::remove,
        crate::api::access::audit,
        crate::api::plugins::list, crate::api::plugins::show, crate::api::plugins::install,
        crate::api::plugins::upgrade, crate::api::plugins::enable, crate::api::plugins::disable,
        crate::api::plugins::set_policy, crate::api::plugins::remove,
        crate::api::plugins::config, crate::api::plugins::configure,
        crate::api::plugins::reset_config, crate::api::plugins::mappings,
        crate::api::plugins::map, crate::api::plugins::unmap,
        crate::api::validate::validate,
        crate::api::apps::build, crate::api::apps::list, crate::api::apps::show,
        crate::api::apps::releases, crate::api::apps::deploy, crate::api::apps::rollback,
        crate::api::apps::undeploy, crate::api::apps::scale, crate::api::apps::logs,
        crate::api::apps::nginx, crate::api::runs::list, crate::api::runs::log,
        crate::api::procs::deploy, crate::api::procs::undeploy, crate::api::procs::restart,
        crate::api::procs::exec, crate::api::terminal::exec_tty,
        crate::api::routes::list, crate::api::routes::assign, crate::api::routes::release,
        crate::api::routes::streams,
        crate::api::nodes::list, crate::api::nodes::add, crate::api::nodes::maintain,
        crate::api::nodes::remove,
        crate::api::scheduler::show, crate::api::scheduler::set, crate::api::scheduler::misfits,
        crate::api::scheduler::request_moves,
        crate::api::volumes::app, crate::api::volumes::list, crate::api::volumes::migrate,
        crate::api::watch::watch,
    ),
    components(schemas(Liveness, WhoAmI, ErrorBody, crate::api::watch::WatchEvent,
        crate::api::terminal::TtyClientMessage, crate::api::procs::ExecEvent)),
    modifiers(&BearerAuth, &UniqueOperationIds, &GuardResponses),
    security(("bearer" = [])),
    tags(
        (name = "plugins", description = "WebAssembly plugins: proc types, scheduling, backup, monitoring, auth"),
        (name = "apps", description = "Apps: builds, deploys, scale, rollback, instances, logs, route claims"),
        (name = "nodes", description = "Nodes instances are scheduled on"),
        (name = "watch", description = "Changes of apps, instances, nodes and plugins as they happen"),
        (name = "scheduler", description = "The scheduling pipeline, changed live, and the instances that no longer fit it"),
        (name = "secrets", description = "Secret files of procs, encrypted at rest"),
        (name = "backups", description = "Volume backups: taken on schedule or on demand, restored, deleted"),
        (name = "access", description = "App maintainers and the audit log"),
        (name = "monitoring", description = "Exporters' output on the pull paths the operator configures"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme every non-public route takes (see `docs/permissions.md`).
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Operation ids from method and path (`get_apps_app_maintainers`): handler names repeat across
/// modules (`list`, `remove`), and OpenAPI wants ids unique.
struct UniqueOperationIds;

impl utoipa::Modify for UniqueOperationIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let words: Vec<&str> = path
                .split('/')
                .map(|s| s.trim_start_matches('{').trim_end_matches('}'))
                .filter(|s| !s.is_empty() && !matches!(*s, "api" | "v1"))
                .collect();
            for (method, op) in operations(item) {
                let id = format!("{}_{}", method.as_str().to_lowercase(), words.join("_"));
                op.operation_id = Some(id.replace(['.', '-'], "_"));
            }
        }
    }
}

/// The responses of the layers around the handlers (see the module docs).
struct GuardResponses;

impl utoipa::Modify for GuardResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            for (method, op) in operations(item) {
                let Some(rule) = rule_for(&method, path) else {
                    continue;
                };
                let mut add = |status: &str, description: String, error_body: bool| {
                    if op.responses.responses.contains_key(status) {
                        return;
                    }
                    let mut response = ResponseBuilder::new().description(description);
                    if error_body {
                        response = response.content(
                            "application/json",
                            utoipa::openapi::ContentBuilder::new()
                                .schema(Some(Ref::from_schema_name("ErrorBody")))
                                .build(),
                        );
                    }
                    op.responses
                        .responses
                        .insert(status.to_string(), response.build().into());
                };
                if rule.right != Right::Public {
                    add(
                        "401",
                        "No or invalid credentials (the access guard; `WWW-Authenticate: Bearer`)"
                            .into(),
                        true,
                    );
                }
                if matches!(
                    rule.right,
                    Right::Read | Right::Operate | Right::Secrets | Right::Admin
                ) {
                    add(
                        "403",
                        format!(
                            "The caller lacks the `{}` right (the access guard)",
                            rule.right.name()
                        ),
                        true,
                    );
                }
                if rule.right.per_app() {
                    add(
                        "503",
                        "The state store could not be read (to check access, or to answer)".into(),
                        true,
                    );
                }
                let query =
                    op.parameters.iter().flatten().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    });
                if query {
                    add(
                        "400",
                        "A query parameter is missing, unknown or not valid".into(),
                        true,
                    );
                }
                let Some(body) = &op.request_body else {
                    continue;
                };
                let json = body.content.contains_key("application/json");
                add(
                    "413",
                    "The body is larger than the route's limit (64 MiB; a secret's body: its size limit)"
                        .into(),
                    false,
                );
                if json {
                    add("400", "The body is not JSON".into(), true);
                    add(
                        "415",
                        "The body is not sent as `Content-Type: application/json`".into(),
                        true,
                    );
                    add(
                        "422",
                        "The JSON does not have the documented shape".into(),
                        true,
                    );
                }
            }
        }
    }
}

/// Every operation of a path item with its method.
fn operations(
    item: &mut utoipa::openapi::path::PathItem,
) -> impl Iterator<Item = (Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
}

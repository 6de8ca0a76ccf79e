//! The platform API: JSON over HTTP, described by an OpenAPI 3 document at `/api/openapi.json`.
//!
//! [`app`] builds the router from an [`AppState`]; tests call it directly with `tower::ServiceExt`,
//! without a socket. Every route passes [`guard::guard`] (authentication, the rights table,
//! the audit log) before its handler.

pub mod access;
pub mod apps;
pub mod backups;
pub mod error;
pub mod guard;
pub mod metrics;
pub mod nodes;
pub mod openapi;
pub mod plugins;
pub mod procs;
pub mod routes;
pub mod runs;
pub mod scheduler;
pub mod secrets;
pub mod terminal;
pub mod trail;
pub mod validate;
pub mod volumes;
pub mod watch;

use crate::auth::{Access, Caller};
use crate::monitor::Monitor;
use crate::plugin::registry::Registry;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, patch, post, put};
use axum::{Extension, Router};
use error::{ApiError, ErrorBody};
use serde::Serialize;
use std::sync::Arc;
use utoipa::OpenApi as _;

pub use openapi::ApiDoc;

pub use axum::Json;

/// Largest request body: a plugin component, base64-encoded.
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Installed and built-in plugins.
    pub registry: Arc<Registry>,
    /// Who may do what, and the audit log.
    pub access: Arc<Access>,
    /// Metrics and exporters.
    pub monitor: Monitor,
    /// Cluster domains.
    pub domains: Vec<String>,
    /// Apps, releases, nodes.
    pub lifecycle: Arc<crate::lifecycle::Lifecycle>,
    /// Volume backups.
    pub backups: Arc<crate::backup::Backups>,
    /// The router (its stream listeners' state).
    pub router: Arc<crate::router::WebRouter>,
    /// This kernel's identity and the leadership.
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// The router of the platform API: the routes below, plus each exporter pull path the operator
/// configured (`[monitor.exporters.<name>] pull`, checked at start not to be one of them).
pub fn app(state: AppState) -> Router {
    let mut router = Router::new();
    for path in state.monitor.pull_paths() {
        router = router.route(&path, get(metrics::pull));
    }
    router
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/watch", get(watch::watch))
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/plugins", get(plugins::list).post(plugins::install))
        .route(
            "/api/v1/plugins/{name}",
            get(plugins::show)
                .put(plugins::upgrade)
                .delete(plugins::remove),
        )
        .route("/api/v1/plugins/{name}/enable", post(plugins::enable))
        .route("/api/v1/plugins/{name}/disable", post(plugins::disable))
        .route("/api/v1/plugins/{name}/policy", put(plugins::set_policy))
        .route(
            "/api/v1/plugins/{name}/config",
            get(plugins::config)
                .put(plugins::configure)
                .delete(plugins::reset_config),
        )
        .route("/api/v1/proc-types", get(plugins::mappings))
        .route(
            "/api/v1/proc-types/{type}",
            put(plugins::map).delete(plugins::unmap),
        )
        .route("/api/v1/validate", post(validate::validate))
        .route("/api/v1/builds", post(apps::build))
        .route("/api/v1/apps", get(apps::list))
        .route("/api/v1/apps/{app}", get(apps::show).delete(apps::undeploy))
        .route("/api/v1/apps/{app}/releases", get(apps::releases))
        .route("/api/v1/apps/{app}/deploy", post(apps::deploy))
        .route("/api/v1/apps/{app}/rollback", post(apps::rollback))
        .route(
            "/api/v1/apps/{app}/procs/{proc}",
            patch(apps::scale).delete(procs::undeploy),
        )
        .route(
            "/api/v1/apps/{app}/procs/{proc}/deploy",
            post(procs::deploy),
        )
        .route(
            "/api/v1/apps/{app}/procs/{proc}/restart",
            post(procs::restart),
        )
        .route("/api/v1/apps/{app}/procs/{proc}/exec", post(procs::exec))
        .route(
            "/api/v1/apps/{app}/procs/{proc}/exec/tty",
            get(terminal::exec_tty),
        )
        .route("/api/v1/apps/{app}/procs/{proc}/logs", get(apps::logs))
        .route("/api/v1/apps/{app}/volumes", get(volumes::app))
        .route("/api/v1/volumes", get(volumes::list))
        .route(
            "/api/v1/apps/{app}/procs/{proc}/volumes/{instance}/migrate",
            post(volumes::migrate),
        )
        .route("/api/v1/apps/{app}/runs", get(runs::list))
        .route(
            "/api/v1/apps/{app}/procs/{proc}/runs/{run}/log",
            get(runs::log),
        )
        .route("/api/v1/router/nginx", get(apps::nginx))
        .route("/api/v1/router/streams", get(routes::streams))
        .route(
            "/api/v1/router/claims",
            get(routes::list)
                .put(routes::assign)
                .delete(routes::release),
        )
        .route(
            "/api/v1/scheduler",
            get(scheduler::show).put(scheduler::set),
        )
        .route("/api/v1/scheduler/misfits", get(scheduler::misfits))
        .route("/api/v1/scheduler/moves", post(scheduler::request_moves))
        .route("/api/v1/nodes", get(nodes::list).post(nodes::add))
        .route("/api/v1/nodes/{name}", delete(nodes::remove))
        .route("/api/v1/nodes/{name}/maintain", post(nodes::maintain))
        .route("/api/v1/apps/{app}/secrets", get(secrets::list))
        .route(
            "/api/v1/apps/{app}/procs/{proc}/secrets",
            put(secrets::put)
                .delete(secrets::remove)
                .layer(DefaultBodyLimit::max(secrets::MAX_SECRET_BODY)),
        )
        .route(
            "/api/v1/apps/{app}/procs/{proc}/secrets/content",
            get(secrets::show),
        )
        .route("/api/v1/secrets/rotate-key", post(secrets::rotate_key))
        .route("/api/v1/apps/{app}/backups", get(backups::list))
        .route(
            "/api/v1/apps/{app}/procs/{proc}/backups",
            post(backups::run),
        )
        .route(
            "/api/v1/apps/{app}/backups/{id}/restore",
            post(backups::restore),
        )
        .route("/api/v1/apps/{app}/backups/{id}", delete(backups::delete))
        .route("/api/v1/apps/{app}/maintainers", get(access::list))
        .route(
            "/api/v1/apps/{app}/maintainers/{kind}/{name}",
            put(access::add).delete(access::remove),
        )
        .route("/api/v1/audit", get(access::audit))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .fallback(no_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Liveness of the kernel (`GET /healthz`; not an instance's health).
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok` when the kernel answers.
    pub status: String,
    /// Kernel version.
    pub version: String,
}

/// Answers while the kernel runs.
#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, body = Liveness)))]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", security(()),
    responses((status = 200, description = "The OpenAPI 3 document of the platform API",
        content_type = "application/json")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Who the caller is, as the auth-provider chain decided.
#[derive(Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct WhoAmI {
    /// User or service id.
    pub subject: String,
    /// Groups.
    pub groups: Vec<String>,
    /// The provider that vouched for the caller.
    pub provider: String,
    /// Unix seconds after which the credentials expire.
    pub expires_at: Option<i64>,
    /// Whether the caller is a cluster admin.
    pub admin: bool,
}

/// Who the caller is, as the local bootstrap or the auth-provider chain decided.
#[utoipa::path(get, path = "/api/v1/whoami", responses(
    (status = 200, body = WhoAmI),
    (status = 401, description = "No or invalid credentials", body = ErrorBody)))]
pub async fn whoami(Extension(caller): Extension<Caller>) -> Json<WhoAmI> {
    let p = caller.principal;
    Json(WhoAmI {
        subject: p.subject,
        groups: p.groups,
        provider: p.provider,
        expires_at: p.expires_at,
        admin: caller.admin,
    })
}

/// This kernel, the cluster it belongs to and who leads it.
#[utoipa::path(get, path = "/api/v1/cluster", responses(
    (status = 200, body = crate::cluster::ClusterStatus),
    (status = 401, description = "No or invalid credentials", body = ErrorBody)))]
pub async fn cluster(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> Json<crate::cluster::ClusterStatus> {
    Json(state.cluster.status(state.lifecycle.status().pass()))
}

/// Anything that is not a route is a 404 saying so.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    ApiError::not_found(format!("no route for {method} {}", uri.path())).into_response()
}

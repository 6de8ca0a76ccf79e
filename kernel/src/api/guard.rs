//! The one gate every API route passes: authenticate, authorize by the rights table, audit.
//!
//! Runs as a route layer, so the router has already matched the route: the rule is looked up by
//! method and route pattern ([`crate::auth::rights::rule_for`]); a route without a rule is refused
//! (fail closed). The handler runs only when the caller holds the right, and sees the [`Caller`]
//! (and, for audited calls, an [`AuditTrail`]) as request extensions.

use super::AppState;
use super::error::ApiError;
use super::trail::{AuditTrail, Handover};
use crate::auth::audit::AuditRecord;
use crate::auth::rights::{PULL_RULE, RULES, Right, rule_for};
use crate::auth::{Caller, Denied, Outcome};
use crate::plugin::limits::within_wall_clock;
use axum::extract::{MatchedPath, RawPathParams, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The middleware: see the module docs.
pub async fn guard(
    State(state): State<AppState>,
    matched: MatchedPath,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    // An exporter's pull path is the operator's, so it is not in the table by name.
    let pull = || {
        (req.method() == axum::http::Method::GET && state.monitor.is_pull_path(matched.as_str()))
            .then_some(&PULL_RULE)
    };
    let Some(rule) = rule_for(req.method(), matched.as_str()).or_else(pull) else {
        let mut allowed: Vec<&str> = RULES
            .iter()
            .filter(|r| r.path == matched.as_str())
            .map(|r| r.method)
            .collect();
        if state.monitor.is_pull_path(matched.as_str()) {
            allowed.push("GET");
        }
        if !allowed.is_empty() {
            // The route exists, the method does not (the router would say 405 too).
            let mut response = ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                format!(
                    "{} is not allowed here: {}",
                    req.method(),
                    allowed.join(", ")
                ),
            )
            .into_response();
            if let Ok(v) = header::HeaderValue::from_str(&allowed.join(", ")) {
                response.headers_mut().insert(header::ALLOW, v);
            }
            return response;
        }
        tracing::error!(route = %matched.as_str(), method = %req.method(), "no access rule: refused");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this route has no access rule",
        )
        .into_response();
    };
    if rule.right == Right::Public {
        return next.run(req).await;
    }
    let app = params
        .iter()
        .find(|(k, _)| *k == "app")
        .map(|(_, v)| v.to_string());
    // Only audited calls pay for a record.
    let mut record = rule.audited.then(|| AuditRecord {
        at_ms: crate::clock::unix_ms(),
        subject: None,
        provider: None,
        action: format!("{} {}", req.method(), rule.path),
        target: req.uri().path().to_string(),
        app: app.clone(),
        status: 0,
        result: String::new(),
        reason: None,
    });
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match decide(&state, authorization, rule.right, app).await {
        Ok(caller) => {
            // Written ahead: a kernel killed during the call leaves a `pending` record.
            let pending = match &mut record {
                Some(r) => {
                    r.subject = Some(caller.principal.subject.clone());
                    r.provider = Some(caller.principal.provider.clone());
                    r.result = "pending".into();
                    audit(&state, None, r.clone()).await
                }
                None => None,
            };
            req.extensions_mut().insert(caller);
            let trail = record
                .as_ref()
                .map(|_| AuditTrail::new(state.access.clone(), state.lifecycle.store_handle()));
            if let Some(trail) = &trail {
                req.extensions_mut().insert(trail.clone());
            }
            let response = next.run(req).await;
            if let (Some(mut r), Some(trail)) = (record, trail) {
                finish(&mut r, &response);
                // A build names its app in its context and may end after its 200 (see `trail`).
                if let Handover::Write(r) = trail.hand_over(r, pending.clone()) {
                    audit(&state, pending, r).await;
                }
            }
            response
        }
        Err((caller, e)) => {
            let mut response = e.into_response();
            if response.status() == StatusCode::UNAUTHORIZED {
                // RFC 6750: say which scheme is expected.
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer realm=\"lain\""),
                );
            }
            if let Some(mut r) = record {
                r.subject = caller.as_ref().map(|c| c.principal.subject.clone());
                r.provider = caller.map(|c| c.principal.provider);
                finish(&mut r, &response);
                audit(&state, None, r).await;
            }
            response
        }
    }
}

/// Fills in the outcome of an audited call from its response.
fn finish(record: &mut AuditRecord, response: &Response) {
    let status = response.status().as_u16();
    record.status = status;
    record.result = match status {
        401 | 403 => "denied",
        s if s < 400 => "ok",
        _ => "failed",
    }
    .into();
}

/// Writes `record` (over the record at `key`, if given); returns its key. The call is not
/// refused when the log cannot be written: that is an operator alarm, logged as an error.
async fn audit(state: &AppState, key: Option<String>, record: AuditRecord) -> Option<String> {
    let access = state.access.clone();
    let store = state.lifecycle.store_handle();
    let written = tokio::task::spawn_blocking(move || match key {
        Some(key) => access.audit.update(&*store, &key, &record).map(|()| key),
        None => access.audit.append(&*store, &record),
    })
    .await;
    match written {
        Ok(Ok(key)) => Some(key),
        other => {
            tracing::error!(?other, "cannot write the audit log");
            None
        }
    }
}

type Refusal = (Option<Caller>, ApiError);

/// Who the caller is and whether they hold `right` (on `app`). The bootstrap token and
/// recently authenticated credentials are decided on this thread; provider plugin calls and
/// maintainer reads (which may block on the store) go to the blocking pool.
async fn decide(
    state: &AppState,
    header: Option<String>,
    right: Right,
    app: Option<String>,
) -> Result<Caller, Refusal> {
    let access = state.access.clone();
    let known = access
        .bootstrap_caller(header.as_deref())
        .or_else(|| access.cached_caller(header.as_deref()));
    let caller = match known {
        Some(caller) => caller,
        None => {
            let wall = state.registry.engine().limits().wall();
            let chain = access.clone();
            let outcome = within_wall_clock(wall, move || chain.authenticate(header.as_deref()))
                .await
                .unwrap_or_else(|cause| Err(Outcome::Denied(format!("auth chain: {cause}"))));
            match outcome {
                Ok(caller) => caller,
                Err(Outcome::Denied(reason)) => {
                    tracing::info!(%reason, "authentication denied");
                    return Err((None, unauthenticated("invalid credentials")));
                }
                Err(_) => {
                    return Err((
                        None,
                        unauthenticated("credentials required: run `lain login`"),
                    ));
                }
            }
        }
    };
    let decided = if right.per_app() && !caller.admin {
        let (access, who) = (access.clone(), caller.clone());
        tokio::task::spawn_blocking(move || access.authorize(&who, right, app.as_deref()))
            .await
            .unwrap_or_else(|e| Err(Denied::Store(crate::store::StoreError(e.to_string()))))
    } else {
        access.authorize(&caller, right, app.as_deref())
    };
    match decided {
        Ok(()) => Ok(caller),
        Err(Denied::Store(e)) => Err((
            Some(caller),
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                format!("cannot check access: {e}"),
            ),
        )),
        Err(denied) => Err((
            Some(caller),
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", denied.to_string()),
        )),
    }
}

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
}

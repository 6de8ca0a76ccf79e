//! The platform API called through its router, without a socket: bad input gets a clear 4xx and
//! changes nothing.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use base64::Engine as _;
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use serde_json::{Value, json};

fn kernel(dir: &std::path::Path) -> Kernel {
    let config = KernelConfig {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        ..KernelConfig::default()
    };
    common::open_kernel(config).expect("kernel opens")
}

async fn call(kernel: &Kernel, method: &str, uri: &str, body: Body) -> (StatusCode, Value) {
    let (status, bytes) =
        common::api_raw(kernel, method, uri, Some(&common::admin(kernel)), body).await;
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn install_body(bytes: &[u8], manifest: Option<&str>) -> Body {
    let component = base64::engine::general_purpose::STANDARD.encode(bytes);
    Body::from(json!({ "component": component, "manifest": manifest }).to_string())
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let before = kernel.registry.list().len();

    let (status, body) = call(&kernel, "POST", "/api/v1/plugins", Body::from("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad-request");

    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/plugins",
        Body::from(r#"{"component": "%%%"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("base64")),
        "{body}"
    );

    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/plugins",
        Body::from(r#"{"component": "", "extra": 1}"#),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");

    let oversized = vec![b'A'; lain::api::MAX_BODY_BYTES + 1];
    let (status, _) = call(&kernel, "POST", "/api/v1/plugins", Body::from(oversized)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    let wrong = "name = \"liar\"\nversion = \"1\"\nkind = \"monitor-exporter\"\n";
    let template = common::fixture(lain_builtin_plugins::fixtures::TEMPLATE);
    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/plugins",
        install_body(&template, Some(wrong)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("wrong-world"))
    );

    let (status, body) = call(
        &kernel,
        "PUT",
        "/api/v1/plugins/web/policy",
        Body::from(r#"{"policy": "sideways"}"#),
    )
    .await;
    assert!(status.is_client_error(), "{status} {body}");

    let (status, body) = call(&kernel, "GET", "/api/v1/plugins/nope", Body::empty()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let (status, _) = call(&kernel, "DELETE", "/api/v1/plugins/nope", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(&kernel, "DELETE", "/api/v1/plugins/web", Body::empty()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("built-in"))
    );

    assert_eq!(kernel.registry.list().len(), before);
    assert!(
        kernel
            .registry
            .show("web")
            .is_some_and(|w| w.enabled && !w.policy_overridden)
    );
}

#[tokio::test]
async fn install_then_show_through_the_router() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let template = common::fixture(lain_builtin_plugins::fixtures::TEMPLATE);
    let (status, body) = call(
        &kernel,
        "POST",
        "/api/v1/plugins",
        install_body(&template, None),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["name"].as_str(), body["kind"].as_str()),
        (Some("cron"), Some("proc-type"))
    );
    let (status, body) = call(&kernel, "GET", "/api/v1/plugins/cron", Body::empty()).await;
    assert_eq!(
        (status, body["builtin"].as_bool()),
        (StatusCode::OK, Some(false))
    );
}

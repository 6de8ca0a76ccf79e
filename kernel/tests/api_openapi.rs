//! The OpenAPI document is true: the served document passes a real validator
//! (`openapi-spec-validator`, installed by `scripts/setup`), its parameters match the router's
//! routes, the answers of the layers around the handlers (guard, body limit, extractors) are
//! documented as they are sent, and schemathesis, fuzzing a kernel served over real HTTP, finds
//! no 5xx and no answer the document does not describe.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use lain::auth::rights::{RULES, Right};
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use serde_json::Value;
use std::process::Command;
use tower::ServiceExt as _;

fn kernel(dir: &std::path::Path) -> Kernel {
    let config = KernelConfig {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        ..KernelConfig::default()
    };
    common::open_kernel(config).expect("kernel opens")
}

/// The document as the kernel serves it.
async fn served(kernel: &Kernel) -> Value {
    let (status, body) =
        common::api_raw(kernel, "GET", "/api/openapi.json", None, Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_slice(&body).expect("JSON")
}

/// The documented statuses of `method` on `path` (a route template).
fn documented(doc: &Value, method: &str, path: &str) -> Vec<String> {
    doc["paths"][path][method.to_ascii_lowercase()]["responses"]
        .as_object()
        .map(|r| r.keys().cloned().collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_served_document_is_valid_openapi_and_matches_the_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let doc = served(&kernel).await;

    let file = dir.path().join("openapi.json");
    std::fs::write(&file, doc.to_string()).expect("write");
    let out = Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openapi-spec-validator (scripts/setup installs it) refused the document:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut ids = std::collections::BTreeSet::new();
    for rule in RULES {
        let op = &doc["paths"][rule.path][rule.method.to_ascii_lowercase()];
        let what = format!("{} {}", rule.method, rule.path);
        assert!(op.is_object(), "{what} is not documented");
        assert!(
            ids.insert(op["operationId"].as_str().unwrap_or_default().to_string()),
            "{what}: operationId not unique"
        );
        // Path parameters are exactly the route's `{...}` segments; the rest are queries.
        let mut in_path: Vec<&str> = rule
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        in_path.sort_unstable();
        let params = op["parameters"].as_array().cloned().unwrap_or_default();
        let mut documented_path: Vec<&str> = params
            .iter()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        documented_path.sort_unstable();
        assert_eq!(documented_path, in_path, "{what}: path parameters");
        for p in params.iter().filter(|p| p["in"] == "path") {
            assert_eq!(p["required"], true, "{what}: {p}");
        }
        let statuses = documented(&doc, rule.method, rule.path);
        let has = |s: &str| statuses.iter().any(|d| d == s);
        if rule.right != Right::Public {
            assert!(has("401"), "{what}: the guard's 401");
        }
        if matches!(
            rule.right,
            Right::Read | Right::Operate | Right::Secrets | Right::Admin
        ) {
            assert!(has("403"), "{what}: the guard's 403");
        }
        if op.get("requestBody").is_some() {
            assert!(has("413"), "{what}: the body limit's 413");
        }
        if params.iter().any(|p| p["in"] == "query") {
            assert!(has("400"), "{what}: a bad query's 400");
        }
    }
    let audit: Vec<(String, String, bool)> = doc["paths"]["/api/v1/audit"]["get"]["parameters"]
        .as_array()
        .expect("audit parameters")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or_default().into(),
                p["in"].as_str().unwrap_or_default().into(),
                p["required"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    for (name, place, required) in &audit {
        assert_eq!(
            (place.as_str(), *required),
            ("query", false),
            "{name}: {audit:?}"
        );
    }
    // `/healthz` answers the kernel's liveness, not an instance's health.
    let health = &doc["paths"]["/healthz"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"]["$ref"];
    let name = health
        .as_str()
        .and_then(|r| r.rsplit('/').next())
        .expect("a schema");
    let schema = &doc["components"]["schemas"][name];
    assert!(
        schema["properties"]["status"].is_object() && schema["properties"]["version"].is_object(),
        "{name}: {schema}"
    );
}

/// Sends a request with its own content type; the status and the body.
async fn send(
    kernel: &Kernel,
    method: &str,
    uri: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    use http_body_util::BodyExt as _;
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", common::admin(kernel))
        .header("content-type", content_type)
        .body(Body::from(body))
        .expect("request");
    let response = lain::api::app(kernel.app_state())
        .oneshot(request)
        .await
        .expect("answer");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn the_answers_around_the_handlers_are_documented_as_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let doc = served(&kernel).await;
    let json = "application/json";
    let secret = "/api/v1/apps/x/procs/web/secrets";
    let huge = vec![b' '; lain::api::secrets::MAX_SECRET_BODY + 1];
    // (method, uri, route template, content type, body, expected status)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Vec<u8>,
        StatusCode,
    );
    let cases: [Case; 7] = [
        (
            "PUT",
            secret,
            "/api/v1/apps/{app}/procs/{proc}/secrets",
            json,
            huge,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "POST",
            "/api/v1/nodes",
            "/api/v1/nodes",
            "text/plain",
            b"{}".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "POST",
            "/api/v1/nodes",
            "/api/v1/nodes",
            json,
            b"{".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "POST",
            "/api/v1/nodes",
            "/api/v1/nodes",
            json,
            b"{\"nam\": 1}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "GET",
            "/api/v1/audit?limit=many",
            "/api/v1/audit",
            json,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "GET",
            "/api/v1/router/nginx?listen=%7B",
            "/api/v1/router/nginx",
            json,
            Vec::new(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "PATCH",
            "/api/v1/nodes",
            "/api/v1/nodes",
            json,
            Vec::new(),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
    ];
    for (method, uri, template, content_type, body, expected) in cases {
        let (status, answer) = send(&kernel, method, uri, content_type, body).await;
        let text = String::from_utf8_lossy(&answer);
        assert_eq!(status, expected, "{method} {uri}: {text}");
        let error: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        if expected != StatusCode::PAYLOAD_TOO_LARGE {
            assert!(
                error["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{method} {uri}: a JSON error body: {text}"
            );
        }
        if expected != StatusCode::METHOD_NOT_ALLOWED {
            let statuses = documented(&doc, method, template);
            assert!(
                statuses.contains(&status.as_u16().to_string()),
                "{method} {template}: {status} is not documented ({statuses:?})"
            );
        }
    }
}

/// schemathesis (scripts/setup installs it) against the API served over real HTTP, as the
/// local bootstrap admin: no 5xx, every status, content type, header and body as documented,
/// and 405 for methods the document does not list. Builds are left out (a tar body cannot be
/// generated, and it would run build scripts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_undocumented_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = lain::api::app(kernel.app_state());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let admin = common::admin(&kernel);
    let work = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("schemathesis")
            .current_dir(&work)
            .args([
                "run",
                &format!("http://{addr}/api/openapi.json"),
                "-H",
                &format!("Authorization: {admin}"),
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,unsupported_method",
                "--phases",
                "examples,coverage,fuzzing,stateful",
                "--max-examples",
                "10",
                "--seed",
                "20261206",
                "--workers",
                "2",
                "--exclude-path",
                "/api/v1/builds",
                "--no-color",
            ])
            .output()
    })
    .await
    .expect("join")
    .expect("schemathesis runs (scripts/setup installs it)");
    server.abort();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every operation but the builds (43 when the plugin configuration and proc-type mapping
    // endpoints came; other endpoints only add to it).
    let tested = stdout
        .split_once("Tested: ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u32>().ok());
    assert!(
        tested.is_some_and(|n| n >= 43),
        "it tested the operations:\n{stdout}"
    );
}

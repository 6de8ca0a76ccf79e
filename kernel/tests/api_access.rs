//! Who may do what, called through the API router without a socket: the whole endpoint x role
//! matrix (every refusal is 401 or 403 and changes nothing in the store), JWTs the `jwt`
//! provider must refuse, secrets that never leave the API in plaintext except to their owners,
//! and bad input to the secret and access endpoints.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine as _;
use hmac::Mac as _;
use lain::auth::rights::{RULES, Right, Rule};
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use serde_json::{Value, json};
use tower::ServiceExt;

const JWT_SECRET: &str = "a-development-secret-that-is-long-enough";
const ISSUER: &str = "https://sso.example.org";

/// A kernel whose `token` provider knows root (group `admins`), alice, bob and a user named
/// `bootstrap`, and whose `jwt` provider takes HS256 tokens of [`ISSUER`] for audience `lain`;
/// alice may register apps.
fn kernel(dir: &std::path::Path) -> Kernel {
    let mut config = common::config(dir);
    common::token_users(
        &mut config,
        &[
            ("root", &["admins"]),
            ("alice", &["dev"]),
            ("bob", &[]),
            ("bootstrap", &[]),
        ],
    );
    // alice may register apps; bob may not (only admins may by default).
    config.auth.register_users = vec!["token:alice".into()];
    config.plugins.config.insert(
        "jwt".into(),
        json!({ "issuer": ISSUER, "audience": "lain", "hs256_secret": JWT_SECRET }),
    );
    common::open_kernel(config).expect("kernel opens")
}

use common::token;

async fn raw(
    kernel: &Kernel,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Body,
) -> (StatusCode, Vec<u8>) {
    common::api_raw(kernel, method, uri, auth, body).await
}

async fn call(
    kernel: &Kernel,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let body = if body.is_null() {
        Body::empty()
    } else {
        Body::from(body.to_string())
    };
    let (status, bytes) = raw(kernel, method, uri, auth, body).await;
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into())),
    )
}

/// Everything in the store but the audit log.
fn snapshot(kernel: &Kernel) -> Vec<(String, Vec<u8>)> {
    kernel
        .store
        .list("")
        .expect("store")
        .into_iter()
        .filter(|(k, _)| !k.starts_with("audit/"))
        .collect()
}

/// A tar holding `lain.yaml`.
fn context(yaml: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, "lain.yaml", yaml.as_bytes())
        .expect("append");
    b.into_inner().expect("tar")
}

const APP: &str = "appname: vault\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100\n  secret_files:\n    - conf/db.toml\n";
const SECRET: &[u8] = b"password = \"correct horse battery staple\"\n";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// alice registers `vault` (so she maintains it) and stores its secret.
async fn setup(kernel: &Kernel) {
    let (status, body) = raw(
        kernel,
        "POST",
        "/api/v1/builds",
        Some(&token("alice")),
        Body::from(context(APP)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&body).contains("\"event\":\"done\""),
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (status, body) = call(
        kernel,
        "PUT",
        "/api/v1/apps/vault/procs/worker/secrets",
        Some(&token("alice")),
        json!({ "path": "/lain/app/conf/db.toml", "content": b64(SECRET) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A request that exercises `rule` on the app `vault`, harmless when allowed.
fn sample(rule: &Rule) -> (String, Value) {
    let uri = rule
        .path
        .replace("{app}", "vault")
        .replace("{proc}", "worker")
        .replace("{kind}", "users")
        .replace("{name}", "nobody")
        .replace("{run}", "1");
    let body = match (rule.method, rule.path) {
        ("PUT", "/api/v1/apps/{app}/procs/{proc}/secrets") => {
            json!({ "path": "/lain/app/other", "content": b64(b"x") })
        }
        ("PATCH", _) => json!({ "num_instances": 1 }),
        ("POST", "/api/v1/plugins") => json!({ "component": b64(b"not wasm") }),
        ("PUT", "/api/v1/plugins/{name}") => json!({ "component": b64(b"not wasm") }),
        ("PUT", "/api/v1/plugins/{name}/policy") => json!({ "policy": "open" }),
        ("POST", "/api/v1/nodes") => json!({ "name": "n9", "address": "local" }),
        _ => Value::Null,
    };
    let uri = match rule.path {
        "/api/v1/apps/{app}/procs/{proc}/secrets" if rule.method == "DELETE" => {
            format!("{uri}?path=/lain/app/none")
        }
        "/api/v1/apps/{app}/procs/{proc}/secrets/content" => {
            format!("{uri}?path=/lain/app/conf/db.toml")
        }
        // A stream that never ends when allowed: a refused kind ends it at once.
        "/api/v1/watch" => format!("{uri}?kinds=none"),
        _ => uri,
    };
    (uri, body)
}

#[tokio::test]
async fn every_endpoint_refuses_every_role_without_the_right_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    let admin_bootstrap = common::admin(&kernel);
    let roles: [(&str, Option<String>); 6] = [
        ("anonymous", None),
        ("forged", Some("Bearer not-a-token-anyone-knows".into())),
        ("outsider", Some(token("bob"))),
        ("maintainer", Some(token("alice"))),
        ("admin", Some(token("root"))),
        ("bootstrap", Some(admin_bootstrap)),
    ];
    let (_, doc) = call(&kernel, "GET", "/api/openapi.json", None, Value::Null).await;
    let mut refused = 0;
    let mut undocumented = Vec::new();
    for rule in RULES {
        for (role, auth) in &roles {
            let allowed = match rule.right {
                Right::Public => true,
                Right::Authenticated => !matches!(*role, "anonymous" | "forged"),
                Right::Read | Right::Operate | Right::Secrets => {
                    matches!(*role, "maintainer" | "admin" | "bootstrap")
                }
                Right::Admin | Right::Register | Right::Metrics => {
                    matches!(*role, "admin" | "bootstrap")
                }
            };
            // Builds name their app inside the context: `vault` exists, so building it needs
            // `operate` on it (a new app would admit any authenticated caller).
            let allowed = if rule.path == "/api/v1/builds" {
                matches!(*role, "maintainer" | "admin" | "bootstrap")
            } else {
                allowed
            };
            let (uri, body) = sample(rule);
            let before = snapshot(&kernel);
            let what = format!("{} {uri} as {role}", rule.method);
            let (status, answer) = if rule.path == "/api/v1/builds" {
                let (s, b) = raw(
                    &kernel,
                    "POST",
                    &uri,
                    auth.as_deref(),
                    Body::from(context(APP)),
                )
                .await;
                let answer = serde_json::from_slice(&b)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&b).into()));
                (s, answer)
            } else {
                call(&kernel, rule.method, &uri, auth.as_deref(), body).await
            };
            // The OpenAPI document describes every answer (finding 19).
            let documented = &doc["paths"][rule.path][rule.method.to_ascii_lowercase()]["responses"]
                [status.as_str()];
            if !documented.is_object() {
                undocumented.push(format!("{what}: {status}"));
            }
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "{what}: refused with {status}: {answer}"
                );
                continue;
            }
            refused += 1;
            let expected = if matches!(*role, "anonymous" | "forged") {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, expected, "{what}: {answer}");
            assert!(
                answer["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{what}: a clear message: {answer}"
            );
            assert!(
                !answer.to_string().contains("correct horse"),
                "{what}: {answer}"
            );
            assert_eq!(before, snapshot(&kernel), "{what} changed the store");
        }
    }
    assert!(
        undocumented.is_empty(),
        "answers the OpenAPI document does not describe: {undocumented:#?}"
    );
    eprintln!("{refused} refusals checked over {} rules", RULES.len());
    assert!(refused > 80, "{refused} refusals checked");

    // Refusals of audited calls are in the audit log, with who tried.
    let (status, log) = call(
        &kernel,
        "GET",
        "/api/v1/audit?subject=bob&limit=1000",
        Some(&token("root")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let bob: Vec<&Value> = log.as_array().expect("records").iter().collect();
    assert!(
        bob.iter()
            .any(|r| r["action"] == "POST /api/v1/apps/{app}/deploy"
                && r["result"] == "denied"
                && r["status"] == 403
                && r["app"] == "vault"),
        "{log:#}"
    );
    assert!(
        bob.iter().all(|r| r["action"] != "GET /api/v1/apps/{app}"),
        "reads are not audited"
    );
}

#[tokio::test]
async fn maintainers_are_the_registrant_then_whom_they_add() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    let (status, m) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault/maintainers",
        Some(&token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, m),
        (
            StatusCode::OK,
            json!({"users": ["token:alice"], "groups": []})
        )
    );

    // bob may not build alice's app, and is told why; nothing is recorded.
    let before = snapshot(&kernel);
    let (status, body) = raw(
        &kernel,
        "POST",
        "/api/v1/builds",
        Some(&token("bob")),
        Body::from(context(&APP.replace("sleep 100", "sleep 200"))),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("operate") && body.contains("vault"), "{body}");
    assert_eq!(before, snapshot(&kernel));
    let (_, apps) = call(
        &kernel,
        "GET",
        "/api/v1/apps",
        Some(&token("bob")),
        Value::Null,
    )
    .await;
    assert_eq!(apps, json!([]), "bob sees no app he may not read");

    // A group makes bob a maintainer once he is in it; alice adds him by name.
    let (status, _) = call(
        &kernel,
        "PUT",
        "/api/v1/apps/vault/maintainers/users/token:bob",
        Some(&token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault/procs/worker/secrets/content?path=/lain/app/conf/db.toml",
        Some(&token("bob")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (who, status) in [("bob", StatusCode::OK), ("alice", StatusCode::CONFLICT)] {
        let (s, body) = call(
            &kernel,
            "DELETE",
            &format!("/api/v1/apps/vault/maintainers/users/token:{who}"),
            Some(&token("alice")),
            Value::Null,
        )
        .await;
        assert_eq!(s, status, "{who}: {body}");
        if who == "alice" {
            let text = body.to_string();
            assert!(text.contains("is the last maintainer of `vault`"), "{text}");
            assert!(text.contains("\"maintainers\""), "{text}");
        }
    }
    let (status, _) = call(
        &kernel,
        "PUT",
        "/api/v1/apps/vault/maintainers/groups/dev",
        Some(&token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, me) = call(
        &kernel,
        "GET",
        "/api/v1/whoami",
        Some(&token("root")),
        Value::Null,
    )
    .await;
    assert_eq!((status, &me["admin"]), (StatusCode::OK, &json!(true)));
    // One record per call, written ahead as `pending` and then completed.
    let (_, log) = call(
        &kernel,
        "GET",
        "/api/v1/audit?subject=alice",
        Some(&token("root")),
        Value::Null,
    )
    .await;
    let records = log.as_array().expect("records");
    let adds: Vec<&Value> = records
        .iter()
        .filter(|r| r["action"] == "PUT /api/v1/apps/{app}/maintainers/{kind}/{name}")
        .collect();
    assert_eq!(adds.len(), 2, "{log:#}");
    assert!(
        adds.iter()
            .all(|r| r["result"] == "ok" && r["status"] == 200)
    );
    assert!(records.iter().all(|r| r["result"] != "pending"), "{log:#}");
    let removals: Vec<(&str, u64)> = records
        .iter()
        .filter(|r| r["action"] == "DELETE /api/v1/apps/{app}/maintainers/{kind}/{name}")
        .map(|r| {
            (
                r["target"].as_str().unwrap_or_default(),
                r["status"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        removals,
        [
            ("/api/v1/apps/vault/maintainers/users/token:alice", 409),
            ("/api/v1/apps/vault/maintainers/users/token:bob", 200)
        ],
        "newest first"
    );
    // Each refusal has its own answer (a typed refusal, not a message matched by the handler).
    for (uri, method, status, needle) in [
        (
            "/api/v1/apps/vault/maintainers/users/token:carol",
            "DELETE",
            StatusCode::NOT_FOUND,
            "`token:carol` is not a maintainer of `vault`",
        ),
        (
            "/api/v1/apps/vault/maintainers/users/carol",
            "PUT",
            StatusCode::BAD_REQUEST,
            "carol",
        ),
        (
            "/api/v1/apps/nope/maintainers/users/token:carol",
            "PUT",
            StatusCode::FORBIDDEN,
            "",
        ),
    ] {
        let (s, body) = call(&kernel, method, uri, Some(&token("alice")), Value::Null).await;
        assert_eq!(s, status, "{method} {uri}: {body}");
        assert!(body.to_string().contains(needle), "{method} {uri}: {body}");
    }
}

/// An HS256 JWT over `header` and `claims`, signed with `secret`.
fn jwt(header: Value, claims: Value, secret: &str) -> String {
    let enc = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let signing_input = format!("{}.{}", enc(&header), enc(&claims));
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(signing_input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{sig}")
}

#[tokio::test]
async fn jwts_are_refused_when_forged_expired_misdirected_or_unsigned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let hs = json!({"alg": "HS256", "typ": "JWT"});
    let claims = |iss: &str, aud: &str, exp: i64| json!({"sub": "carol", "groups": ["admins"], "iss": iss, "aud": aud, "exp": exp, "iat": now - 10});
    let good = jwt(hs.clone(), claims(ISSUER, "lain", now + 600), JWT_SECRET);
    let (status, me) = call(
        &kernel,
        "GET",
        "/api/v1/whoami",
        Some(&format!("Bearer {good}")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(
        (&me["subject"], &me["provider"], &me["admin"]),
        (&json!("carol"), &json!("jwt"), &json!(true))
    );

    let unsigned = {
        let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "{}.{}.",
            enc(json!({"alg": "none", "typ": "JWT"})),
            enc(claims(ISSUER, "lain", now + 600))
        )
    };
    let mut tampered = good.clone();
    tampered.pop();
    tampered.push(if good.ends_with('A') { 'B' } else { 'A' });
    let refused = [
        (
            "wrong signature",
            jwt(
                hs.clone(),
                claims(ISSUER, "lain", now + 600),
                "another-secret-that-is-long-enough",
            ),
        ),
        ("altered signature", tampered),
        (
            "expired",
            jwt(hs.clone(), claims(ISSUER, "lain", now - 3600), JWT_SECRET),
        ),
        (
            "wrong issuer",
            jwt(
                hs.clone(),
                claims("https://evil.example", "lain", now + 600),
                JWT_SECRET,
            ),
        ),
        (
            "wrong audience",
            jwt(hs.clone(), claims(ISSUER, "other", now + 600), JWT_SECRET),
        ),
        ("alg none", unsigned),
        (
            "alg HS512 claimed",
            jwt(
                json!({"alg": "HS512"}),
                claims(ISSUER, "lain", now + 600),
                JWT_SECRET,
            ),
        ),
        ("not a JWT", "a.b.c".to_string()),
    ];
    for (why, token) in refused {
        let before = snapshot(&kernel);
        for (method, uri) in [("GET", "/api/v1/whoami"), ("POST", "/api/v1/nodes")] {
            let body = if method == "POST" {
                json!({"name": "n9", "address": "local"})
            } else {
                Value::Null
            };
            let (status, answer) =
                call(&kernel, method, uri, Some(&format!("Bearer {token}")), body).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{why}: {answer}");
            assert_eq!(answer["error"]["message"], "invalid credentials", "{why}");
        }
        assert_eq!(before, snapshot(&kernel), "{why}");
    }
}

#[tokio::test]
async fn secrets_are_listed_without_content_shown_to_maintainers_and_tampering_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    let alice = token("alice");
    let (status, list) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault/secrets",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["path"], "/lain/app/conf/db.toml");
    assert_eq!(list[0]["size"], SECRET.len());
    assert!(!list.to_string().contains("correct horse"), "{list}");
    assert!(!list.to_string().contains(&b64(SECRET)), "{list}");

    let show = "/api/v1/apps/vault/procs/worker/secrets/content?path=/lain/app/conf/db.toml";
    let (status, bytes) = raw(&kernel, "GET", show, Some(&alice), Body::empty()).await;
    assert_eq!((status, bytes.as_slice()), (StatusCode::OK, SECRET));

    // Every byte the kernel keeps on disk, and every store value: no plaintext.
    for (key, value) in kernel.store.list("").expect("store") {
        assert!(
            !String::from_utf8_lossy(&value).contains("correct horse"),
            "{key} holds the plaintext"
        );
    }
    let mut stack = vec![dir.path().to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                assert!(
                    !bytes.windows(SECRET.len()).any(|w| w == SECRET),
                    "{} holds the plaintext",
                    path.display()
                );
            }
        }
    }

    // A flipped bit in the stored ciphertext: refused as tampering, never returned.
    let (key, value) = kernel
        .store
        .list("secrets/vault/worker/")
        .expect("store")
        .remove(0);
    let mut sealed: Value = serde_json::from_slice(&value).expect("json");
    let data = sealed["data"].as_str().expect("data").to_string();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(&data)
        .unwrap_or_else(|_| hex::decode(&data).expect("hex or base64"));
    bytes[0] ^= 1;
    sealed["data"] = if data.chars().all(|c| c.is_ascii_hexdigit()) {
        json!(hex::encode(&bytes))
    } else {
        json!(base64::engine::general_purpose::STANDARD.encode(&bytes))
    };
    kernel
        .store
        .apply(vec![lain::store::Op::Put(
            key,
            serde_json::to_vec(&sealed).expect("json"),
        )])
        .expect("tamper");
    let (status, answer) = call(&kernel, "GET", show, Some(&alice), Value::Null).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "tampered");
    let (status, answer) = call(
        &kernel,
        "POST",
        "/api/v1/apps/vault/deploy",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn a_deploy_without_its_secret_fails_unless_bypassed_and_rotation_keeps_secrets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    let alice = token("alice");
    let uri = "/api/v1/apps/vault/procs/worker/secrets?path=/lain/app/conf/db.toml";
    let (status, _) = call(&kernel, "DELETE", uri, Some(&alice), Value::Null).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let before = snapshot(&kernel);
    let (status, answer) = call(
        &kernel,
        "POST",
        "/api/v1/apps/vault/deploy",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    let message = answer["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("/lain/app/conf/db.toml")
            && message.contains("lain secret add worker")
            && message.contains("secret_files_bypass"),
        "{message}"
    );
    assert_eq!(
        before,
        snapshot(&kernel),
        "a refused deploy records nothing"
    );

    let bypass = APP.replace(
        "    - conf/db.toml\n",
        "    - conf/db.toml\n  secret_files_bypass: true\n",
    );
    let (status, _) = raw(
        &kernel,
        "POST",
        "/api/v1/builds",
        Some(&alice),
        Body::from(context(&bypass)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, answer) = call(
        &kernel,
        "POST",
        "/api/v1/apps/vault/deploy",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // Rotation: every secret still reads back, under the new key.
    for (proc, path, content) in [
        ("worker", "/lain/app/a", b"first".as_slice()),
        ("worker", "/lain/app/b", b"second".as_slice()),
        ("web", "/etc/app.conf", b"third".as_slice()),
    ] {
        let (status, _) = call(
            &kernel,
            "PUT",
            &format!("/api/v1/apps/vault/procs/{proc}/secrets"),
            Some(&alice),
            json!({"path": path, "content": b64(content)}),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let key_file = dir.path().join("vault.key");
    let old_key = std::fs::read_to_string(&key_file).expect("key");
    let (status, rotated) = call(
        &kernel,
        "POST",
        "/api/v1/secrets/rotate-key",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "maintainers may not rotate: {rotated}"
    );
    let (status, rotated) = call(
        &kernel,
        "POST",
        "/api/v1/secrets/rotate-key",
        Some(&token("root")),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, &rotated["reencrypted"]),
        (StatusCode::OK, &json!(3)),
        "{rotated}"
    );
    assert_ne!(old_key, std::fs::read_to_string(&key_file).expect("key"));
    for (proc, path, content) in [
        ("worker", "/lain/app/a", b"first".as_slice()),
        ("worker", "/lain/app/b", b"second".as_slice()),
        ("web", "/etc/app.conf", b"third".as_slice()),
    ] {
        let (status, bytes) = raw(
            &kernel,
            "GET",
            &format!("/api/v1/apps/vault/procs/{proc}/secrets/content?path={path}"),
            Some(&alice),
            Body::empty(),
        )
        .await;
        assert_eq!((status, bytes.as_slice()), (StatusCode::OK, content));
    }
    let (_, list) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault/secrets",
        Some(&alice),
        Value::Null,
    )
    .await;
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|s| s["key_id"] == rotated["key_id"]),
        "{list}"
    );
}

#[tokio::test]
async fn bad_input_to_secret_and_access_endpoints_gets_a_clear_4xx_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    let alice = token("alice");
    let put = "/api/v1/apps/vault/procs/worker/secrets";
    let huge = vec![b'x'; (1 << 20) + 1];
    let cases: Vec<(&str, String, Body, StatusCode, &str)> = vec![
        (
            "malformed JSON",
            put.into(),
            Body::from("{\"path\": "),
            StatusCode::BAD_REQUEST,
            "",
        ),
        (
            "not an object",
            put.into(),
            Body::from("[1,2]"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "",
        ),
        (
            "unknown field",
            put.into(),
            Body::from(json!({"path": "/a", "content": "", "mode": 1}).to_string()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "mode",
        ),
        (
            "not base64",
            put.into(),
            Body::from(json!({"path": "/lain/app/x", "content": "%%%"}).to_string()),
            StatusCode::BAD_REQUEST,
            "base64",
        ),
        (
            "path traversal",
            put.into(),
            Body::from(json!({"path": "/lain/app/../../etc/passwd", "content": ""}).to_string()),
            StatusCode::BAD_REQUEST,
            "..",
        ),
        (
            "relative path",
            put.into(),
            Body::from(json!({"path": "etc/passwd", "content": ""}).to_string()),
            StatusCode::BAD_REQUEST,
            "absolute",
        ),
        (
            "control character",
            put.into(),
            Body::from(json!({"path": "/lain/app/a\nb", "content": ""}).to_string()),
            StatusCode::BAD_REQUEST,
            "invalid secret path",
        ),
        (
            "content over 1 MiB",
            put.into(),
            Body::from(json!({"path": "/lain/app/big", "content": b64(&huge)}).to_string()),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            "body over the limit",
            put.into(),
            Body::from(vec![b' '; 4 << 20]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (
            "proc name traversal",
            "/api/v1/apps/vault/procs/..%2F..%2Fx/secrets".into(),
            Body::from(json!({"path": "/lain/app/x", "content": ""}).to_string()),
            StatusCode::BAD_REQUEST,
            "not a proc name",
        ),
        (
            "unknown app",
            "/api/v1/apps/nope/procs/worker/secrets".into(),
            Body::from(json!({"path": "/lain/app/x", "content": ""}).to_string()),
            StatusCode::FORBIDDEN,
            "maintainers",
        ),
    ];
    for (why, uri, body, status, needle) in cases {
        let before = snapshot(&kernel);
        let (s, bytes) = raw(&kernel, "PUT", &uri, Some(&alice), body).await;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(s, status, "{why}: {text}");
        assert!(text.contains(needle), "{why}: {text}");
        assert_eq!(before, snapshot(&kernel), "{why}");
    }
    for (why, method, uri, status) in [
        (
            "no path",
            "GET",
            "/api/v1/apps/vault/procs/worker/secrets/content",
            StatusCode::BAD_REQUEST,
        ),
        (
            "traversal in show",
            "GET",
            "/api/v1/apps/vault/procs/worker/secrets/content?path=/lain/app/conf/../conf/db.toml",
            StatusCode::BAD_REQUEST,
        ),
        (
            "traversal in remove",
            "DELETE",
            "/api/v1/apps/vault/procs/worker/secrets?path=/lain/app/conf/./db.toml",
            StatusCode::BAD_REQUEST,
        ),
        (
            "unknown query key",
            "GET",
            "/api/v1/apps/vault/secrets?procs=x",
            StatusCode::BAD_REQUEST,
        ),
        (
            "maintainer kind",
            "PUT",
            "/api/v1/apps/vault/maintainers/admins/x",
            StatusCode::BAD_REQUEST,
        ),
        (
            "maintainer name",
            "PUT",
            "/api/v1/apps/vault/maintainers/users/a%0Ab",
            StatusCode::BAD_REQUEST,
        ),
        (
            "audit limit",
            "GET",
            "/api/v1/audit?limit=lots",
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let before = snapshot(&kernel);
        let auth = if uri.starts_with("/api/v1/audit") {
            token("root")
        } else {
            alice.clone()
        };
        let (s, answer) = call(&kernel, method, uri, Some(&auth), Value::Null).await;
        assert_eq!(s, status, "{why}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.len() > 10),
            "{why}: {answer}"
        );
        assert_eq!(before, snapshot(&kernel), "{why}");
    }
    // Auth headers that are not credentials: 401, never a 500.
    for header in [
        "Bearer".to_string(),
        "Basic YWxpY2U6c2VjcmV0".to_string(),
        format!("Bearer {}", "x".repeat(64 << 10)),
        "Bearer \u{1F600}".to_string(),
    ] {
        let request = Request::builder()
            .uri("/api/v1/whoami")
            .header("authorization", header.as_bytes())
            .body(Body::empty())
            .expect("request");
        let status = lain::api::app(kernel.app_state())
            .oneshot(request)
            .await
            .expect("answer")
            .status();
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{}",
            &header[..header.len().min(20)]
        );
    }
}

#[tokio::test]
async fn remembered_credentials_are_forgotten_when_the_provider_is_disabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let alice = token("alice");
    for _ in 0..2 {
        let (status, me) = call(&kernel, "GET", "/api/v1/whoami", Some(&alice), Value::Null).await;
        assert_eq!((status, &me["subject"]), (StatusCode::OK, &json!("alice")));
    }
    let (status, _) = call(
        &kernel,
        "POST",
        "/api/v1/plugins/token/disable",
        Some(&common::admin(&kernel)),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&kernel, "GET", "/api/v1/whoami", Some(&alice), Value::Null).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled provider vouches for no one"
    );
}

#[tokio::test]
async fn registering_an_app_is_a_right_of_admins_and_the_principals_the_operator_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    let yaml = |name: &str| APP.replace("appname: vault", &format!("appname: {name}"));
    let before = snapshot(&kernel);
    let (status, body) = raw(
        &kernel,
        "POST",
        "/api/v1/builds",
        Some(&token("bob")),
        Body::from(context(&yaml("bobs"))),
    )
    .await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("`register`") && body.contains("register_users"),
        "says which right and who holds it: {body}"
    );
    assert_eq!(
        before,
        snapshot(&kernel),
        "a refused registration records nothing"
    );
    for (who, app) in [("root", "roots"), ("alice", "alices")] {
        let (status, body) = raw(
            &kernel,
            "POST",
            "/api/v1/builds",
            Some(&token(who)),
            Body::from(context(&yaml(app))),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{who}");
        assert!(String::from_utf8_lossy(&body).contains("\"event\":\"done\""));
        let (_, m) = call(
            &kernel,
            "GET",
            &format!("/api/v1/apps/{app}/maintainers"),
            Some(&token(who)),
            Value::Null,
        )
        .await;
        assert_eq!(
            m["users"],
            json!([format!("token:{who}")]),
            "the registrant maintains it"
        );
    }
}

#[tokio::test]
async fn a_subject_means_nothing_without_its_provider() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    // The local bootstrap registers an app: the `token` user named `bootstrap` gets nothing.
    let (status, _) = raw(
        &kernel,
        "POST",
        "/api/v1/builds",
        Some(&common::admin(&kernel)),
        Body::from(context(&APP.replace("appname: vault", "appname: sys"))),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, m) = call(
        &kernel,
        "GET",
        "/api/v1/apps/sys/maintainers",
        Some(&common::admin(&kernel)),
        Value::Null,
    )
    .await;
    assert_eq!(m["users"], json!(["bootstrap:bootstrap"]));
    let (status, body) = call(
        &kernel,
        "GET",
        "/api/v1/apps/sys",
        Some(&token("bootstrap")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("token:bootstrap")),
        "{body}"
    );
    // An SSO user `alice` is not the `token` user `alice` who maintains `vault`.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let sso_alice = jwt(
        json!({"alg": "HS256", "typ": "JWT"}),
        json!({"sub": "alice", "iss": ISSUER, "aud": "lain", "exp": now + 600}),
        JWT_SECRET,
    );
    let (status, body) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault",
        Some(&format!("Bearer {sso_alice}")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A bare subject is refused with what to write instead; nothing changes.
    let before = snapshot(&kernel);
    let (status, body) = call(
        &kernel,
        "PUT",
        "/api/v1/apps/vault/maintainers/users/bob",
        Some(&token("alice")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("token:bob"), "{body}");
    assert_eq!(before, snapshot(&kernel));

    // Maintainers stored before subjects were scoped: rewritten once at start, `bootstrap`
    // for the local bootstrap only, anyone else for each configured provider.
    kernel
        .store
        .apply(vec![
            lain::store::Op::Put(
                "maintainers/vault".into(),
                json!({"users": ["bootstrap", "bob"], "groups": []})
                    .to_string()
                    .into_bytes(),
            ),
            lain::store::Op::Delete("kernel/maintainers-scoped".into()),
        ])
        .expect("legacy record");
    drop(kernel);
    let kernel = self::kernel(dir.path());
    let (_, m) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault/maintainers",
        Some(&token("bob")),
        Value::Null,
    )
    .await;
    assert_eq!(
        m["users"],
        json!(["bootstrap:bootstrap", "jwt:bob", "token:bob"]),
        "{m}"
    );
    let (status, _) = call(
        &kernel,
        "GET",
        "/api/v1/apps/vault",
        Some(&token("bootstrap")),
        Value::Null,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // admin_users name a provider, or the kernel does not start.
    drop(kernel);
    let mut config = KernelConfig {
        data_dir: dir.path().to_path_buf(),
        cache_dir: Some(common::cache_dir()),
        ..KernelConfig::default()
    };
    config.auth.admin_users = vec!["carol".into()];
    let err = format!("{:#}", common::open_kernel(config).err().expect("refused"));
    assert!(
        err.contains("admin_users") && err.contains("token:carol"),
        "{err}"
    );
}

#[tokio::test]
async fn exporters_are_served_only_where_the_operator_says_and_only_to_metrics_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = common::config(dir.path());
    common::token_users(
        &mut config,
        &[
            ("root", &["admins"]),
            ("bob", &[]),
            ("carol", &[]),
            ("dave", &["monitoring"]),
        ],
    );
    config.auth.metrics_users = vec!["token:carol".into()];
    config.auth.metrics_groups = vec!["monitoring".into()];
    config.monitor.exporters.insert(
        "hostile-exporter".into(),
        lain::monitor::ExporterConfig {
            pull: Some("/metrics/hostile".into()),
            push: None,
            interval: 60,
        },
    );
    let kernel = common::open_kernel(config).expect("kernel opens");
    // The exporter asks to be served on an API path, as HTML.
    let manifest = "name = \"hostile-exporter\"\nversion = \"1\"\nkind = \"monitor-exporter\"\n\
                    [config]\npull = \"/api/v1/hostile\"\ncontent_type = \"text/html\"\n";
    kernel
        .registry
        .install(
            &common::fixture(lain_builtin_plugins::fixtures::HOSTILE_EXPORTER),
            Some(manifest),
        )
        .expect("install");

    for auth in [None, Some(token("root")), Some(token("carol"))] {
        let (status, body) = raw(
            &kernel,
            "GET",
            "/api/v1/hostile",
            auth.as_deref(),
            Body::empty(),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{}",
            String::from_utf8_lossy(&body)
        );
    }
    let (status, _) = raw(&kernel, "GET", "/metrics", None, Body::empty()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(&kernel, "GET", "/metrics", Some(&token("bob")), Value::Null).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("`metrics` right")),
        "{body}"
    );
    for reader in ["root", "carol", "dave"] {
        let (status, body) = raw(
            &kernel,
            "GET",
            "/metrics",
            Some(&token(reader)),
            Body::empty(),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{reader}");
        assert!(
            String::from_utf8_lossy(&body).contains("# TYPE lain_plugin_calls_total counter"),
            "{reader}"
        );
    }
    let (status, _) = raw(
        &kernel,
        "GET",
        "/metrics/hostile",
        Some(&token("bob")),
        Body::empty(),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "every pull path needs the right"
    );
    let response = lain::api::app(kernel.app_state())
        .oneshot(
            Request::get("/metrics/hostile")
                .header("authorization", token("carol"))
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("router answers");
    assert_eq!(response.status(), StatusCode::OK);
    let headers = response.headers();
    assert_eq!(
        headers["content-type"], "application/octet-stream",
        "never served as HTML"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn a_resource_instance_is_maintained_by_its_clients_maintainers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = kernel(dir.path());
    setup(&kernel).await;
    // alice maintains `vault`, so she holds the rights on `resource.<res>.vault` (the app does
    // not exist: 404 once authorized); bob holds none.
    for (who, status) in [
        ("alice", StatusCode::NOT_FOUND),
        ("bob", StatusCode::FORBIDDEN),
    ] {
        for path in [
            "/api/v1/apps/resource.cache.vault",
            "/api/v1/apps/resource.cache.vault/maintainers",
        ] {
            let (s, body) = call(&kernel, "GET", path, Some(&token(who)), Value::Null).await;
            assert_eq!(s, status, "{who} {path}: {body}");
        }
    }
}

//! What the API's access control costs per request.
//!
//! Run with `cargo bench -p lain --bench access`. Calls the API router in process (no socket, so
//! the HTTP stack does not hide the difference), in interleaved rounds, and prints p50/p99 per
//! request and the ratio to the floor:
//! - *public*: `GET /healthz`, which the guard lets through without authenticating: the floor;
//! - *bootstrap*: `GET /api/v1/whoami` with the local bootstrap token (a SHA-256 compare);
//! - *token plugin, remembered*: the same with a token of the `token` auth-provider plugin, sent
//!   again and again: the plugin is asked once, then the answer is reused for 10 s;
//! - *jwt plugin, a new token per call*: an HS256 JWT never sent before (a fresh `jti`), so
//!   `token` says not-mine and `jwt` verifies it: two wasm calls on the blocking pool, every time;
//! - *read as maintainer*: `GET /api/v1/apps/bench` with a `token` principal who maintains the
//!   app (authentication, a store read for the maintainers, the handler).
//!
//! Nothing is asserted about speed; the program fails only if a call is refused.

#[path = "../support/mode.rs"]
mod mode;
use anyhow::{Result, bail};
use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use hmac::Mac as _;
use lain::config::KernelConfig;
use lain::kernel::Kernel;
use serde_json::json;
use sha2::Digest as _;
use std::time::Instant;
use tower::ServiceExt;

/// Requests per variant per round.
fn calls_n() -> usize {
    mode::pick(2000, 100)
}
/// Interleaved rounds.
fn rounds_n() -> usize {
    mode::pick(5, 1)
}
const JWT_SECRET: &str = "a-bench-secret-that-is-long-enough";

fn main() -> Result<()> {
    mode::announce("access");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run())
}

async fn run() -> Result<()> {
    let calls = calls_n();
    let rounds = rounds_n();
    let tmp = tempfile::tempdir()?;
    let mut config = KernelConfig {
        data_dir: tmp.path().join("data"),
        ..KernelConfig::default()
    };
    let hash = hex::encode(sha2::Sha256::digest("alice-bench-token-0123"));
    config.plugins.config.insert(
        "token".into(),
        json!({ "tokens": [{ "user": "alice", "sha256": hash }] }),
    );
    config.auth.register_users = vec!["token:alice".into()];
    config.plugins.config.insert(
        "jwt".into(),
        json!({ "issuer": "bench", "audience": "lain", "hs256_secret": JWT_SECRET }),
    );
    let kernel = Kernel::open_with_shim(
        config,
        lain_builtin_plugins::BUILTINS,
        std::path::Path::new(env!("CARGO_BIN_EXE_lain")),
    )?;
    let router = lain::api::app(kernel.app_state());
    let bootstrap = std::fs::read_to_string(tmp.path().join("data/bootstrap.token"))?;
    let alice = "Bearer alice-bench-token-0123".to_string();

    // alice registers `bench`, so she maintains it.
    let yaml = "appname: bench\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 1\n";
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(yaml.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "lain.yaml", yaml.as_bytes())?;
    let build = Request::post("/api/v1/builds")
        .header("authorization", &alice)
        .body(Body::from(tar.into_inner()?))?;
    let resp = router.clone().oneshot(build).await?;
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
    if !String::from_utf8_lossy(&body).contains("\"done\"") {
        bail!("build failed: {}", String::from_utf8_lossy(&body));
    }

    // `Some("")` as the header: a fresh JWT per call.
    let variants: Vec<(&str, &str, Option<String>)> = vec![
        ("public (/healthz)", "/healthz", None),
        (
            "bootstrap token",
            "/api/v1/whoami",
            Some(format!("Bearer {}", bootstrap.trim())),
        ),
        (
            "token plugin, remembered",
            "/api/v1/whoami",
            Some(alice.clone()),
        ),
        (
            "jwt plugin, a new token per call",
            "/api/v1/whoami",
            Some(String::new()),
        ),
        (
            "read as maintainer",
            "/api/v1/apps/bench",
            Some(alice.clone()),
        ),
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}...", round + 1);
        for (i, (name, path, auth)) in variants.iter().enumerate() {
            let fresh: Vec<String> = (0..calls)
                .map(|n| format!("Bearer {}", jwt(round * calls + n)))
                .collect();
            for token in &fresh {
                let mut req = Request::get(*path);
                match auth.as_deref() {
                    Some("") => req = req.header("authorization", token),
                    Some(a) => req = req.header("authorization", a),
                    None => {}
                }
                let req = req.body(Body::empty())?;
                let t = Instant::now();
                let resp = router.clone().oneshot(req).await?;
                let status = resp.status();
                let _ = axum::body::to_bytes(resp.into_body(), 1 << 20).await?;
                samples[i].push(t.elapsed().as_secs_f64() * 1e6);
                if !status.is_success() {
                    bail!("{name}: {status}");
                }
            }
        }
    }
    let stats: Vec<(f64, f64)> = samples
        .iter_mut()
        .map(|s| {
            s.sort_by(f64::total_cmp);
            (s[s.len() / 2], s[s.len() * 99 / 100])
        })
        .collect();
    let floor = stats[0].0;
    println!("| request | p50 µs | p99 µs | p50 vs public | added per request |");
    println!("|---|---|---|---|---|");
    for ((name, _, _), (p50, p99)) in variants.iter().zip(&stats) {
        println!(
            "| {name} | {p50:.1} | {p99:.1} | {:.2}x | {:.1} µs |",
            p50 / floor,
            p50 - floor
        );
    }
    Ok(())
}

/// An HS256 JWT for `alice`, valid for an hour, with `jti` `n`.
fn jwt(n: usize) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let input = format!(
        "{}.{}",
        enc(json!({"alg": "HS256", "typ": "JWT"})),
        enc(json!({"sub": "alice", "iss": "bench", "aud": "lain", "exp": now + 3600, "jti": n}))
    );
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(JWT_SECRET.as_bytes()).expect("any key length");
    mac.update(input.as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{input}.{sig}")
}

//! Shared set-up for the plugin host tests: an engine, built-in plugins, fixtures.
#![allow(dead_code)]

pub mod hostile;

use lain::plugin::bindings::types::Proc;
use lain::plugin::engine::PluginEngine;
use lain::plugin::{Limits, LoadedPlugin, Manifest};
use std::path::PathBuf;
use std::sync::Arc;

/// Where compiled components are cached across test runs (keyed by hash and engine).
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache")
}

/// An engine with the default limits.
pub fn engine() -> Arc<PluginEngine> {
    engine_with(Limits::default())
}

/// An engine with the given limits.
pub fn engine_with(limits: Limits) -> Arc<PluginEngine> {
    PluginEngine::new(limits, Some(cache_dir())).expect("engine starts")
}

/// The bytes of a built-in plugin.
pub fn builtin_bytes(name: &str) -> &'static [u8] {
    lain_builtin_plugins::BUILTINS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| *b)
        .unwrap_or_else(|| panic!("no built-in plugin {name}"))
}

/// A built-in plugin loaded with an operator configuration.
pub fn builtin(
    engine: &Arc<PluginEngine>,
    name: &str,
    config: Option<serde_json::Value>,
) -> Arc<LoadedPlugin> {
    let bytes = builtin_bytes(name);
    let manifest = Manifest::embedded(bytes)
        .expect("manifest parses")
        .expect("manifest embedded");
    Arc::new(
        LoadedPlugin::load(engine, manifest, bytes, true, config.as_ref()).expect("built-in loads"),
    )
}

/// A fixture component's bytes.
pub fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A fixture loaded as a plugin.
pub fn fixture_plugin(engine: &Arc<PluginEngine>, path: &str) -> Arc<LoadedPlugin> {
    let bytes = fixture(path);
    let manifest = Manifest::embedded(&bytes)
        .expect("manifest parses")
        .expect("manifest embedded");
    Arc::new(LoadedPlugin::load(engine, manifest, &bytes, false, None).expect("fixture loads"))
}

/// A proc of type `ty` in app `bookshelf` with LAIN's defaults, a command and an image.
pub fn proc(name: &str, ty: &str) -> Proc {
    Proc {
        image: "bookshelf:release-1".into(),
        cmd: Some(vec!["/bin/server".into()]),
        ..Proc::with_lain_defaults("bookshelf", name, ty)
    }
}

/// `Bearer <the kernel's local bootstrap token>`: the cluster admin of an embedded kernel.
pub fn admin(kernel: &lain::kernel::Kernel) -> String {
    let file = kernel.access.bootstrap_file().expect("local bootstrap on");
    let token = std::fs::read_to_string(file).expect("bootstrap token");
    format!("Bearer {}", token.trim())
}

/// Calls the API router of `kernel` without a socket, sending `authorization` (none:
/// anonymous); the status and the body's bytes.
pub async fn api_raw(
    kernel: &lain::kernel::Kernel,
    method: &str,
    uri: &str,
    authorization: Option<&str>,
    body: axum::body::Body,
) -> (axum::http::StatusCode, Vec<u8>) {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let mut request = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(a) = authorization {
        request = request.header("authorization", a);
    }
    let response = lain::api::app(kernel.app_state())
        .oneshot(request.body(body).expect("request"))
        .await
        .expect("router answers");
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, bytes.to_vec())
}

/// A kernel on `config` with the built-in plugins, whose process runtime runs the built `lain`
/// binaries as its shims and sandbox init (a test's own executable is the test harness, and
/// `Kernel::open` would look for them next to it).
pub fn open_kernel(config: lain::config::KernelConfig) -> anyhow::Result<lain::kernel::Kernel> {
    lain::kernel::Kernel::open_with_shim(
        config,
        lain_builtin_plugins::BUILTINS,
        std::path::Path::new(env!("CARGO_BIN_EXE_lain")),
    )
}

/// A kernel configuration on the data dir `dir`, with the tests' shared plugin cache.
pub fn config(dir: &std::path::Path) -> lain::config::KernelConfig {
    lain::config::KernelConfig {
        data_dir: dir.to_path_buf(),
        cache_dir: Some(cache_dir()),
        ..lain::config::KernelConfig::default()
    }
}

/// Makes the `token` provider know `users` (name, groups), each with the token
/// [`token`]`(name)` sends.
pub fn token_users(config: &mut lain::config::KernelConfig, users: &[(&str, &[&str])]) {
    use sha2::Digest as _;
    let tokens: Vec<serde_json::Value> = users
        .iter()
        .map(|(user, groups)| {
            let hash = hex::encode(sha2::Sha256::digest(format!("{user}-token-0123456789")));
            serde_json::json!({ "user": user, "groups": groups, "sha256": hash })
        })
        .collect();
    config
        .plugins
        .config
        .insert("token".into(), serde_json::json!({ "tokens": tokens }));
}

/// The `Authorization` header of a user [`token_users`] made.
pub fn token(user: &str) -> String {
    format!("Bearer {user}-token-0123456789")
}

/// A build context (a tar) holding `files` (name, text), each 0644.
pub fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, text) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        b.append_data(&mut header, name, text.as_bytes())
            .expect("append");
    }
    b.into_inner().expect("tar")
}

//! Shared set-up for the plugin host tests: an engine, built-in plugins, fixtures.
#![allow(dead_code)]

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

/// A proc with LAIN's defaults, of type `ty`.
pub fn proc(name: &str, ty: &str) -> Proc {
    Proc {
        app: "bookshelf".into(),
        name: name.into(),
        proc_type: ty.into(),
        image: "bookshelf:release-1".into(),
        entrypoint: None,
        cmd: Some(vec!["/bin/server".into()]),
        user: None,
        workdir: None,
        env: vec![],
        num_instances: 1,
        cpu: 0,
        memory: 32 << 20,
        ports: vec![],
        stream_ports: vec![],
        mountpoints: vec![],
        https_only: None,
        healthcheck: None,
        container_healthcheck: None,
        healthcheck_disabled: false,
        volumes: vec![],
        logs: vec![],
        secret_files: vec![],
        secret_files_bypass: false,
        stateful: false,
        setup_time: 0,
        kill_timeout: 10,
        labels: vec![],
        filters: vec![],
        service_name: None,
        allow_clients: None,
        extra: "{}".into(),
    }
}

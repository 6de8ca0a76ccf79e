//! The registry: install, list, enable, disable, upgrade, remove; persistence; upgrades under load.

mod common;

use common::{cache_dir, fixture};
use lain::plugin::bindings::types::{AppContext, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::registry::Registry;
use lain::plugin::{Cause, FailurePolicy, InstallError, Kind, Limits};
use lain::store::Store;
use lain::store::embedded::EmbeddedStore;
use lain_builtin_plugins::{BUILTINS, fixtures};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn open(dir: &Path, config: BTreeMap<String, serde_json::Value>) -> Registry {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.join("state.redb")).expect("store"));
    let engine = PluginEngine::new(Limits::default(), Some(cache_dir())).expect("engine");
    Registry::open(engine, store, BUILTINS, config).expect("registry")
}

fn hostile_manifest(version: &str) -> String {
    format!(
        "name = \"hostile\"\nversion = \"{version}\"\nkind = \"proc-type\"\n[config]\nversion = \"{version}\"\n"
    )
}

fn proc(name: &str) -> Proc {
    common::proc(name, "hostile")
}

fn ctx() -> AppContext {
    AppContext {
        app: "a".into(),
        app_domain: "a".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn hostile_version(registry: &Registry) -> String {
    let plugin = registry
        .get("hostile")
        .expect("installed")
        .expect("enabled");
    let plan = ProcTypePlugin(&plugin)
        .render(&proc("fine"), &ctx())
        .expect("render");
    plan.env
        .into_iter()
        .find(|e| e.name == "HOSTILE_VERSION")
        .map(|e| e.value)
        .unwrap_or_default()
}

#[test]
fn builtins_are_listed_as_builtin_and_cannot_be_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path(), BTreeMap::new());
    let list = registry.list();
    let names: Vec<&str> = list.iter().map(|p| p.name.as_str()).collect();
    for name in [
        "web",
        "worker",
        "oneshot",
        "portal",
        "spread",
        "constraint",
        "resources",
        "archive",
        "prometheus",
        "graphite",
        "token",
        "jwt",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(list.iter().all(|p| p.builtin && p.enabled));
    assert_eq!(registry.show("jwt").expect("jwt").kind, Kind::AuthProvider);
    assert!(matches!(
        registry.remove("web"),
        Err(InstallError::BuiltIn(..))
    ));
    let view = registry.set_enabled("web", false).expect("disable");
    assert!(!view.enabled);
    assert!(matches!(registry.get("web"), Some(Err(Cause::Disabled))));
}

#[test]
fn installed_plugins_and_their_state_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let registry = open(dir.path(), BTreeMap::new());
        let view = registry
            .install(&fixture(fixtures::TEMPLATE), None)
            .expect("install");
        assert_eq!(
            (view.name.as_str(), view.kind, view.builtin),
            ("cron", Kind::ProcType, false)
        );
        registry
            .set_policy("cron", Some(FailurePolicy::Open))
            .expect("policy");
        registry
            .set_enabled("spread", false)
            .expect("disable built-in");
        assert!(matches!(
            registry.install(&fixture(fixtures::TEMPLATE), None),
            Err(InstallError::Conflict(_))
        ));
    }
    let registry = open(dir.path(), BTreeMap::new());
    let cron = registry.show("cron").expect("cron survived");
    assert!(cron.enabled && cron.policy_overridden && cron.health.policy == FailurePolicy::Open);
    assert!(
        !registry.show("spread").expect("spread").enabled,
        "disabled built-in stays disabled"
    );
    registry.remove("cron").expect("remove");
    drop(registry);
    let registry = open(dir.path(), BTreeMap::new());
    assert!(registry.show("cron").is_none(), "removal is durable");
}

#[test]
fn refused_installs_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path(), BTreeMap::new());
    let before = registry.list().len();
    let store = EmbeddedStore::open(&dir.path().join("other.redb")).expect("store");
    drop(store);
    assert!(matches!(
        registry.install(b"\0asm\x01\0\0\0", None),
        Err(InstallError::NotAComponent(_))
    ));
    assert!(matches!(
        registry.install(b"not wasm at all", None),
        Err(InstallError::NotAComponent(_))
    ));
    assert!(matches!(
        registry.install(&fixture(fixtures::FORBIDDEN_IMPORT), None),
        Err(InstallError::ForbiddenImport { .. })
    ));
    let wrong = "name = \"liar\"\nversion = \"1\"\nkind = \"auth-provider\"\n";
    assert!(matches!(
        registry.install(&fixture(fixtures::TEMPLATE), Some(wrong)),
        Err(InstallError::WrongWorld { .. })
    ));
    assert!(matches!(
        registry.install(&fixture(fixtures::TEMPLATE), Some("kind = 3")),
        Err(InstallError::BadManifest(_))
    ));
    assert_eq!(registry.list().len(), before);
    assert!(registry.show("liar").is_none());
}

#[test]
fn upgrade_swaps_atomically_and_loses_no_call_in_flight() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(open(dir.path(), BTreeMap::new()));
    let hostile = fixture(fixtures::HOSTILE);
    registry
        .install(&hostile, Some(&hostile_manifest("1")))
        .expect("install v1");
    assert_eq!(hostile_version(&registry), "1");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..4)
        .map(|_| {
            let (registry, stop, done) = (registry.clone(), stop.clone(), done.clone());
            std::thread::spawn(move || -> Result<Vec<String>, String> {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let plugin = registry
                        .get("hostile")
                        .ok_or("vanished")?
                        .map_err(|e| e.to_string())?;
                    // `slow-ok` busy-works ~50 ms, so the upgrade lands while calls are in flight.
                    let plan = ProcTypePlugin(&plugin)
                        .render(&proc("slow-ok"), &ctx())
                        .map_err(|e| e.to_string())?;
                    let v = plan
                        .env
                        .into_iter()
                        .find(|e| e.name == "HOSTILE_VERSION")
                        .ok_or("no version")?
                        .value;
                    seen.push(v);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(seen)
            })
        })
        .collect();
    while done.load(Ordering::Relaxed) < 8 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let view = registry
        .upgrade("hostile", &hostile, Some(&hostile_manifest("2")))
        .expect("upgrade");
    assert_eq!(view.version, "2");
    let after = done.load(Ordering::Relaxed);
    while done.load(Ordering::Relaxed) < after + 8 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    let mut versions = Vec::new();
    for caller in callers {
        versions.extend(caller.join().expect("thread").expect("no call failed"));
    }
    assert!(
        versions.iter().any(|v| v == "1") && versions.iter().any(|v| v == "2"),
        "{versions:?}"
    );
    assert_eq!(hostile_version(&registry), "2");
    let kind_change = "name = \"hostile\"\nversion = \"3\"\nkind = \"auth-provider\"\n";
    assert!(matches!(
        registry.upgrade("hostile", &hostile, Some(kind_change)),
        Err(InstallError::Conflict(_))
    ));
    assert!(matches!(
        registry.upgrade("web", &hostile, None),
        Err(InstallError::BuiltIn(..))
    ));
}

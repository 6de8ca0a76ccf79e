//! The registry: install, list, enable, disable, upgrade, remove; persistence; upgrades under load.

mod common;

use common::{cache_dir, fixture};
use lain::plugin::bindings::types::{AppContext, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::registry::Registry;
use lain::plugin::{Cause, FailurePolicy, InstallError, Kind, Limits};
use lain::spec::{PluginProcTypes, ProcTypes};
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
        "dump-first",
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

/// A manifest for the hostile component under `name` that says it serves `ty`.
fn squatter(name: &str, ty: &str) -> String {
    format!("name = \"{name}\"\nversion = \"1\"\nkind = \"proc-type\"\n[config]\ntype = \"{ty}\"\n")
}

fn conflict(result: Result<lain::plugin::registry::PluginView, InstallError>) -> String {
    match result {
        Err(InstallError::Conflict(m)) => m,
        other => panic!("expected a conflict, got {:?}", other.map(|v| v.name)),
    }
}

#[test]
fn one_plugin_per_proc_type_and_built_in_types_cannot_be_claimed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path(), BTreeMap::new());
    let hostile = fixture(fixtures::HOSTILE);
    // `zz-worker` sorts after `worker`: before, it took every app's worker procs.
    let err = conflict(registry.install(&hostile, Some(&squatter("zz-worker", "worker"))));
    assert!(
        err.contains("proc type `worker`") && err.contains("built-in plugin `worker`"),
        "{err}"
    );
    for keyword in ["proc", "service", "build"] {
        let err = conflict(registry.install(&hostile, Some(&squatter("zz", keyword))));
        assert!(err.contains("a key of lain.yaml"), "{keyword}: {err}");
    }
    // A type served by an installed plugin is refused naming it.
    registry
        .install(&fixture(fixtures::TEMPLATE), None)
        .expect("cron");
    let err = conflict(registry.install(&hostile, Some(&squatter("zz-cron", "cron"))));
    assert!(err.contains("served by plugin `cron`"), "{err}");
    assert!(registry.show("zz-worker").is_none() && registry.show("zz-cron").is_none());
    // A disabled holder serves nothing: the type is free, and the holder is then refused when
    // enabled again.
    registry.set_enabled("cron", false).expect("disable");
    registry
        .install(&hostile, Some(&squatter("zz-cron", "cron")))
        .expect("cron is free");
    let err = conflict(registry.set_enabled("cron", true));
    assert!(err.contains("served by plugin `zz-cron`"), "{err}");
    assert!(!registry.show("cron").expect("cron").enabled);
    // An upgrade that claims a taken type is refused too, and the old version keeps serving.
    let err = conflict(registry.upgrade("zz-cron", &hostile, Some(&squatter("zz-cron", "web"))));
    assert!(err.contains("built-in plugin `web`"), "{err}");
    assert_eq!(registry.show("zz-cron").expect("kept").version, "1");
}

#[test]
fn the_operator_reassigns_types_with_proc_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let overrides = BTreeMap::from([("worker".to_string(), "my-worker".to_string())]);
    let registry = open(dir.path(), BTreeMap::new()).with_proc_types(overrides.clone());
    let hostile = fixture(fixtures::HOSTILE);
    registry
        .install(&hostile, Some(&squatter("my-worker", "worker")))
        .expect("the operator chose it");
    let err = conflict(registry.install(&hostile, Some(&squatter("zz-worker", "worker"))));
    assert!(
        err.contains("assigned type `worker` to plugin `my-worker`"),
        "{err}"
    );
    let types = PluginProcTypes::new(registry.enabled(Kind::ProcType), &overrides).expect("types");
    assert_eq!(types.plugin("worker").map(|p| p.name()), Some("my-worker"));
}

#[test]
fn a_store_written_before_the_rules_lets_no_plugin_take_another_type() {
    // Loaded directly, as the registry loads records it finds in the store.
    let engine = PluginEngine::new(Limits::default(), Some(cache_dir())).expect("engine");
    let load = |name: &str, ty: &str| {
        let bytes = fixture(fixtures::HOSTILE);
        let manifest = lain::plugin::Manifest::parse(&squatter(name, ty)).expect("manifest");
        Arc::new(
            lain::plugin::LoadedPlugin::load(&engine, manifest, &bytes, false, None).expect("load"),
        )
    };
    let builtin = |name: &str| {
        let bytes = BUILTINS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("built-in")
            .1;
        let manifest = lain::plugin::Manifest::embedded(bytes)
            .expect("parses")
            .expect("embedded");
        Arc::new(
            lain::plugin::LoadedPlugin::load(&engine, manifest, bytes, true, None).expect("load"),
        )
    };
    let plugins = vec![
        builtin("worker"),
        load("zz-worker", "worker"),
        load("a-cron", "cron"),
        load("b-cron", "cron"),
    ];
    let types = PluginProcTypes::new(plugins, &BTreeMap::new()).expect("types");
    assert_eq!(types.plugin("worker").map(|p| p.name()), Some("worker"));
    assert!(
        types.plugin("cron").is_none(),
        "a contested type is served by neither"
    );
    let problems = types
        .validate("cron", &proc("nightly"), &ctx())
        .expect("call")
        .expect_err("refused");
    assert!(
        problems[0]
            .message
            .contains("claimed by plugins a-cron and b-cron"),
        "{}",
        problems[0].message
    );
}

#[test]
fn manifests_are_bounded_at_install_and_when_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path(), BTreeMap::new());
    let hostile = fixture(fixtures::HOSTILE);
    let head = "name = \"big\"\nversion = \"1\"\nkind = \"proc-type\"\n";
    let cases = [
        (
            format!("{head}description = \"{}\"\n", "d".repeat(40 << 20)),
            "more than the 65536 allowed",
        ),
        (
            format!(
                "{head}[config]\n{}",
                (0..1_500_000)
                    .map(|i| format!("k{i}=1\n"))
                    .collect::<String>()
            ),
            "more than the 65536 allowed",
        ),
        (
            format!(
                "{head}[config]\n{}",
                (0..600).map(|i| format!("k{i}=1\n")).collect::<String>()
            ),
            "more than 512 values",
        ),
        (
            format!("{head}description = \"{}\"\n", "d".repeat(500)),
            "description is 500 characters",
        ),
    ];
    for (text, expected) in &cases {
        let started = std::time::Instant::now();
        match registry.install(&hostile, Some(text)) {
            Err(InstallError::BadManifest(m)) => assert!(m.contains(expected), "{m}"),
            other => panic!("expected a bad manifest, got {:?}", other.map(|v| v.name)),
        }
        assert!(
            started.elapsed().as_secs() < 5,
            "took {:?}",
            started.elapsed()
        );
    }
    assert!(registry.show("big").is_none());
    drop(registry);

    // A record stored before the bounds (40 KiB of description) is left out when read back.
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).expect("store"));
    let mut manifest = lain::plugin::Manifest::embedded(&hostile)
        .expect("parses")
        .expect("embedded");
    manifest.name = "old".into();
    manifest.description = "d".repeat(40 << 10);
    let sha = lain::plugin::loaded::sha256_hex(&hostile);
    let record = serde_json::json!({
        "manifest": manifest, "sha256": sha, "builtin": false, "enabled": true,
        "policy": null, "installed_at": 0,
    });
    store
        .apply(vec![
            lain::store::Op::Put(format!("plugins/blobs/{sha}"), hostile.clone()),
            lain::store::Op::Put(
                "plugins/records/old".into(),
                serde_json::to_vec(&record).expect("json"),
            ),
        ])
        .expect("write");
    drop(store);
    let registry = open(dir.path(), BTreeMap::new());
    assert!(
        registry.show("old").is_none(),
        "an unbounded stored manifest is not loaded"
    );
}

#[test]
fn show_says_which_files_are_asked_for_and_which_are_granted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BTreeMap::from([(
        "asker".to_string(),
        serde_json::json!({ "files": { "jwks": "/etc/lain/jwks.json" } }),
    )]);
    let registry = open(dir.path(), config);
    let manifest = "name = \"asker\"\nversion = \"1\"\nkind = \"proc-type\"\n[config]\ntype = \"asker\"\n\
                    [files]\njwks = \"the keys tokens are signed with\"\nca = \"the CA to trust\"\n";
    let view = registry
        .install(&fixture(fixtures::HOSTILE), Some(manifest))
        .expect("install");
    assert_eq!(view.files_requested.len(), 2);
    assert_eq!(view.files_requested["ca"], "the CA to trust");
    assert_eq!(
        view.files_granted,
        BTreeMap::from([("jwks".to_string(), "/etc/lain/jwks.json".to_string())])
    );
}

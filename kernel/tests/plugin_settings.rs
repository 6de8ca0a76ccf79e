//! Live administration of plugins: per-plugin limits, operator settings changed through the
//! registry (tried, kept, applied without a restart), the proc-type mapping, downgrades, what
//! `show` says, and errors that name real WIT functions.

mod common;

use common::{cache_dir, fixture};
use lain::plugin::bindings::types::{AppContext, Proc};
use lain::plugin::engine::PluginEngine;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::kinds::scheduler::LiveScheduler;
use lain::plugin::registry::{ConfigChange, Registry};
use lain::plugin::{Cause, InstallError, Kind, Limits};
use lain::spec::PluginProcTypes;
use lain::store::Store;
use lain::store::embedded::EmbeddedStore;
use lain_builtin_plugins::{BUILTINS, fixtures};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn open_with(
    dir: &Path,
    limits: Limits,
    config: BTreeMap<String, Value>,
    proc_types: BTreeMap<String, String>,
) -> Registry {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.join("state.redb")).expect("store"));
    let engine = PluginEngine::new(limits, Some(cache_dir())).expect("engine");
    Registry::open(engine, store, BUILTINS, config)
        .expect("registry")
        .with_proc_types(proc_types)
}

fn open(dir: &Path) -> Registry {
    open_with(dir, Limits::default(), BTreeMap::new(), BTreeMap::new())
}

/// A manifest for the hostile fixture; its plans report `version` in `HOSTILE_VERSION`.
fn manifest(name: &str, version: &str) -> String {
    format!(
        "name = \"{name}\"\nversion = \"{version}\"\nkind = \"proc-type\"\n[config]\nversion = \"{version}\"\n"
    )
}

fn ctx() -> AppContext {
    AppContext {
        app: "a".into(),
        app_domain: "a".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    }
}

fn proc(name: &str) -> Proc {
    common::proc(name, "hostile")
}

/// Renders proc `name` with the registry's current `hostile`: the cause of a failure, or the
/// plan's `HOSTILE_VERSION`.
fn render(registry: &Registry, name: &str) -> Result<String, Cause> {
    let plugin = registry
        .get("hostile")
        .expect("installed")
        .expect("enabled");
    match ProcTypePlugin(&plugin).render(&proc(name), &ctx()) {
        Ok(plan) => Ok(plan
            .env
            .into_iter()
            .find(|e| e.name == "HOSTILE_VERSION")
            .map(|e| e.value)
            .unwrap_or_default()),
        Err(e) => Err(e.cause),
    }
}

/// The `HOSTILE_VERSION` of proc `name` rendered by the registry's current `hostile`.
fn version(registry: &Registry, name: &str) -> String {
    render(registry, name).unwrap_or_else(|cause| panic!("render {name}: {cause}"))
}

fn set(pairs: &[(&str, Value)]) -> ConfigChange {
    ConfigChange::Edit {
        set: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        unset: vec![],
    }
}

/// Applies `change` to `hostile`, whose budget becomes 5 ms. The change is tried with a
/// `describe` call under that budget; on two loaded cores the epoch ticker can fire early in that
/// call, so a budget refusal of the trial is retried (up to five times) before the test fails.
fn configure_under_5ms(registry: &Registry, change: ConfigChange) {
    for tries in 0.. {
        match registry.configure("hostile", change.clone()) {
            Ok(_) => return,
            Err(e) if tries < 5 && e.to_string().contains("CPU budget") => {
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Err(e) => panic!("configure: {e}"),
        }
    }
}

fn bad_config(result: Result<impl std::fmt::Debug, InstallError>) -> String {
    match result {
        Err(e @ InstallError::BadConfig { .. }) => e.to_string(),
        other => panic!("expected bad-config, got {other:?}"),
    }
}

#[test]
fn a_lower_per_plugin_cpu_budget_stops_a_call_the_default_lets_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `slow-ok` works for 50 ms: within the default 200 ms, not within 5 (one epoch tick: a wide
    // margin, as the ticker thread shares two cores with the other tests).
    let registry = open(dir.path());
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    assert!(render(&registry, "slow-ok").is_ok());
    configure_under_5ms(&registry, set(&[("limits.cpu_ms", json!(5))]));
    let cause = render(&registry, "slow-ok").expect_err("stopped");
    assert!(
        matches!(cause, Cause::CpuBudget { budget_ms: 5 }),
        "{cause}"
    );
    assert_eq!(registry.show("hostile").expect("shown").limits.cpu_ms, 5);
}

#[test]
fn a_higher_per_plugin_cpu_budget_lets_a_slow_legit_call_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine_wide = Limits {
        cpu_ms: 5,
        ..Limits::default()
    };
    // The kernel config's table for the plugin raises its budget over the engine-wide 5 ms.
    let config = BTreeMap::from([(
        "hostile".to_string(),
        json!({ "limits": { "cpu_ms": 500 } }),
    )]);
    let registry = open_with(dir.path(), engine_wide.clone(), config, BTreeMap::new());
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    assert_eq!(version(&registry, "slow-ok"), "1");
    let view = registry.show("hostile").expect("shown");
    assert_eq!(
        (view.limits.cpu_ms, view.limits_overridden.cpu_ms),
        (500, Some(500))
    );
    // The same plugin without the override is stopped by the engine-wide budget, and the
    // budget still stops a plugin that never ends.
    configure_under_5ms(&registry, ConfigChange::Replace(json!({})));
    let cause = render(&registry, "slow-ok").expect_err("stopped");
    assert!(
        matches!(cause, Cause::CpuBudget { budget_ms: 5 }),
        "{cause}"
    );
}

#[test]
fn a_lower_per_plugin_memory_cap_stops_what_the_default_lets_grow() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open_with(
        dir.path(),
        Limits {
            cpu_ms: 10_000,
            wall_ms: 20_000,
            ..Limits::default()
        },
        BTreeMap::new(),
        BTreeMap::new(),
    );
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    // `huge` needs about 34 MiB: it fits the default 64 MiB (the host refuses the result).
    let cause = render(&registry, "huge").expect_err("refused");
    assert!(matches!(cause, Cause::ResultTooLarge { .. }), "{cause}");
    registry
        .configure("hostile", set(&[("limits.memory_bytes", json!(16 << 20))]))
        .expect("lower cap");
    let cause = render(&registry, "huge").expect_err("stopped");
    assert!(
        matches!(cause, Cause::MemoryCap { cap_bytes } if cap_bytes == 16 << 20),
        "{cause}"
    );
}

#[test]
fn limits_out_of_bounds_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    let generation = registry.generation();
    for (change, expected) in [
        (
            set(&[("limits.memory_bytes", json!(1u64 << 40))]),
            "limits.memory_bytes",
        ),
        (set(&[("limits.cpu_ms", json!(0))]), "limits.cpu_ms = 0"),
        (
            set(&[("limits.cpu_ms", json!(5_000))]),
            "above the wall-clock bound",
        ),
        (set(&[("limits.fuel", json!(1))]), "unknown field `fuel`"),
        (
            set(&[("files.shadow", json!("/etc/shadow"))]),
            "granted in the kernel config only",
        ),
        (ConfigChange::Replace(json!([1])), "must be a table"),
        (set(&[("a..b", json!(1))]), "not a key path"),
    ] {
        let err = bad_config(registry.configure("hostile", change));
        assert!(
            err.contains("plugin `hostile`") && err.contains(expected),
            "{expected}: {err}"
        );
    }
    assert_eq!(registry.generation(), generation, "nothing was swapped");
    let config = registry.config("hostile").expect("config");
    assert_eq!(
        (config.source.as_str(), config.operator.clone()),
        ("none", json!({}))
    );
    assert_eq!(version(&registry, "slow-ok"), "1");
}

#[test]
fn settings_apply_at_once_survive_a_restart_and_reset_to_the_kernel_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = || {
        BTreeMap::from([(
            "hostile".to_string(),
            json!({ "version": "from-kernel-config" }),
        )])
    };
    {
        let registry = open_with(dir.path(), Limits::default(), toml(), BTreeMap::new());
        registry
            .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
            .expect("install");
        assert_eq!(version(&registry, "fine"), "from-kernel-config");
        let view = registry
            .configure("hostile", set(&[("version", json!("live"))]))
            .expect("configure");
        assert_eq!(view.source, "api");
        assert_eq!(view.effective["version"], "live");
        assert_eq!(
            view.kernel_config_ignored,
            Some(json!({ "version": "from-kernel-config" }))
        );
        // Applied to the next call, no restart.
        assert_eq!(version(&registry, "fine"), "live");
        // Health is kept across a configuration change.
        assert!(registry.show("hostile").expect("shown").health.calls >= 2);
    }
    // A new registry on the same store (a kernel killed and started again) loads the settings.
    let registry = open_with(dir.path(), Limits::default(), toml(), BTreeMap::new());
    assert_eq!(version(&registry, "fine"), "live");
    assert_eq!(
        registry.show("hostile").expect("shown").config_source,
        "api"
    );
    // An upgrade keeps them.
    registry
        .upgrade(
            "hostile",
            &fixture(fixtures::HOSTILE),
            Some(&manifest("hostile", "2")),
        )
        .expect("upgrade");
    assert_eq!(version(&registry, "fine"), "live");
    let view = registry
        .configure("hostile", ConfigChange::Reset)
        .expect("reset");
    assert_eq!(view.source, "kernel-config");
    assert_eq!(version(&registry, "fine"), "from-kernel-config");
    drop(registry);
    let registry = open_with(dir.path(), Limits::default(), toml(), BTreeMap::new());
    assert_eq!(version(&registry, "fine"), "from-kernel-config");
}

#[test]
fn a_plugin_that_refuses_its_settings_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = BTreeMap::from([(
        "jwt".to_string(),
        json!({ "issuer": "https://sso.example.org", "audience": "lain", "hs256_secret": "0123456789abcdef0123456789abcdef" }),
    )]);
    let registry = open_with(dir.path(), Limits::default(), config, BTreeMap::new());
    let before = registry.config("jwt").expect("config");
    let err = bad_config(registry.configure(
        "jwt",
        ConfigChange::Edit {
            set: BTreeMap::new(),
            unset: vec!["audience".into()],
        },
    ));
    // The plugin's own `bad-config` message, with the function that said it.
    assert!(
        err.contains("function `describe`") && err.contains("audience: required"),
        "{err}"
    );
    let after = registry.config("jwt").expect("config");
    assert_eq!(
        (after.source.as_str(), &after.operator),
        (before.source.as_str(), &before.operator)
    );
    // A proc type whose new settings make it claim a taken type is refused the same way.
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    let err = registry
        .configure("hostile", set(&[("type", json!("worker"))]))
        .expect_err("worker is built in");
    assert!(
        matches!(&err, InstallError::Conflict(m) if m.contains("built-in plugin `worker`")),
        "{err}"
    );
    assert_eq!(registry.config("hostile").expect("config").source, "none");
}

#[test]
fn a_scheduler_plugin_built_after_a_change_runs_with_the_new_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    let roles = |registry: &Registry| {
        registry
            .show_described("spread")
            .and_then(|v| v.described)
            .map(|d| d.roles)
            .unwrap_or_default()
    };
    assert_eq!(roles(&registry), ["score"]);
    let old = registry.get("spread").expect("spread").expect("enabled");
    let generation = registry.generation();
    registry
        .configure("spread", set(&[("hard", json!(true))]))
        .expect("configure");
    assert!(
        registry.generation() > generation,
        "long-lived instances are told to rebuild"
    );
    assert_eq!(roles(&registry), ["filter", "score"]);
    // The instance the pipeline had keeps its settings until it is rebuilt from the registry.
    let info = LiveScheduler::start(old)
        .and_then(|mut s| s.describe())
        .expect("old instance");
    assert!(
        !info
            .roles
            .contains(lain::plugin::bindings::scheduling::Roles::FILTER)
    );
}

#[test]
fn the_operator_maps_types_live_and_the_mapping_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let served = |registry: &Registry, ty: &str| {
        PluginProcTypes::new(registry.enabled(Kind::ProcType), &registry.proc_types())
            .expect("types")
            .plugin(ty)
            .map(|p| p.name().to_string())
    };
    let config_map = || BTreeMap::from([("job".to_string(), "oneshot".to_string())]);
    {
        let registry = open_with(dir.path(), Limits::default(), BTreeMap::new(), config_map());
        registry
            .install(
                &fixture(fixtures::HOSTILE),
                Some(&manifest("my-worker", "1")),
            )
            .expect("install");
        assert_eq!(served(&registry, "worker").as_deref(), Some("worker"));
        // Refusals name the culprit and change nothing.
        let generation = registry.generation();
        let err = registry
            .map_type("worker", "spread")
            .expect_err("not a proc type");
        assert!(
            err.to_string()
                .contains("`spread` is a scheduler-filter plugin"),
            "{err}"
        );
        let err = registry.map_type("worker", "nope").expect_err("unknown");
        assert!(matches!(err, InstallError::NotFound(_)), "{err}");
        let err = registry
            .map_type("service", "my-worker")
            .expect_err("keyword");
        assert!(err.to_string().contains("a key of lain.yaml"), "{err}");
        let err = registry.unmap_type("cron", false).expect_err("not mapped");
        assert!(matches!(err, InstallError::NotMapped(_)), "{err}");
        assert_eq!(registry.generation(), generation);
        assert_eq!(served(&registry, "worker").as_deref(), Some("worker"));

        registry.map_type("worker", "my-worker").expect("map");
        assert_eq!(served(&registry, "worker").as_deref(), Some("my-worker"));
        // The kernel config's mapping is taken back live too.
        registry.unmap_type("job", false).expect("unmap");
        assert_eq!(served(&registry, "job"), None);
        // A mapped plugin is not removed from under its type.
        let err = registry.remove("my-worker").expect_err("mapped");
        assert!(err.to_string().contains("unmap"), "{err}");
    }
    let registry = open_with(dir.path(), Limits::default(), BTreeMap::new(), config_map());
    assert_eq!(served(&registry, "worker").as_deref(), Some("my-worker"));
    assert_eq!(
        served(&registry, "job"),
        None,
        "unmapped survives the restart"
    );
    let described = registry
        .show_described("my-worker")
        .and_then(|v| v.described)
        .expect("described");
    assert_eq!(
        described.serves,
        Some(vec!["hostile".into(), "worker".into()])
    );
    registry.unmap_type("worker", false).expect("unmap");
    assert_eq!(served(&registry, "worker").as_deref(), Some("worker"));
    registry.unmap_type("job", true).expect("reset");
    assert_eq!(served(&registry, "job").as_deref(), Some("oneshot"));
    registry.remove("my-worker").expect("no longer mapped");
}

#[test]
fn a_downgrade_needs_to_be_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    let hostile = fixture(fixtures::HOSTILE);
    registry
        .install(&hostile, Some(&manifest("hostile", "0.2.0")))
        .expect("install");
    let err = registry
        .upgrade("hostile", &hostile, Some(&manifest("hostile", "0.1.0")))
        .expect_err("downgrade");
    assert!(
        matches!(err, InstallError::Downgrade { .. })
            && err.to_string().contains("--allow-downgrade"),
        "{err}"
    );
    assert_eq!(version(&registry, "fine"), "0.2.0", "nothing changed");
    let u = registry
        .upgrade_with(
            "hostile",
            &hostile,
            Some(&manifest("hostile", "0.1.0")),
            true,
        )
        .expect("allowed");
    assert_eq!(
        (u.change.as_str(), u.previous_version.as_str()),
        ("downgrade", "0.2.0")
    );
    let u = registry
        .upgrade_with(
            "hostile",
            &hostile,
            Some(&manifest("hostile", "0.1.0")),
            false,
        )
        .expect("same");
    assert_eq!(u.change, "unchanged");
    // The same version from other bytes is a rebuild, said so.
    let other = fixture(fixtures::TEMPLATE);
    let u = registry
        .upgrade_with(
            "hostile",
            &other,
            Some(&manifest("hostile", "0.1.0")),
            false,
        )
        .expect("rebuild");
    assert_eq!(u.change, "rebuild");
    assert_ne!(u.previous_sha256, u.plugin.sha256);
}

#[test]
fn show_says_what_each_kind_describes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    registry
        .install(&fixture(fixtures::TEMPLATE), None)
        .expect("install");
    let cron = registry
        .show_described("cron")
        .and_then(|v| v.described)
        .expect("described");
    assert_eq!(cron.proc_type.as_deref(), Some("cron"));
    assert!(
        cron.extra_keys.contains(&"schedule".to_string()),
        "{cron:?}"
    );
    assert!(!cron.summary.is_empty());
    assert_eq!(cron.serves, Some(vec!["cron".into()]));
    let prometheus = registry
        .show_described("prometheus")
        .and_then(|v| v.described)
        .expect("described");
    assert_eq!(prometheus.delivery.as_deref(), Some("pull /metrics"));
    let jwt = registry
        .show_described("jwt")
        .and_then(|v| v.described)
        .expect("described");
    assert!(
        jwt.error
            .as_deref()
            .is_some_and(|e| e.contains("function `describe`")),
        "{jwt:?}"
    );
    // A list asks no plugin anything.
    assert!(registry.list().iter().all(|v| v.described.is_none()));
}

#[test]
fn errors_name_a_wit_function_or_loading_never_resolve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = open(dir.path());
    registry
        .install(&fixture(fixtures::HOSTILE), Some(&manifest("hostile", "1")))
        .expect("install");
    let hostile = registry
        .get("hostile")
        .expect("installed")
        .expect("enabled");
    let err = LiveScheduler::start(hostile)
        .err()
        .expect("not a scheduler");
    let text = err.to_string();
    assert!(
        text.starts_with("plugin `hostile` 1, loading: ") && !text.contains("function `"),
        "{text}"
    );
    let config = lain::config::KernelConfig {
        data_dir: dir.path().join("kernel"),
        cache_dir: Some(cache_dir()),
        scheduler: lain::schedule::Config {
            plugins: vec!["nope".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let kernel = common::open_kernel(config).expect("kernel");
    let err = kernel.scheduler_members().err().expect("nope is missing");
    let text = err.to_string();
    assert!(
        text.starts_with(
            "plugin `nope`, loading: could not be run: no scheduler-filter plugin named `nope`"
        ),
        "{text}"
    );
}

#[test]
fn two_kernels_configuring_one_plugin_keep_each_others_settings() {
    // Two registries on one store, as two kernels on one etcd: each caches the records it
    // loaded, and neither sees the other's changes in its cache.
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("state.redb")).expect("store"));
    let open = || {
        let engine = PluginEngine::new(Limits::default(), Some(cache_dir())).expect("engine");
        Registry::open(engine, store.clone(), BUILTINS, BTreeMap::new()).expect("registry")
    };
    let (a, b) = (open(), open());
    a.configure("spread", set(&[("limits.cpu_ms", json!(1500))]))
        .expect("a");
    b.configure("spread", set(&[("limits.wall_ms", json!(2500))]))
        .expect("b");
    a.set_enabled("spread", true).expect("enable through a");
    let limits = |r: &Registry| r.config("spread").expect("config").operator["limits"].clone();
    let want = json!({ "cpu_ms": 1500, "wall_ms": 2500 });
    assert_eq!(limits(&open()), want, "what a restart loads keeps both");
    assert_eq!(limits(&a), want, "a's write was based on the stored record");
}

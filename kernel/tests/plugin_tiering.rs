//! Tiered compilation through the registry: an install or upgrade runs at once on the Winch build
//! of a component not in the compile cache, the Cranelift build is swapped in from the
//! background, no call fails meanwhile, a superseded build never comes in, and a restart on a
//! warm cache loads the Cranelift build directly, and the limits hold on a Winch build.
//!
//! Each test has a compile cache of its own (a temporary directory), so its components always
//! start cold, and a registry without the built-ins (their compiles would only slow it down).

mod common;

use lain::plugin::bindings::types::AppContext;
use lain::plugin::engine::{Compiler, PluginEngine};
use lain::plugin::kinds::auth::AuthPlugin;
use lain::plugin::kinds::proc_type::ProcTypePlugin;
use lain::plugin::registry::Registry;
use lain::plugin::{Cause, Limits, LoadedPlugin, Manifest};
use lain::store::Store;
use lain::store::embedded::EmbeddedStore;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a test waits for background builds (debug builds on a loaded machine).
const SETTLE: Duration = Duration::from_secs(120);

fn open(data: &Path, cache: &Path, builtins: &[(&str, &[u8])]) -> (Registry, Arc<PluginEngine>) {
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&data.join("state.redb")).expect("store"));
    let engine = PluginEngine::new(Limits::default(), Some(cache.to_path_buf())).expect("engine");
    assert!(
        engine.has_baseline(),
        "these tests need Winch (x86_64 or aarch64)"
    );
    let registry =
        Registry::open(engine.clone(), store, builtins, BTreeMap::new()).expect("registry");
    (registry, engine)
}

/// `bytes` with a custom section `lain-test-variant` holding `tag` appended: the same code under
/// another SHA-256, so nothing in a cache matches it.
fn variant(bytes: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"lain-test-variant";
    let mut payload = Vec::new();
    leb(name.len(), &mut payload);
    payload.extend_from_slice(name);
    payload.extend_from_slice(tag.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    leb(payload.len(), &mut out);
    out.extend_from_slice(&payload);
    out
}

/// The embedded manifest of built-in `builtin`, renamed `name` at `version`, as TOML; `jwt`'s with
/// the issuer, audience and key it needs to describe itself.
fn manifest_as(builtin: &str, name: &str, version: &str) -> String {
    let mut manifest = Manifest::embedded(common::builtin_bytes(builtin))
        .expect("manifest parses")
        .expect("manifest embedded");
    manifest.name = name.into();
    manifest.version = version.into();
    if builtin == "jwt"
        && let Some(config) = manifest.config.as_object_mut()
    {
        config.insert("issuer".into(), "https://sso.example.org".into());
        config.insert("audience".into(), "lain".into());
        config.insert(
            "hs256_secret".into(),
            "0123456789abcdef0123456789abcdef".into(),
        );
    }
    toml::to_string(&manifest).expect("manifest as TOML")
}

/// `jwt`'s own manifest, configured.
fn jwt_manifest() -> String {
    manifest_as("jwt", "jwt", "0.1.0")
}

fn summary(registry: &Registry, name: &str) -> Result<String, String> {
    let plugin = registry
        .get(name)
        .ok_or("vanished")?
        .map_err(|e| e.to_string())?;
    AuthPlugin(&plugin)
        .describe()
        .map(|info| info.summary)
        .map_err(|e| e.to_string())
}

fn compiled(registry: &Registry, name: &str) -> Compiler {
    registry.show(name).expect("installed").compiled
}

#[test]
fn install_answers_on_winch_and_the_cranelift_build_is_swapped_in_later() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (registry, engine) = open(data.path(), cache.path(), &[]);
    let bytes = common::builtin_bytes("jwt");

    let view = registry
        .install(bytes, Some(&jwt_manifest()))
        .expect("install");
    // The answer comes before the Cranelift build exists: it is neither swapped in nor cached.
    assert_eq!(view.compiled, Compiler::Winch);
    assert!(!engine.is_cached(&view.sha256), "Cranelift compiled inline");
    let generation = registry.generation();
    // The Winch build serves calls.
    let on_winch = summary(&registry, "jwt").expect("describe on Winch");

    assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
    assert_eq!(compiled(&registry, "jwt"), Compiler::Cranelift);
    assert!(
        engine.is_cached(&view.sha256),
        "the Cranelift build is cached"
    );
    assert!(
        registry.generation() > generation,
        "the swap changes the generation, so long-lived instances move to the new build"
    );
    // Same plugin, same answers, same record.
    assert_eq!(summary(&registry, "jwt").expect("describe"), on_winch);
    let after = registry.show("jwt").expect("installed");
    assert_eq!(
        (after.sha256, after.installed_at, after.health.calls),
        (view.sha256, view.installed_at, 2),
        "health carries over the swap"
    );
}

#[test]
fn calls_from_other_threads_never_fail_across_upgrades_and_swaps() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (registry, _engine) = open(data.path(), cache.path(), &[]);
    let registry = Arc::new(registry);
    let jwt = common::builtin_bytes("jwt");
    registry
        .install(jwt, Some(&jwt_manifest()))
        .expect("install");

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    // Two callers pausing a millisecond between calls: enough to be calling at every swap,
    // not enough to starve the background compile (it runs at a lower priority).
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (registry, stop, calls) = (registry.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || -> Result<BTreeMap<Compiler, usize>, String> {
                let mut seen = BTreeMap::new();
                while !stop.load(Ordering::Relaxed) {
                    let plugin = registry
                        .get("jwt")
                        .ok_or("vanished")?
                        .map_err(|e| e.to_string())?;
                    AuthPlugin(&plugin).describe().map_err(|e| e.to_string())?;
                    *seen.entry(plugin.compiler()).or_default() += 1;
                    calls.fetch_add(1, Ordering::Relaxed);
                    drop(plugin);
                    std::thread::sleep(Duration::from_millis(1));
                }
                Ok(seen)
            })
        })
        .collect();
    // Callers stop at their first failure: waiting for their calls then times out.
    let wait_calls = |more: usize| {
        let target = calls.load(Ordering::Relaxed) + more;
        let deadline = std::time::Instant::now() + SETTLE;
        while calls.load(Ordering::Relaxed) < target {
            assert!(std::time::Instant::now() < deadline, "calls stopped");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    wait_calls(10);
    for v in 2..5 {
        let version = format!("0.{v}.0");
        let upgraded = registry
            .upgrade_with(
                "jwt",
                &variant(jwt, &version),
                Some(&manifest_as("jwt", "jwt", &version)),
                false,
            )
            .expect("upgrade");
        assert_eq!(upgraded.plugin.compiled, Compiler::Winch);
        wait_calls(10);
    }
    assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
    assert_eq!(compiled(&registry, "jwt"), Compiler::Cranelift);
    wait_calls(10);
    stop.store(true, Ordering::Relaxed);
    let mut seen: BTreeMap<Compiler, usize> = BTreeMap::new();
    for caller in callers {
        for (compiler, n) in caller.join().expect("thread").expect("no call failed") {
            *seen.entry(compiler).or_default() += n;
        }
    }
    assert!(
        seen.contains_key(&Compiler::Winch) && seen.contains_key(&Compiler::Cranelift),
        "calls ran on both builds: {seen:?}"
    );
}

#[test]
fn a_superseded_build_is_never_swapped_in() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (registry, _engine) = open(data.path(), cache.path(), &[]);
    let registry = Arc::new(registry);
    // `auth` is first the token provider, then the JWT one: the builds differ in what they say.
    let token = variant(common::builtin_bytes("token"), "superseded");
    let jwt = variant(common::builtin_bytes("jwt"), "current");
    registry
        .install(&token, Some(&manifest_as("token", "auth", "1.0.0")))
        .expect("install");
    let token_says = summary(&registry, "auth").expect("describe");
    // The token build's Cranelift compile is running or queued when the upgrade lands.
    let upgraded = registry
        .upgrade_with(
            "auth",
            &jwt,
            Some(&manifest_as("jwt", "auth", "2.0.0")),
            false,
        )
        .expect("upgrade");
    assert_eq!(upgraded.plugin.compiled, Compiler::Winch);
    let jwt_says = summary(&registry, "auth").expect("describe");
    assert_ne!(token_says, jwt_says);

    // From the upgrade on, every call must be the JWT provider's, until both builds are done.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (registry, stop, jwt_says) = (registry.clone(), stop.clone(), jwt_says.clone());
        std::thread::spawn(move || -> Result<usize, String> {
            let mut calls = 0;
            while !stop.load(Ordering::Relaxed) {
                let said = summary(&registry, "auth")?;
                if said != jwt_says {
                    return Err(format!("an older build came back: {said}"));
                }
                calls += 1;
            }
            Ok(calls)
        })
    };
    assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
    stop.store(true, Ordering::Relaxed);
    let calls = watcher.join().expect("thread").expect("only the JWT build");
    assert!(calls > 0);
    let view = registry.show("auth").expect("installed");
    assert_eq!(
        (view.version.as_str(), view.compiled),
        ("2.0.0", Compiler::Cranelift)
    );
    assert_eq!(summary(&registry, "auth").expect("describe"), jwt_says);
}

#[test]
fn a_restart_loads_cached_cranelift_builds_directly_and_cold_ones_on_winch() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let jwt = common::builtin_bytes("jwt");
    let token = common::builtin_bytes("token");
    {
        let (registry, _) = open(data.path(), cache.path(), &[("token", token)]);
        assert_eq!(
            compiled(&registry, "token"),
            Compiler::Winch,
            "cold built-in"
        );
        registry
            .install(jwt, Some(&jwt_manifest()))
            .expect("install");
        assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
        assert_eq!(compiled(&registry, "token"), Compiler::Cranelift);
        assert_eq!(compiled(&registry, "jwt"), Compiler::Cranelift);
    }
    // Warm cache: Cranelift from the start, no Winch compile, nothing left to build.
    let (registry, _) = open(data.path(), cache.path(), &[("token", token)]);
    assert_eq!(compiled(&registry, "token"), Compiler::Cranelift);
    assert_eq!(compiled(&registry, "jwt"), Compiler::Cranelift);
    assert!(
        registry.wait_optimized(Duration::ZERO),
        "a build was queued"
    );
    summary(&registry, "jwt").expect("describe");
    drop(registry);

    // The same store on an empty cache: both start on Winch and come to Cranelift.
    let cold = tempfile::tempdir().unwrap();
    let (registry, _) = open(data.path(), cold.path(), &[("token", token)]);
    assert_eq!(compiled(&registry, "token"), Compiler::Winch);
    assert_eq!(compiled(&registry, "jwt"), Compiler::Winch);
    summary(&registry, "jwt").expect("describe on Winch");
    assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
    assert_eq!(compiled(&registry, "token"), Compiler::Cranelift);
    assert_eq!(compiled(&registry, "jwt"), Compiler::Cranelift);
}

#[test]
fn a_removed_plugin_is_not_brought_back_by_its_build() {
    let (data, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (registry, _) = open(data.path(), cache.path(), &[]);
    registry
        .install(common::builtin_bytes("jwt"), Some(&jwt_manifest()))
        .expect("install");
    registry.remove("jwt").expect("remove");
    assert!(registry.wait_optimized(SETTLE), "no Cranelift build");
    assert!(registry.show("jwt").is_none());
    assert!(registry.get("jwt").is_none());
}

/// The hostile fixture loaded on its Winch build (a cache of its own, empty).
fn hostile_on_winch(limits: Limits, cache: &Path) -> Arc<LoadedPlugin> {
    let engine = PluginEngine::new(limits, Some(cache.to_path_buf())).expect("engine");
    let bytes = common::fixture(lain_builtin_plugins::fixtures::HOSTILE);
    let manifest = Manifest::embedded(&bytes)
        .expect("manifest parses")
        .expect("manifest embedded");
    let plugin = LoadedPlugin::load_tiered(&engine, manifest, &bytes, false, None).expect("loads");
    assert_eq!(plugin.compiler(), Compiler::Winch);
    Arc::new(plugin)
}

fn render_fails(plugin: &LoadedPlugin, name: &str) -> Cause {
    let ctx = AppContext {
        app: "evil".into(),
        app_domain: "evil".into(),
        cluster_domains: vec!["lain.local".into()],
        release: "1".into(),
    };
    match ProcTypePlugin(plugin).render(&common::proc(name, "hostile"), &ctx) {
        Ok(_) => panic!("{name}: the hostile call succeeded on Winch"),
        Err(e) => e.cause,
    }
}

#[test]
fn the_limits_hold_on_a_winch_build() {
    let cache = tempfile::tempdir().unwrap();
    // The epoch ticker advances the Winch engine too: an endless loop runs out of CPU budget.
    let hostile = hostile_on_winch(
        Limits {
            cpu_ms: 100,
            ..Limits::default()
        },
        cache.path(),
    );
    // On a thread of its own: were the budget never to run out, the test fails, it does not hang.
    let (sent, outcome) = std::sync::mpsc::channel();
    let looping = hostile.clone();
    std::thread::spawn(move || sent.send(render_fails(&looping, "loop")));
    let cause = outcome
        .recv_timeout(Duration::from_secs(30))
        .expect("an endless loop on Winch is interrupted by the CPU budget");
    assert!(
        matches!(cause, Cause::CpuBudget { budget_ms: 100 }),
        "{cause}"
    );
    assert!(matches!(
        render_fails(&hostile, "recurse"),
        Cause::StackOverflow
    ));

    // Instances on demand, capped by the store's limiter like the pool's.
    let hostile = hostile_on_winch(
        Limits {
            cpu_ms: 10_000,
            wall_ms: 20_000,
            ..Limits::default()
        },
        cache.path(),
    );
    let cause = render_fails(&hostile, "alloc");
    assert!(
        matches!(cause, Cause::MemoryCap { cap_bytes } if cap_bytes == 64 << 20),
        "{cause}"
    );
}

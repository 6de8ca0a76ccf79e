//! The kernel's wasmtime engines: configuration, epoch ticker, linkers, compilation with an
//! on-disk cache, and the install-time checks of a component against its world.
//!
//! There are two engines with the same wasm settings and limits. The *optimizing* one compiles with
//! Cranelift: plugins run on its code, and only its artifacts are cached on disk. The *baseline*
//! one compiles with Winch, a single-pass compiler that is several times faster to compile and
//! produces slower code: an install or upgrade whose component is not in the cache swaps in a
//! Winch build at once, and [`super::tiering`] replaces it with the Cranelift build when that is
//! ready. A component belongs to the engine that compiled it (a store of one engine cannot
//! instantiate the other's), so every store is made on its plugin's own engine.

use super::bindings;
use super::error::InstallError;
use super::limits::Limits;
use super::state::PluginState;
use super::world::{Kind, WitVersion};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use wasmtime::component::{Component, HasSelf, InstancePre, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Strategy};

/// Which compiler produced the code a plugin runs.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Compiler {
    /// Winch, the baseline compiler: fast to compile, slower code. A plugin runs on it from its
    /// install or upgrade until its Cranelift build is in.
    Winch,
    /// Cranelift, the optimizing compiler (what every plugin ends up on; what a kernel that
    /// does not say runs).
    #[default]
    Cranelift,
}

impl std::fmt::Display for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Compiler::Winch => "winch",
            Compiler::Cranelift => "cranelift",
        })
    }
}

/// One wasmtime engine and the linker of the host functions on it.
struct Tier {
    engine: Engine,
    linker: Linker<PluginState>,
}

impl Tier {
    fn new(config: &Config) -> anyhow::Result<Tier> {
        let engine = Engine::new(config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::v0_1::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::v0_1::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        Ok(Tier { engine, linker })
    }
}

/// Import prefixes a plugin may have. Everything else (sockets, HTTP, unknown interfaces) is
/// refused at install, so a plugin's authority is visible from its imports.
///
/// `wasi:filesystem` is linked for every plugin because Rust's standard library may import it,
/// but only a backup hook's instance gets a pre-opened directory; for the others there is nothing
/// to open. `wasi:random` and `wasi:clocks` grant no authority.
pub const GRANTED_IMPORTS: &[&str] = &[
    "lain:plugin/host@",
    "lain:plugin/types@",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

/// The shared engines, their linkers and the compilation cache.
pub struct PluginEngine {
    optimizing: Tier,
    /// `None` where Winch cannot run (an architecture it does not support): then every
    /// compilation is Cranelift's, inline.
    baseline: Option<Tier>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    fingerprint: String,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginEngine {
    /// Creates the engines (epoch interruption; pooling allocator for the optimizing one), starts
    /// the epoch ticker and links the host functions. `cache_dir` keeps compiled components
    /// across restarts.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<PluginEngine>> {
        PluginEngine::start(limits, cache_dir, true)
    }

    /// An engine without the baseline compiler: every compilation is Cranelift's, inline, as
    /// before tiered compilation (what the benchmark compares it with).
    pub fn cranelift_only(
        limits: Limits,
        cache_dir: Option<PathBuf>,
    ) -> anyhow::Result<Arc<PluginEngine>> {
        PluginEngine::start(limits, cache_dir, false)
    }

    fn start(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        tiered: bool,
    ) -> anyhow::Result<Arc<PluginEngine>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // The baseline engine: same wasm settings, Winch, and instances allocated on demand.
        // Its code runs only in the window between an install and its Cranelift build, so a
        // second pool would reserve another 1,024 memory slots of address space for little use;
        // the memory cap is the store limiter's on both engines (`PluginState::cap`).
        let mut baseline = config.clone();
        baseline.strategy(Strategy::Winch);
        config.strategy(Strategy::Cranelift);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(512)
            .total_core_instances(4096)
            .total_memories(1024)
            .total_tables(2048)
            // Slots are decommitted on release rather than kept resident: measured here, keeping
            // 1 MiB resident made instantiation 1 µs faster but each store drop 10 µs slower (the
            // memset), a net loss for per-call instances.
            .max_memory_size(usize::try_from(limits.memory_bytes).unwrap_or(usize::MAX));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let optimizing = Tier::new(&config)?;
        let baseline = match tiered.then(|| Tier::new(&baseline)) {
            None => None,
            Some(Ok(tier)) => Some(tier),
            Some(Err(e)) => {
                tracing::warn!(
                    "no baseline compiler (Winch) on this host, plugins compile with Cranelift \
                     inside each install: {e:#}"
                );
                None
            }
        };

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        optimizing
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let engines = std::iter::once(&optimizing)
            .chain(&baseline)
            .map(|t| t.engine.clone())
            .collect();
        spawn_ticker(engines, limits.tick_ms, ticker_stop.clone())?;
        Ok(Arc::new(PluginEngine {
            optimizing,
            baseline,
            limits,
            cache_dir,
            fingerprint,
            ticker_stop,
        }))
    }

    /// The optimizing (Cranelift) wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.optimizing.engine
    }

    /// Which compiler compiled `component` (a component of another engine counts as Cranelift).
    pub fn compiler_of(&self, component: &Component) -> Compiler {
        match &self.baseline {
            Some(b) if Engine::same(component.engine(), &b.engine) => Compiler::Winch,
            _ => Compiler::Cranelift,
        }
    }

    /// Whether a baseline compiler is there, i.e. whether [`PluginEngine::compile_tiered`] can
    /// return a Winch build.
    pub fn has_baseline(&self) -> bool {
        self.baseline.is_some()
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component with Cranelift, or loads it from the cache (keyed by content hash and
    /// engine fingerprint, so a kernel with other engine settings never loads a stale artifact).
    pub fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Component, InstallError> {
        is_component(bytes)?;
        if let Some(component) = self.cached(sha256) {
            return Ok(component);
        }
        let artifact = self
            .optimizing
            .engine
            .precompile_component(bytes)
            .map_err(|e| InstallError::Compile(format!("{e:#}")))?;
        if let Some(path) = self.cache_path(sha256)
            && let Err(e) = write_atomically(&path, &artifact)
        {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        // SAFETY: `artifact` was produced just above by this engine.
        unsafe { Component::deserialize(&self.optimizing.engine, &artifact) }
            .map_err(|e| InstallError::Compile(format!("{e:#}")))
    }

    /// The quickest usable build of a component: its Cranelift build from the cache, else a
    /// Winch build (which is not cached: the cache holds Cranelift builds only), else, where
    /// Winch is not there or refuses the component (a wasm feature it lacks), Cranelift's inline.
    /// [`PluginEngine::compiler_of`] tells which it is.
    pub fn compile_tiered(&self, sha256: &str, bytes: &[u8]) -> Result<Component, InstallError> {
        is_component(bytes)?;
        if let Some(component) = self.cached(sha256) {
            return Ok(component);
        }
        if let Some(baseline) = &self.baseline {
            match Component::new(&baseline.engine, bytes) {
                Ok(component) => return Ok(component),
                Err(e) => tracing::warn!(
                    %sha256,
                    "Winch cannot compile the component, compiling it with Cranelift now: {e:#}"
                ),
            }
        }
        self.compile(sha256, bytes)
    }

    /// The Cranelift build of component `sha256` from the cache, if it is there and loads.
    fn cached(&self, sha256: &str) -> Option<Component> {
        let path = self.cache_path(sha256)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the cache directory is the kernel's own; artifacts are written atomically by
        // `compile` from bytes that `precompile_component` produced for this engine.
        match unsafe { Component::deserialize_file(&self.optimizing.engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e}");
                None
            }
        }
    }

    /// Whether the Cranelift build of component `sha256` is in the on-disk cache.
    pub fn is_cached(&self, sha256: &str) -> bool {
        self.cache_path(sha256).is_some_and(|p| p.exists())
    }

    /// Checks a component against the world of `kind` in one of the hosted versions and
    /// pre-links it; returns the version it implements.
    ///
    /// Refuses, naming the culprit: an import plugins are not granted, a missing export of the
    /// world's interface. A wrong function signature is refused by the caller when it looks up
    /// the interface's functions (see `Exports::new`).
    pub fn check(
        &self,
        component: &Component,
        kind: Kind,
    ) -> Result<(InstancePre<PluginState>, WitVersion), InstallError> {
        let tier = match &self.baseline {
            Some(b) if Engine::same(component.engine(), &b.engine) => b,
            _ => &self.optimizing,
        };
        let ty = component.component_type();
        for (name, _) in ty.imports(&tier.engine) {
            if !GRANTED_IMPORTS.iter().any(|p| name.starts_with(p)) {
                return Err(InstallError::ForbiddenImport {
                    import: name.to_string(),
                    granted: GRANTED_IMPORTS
                        .iter()
                        .map(|p| format!("{p}*"))
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        }
        let exports: Vec<String> = ty
            .exports(&tier.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        let Some(version) = WitVersion::HOSTED
            .into_iter()
            .find(|v| exports.iter().any(|e| *e == kind.export_at(*v)))
        else {
            let found = if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports.join(", ")
            };
            let wanted: Vec<String> = WitVersion::HOSTED
                .iter()
                .map(|v| format!("`{}`", kind.export_at(*v)))
                .collect();
            return Err(InstallError::WrongWorld {
                world: kind.world(),
                reason: format!(
                    "missing export {} (the component exports {found})",
                    wanted.join(" or ")
                ),
            });
        };
        let pre = tier
            .linker
            .instantiate_pre(component)
            .map_err(|e| InstallError::WrongWorld {
                world: kind.world_at(version),
                reason: format!("{e:#}"),
            })?;
        Ok((pre, version))
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        self.cache_dir
            .as_ref()
            .map(|d| d.join(format!("{sha256}-{}.cwasm", self.fingerprint)))
    }
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Refuses what is not a component (a core module, not WebAssembly at all).
fn is_component(bytes: &[u8]) -> Result<(), InstallError> {
    if wasmparser::Parser::is_component(bytes) {
        Ok(())
    } else {
        Err(InstallError::NotAComponent(
            "the file is a core module or not WebAssembly; build with --target wasm32-wasip2"
                .into(),
        ))
    }
}

/// Advances the epoch of every engine every `tick_ms` until `stop` is set: both engines, or the
/// CPU budget of a plugin on its Winch build would never run out.
fn spawn_ticker(engines: Vec<Engine>, tick_ms: u64, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let tick = std::time::Duration::from_millis(tick_ms.max(1));
    std::thread::Builder::new()
        .name("lain-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                for engine in &engines {
                    engine.increment_epoch();
                }
            }
        })?;
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    // Unique per write: two threads compiling the same plugin must not share a temporary file,
    // or one could truncate what the other has just renamed into place (and someone mapped).
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

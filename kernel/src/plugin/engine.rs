//! The one wasmtime `Engine` of the kernel: configuration, epoch ticker, linker, compilation with
//! an on-disk cache, and the install-time checks of a component against its world.

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
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

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

/// The shared engine, its linker and the compilation cache.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<PluginState>,
    limits: Limits,
    cache_dir: Option<PathBuf>,
    fingerprint: String,
    ticker_stop: Arc<AtomicBool>,
}

impl PluginEngine {
    /// Creates the engine (pooling allocator, epoch interruption), starts the epoch ticker and
    /// links the host functions. `cache_dir` keeps compiled components across restarts.
    pub fn new(limits: Limits, cache_dir: Option<PathBuf>) -> anyhow::Result<Arc<PluginEngine>> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
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
        let engine = Engine::new(&config)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("{:016x}", hasher.finish());

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        bindings::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::v0_1::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;
        bindings::v0_1::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)?;

        if let Some(dir) = &cache_dir {
            std::fs::create_dir_all(dir)?;
        }
        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_ticker(engine.clone(), limits.tick_ms, ticker_stop.clone())?;
        Ok(Arc::new(PluginEngine {
            engine,
            linker,
            limits,
            cache_dir,
            fingerprint,
            ticker_stop,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles a component, or loads it from the cache (keyed by content hash and engine
    /// fingerprint, so a kernel with other engine settings never loads a stale artifact).
    pub fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Component, InstallError> {
        if !wasmparser::Parser::is_component(bytes) {
            return Err(InstallError::NotAComponent(
                "the file is a core module or not WebAssembly; build with --target wasm32-wasip2"
                    .into(),
            ));
        }
        let cached = self.cache_path(sha256);
        if let Some(path) = &cached
            && path.exists()
        {
            // SAFETY: the cache directory is the kernel's own; artifacts are written atomically by
            // this function from bytes that `precompile_component` produced for this engine.
            match unsafe { Component::deserialize_file(&self.engine, path) } {
                Ok(component) => return Ok(component),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached artifact: {e}")
                }
            }
        }
        let artifact = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| InstallError::Compile(format!("{e:#}")))?;
        if let Some(path) = &cached
            && let Err(e) = write_atomically(path, &artifact)
        {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin: {e}");
        }
        // SAFETY: `artifact` was produced just above by this engine.
        unsafe { Component::deserialize(&self.engine, &artifact) }
            .map_err(|e| InstallError::Compile(format!("{e:#}")))
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
        let ty = component.component_type();
        for (name, _) in ty.imports(&self.engine) {
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
            .exports(&self.engine)
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
        let pre = self
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

/// Advances the engine's epoch every `tick_ms` until `stop` is set.
fn spawn_ticker(engine: Engine, tick_ms: u64, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let tick = std::time::Duration::from_millis(tick_ms.max(1));
    std::thread::Builder::new()
        .name("lain-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                engine.increment_epoch();
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

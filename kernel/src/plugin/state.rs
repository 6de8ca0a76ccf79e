//! Per-call host state: what a plugin instance may see, and the host functions it may call.

use super::bindings::{host, types};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest file `read-file` returns.
const MAX_FILE_BYTES: u64 = 4 << 20;
/// Largest log record kept.
const MAX_LOG_BYTES: usize = 64 << 10;
/// How much of a plugin's stderr is kept (for panic messages).
pub const STDERR_CAPACITY: usize = 16 << 10;

/// Who a plugin instance is, and what the operator granted it.
#[derive(Debug)]
pub struct Identity {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Effective configuration, as JSON text.
    pub config_json: String,
    /// Files granted by name (`files.<name> = "/path"` in the configuration).
    pub files: BTreeMap<String, PathBuf>,
}

impl Identity {
    /// Builds an identity from the effective configuration (a JSON object).
    pub fn new(name: &str, version: &str, config: &serde_json::Value) -> Identity {
        let files = config
            .get("files")
            .and_then(|f| f.as_object())
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| v.as_str().map(|p| (k.clone(), PathBuf::from(p))))
                    .collect()
            })
            .unwrap_or_default();
        Identity {
            name: name.to_string(),
            version: version.to_string(),
            config_json: config.to_string(),
            files,
        }
    }
}

/// Caps the linear memory (and tables) of one store, and remembers whether the cap was hit so a
/// resulting trap can be reported as "memory cap exceeded" rather than as a bare abort.
pub struct MemoryCap {
    /// The cap in bytes.
    pub cap: usize,
    /// Set when a growth was refused.
    pub hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

/// The data of one wasmtime `Store`: one plugin instance.
pub struct PluginState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// The memory cap of this store.
    pub cap: MemoryCap,
    /// The plugin's stderr (Rust panics are written there).
    pub stderr: MemoryOutputPipe,
    /// Who the plugin is.
    pub identity: Arc<Identity>,
}

impl PluginState {
    /// State with no ambient authority: no environment, no arguments, no network, stdout
    /// discarded, stderr captured; `volume` (backup hooks only) pre-opened read-only at `/volume`.
    pub fn new(
        identity: Arc<Identity>,
        memory_cap: u64,
        volume: Option<&std::path::Path>,
    ) -> anyhow::Result<PluginState> {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let mut builder = WasiCtx::builder();
        builder.stderr(stderr.clone());
        if let Some(dir) = volume {
            builder.preopened_dir(dir, "/volume", wasmtime_wasi::FsPerms::ReadOnly)?;
        }
        Ok(PluginState {
            wasi: builder.build(),
            table: ResourceTable::new(),
            cap: MemoryCap {
                cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
                hit: false,
            },
            stderr,
            identity,
        })
    }

    /// What the plugin wrote to stderr, trimmed (a panic message, usually).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_string()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for PluginState {}

impl host::Host for PluginState {
    fn log(&mut self, level: host::LogLevel, message: String, fields: Vec<(String, String)>) {
        let mut message = message;
        if message.len() > MAX_LOG_BYTES {
            let mut end = MAX_LOG_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let fields: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(" ");
        let (name, version) = (&self.identity.name, &self.identity.version);
        macro_rules! emit {
            ($lvl:ident) => {
                tracing::$lvl!(target: "lain::plugin::guest", plugin = %name, version = %version, %fields, "{message}")
            };
        }
        match level {
            host::LogLevel::Trace => emit!(trace),
            host::LogLevel::Debug => emit!(debug),
            host::LogLevel::Info => emit!(info),
            host::LogLevel::Warn => emit!(warn),
            host::LogLevel::Error => emit!(error),
        }
    }

    fn config(&mut self) -> String {
        self.identity.config_json.clone()
    }

    fn read_file(&mut self, name: String) -> Result<Vec<u8>, String> {
        let Some(path) = self.identity.files.get(&name) else {
            return Err(format!("file `{name}` is not granted to this plugin"));
        };
        let meta = std::fs::metadata(path).map_err(|e| format!("file `{name}`: {e}"))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(format!(
                "file `{name}` is larger than {MAX_FILE_BYTES} bytes"
            ));
        }
        std::fs::read(path).map_err(|e| format!("file `{name}`: {e}"))
    }

    fn now(&mut self) -> types::Timestamp {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        types::Timestamp {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanoseconds: d.subsec_nanos(),
        }
    }
}

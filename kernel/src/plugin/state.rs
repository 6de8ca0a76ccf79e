//! Per-call host state: what a plugin instance may see, and the host functions it may call.

use super::bindings::{host, types};
use super::guest_log::{self, LogBudget};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Largest file `read-file` returns.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// How much of a plugin's stderr is kept (for panic messages).
pub const STDERR_CAPACITY: usize = 16 << 10;

/// Who a plugin instance is, and what the operator granted it.
pub struct Identity {
    /// Plugin name.
    pub name: String,
    /// Plugin version.
    pub version: String,
    /// Effective configuration, as JSON text.
    pub config_json: String,
    /// Files granted by name: `files.<name> = "/path"` in the operator's configuration of the
    /// plugin, never the manifest's.
    pub files: BTreeMap<String, PathBuf>,
    /// What the plugin may still write into the kernel's log.
    pub log: LogBudget,
}

impl Identity {
    /// Builds an identity from the effective configuration (a JSON object) and the operator's
    /// file grants; the plugin may log `log_lines_per_sec` lines a second.
    pub fn new(
        name: &str,
        version: &str,
        config: &serde_json::Value,
        files: BTreeMap<String, PathBuf>,
        log_lines_per_sec: u32,
    ) -> Identity {
        Identity {
            name: name.to_string(),
            version: version.to_string(),
            config_json: config.to_string(),
            files,
            log: LogBudget::new(log_lines_per_sec),
        }
    }

    /// Says in the kernel's log how many lines the plugin had dropped over its budget, if any.
    pub fn report_dropped_lines(&self) {
        let dropped = self.log.take_dropped();
        if dropped > 0 {
            tracing::warn!(
                target: "lain::plugin::guest",
                plugin = %self.name,
                version = %self.version,
                "{dropped} log lines dropped: over the limit of {} lines per second",
                self.log.per_sec()
            );
        }
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("files", &self.files)
            .finish_non_exhaustive()
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
        let identity = &self.identity;
        if !identity.log.admit() {
            return;
        }
        identity.report_dropped_lines();
        let message = guest_log::escape(&message, guest_log::MAX_MESSAGE);
        let fields = guest_log::fields(&fields);
        let (name, version) = (&identity.name, &identity.version);
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
            return Err(format!(
                "file `{}` is not granted to this plugin",
                name.escape_debug()
            ));
        };
        read_granted(path, MAX_FILE_BYTES).map_err(|e| format!("file `{name}`: {e}"))
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

/// Reads a granted file, at most `max` bytes. Opened non-blocking (a FIFO without a writer does
/// not stall the call) and refused unless it is a regular file (no FIFO, device, socket or
/// directory); the read itself is bounded, because `/proc` files say they are empty.
pub fn read_granted(path: &std::path::Path, max: u64) -> Result<Vec<u8>, String> {
    use rustix::fs::{Mode, OFlags};
    use std::io::Read as _;
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = rustix::fs::open(path, flags, Mode::empty())
        .map_err(|e| std::io::Error::from(e).to_string())?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(
            "not a regular file (a FIFO, device, socket or directory is never read)".into(),
        );
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(max)).unwrap_or(0));
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max {
        return Err(format!("larger than {max} bytes"));
    }
    Ok(bytes)
}

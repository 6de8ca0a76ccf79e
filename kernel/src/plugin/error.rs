//! Typed errors of plugin calls and plugin installs.

use super::bindings::types::PluginError as GuestError;

/// A plugin call that did not produce a result.
///
/// Always names the plugin, its version and the WIT function called (or [`LOADING`] when the
/// plugin failed before any function: looked up, instantiated), so an operator can tell which
/// plugin to blame from one log line.
#[derive(Debug, thiserror::Error)]
#[error("plugin `{plugin}`{}, {}: {cause}", version_part(.version), step(.function))]
pub struct CallError {
    /// Plugin name.
    pub plugin: String,
    /// Plugin version (empty when the plugin could not be found).
    pub version: String,
    /// The WIT function called, as the WIT names it (`describe`, `sync-nodes`, ...), or
    /// [`LOADING`].
    pub function: &'static str,
    /// What went wrong.
    pub cause: Cause,
}

/// What [`CallError::function`] says when the plugin failed before any of its functions ran:
/// finding it in the registry, instantiating it. Never a WIT function name.
pub const LOADING: &str = "loading";

fn version_part(version: &str) -> String {
    if version.is_empty() {
        String::new()
    } else {
        format!(" {version}")
    }
}

fn step(function: &str) -> String {
    if function == LOADING {
        LOADING.to_string()
    } else {
        format!("function `{function}`")
    }
}

/// Why a plugin call failed.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The guest ran past its CPU budget and was interrupted.
    #[error("exceeded its CPU budget of {budget_ms} ms and was stopped")]
    CpuBudget {
        /// The budget.
        budget_ms: u64,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("exceeded its memory cap of {cap_bytes} bytes and was stopped")]
    MemoryCap {
        /// The cap.
        cap_bytes: u64,
    },
    /// The guest overflowed its call stack (e.g. unbounded recursion).
    #[error("overflowed its call stack and was stopped")]
    StackOverflow,
    /// The guest panicked; the message is what it wrote to stderr.
    #[error("panicked: {0}")]
    Panic(String),
    /// Any other trap.
    #[error("trapped: {0}")]
    Trap(String),
    /// The call did not finish within the wall-clock bound.
    #[error("did not finish within {wall_ms} ms")]
    WallClock {
        /// The bound.
        wall_ms: u64,
    },
    /// The result was larger than the kernel accepts.
    #[error("returned {bytes} bytes, more than the {limit} allowed")]
    ResultTooLarge {
        /// Size of the result.
        bytes: u64,
        /// The limit.
        limit: u64,
    },
    /// The result broke the contract (e.g. a bitmap of the wrong length).
    #[error("returned an invalid result: {0}")]
    BadResult(String),
    /// The plugin was quarantined after repeated failures; it is not called until released.
    #[error("is quarantined after {failures} consecutive failures (last: {last})")]
    Quarantined {
        /// Consecutive failures counted.
        failures: u32,
        /// The last failure.
        last: String,
    },
    /// The plugin is disabled by the operator.
    #[error("is disabled")]
    Disabled,
    /// The plugin answered with its own error.
    #[error("{}", guest_message(.0))]
    Guest(GuestError),
    /// The host could not set up the call (instantiation failed, ...).
    #[error("could not be run: {0}")]
    Host(String),
}

impl Cause {
    /// Whether the failure is the plugin misbehaving (counted towards quarantine), as opposed
    /// to an ordinary answer (`Guest`) or a state the operator chose (`Disabled`, `Quarantined`).
    pub fn is_fault(&self) -> bool {
        !matches!(
            self,
            Cause::Guest(_) | Cause::Disabled | Cause::Quarantined { .. }
        )
    }
}

/// A plugin's own error answer, for people: `invalid input: ...`.
pub fn guest_message(e: &GuestError) -> String {
    match e {
        GuestError::InvalidInput(m) => format!("invalid input: {m}"),
        GuestError::BadConfig(m) => format!("bad configuration: {m}"),
        GuestError::Unsupported(m) => format!("unsupported: {m}"),
        GuestError::Other(m) => m.clone(),
    }
}

/// Why a component was refused at install or upgrade. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The bytes are not a WebAssembly component.
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// No manifest was embedded and none was given.
    #[error(
        "no manifest: embed lain-plugin.toml with the SDK's export macro, or pass one beside the component"
    )]
    NoManifest,
    /// The manifest is malformed.
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// The component does not implement the world its manifest claims.
    #[error("does not implement world `{world}`: {reason}")]
    WrongWorld {
        /// The world the manifest claims.
        world: String,
        /// The missing or wrong export.
        reason: String,
    },
    /// The component imports something plugins are not granted.
    #[error("imports `{import}`, which lain does not grant to plugins (granted: {granted})")]
    ForbiddenImport {
        /// The import.
        import: String,
        /// What is granted.
        granted: String,
    },
    /// Compilation failed.
    #[error("cannot be compiled: {0}")]
    Compile(String),
    /// The plugin's `describe` failed at install, so what it claims cannot be checked.
    #[error("its `describe` failed: {0}")]
    Describe(String),
    /// A plugin of that name exists (install) or does not (upgrade), or what the plugin claims
    /// (a proc type) is held by another.
    #[error("{0}")]
    Conflict(String),
    /// No plugin of that name.
    #[error("no plugin named `{0}`")]
    NotFound(String),
    /// No operator mapping of that proc type to undo.
    #[error("{0}")]
    NotMapped(String),
    /// The operation is not allowed on a built-in plugin.
    #[error("`{0}` is built into the kernel: {1}")]
    BuiltIn(String, &'static str),
    /// An upgrade to a lower version than the one installed, without `allow-downgrade`.
    #[error(
        "`{plugin}` {installed} is installed and the new component is {offered}, a lower version: pass --allow-downgrade (API: ?allow-downgrade=true) to go back"
    )]
    Downgrade {
        /// The plugin.
        plugin: String,
        /// The installed version.
        installed: String,
        /// The version offered.
        offered: String,
    },
    /// The operator's configuration of the plugin is refused (bounds, file grants, limits, or
    /// the plugin itself answered `bad-config` or failed with it). Nothing was changed.
    #[error("configuration of plugin `{plugin}` refused: {reason}")]
    BadConfig {
        /// The plugin.
        plugin: String,
        /// Why, naming the key or the plugin's own message.
        reason: String,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(String),
}

impl From<crate::store::StoreError> for InstallError {
    fn from(e: crate::store::StoreError) -> InstallError {
        InstallError::Store(e.0)
    }
}

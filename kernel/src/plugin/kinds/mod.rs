//! Typed entry points per plugin kind, over the generic call machinery of [`LoadedPlugin`].
//!
//! Each wrapper checks what the plugin returns before the kernel uses it: results larger than
//! `max_result_bytes`, or breaking the contract, become a [`Cause`] naming the plugin.

pub mod auth;
pub mod backup;
pub mod monitor;
pub mod proc_checks;
pub mod proc_type;
pub mod scheduler;

use super::bindings::types::PluginError;
use super::bindings::{self, v0_1};
use super::error::{CallError, Cause};
use super::loaded::{Exports, LegacyExports, LoadedPlugin};
use super::state::PluginState;
use std::path::Path;
use wasmtime::Store;
use wasmtime::component::Instance;

/// The guest bindings of one plugin kind: which [`Exports`] are its, and how to load them into an
/// instance.
pub(crate) trait KindGuest: Sized {
    /// The kind's export indices.
    type Indices;
    /// The indices, if `exports` are of this kind.
    fn indices(exports: &Exports) -> Option<&Self::Indices>;
    /// The bindings of `instance`.
    fn load(
        indices: &Self::Indices,
        store: &mut Store<PluginState>,
        instance: &Instance,
    ) -> wasmtime::Result<Self>;
}

macro_rules! kind_guest {
    ($($($module:ident)::+ => $pat:pat => $indices:ident),* $(,)?) => {$(
        impl KindGuest for $($module)::+::Guest {
            type Indices = $($module)::+::GuestIndices;
            fn indices(exports: &Exports) -> Option<&Self::Indices> {
                match exports {
                    $pat => Some($indices),
                    _ => None,
                }
            }
            fn load(
                indices: &Self::Indices,
                store: &mut Store<PluginState>,
                instance: &Instance,
            ) -> wasmtime::Result<Self> {
                indices.load(store, instance)
            }
        }
    )*};
}

kind_guest! {
    bindings::proc_rendering => Exports::ProcType(i) => i,
    bindings::scheduling => Exports::SchedulerFilter(i) => i,
    bindings::backup => Exports::BackupHook(i) => i,
    bindings::monitoring => Exports::MonitorExporter(i) => i,
    bindings::authentication => Exports::AuthProvider(i) => i,
    v0_1::proc_rendering => Exports::V0_1(LegacyExports::ProcType(i)) => i,
    v0_1::scheduling => Exports::V0_1(LegacyExports::SchedulerFilter(i)) => i,
    v0_1::backup => Exports::V0_1(LegacyExports::BackupHook(i)) => i,
    v0_1::monitoring => Exports::V0_1(LegacyExports::MonitorExporter(i)) => i,
    v0_1::authentication => Exports::V0_1(LegacyExports::AuthProvider(i)) => i,
}

/// Calls `function` on a fresh (or warm) instance of `plugin` through its kind's bindings `G`:
/// the one place a wrapper names the function. A plugin of another kind is an error; `check`
/// refuses a result before the kernel uses it. `volume` is mounted read-only (backup hooks).
pub(crate) fn call<G: KindGuest, R>(
    plugin: &LoadedPlugin,
    function: &'static str,
    volume: Option<&Path>,
    f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<R>,
    check: impl FnOnce(&R) -> Result<(), Cause>,
) -> Result<R, CallError> {
    let Some(indices) = G::indices(plugin.exports()) else {
        return Err(wrong_kind(plugin, function));
    };
    plugin.call(
        function,
        volume,
        |store, instance| {
            let guest = G::load(indices, &mut *store, instance)?;
            f(&guest, store)
        },
        check,
    )
}

/// [`call`] for a function that answers `result<T, plugin-error>`: the plugin's own error
/// becomes [`Cause::Guest`], named with the same function.
pub(crate) fn call_fallible<G: KindGuest, T>(
    plugin: &LoadedPlugin,
    function: &'static str,
    volume: Option<&Path>,
    f: impl FnOnce(&G, &mut Store<PluginState>) -> wasmtime::Result<Result<T, PluginError>>,
    check: impl FnOnce(&Result<T, PluginError>) -> Result<(), Cause>,
) -> Result<T, CallError> {
    call(plugin, function, volume, f, check)?.map_err(|e| plugin.error(function, Cause::Guest(e)))
}

/// Counts the bytes of a value's JSON form without allocating it: a cheap, conservative measure
/// of how much a plugin returned (strings and lists count in full).
pub(crate) fn footprint<T: serde::Serialize>(value: &T) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Serialising plain generated records cannot fail; a failure would only undercount.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// Refuses a result whose footprint exceeds the plugin's limit.
pub(crate) fn within_limit<T: serde::Serialize>(
    plugin: &LoadedPlugin,
    value: &T,
) -> Result<(), Cause> {
    let limit = plugin.limits().max_result_bytes;
    let bytes = footprint(value);
    if bytes > limit {
        Err(Cause::ResultTooLarge { bytes, limit })
    } else {
        Ok(())
    }
}

/// Refuses a call on a plugin of another kind (a programming error, reported not panicked).
pub(crate) fn wrong_kind(plugin: &LoadedPlugin, function: &'static str) -> super::error::CallError {
    plugin.error(
        function,
        Cause::Host(format!("`{}` is a {} plugin", plugin.name(), plugin.kind())),
    )
}

/// A `lain:plugin@0.1.0` answer in the current version's type of the same shape.
pub(crate) fn converted<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    answer: wasmtime::Result<A>,
) -> wasmtime::Result<B> {
    crate::plugin::legacy::transcode(&answer?).map_err(wasmtime::Error::msg)
}

/// Converts an argument for a `lain:plugin@0.1.0` plugin; a failure (a kernel bug) is reported
/// as a host error of `function`.
pub(crate) fn arg_v0_1<A: serde::Serialize, B: serde::de::DeserializeOwned>(
    plugin: &LoadedPlugin,
    function: &'static str,
    value: &A,
) -> Result<B, CallError> {
    crate::plugin::legacy::transcode(value).map_err(|e| plugin.error(function, Cause::Host(e)))
}

/// Whether `plugin` implements `lain:plugin@0.1.0` (its values are converted).
pub(crate) fn is_v0_1(plugin: &LoadedPlugin) -> bool {
    matches!(plugin.exports(), Exports::V0_1(_))
}

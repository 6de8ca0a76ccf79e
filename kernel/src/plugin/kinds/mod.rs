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

use super::error::Cause;
use super::loaded::LoadedPlugin;

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

//! What the kernel gives every plugin: structured logs, configuration, granted files, the clock.

use crate::Timestamp;
use crate::bindings::proc_type::lain::plugin::host as raw;

pub use raw::LogLevel;

/// Writes a structured log record into the kernel's log.
///
/// ```no_run
/// lain_sdk_guest::host::log(lain_sdk_guest::host::LogLevel::Info, "rendered", &[("proc", "web")]);
/// ```
pub fn log(level: LogLevel, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    raw::log(level, message, &fields);
}

/// The plugin's effective configuration as JSON text (`{}` when there is none).
pub fn config_json() -> String {
    raw::config()
}

/// Reads a file the operator granted this plugin under `files.<name>` in its configuration.
pub fn read_file(name: &str) -> Result<Vec<u8>, String> {
    raw::read_file(name)
}

/// Current wall-clock time.
pub fn now() -> Timestamp {
    raw::now()
}

/// Current wall-clock time in whole seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    raw::now().seconds
}

//! LAIN's defaults for the keys of a proc section, in one place for the kernel (which reads
//! `lain.yaml`) and the plugin SDK (whose `Proc::default()` plugin tests start from).
//!
//! The kernel and the SDK each have their own Rust type for the WIT record `proc` (one generated
//! by wasmtime, one by wit-bindgen) with the same fields, so [`lain_proc!`] writes the record for
//! either. The values are LAIN's parser's (LAIN reference §proc-keys, `docs/lain-reference.md`).

#![no_std]
#![warn(missing_docs)]

/// `num_instances` when not given.
pub const NUM_INSTANCES: u32 = 1;
/// `cpu` when not given: LAIN's level 0 (the platform default).
pub const CPU: u32 = 0;
/// `memory` when not given, bytes: LAIN's `32m`.
pub const MEMORY: u64 = 32 << 20;
/// `setup_time` when not given, seconds.
pub const SETUP_TIME: u32 = 0;
/// The range `setup_time` is clamped to, seconds (LAIN's parser clamped; its schema refused).
pub const SETUP_TIME_RANGE: (u32, u32) = (0, 120);
/// `kill_timeout` when not given, seconds.
pub const KILL_TIMEOUT: u32 = 10;
/// The range `kill_timeout` is clamped to, seconds.
pub const KILL_TIMEOUT_RANGE: (u32, u32) = (10, 60);
/// The scheduling filter every proc gets unless it names a group itself.
pub const GROUP_FILTER: &str = "constraint:group==default";
/// A proc's type-specific keys when it has none (a JSON object).
pub const EXTRA: &str = "{}";

/// A `proc` record (of the type `$ty`, the kernel's or the SDK's) with LAIN's default for every
/// key: app, name and type as given; one instance, 32 MiB, `kill_timeout` 10 s, no extra keys;
/// everything else empty, `None`, `false` or 0 (no ports: a proc type adds its own, e.g. web's
/// 80; no filters: the kernel adds [`GROUP_FILTER`] after reading the user's).
#[macro_export]
macro_rules! lain_proc {
    ($ty:path { app: $app:expr, name: $name:expr, proc_type: $proc_type:expr $(,)? }) => {{
        use ::core::default::Default as _D;
        $ty {
            app: $app,
            name: $name,
            proc_type: $proc_type,
            image: _D::default(),
            entrypoint: None,
            cmd: None,
            user: None,
            workdir: None,
            env: _D::default(),
            num_instances: $crate::NUM_INSTANCES,
            cpu: $crate::CPU,
            memory: $crate::MEMORY,
            ports: _D::default(),
            stream_ports: _D::default(),
            mountpoints: _D::default(),
            https_only: None,
            healthcheck: None,
            container_healthcheck: None,
            healthcheck_disabled: false,
            volumes: _D::default(),
            logs: _D::default(),
            secret_files: _D::default(),
            secret_files_bypass: false,
            stateful: false,
            setup_time: $crate::SETUP_TIME,
            kill_timeout: $crate::KILL_TIMEOUT,
            labels: _D::default(),
            filters: _D::default(),
            service_name: None,
            allow_clients: None,
            extra: $crate::EXTRA.into(),
        }
    }};
}

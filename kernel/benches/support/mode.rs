//! How long a bench runs. `cargo bench` runs it in full. `cargo test` also runs every bench
//! target (`test = true` in `kernel/Cargo.toml`), without cargo's `--bench` argument: then, or
//! with `LAIN_BENCH_QUICK=1`, it runs in *quick* mode — the same code paths and the same checks
//! on a small workload — so a change that breaks a bench fails the test suite, not only the next
//! person who measures. Quick figures mean nothing and are written beside the real ones
//! (`<name>.quick.json`), never over them.

#![allow(dead_code)] // each bench uses part of it

use std::sync::OnceLock;

/// Whether this run is quick.
pub fn quick() -> bool {
    static QUICK: OnceLock<bool> = OnceLock::new();
    *QUICK.get_or_init(|| {
        std::env::var_os("LAIN_BENCH_QUICK").is_some_and(|v| v != "0")
            || !std::env::args().any(|a| a == "--bench")
    })
}

/// `full` in a full run, `quick` in a quick one.
pub fn pick<T>(full: T, quick: T) -> T {
    if self::quick() { quick } else { full }
}

/// The report's file name for bench `name`: `<name>.json`, or `<name>.quick.json`.
pub fn report_file(name: &str) -> String {
    if quick() {
        format!("{name}.quick.json")
    } else {
        format!("{name}.json")
    }
}

/// Says on stderr which mode runs, so a log shows it.
pub fn announce(name: &str) {
    if quick() {
        eprintln!("bench {name}: quick mode (a smoke run: figures are not measurements)");
    }
}

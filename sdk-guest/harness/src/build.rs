//! Building the plugin under test for `wasm32-wasip2`, from inside its `cargo test`.
//!
//! Like the kernel's `plugins/builtin/build.rs`: the nested cargo builds into a target directory of
//! its own, so it never waits on the lock of the `cargo test` running it, and the outer build's
//! flags (RUSTFLAGS, target, ...) are cleared so they do not leak into a build for another target.

use super::HarnessError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Variables of the outer cargo that must not reach the nested one.
const CLEARED: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WORKSPACE_WRAPPER",
];

/// Components built by this process, by crate directory: each crate is built once per test binary.
static BUILT: Mutex<BTreeMap<PathBuf, PathBuf>> = Mutex::new(BTreeMap::new());

/// Where plugins are built for tests: `$LAIN_GUEST_TARGET_DIR` if set (the directory the kernel's
/// built-in plugins are built in, so a warm build is shared), else `wasm-guests/` in
/// `$CARGO_TARGET_DIR`, else in the target directory of the running test binary, else in
/// `<manifest_dir>/target`.
pub fn guest_target_dir(manifest_dir: Option<&Path>) -> PathBuf {
    if let Some(dir) = std::env::var_os("LAIN_GUEST_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("wasm-guests");
    }
    // A test binary is `<target>/<profile>/deps/<name>-<hash>`.
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
    });
    match (from_exe, manifest_dir) {
        (Some(target), _) => target.join("wasm-guests"),
        (None, Some(dir)) => dir.join("target/wasm-guests"),
        (None, None) => std::env::temp_dir().join("lain-plugin-harness"),
    }
}

/// Builds the plugin crate in `manifest_dir` (give it `env!("CARGO_MANIFEST_DIR")`) with
/// `cargo build --release --target wasm32-wasip2` and returns the component's path.
///
/// The build's progress and errors go to the test's stderr. Errors: cargo cannot be run, the build
/// fails (e.g. the `wasm32-wasip2` target is missing: `rustup target add wasm32-wasip2`), or it
/// produced no `.wasm` for that crate.
pub fn build(manifest_dir: impl AsRef<Path>) -> Result<PathBuf, HarnessError> {
    let dir = manifest_dir.as_ref();
    let failed = |message: String| HarnessError::Build {
        manifest_dir: dir.to_path_buf(),
        message,
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| failed(format!("no such directory: {e}")))?;
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(wasm) = built.get(&dir) {
        return Ok(wasm.clone());
    }
    let manifest = dir.join("Cargo.toml");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(guest_target_dir(Some(&dir)))
        .args(["--message-format", "json-render-diagnostics"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for var in CLEARED {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .map_err(|e| failed(format!("cannot run {cargo}: {e}")))?;
    if !out.status.success() {
        return Err(failed(format!(
            "cargo build failed ({}); its errors are above. The Rust target is installed with `rustup target add wasm32-wasip2`",
            out.status
        )));
    }
    let wasm = artifact(&out.stdout, &manifest)
        .ok_or_else(|| failed("cargo built no .wasm for this crate: is it a `cdylib`?".into()))?;
    built.insert(dir, wasm.clone());
    Ok(wasm)
}

/// The `.wasm` cargo reported for the package of `manifest` in its JSON messages.
fn artifact(messages: &[u8], manifest: &Path) -> Option<PathBuf> {
    String::from_utf8_lossy(messages)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["manifest_path"]
                .as_str()
                .and_then(|p| Path::new(p).canonicalize().ok())
                .is_some_and(|p| Some(p) == manifest.canonicalize().ok())
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
}

//! End-to-end: a plugin author's loop through the real `lain` binary (issue 14, item 10):
//! `lain validate --render` shows the plan a proc type renders, offline, and `lain up --plugin`
//! installs (or upgrades) a proc type before the app that uses it is built.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{json, lain_bin, write_app};

const APP: &str = "appname: shop
build:
  base: debian:bookworm-slim
web:
  cmd: ./server
  port: 8080
  healthcheck: /healthz
cron.nightly:
  cmd: sh -c 'echo report ran; sleep 100000'
  schedule: \"@every 1m\"
  timezone: Europe/Paris
";

fn validate(args: &[&str]) -> std::process::Output {
    Command::new(lain_bin())
        .arg("validate")
        .args(args)
        // Compiled plugins are cached across tests and runs, as in `support`.
        .env(
            "XDG_CACHE_HOME",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache"),
        )
        .output()
        .expect("run lain validate")
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_render_prints_each_procs_plan_offline() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write_app(tmp.path(), "shop", APP);
    let app = app.to_str().expect("utf-8");

    // Without the plugin, `cron` is unknown and nothing is rendered.
    let out = validate(&[app, "--render"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("unknown proc type cron"), "{stderr}");
    assert!(!stdout.contains("image:"), "{stdout}");

    // With it: every proc's plan, for people...
    let out = validate(&[app, "--render", "--plugin", fixtures::TEMPLATE]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("web (web, plugin web "), "{stdout}");
    assert!(
        stdout.contains("cron.nightly (cron, plugin cron "),
        "{stdout}"
    );
    assert!(
        stdout.contains("  cmd: sh -c 'echo report ran; sleep 100000'\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  image: (the release's image)\n"),
        "{stdout}"
    );

    // ...and for scripts: the plans as the kernel would record them.
    let out = validate(&[
        app,
        "--render",
        "--plugin",
        fixtures::TEMPLATE,
        "-o",
        "json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let report = json(&stdout);
    let plans = report["plans"].as_array().expect("plans");
    let plan = |section: &str| -> &Value {
        plans
            .iter()
            .find(|p| p["section"] == section)
            .unwrap_or_else(|| panic!("no plan of {section}: {report:#}"))
    };
    let web = plan("web");
    assert_eq!(web["plugin"], "web");
    assert!(
        web["plan"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .any(|p| p["number"] == 8080),
        "{web:#}"
    );
    let hosts: Vec<&str> = web["plan"]["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .filter_map(|r| r["host"].as_str())
        .collect();
    assert!(hosts.contains(&"shop.lain.local"), "{web:#}");
    assert!(web["plan"]["health"].is_object(), "{web:#}");
    let cron = plan("cron.nightly");
    assert_eq!(
        (cron["plugin"].as_str(), cron["proc"].as_str()),
        (Some("cron"), Some("nightly"))
    );
    assert_eq!(
        cron["plan"]["cmd"],
        serde_json::json!(["sh", "-c", "echo report ran; sleep 100000"])
    );
    // The rendering context is the kernel's: the cluster domains given are the routes' hosts.
    let out = validate(&[
        app,
        "--render",
        "-o",
        "json",
        "--plugin",
        fixtures::TEMPLATE,
        "--domain",
        "example.org",
    ]);
    let report = json(&text(&out).0);
    assert!(
        report["plans"][0]["plan"]["routes"]
            .to_string()
            .contains("shop.example.org"),
        "{report:#}"
    );
    // Without --render, no plans are rendered.
    let out = validate(&[app, "-o", "json", "--plugin", fixtures::TEMPLATE]);
    assert!(json(&text(&out).0).get("plans").is_none());
}

#[test]
fn validate_render_refuses_bad_plugin_arguments_by_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write_app(tmp.path(), "shop", APP);
    let app = app.to_str().expect("utf-8");
    // A scheduler filter is not a proc type.
    let spread = Path::new(fixtures::TEMPLATE).with_file_name("lain_plugin_spread.wasm");
    let out = validate(&[app, "--render", "--plugin", spread.to_str().expect("utf-8")]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains("lain_plugin_spread.wasm: a scheduler-filter plugin, not a proc type"),
        "{stderr}"
    );
    // A manifest for no plugin.
    let manifest = tmp.path().join("cron.toml");
    std::fs::write(
        &manifest,
        "name = \"cron\"\nversion = \"9.9.9\"\nkind = \"proc-type\"\n",
    )
    .expect("write");
    let m = manifest.to_str().expect("utf-8");
    let out = validate(&[app, "--render", "--manifest", m]);
    assert!(
        text(&out).1.contains("1 --manifest for 0 --plugin"),
        "{}",
        text(&out).1
    );
    // A manifest given with its plugin is the one used (its version is shown).
    let out = validate(&[
        app,
        "--render",
        "--plugin",
        fixtures::TEMPLATE,
        "--manifest",
        m,
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("(cron, plugin cron 9.9.9)"), "{stdout}");
}

/// An app whose only proc is of the template's type `cron`.
const CRON_APP: &str = "appname: shop
build:
  base: debian:bookworm-slim
cron.nightly:
  cmd: sh -c 'echo report ran; sleep 100000'
  schedule: \"@every 1m\"
";

/// `lain up APP --plugin FILE` with its data in `data` and its stderr in `err`.
fn up(app: &Path, data: &Path, plugin: &Path, err: &Path) -> std::process::Child {
    let api = format!("127.0.0.1:{}", support::free_port());
    Command::new(lain_bin())
        .arg("up")
        .arg(app)
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &api])
        .arg("--plugin")
        .arg(plugin)
        .env(
            "LAIN_ROUTER_LISTEN",
            format!("127.0.0.1:{}", support::free_port()),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(err).expect("log"))
        .spawn()
        .expect("lain up")
}

/// Waits until `lain up` has built the app (after installing its plugins: the build accepted
/// every proc type), from its stderr in `err`.
fn wait_for_release(err: &Path) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let log = std::fs::read_to_string(err).unwrap_or_default();
        if log.contains("==> release ") {
            return;
        }
        assert!(
            Instant::now() < deadline && !log.contains("Error"),
            "no release of shop: {log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Ctrl-C, then the exit status and stderr.
fn stop(mut child: std::process::Child, err: &Path) -> String {
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let log = std::fs::read_to_string(err).unwrap_or_default();
            panic!("lain up did not stop within 60 s of Ctrl-C: {log}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(err).unwrap_or_default();
    assert!(status.success(), "{status}: {log}");
    log
}

#[test]
fn lain_up_installs_then_upgrades_a_proc_type_before_the_app() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let app = write_app(tmp.path(), "shop", CRON_APP);
    let data = tmp.path().join("data");
    let err = tmp.path().join("up.err");

    // A plugin file that cannot be read stops `lain up` before any kernel starts.
    let out = Command::new(lain_bin())
        .arg("up")
        .arg(&app)
        .arg("--data-dir")
        .arg(&data)
        .args(["--plugin", "/nonexistent/cron.wasm"])
        .output()
        .expect("lain up");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("cannot read /nonexistent/cron.wasm"),
        "{}",
        text(&out).1
    );
    assert!(!data.exists(), "nothing was started");

    let child = up(&app, &data, Path::new(fixtures::TEMPLATE), &err);
    wait_for_release(&err);
    let log = stop(child, &err);
    assert!(log.contains("==> installing plugin cron from "), "{log}");
    assert!(
        log.contains("==> plugin cron 0.1.0 (proc-type) enabled"),
        "{log}"
    );

    // Again with the same file: kept as it is. With a new version: upgraded.
    let child = up(&app, &data, Path::new(fixtures::TEMPLATE), &err);
    wait_for_release(&err);
    let log = stop(child, &err);
    assert!(
        log.contains("==> plugin cron 0.1.0: already installed"),
        "{log}"
    );

    let next = tmp.path().join("cron-next.wasm");
    std::fs::copy(fixtures::TEMPLATE, &next).expect("copy");
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/template/lain-plugin.toml"),
    )
    .expect("template manifest");
    let bumped: String = manifest
        .lines()
        .map(|l| {
            if l.starts_with("version = ") {
                "version = \"0.1.1\""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(next.with_extension("toml"), bumped).expect("manifest");
    let child = up(&app, &data, &next, &err);
    wait_for_release(&err);
    let log = stop(child, &err);
    assert!(
        log.contains("==> upgrading plugin cron 0.1.0 from "),
        "{log}"
    );
    assert!(
        log.contains("==> plugin cron 0.1.1 (proc-type) enabled"),
        "{log}"
    );
}

/// The lain repository.
fn repo() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository")
}

/// The `toml` code blocks of a Markdown (or `//!` doc comment) text, markers stripped.
fn toml_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches("//!").trim();
        match &mut current {
            None if line == "```toml" => current = Some(String::new()),
            Some(block) if line == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

/// Applies the `key = value` lines of `block` to `manifest`, each in its `[section]`: a line of the
/// same key is replaced, else the line is added; a section that is missing is added (so an empty
/// `[workspace]` in the block adds an empty `[workspace]` table).
fn apply(manifest: &str, block: &str) -> String {
    let mut lines: Vec<String> = manifest.lines().map(str::to_string).collect();
    let mut section = String::new();
    for line in block
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if line.starts_with('[') {
            section = line.to_string();
            if !lines.iter().any(|l| l.trim() == section) {
                lines.push(String::new());
                lines.push(section.clone());
            }
            continue;
        }
        let key = line.split('=').next().unwrap_or_default().trim();
        let start = lines
            .iter()
            .position(|l| l.trim() == section)
            .expect("section added above");
        let end = lines[start + 1..]
            .iter()
            .position(|l| l.starts_with('['))
            .map_or(lines.len(), |i| start + 1 + i);
        match (start + 1..end)
            .find(|&i| lines[i].split('=').next().unwrap_or_default().trim() == key)
        {
            Some(i) => lines[i] = line.to_string(),
            None => lines.insert(start + 1, line.to_string()),
        }
    }
    lines.join("\n") + "\n"
}

/// Copies `from` into `to`, leaving out build output.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir").flatten() {
        let (path, name) = (entry.path(), entry.file_name());
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            copy_dir(&path, &to.join(&name));
        } else {
            std::fs::copy(&path, to.join(&name)).expect("copy");
        }
    }
}

#[test]
fn a_copy_of_the_template_builds_offline_with_the_documented_lines() {
    let repo = repo();
    let tmp = tempfile::tempdir().expect("tempdir");
    let copy = tmp.path().join("lain-plugin-mytype");
    copy_dir(&repo.join("plugins/template"), &copy);

    // The lines the template's README tells to change, and the SDK's `testing` line, as written
    // in the docs, with the documented placeholder pointing at this checkout.
    let readme = std::fs::read_to_string(repo.join("plugins/template/README.md")).expect("README");
    let readme_block = toml_blocks(&readme)
        .into_iter()
        .find(|b| b.contains("/path/to/lain/sdk-guest"))
        .expect("the README's Cargo.toml lines");
    let testing =
        std::fs::read_to_string(repo.join("sdk-guest/src/testing.rs")).expect("testing.rs");
    let testing_block = toml_blocks(&testing)
        .into_iter()
        .find(|b| b.contains("features = [\"testing\"]"))
        .expect("the SDK's [dev-dependencies] line");
    let root = repo.to_str().expect("utf-8");
    let mut manifest = std::fs::read_to_string(copy.join("Cargo.toml")).expect("Cargo.toml");
    for block in [&readme_block, &testing_block] {
        manifest = apply(&manifest, &block.replace("/path/to/lain", root));
    }
    assert!(
        !manifest.contains("../../"),
        "a relative path is left: {manifest}"
    );
    std::fs::write(copy.join("Cargo.toml"), &manifest).expect("write");
    // The repository's lock file, so that the offline build resolves the versions it has.
    std::fs::copy(repo.join("Cargo.lock"), copy.join("Cargo.lock")).expect("lock file");

    // Built offline, in a target directory kept between runs (warm after the first).
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("template-copy");
    let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cargo
        .current_dir(&copy)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--offline",
        ])
        .arg("--target-dir")
        .arg(&target);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cargo.env_remove(var);
    }
    let out = cargo.output().expect("cargo");
    assert!(
        out.status.success(),
        "the copy does not build with the documented lines:\n{manifest}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // `cargo metadata` also resolves the dev-dependencies (the harness, the `testing` feature).
    let meta = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&copy)
        .env_remove("CARGO_TARGET_DIR")
        .args(["metadata", "--offline", "--format-version", "1"])
        .output()
        .expect("cargo metadata");
    assert!(
        meta.status.success(),
        "{}",
        String::from_utf8_lossy(&meta.stderr)
    );
    let meta = json(&String::from_utf8_lossy(&meta.stdout));
    let features = meta["resolve"]["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| {
            n["id"]
                .as_str()
                .is_some_and(|id| id.contains("#lain-sdk-guest@"))
        })
        .map(|n| n["features"].clone());
    assert_eq!(features, Some(serde_json::json!(["testing"])), "{meta:#}");

    // What it built is a proc type the kernel's host loads.
    let wasm = target.join("wasm32-wasip2/release/lain_plugin_template.wasm");
    let app = write_app(tmp.path(), "shop", CRON_APP);
    let out = validate(&[
        app.to_str().expect("utf-8"),
        "--render",
        "--plugin",
        wasm.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
}

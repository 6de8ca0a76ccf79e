//! End-to-end: `lain validate` offline and `POST /api/v1/validate` on a kernel give the same
//! verdict, and a deeply nested file is a located error for both (issue 12, finding 2).

mod support;

#[path = "../../kernel/tests/common/hostile.rs"]
mod hostile;

use serde_json::Value;
use std::process::Command;
use support::{KernelProcess, lain_bin};

const BAD: &str =
    "appname: hello\nbuild:\n  base: busybox\nworker:\n  num_instanses: 3\n  memory: 1m\n";
const GOOD: &str =
    "appname: hello\nbuild:\n  base: busybox\nweb:\n  cmd: ./server --port 8080\n  port: 8080\n";

fn validate(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new(lain_bin())
        .arg("validate")
        .args(args)
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .output()
        .expect("run lain validate")
}

#[test]
fn validate_reports_every_problem_with_its_position_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lain.yaml");
    std::fs::write(&file, BAD).expect("write");
    let out = validate(&[dir.path().to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let shown = file.display().to_string();
    assert!(
        err.contains(&format!("{shown}:5:3: error: worker.num_instanses: unknown key num_instanses (did you mean num_instances?)")),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "{shown}:6:11: error: worker.memory: memory \"1m\" is below the minimum of 4m"
        )),
        "{err}"
    );

    let out = validate(
        &[file.to_str().expect("utf-8"), "--output", "json"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["valid"], false);
    let first = &report["diagnostics"][0];
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(5), Some(3))
    );
    assert_eq!(first["hint"], "did you mean num_instances?");
}

#[test]
fn validate_accepts_a_good_file_and_plugin_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("lain.yaml");
    std::fs::write(&file, GOOD).expect("write");
    let out = validate(&[file.to_str().expect("utf-8"), "-o", "json"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let web = &report["spec"]["procs"][0]["proc"];
    assert_eq!(
        web["mountpoints"],
        serde_json::json!(["hello.lain.local", "hello.lain"])
    );
    assert_eq!(
        web["cmd"],
        serde_json::json!(["./server", "--port", "8080"])
    );

    // A `cron.nightly` section needs a plugin serving `cron`.
    let cron = "appname: hello\nbuild: {base: busybox}\ncron.nightly:\n  cmd: ./report\n  schedule: \"0 3 * * *\"\n";
    std::fs::write(&file, cron).expect("write");
    let out = validate(&[file.to_str().expect("utf-8")], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown proc type cron; installed proc types: oneshot, portal, web, worker"),
        "{err}"
    );
    let template = lain_builtin_plugins::fixtures::TEMPLATE;
    let out = validate(
        &[file.to_str().expect("utf-8"), "--plugin", template],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("procs: nightly (cron)"));
}

#[test]
fn the_kernel_validates_with_the_same_parser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(dir.path(), "domains = [\"example.org\"]\n");
    let post = |body: &str| -> Value {
        let mut resp = ureq::post(&format!("{}/api/v1/validate", kernel.url))
            .header("Content-Type", "application/yaml")
            .header("Authorization", &format!("Bearer {}", kernel.token()))
            .send(body)
            .expect("request");
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json")
    };
    let bad = post(BAD);
    assert_eq!(bad["valid"], false);
    let messages: Vec<&str> = bad["diagnostics"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|d| d["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "unknown key num_instanses",
            "memory \"1m\" is below the minimum of 4m"
        ]
    );
    let good = post(GOOD);
    assert_eq!(good["valid"], true);
    assert_eq!(
        good["spec"]["procs"][0]["proc"]["mountpoints"],
        serde_json::json!(["hello.example.org", "hello.lain"])
    );
    // Installing a proc-type plugin on the kernel makes its type available to deploys.
    let cron = "appname: hello\nbuild: {base: busybox}\ncron.nightly:\n  schedule: \"0 3 * * *\"\n";
    assert_eq!(post(cron)["valid"], false);
    kernel.lain_ok(&[
        "plugin",
        "install",
        lain_builtin_plugins::fixtures::TEMPLATE,
    ]);
    assert_eq!(post(cron)["valid"], true);
}

#[test]
fn deep_nesting_is_a_located_error_offline_and_on_the_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app");
    std::fs::create_dir_all(&app).expect("app dir");
    let file = app.join("lain.yaml");
    let shown = file.display().to_string();
    for kind in hostile::ONE_LINE_KINDS {
        for n in [5_000, 200_000] {
            std::fs::write(&file, hostile::deep_yaml(kind, n)).expect("write");
            let out = validate(&[&shown, "-o", "json"], dir.path());
            assert_eq!(out.status.code(), Some(1), "{kind} x{n}: {out:?}");
            let report: Value = serde_json::from_slice(&out.stdout).expect("json");
            let d = &report["diagnostics"][0];
            assert_eq!(
                (d["message"].as_str(), d["line"].as_u64()),
                (Some("nested deeper than 64 levels"), Some(2)),
                "{kind} x{n}: {d}"
            );
        }
    }
    // As a person reads it: the 65th level is the 64th `-` on line 2.
    std::fs::write(&file, hostile::deep_yaml("block-seq", 200_000)).expect("write");
    let out = validate(&[&shown], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{shown}:2:129: error: nested deeper than 64 levels"
        )),
        "{err}"
    );

    // The kernel answers the same over HTTP, to `lain build` too, and keeps serving.
    let kernel = KernelProcess::start(&dir.path().join("data"), "");
    let post = |body: String| -> Value {
        let mut resp = ureq::post(&format!("{}/api/v1/validate", kernel.url))
            .header("Authorization", &format!("Bearer {}", kernel.token()))
            .send(body)
            .expect("request");
        serde_json::from_str(&resp.body_mut().read_to_string().expect("body")).expect("json")
    };
    for kind in hostile::ONE_LINE_KINDS {
        let report = post(hostile::deep_yaml(kind, 200_000));
        assert_eq!(
            report["diagnostics"][0]["message"], "nested deeper than 64 levels",
            "{kind}: {report}"
        );
    }
    let err = kernel.lain_err(&["build", app.to_str().expect("utf-8")]);
    assert!(
        err.contains("lain.yaml:2:129: error: nested deeper than 64 levels"),
        "{err}"
    );
    assert_eq!(
        post(GOOD.to_string())["valid"],
        true,
        "the kernel still serves"
    );
}

//! End-to-end: administering plugins live through the real `lain` binary and `lain serve`:
//! `lain plugin config`, `map`/`unmap`, `upgrade --allow-downgrade`, `show`; admin rights, the
//! audit log, refusals that change nothing, and kill -9.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use sha2::Digest;
use support::{KernelProcess, json};

const BOB: &str = "bob-secret-token-00000";

fn manifest(dir: &std::path::Path, version: &str) -> String {
    let path = dir.join(format!("hostile-{version}.toml"));
    std::fs::write(
        &path,
        format!(
            "name = \"hostile\"\nversion = \"{version}\"\nkind = \"proc-type\"\n[config]\nversion = \"{version}\"\n"
        ),
    )
    .expect("manifest");
    path.to_str().expect("utf-8").to_string()
}

/// Whether the kernel finds a lain.yaml with a `worker` proc named `escape-problem` valid (the
/// hostile fixture refuses that name; the built-in `worker` does not).
fn validate(kernel: &KernelProcess) -> Value {
    let yaml = b"appname: hello\nbuild: {base: busybox}\nworker.escape-problem:\n  cmd: ./run\n";
    let token = kernel.token();
    let (status, body) = kernel.api("POST", "/api/v1/validate", Some(&token), Some(&yaml[..]));
    assert_eq!(status, 200, "{body}");
    json(&body)["valid"].clone()
}

fn kernel(dir: &std::path::Path) -> KernelProcess {
    let bob = hex::encode(sha2::Sha256::digest(BOB.as_bytes()));
    let config = format!(
        "[plugins.config.token]\ntokens = [{{ user = \"bob\", sha256 = \"{bob}\" }}]\n\
         [plugins.config.hostile]\nversion = \"from-kernel-config\"\n"
    );
    KernelProcess::start(dir, &config)
}

#[test]
fn live_configuration_mapping_and_downgrades_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kernel = kernel(&dir.path().join("data"));
    let v2 = manifest(dir.path(), "0.2.0");
    kernel.lain_ok(&["plugin", "install", fixtures::HOSTILE, "--manifest", &v2]);

    // The effective configuration, and where it comes from.
    let c = json(&kernel.lain_ok(&["plugin", "config", "hostile", "-o", "json"]));
    assert_eq!(
        (&c["source"], &c["effective"]["version"]),
        (
            &Value::from("kernel-config"),
            &Value::from("from-kernel-config")
        )
    );
    // Changed live, tried on the plugin first; `limits` set its own limits.
    let c = json(&kernel.lain_ok(&[
        "plugin",
        "config",
        "hostile",
        "--set",
        "version=live",
        "--set",
        "limits.cpu_ms=50",
        "-o",
        "json",
    ]));
    assert_eq!(
        (
            &c["source"],
            &c["effective"]["version"],
            &c["limits"]["cpu_ms"]
        ),
        (&Value::from("api"), &Value::from("live"), &Value::from(50))
    );
    assert!(
        c["effective"].get("limits").is_none(),
        "the plugin does not see its limits"
    );
    let text = kernel.lain_ok(&["plugin", "config", "hostile"]);
    assert!(text.contains("set with `lain plugin config`"), "{text}");

    // Refusals name the key and change nothing.
    let err = kernel.lain_err(&[
        "plugin",
        "config",
        "hostile",
        "--set",
        "limits.memory_bytes=1",
    ]);
    assert!(err.contains("limits.memory_bytes = 1"), "{err}");
    let err = kernel.lain_err(&["plugin", "config", "hostile", "--set", "type=worker"]);
    assert!(err.contains("built-in plugin `worker`"), "{err}");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "version: x\n").expect("write");
    let err = kernel.lain_err(&[
        "plugin",
        "config",
        "hostile",
        "-f",
        bad.to_str().expect("utf-8"),
    ]);
    assert!(err.contains(".toml or .json"), "{err}");
    let c = json(&kernel.lain_ok(&["plugin", "config", "hostile", "-o", "json"]));
    assert_eq!(
        (&c["effective"]["version"], &c["limits"]["cpu_ms"]),
        (&Value::from("live"), &Value::from(50))
    );

    // `show` says what the plugin describes, its limits and where its configuration comes from.
    let show = json(&kernel.lain_ok(&["plugin", "show", "hostile", "-o", "json"]));
    assert_eq!(show["described"]["proc_type"], "hostile");
    assert_eq!(show["described"]["serves"], serde_json::json!(["hostile"]));
    assert_eq!(
        (&show["limits"]["cpu_ms"], &show["config_source"]),
        (&Value::from(50), &Value::from("api"))
    );
    let text = kernel.lain_ok(&["plugin", "show", "hostile"]);
    assert!(
        text.contains("proc type:     hostile") && text.contains("set for this plugin"),
        "{text}"
    );

    // A downgrade is refused unless allowed.
    let v1 = manifest(dir.path(), "0.1.0");
    let err = kernel.lain_err(&[
        "plugin",
        "upgrade",
        "hostile",
        fixtures::HOSTILE,
        "--manifest",
        &v1,
    ]);
    assert!(
        err.contains("0.2.0 is installed") && err.contains("--allow-downgrade"),
        "{err}"
    );
    let show = json(&kernel.lain_ok(&["plugin", "show", "hostile", "-o", "json"]));
    assert_eq!(show["version"], "0.2.0");
    let out = kernel.lain_ok(&[
        "plugin",
        "upgrade",
        "hostile",
        fixtures::HOSTILE,
        "--manifest",
        &v1,
        "--allow-downgrade",
    ]);
    assert!(
        out.contains("downgraded hostile from 0.2.0 to 0.1.0"),
        "{out}"
    );

    // The proc-type mapping, live: the kernel checks `worker` procs with the plugin mapped to
    // the type from the next request on (the hostile fixture refuses a proc named
    // `escape-problem`; the built-in `worker` does not).
    let admin = kernel.token();
    assert_eq!(validate(&kernel), Value::from(true));
    let err = kernel.lain_err(&["plugin", "map", "worker", "spread"]);
    assert!(err.contains("scheduler-filter"), "{err}");
    assert_eq!(
        validate(&kernel),
        Value::from(true),
        "a refused mapping changes nothing"
    );
    kernel.lain_ok(&["plugin", "map", "worker", "hostile"]);
    assert_eq!(validate(&kernel), Value::from(false));
    let m = json(&kernel.lain_ok(&["plugin", "mappings", "-o", "json"]));
    assert_eq!(
        m,
        serde_json::json!([{ "type": "worker", "plugin": "hostile", "source": "api" }])
    );
    let show = json(&kernel.lain_ok(&["plugin", "show", "hostile", "-o", "json"]));
    assert_eq!(
        show["described"]["serves"],
        serde_json::json!(["hostile", "worker"])
    );

    // Only admins read or change a plugin's configuration or the mapping; a refusal changes
    // nothing.
    let edit = br#"{"set": {"version": "bob"}}"#;
    let map = br#"{"plugin": "hostile"}"#;
    for (method, path, body) in [
        ("GET", "/api/v1/plugins/hostile/config", None),
        ("PUT", "/api/v1/plugins/hostile/config", Some(&edit[..])),
        ("DELETE", "/api/v1/plugins/hostile/config", None),
        ("PUT", "/api/v1/proc-types/cron", Some(&map[..])),
        ("DELETE", "/api/v1/proc-types/worker", None),
    ] {
        let (status, _) = kernel.api(method, path, Some(BOB), body);
        assert_eq!(status, 403, "{method} {path} as bob");
        let (status, _) = kernel.api(method, path, None, body);
        assert_eq!(status, 401, "{method} {path} anonymous");
    }
    let (status, body) = kernel.api("GET", "/api/v1/plugins/hostile/config", Some(&admin), None);
    assert_eq!(
        (status, json(&body)["effective"]["version"].clone()),
        (200, Value::from("live"))
    );

    // Everything survives kill -9.
    kernel.restart();
    let c = json(&kernel.lain_ok(&["plugin", "config", "hostile", "-o", "json"]));
    assert_eq!(
        (
            &c["source"],
            &c["effective"]["version"],
            &c["limits"]["cpu_ms"]
        ),
        (&Value::from("api"), &Value::from("live"), &Value::from(50))
    );
    let m = json(&kernel.lain_ok(&["plugin", "mappings", "-o", "json"]));
    assert_eq!(m[0]["plugin"], "hostile");
    let show = json(&kernel.lain_ok(&["plugin", "show", "hostile", "-o", "json"]));
    assert_eq!(show["version"], "0.1.0");

    // The audit log has each change, refusal and denial.
    let audit = json(&kernel.lain_ok(&["audit", "-o", "json"]));
    let has = |action: &str, result: &str| {
        audit
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["action"] == action && r["result"] == result)
    };
    assert!(has("PUT /api/v1/plugins/{name}/config", "ok"), "{audit:#}");
    assert!(
        has("PUT /api/v1/plugins/{name}/config", "failed"),
        "{audit:#}"
    );
    assert!(
        has("PUT /api/v1/plugins/{name}/config", "denied"),
        "{audit:#}"
    );
    assert!(has("GET /api/v1/plugins/{name}/config", "ok"), "{audit:#}");
    assert!(has("PUT /api/v1/proc-types/{type}", "ok"), "{audit:#}");
    assert!(has("PUT /api/v1/plugins/{name}", "failed"), "{audit:#}");

    // Back to the kernel config, and the type back to its built-in.
    let c = json(&kernel.lain_ok(&["plugin", "config", "hostile", "--reset", "-o", "json"]));
    assert_eq!(c["effective"]["version"], "from-kernel-config");
    kernel.lain_ok(&["plugin", "unmap", "worker"]);
    let m = json(&kernel.lain_ok(&["plugin", "mappings", "-o", "json"]));
    assert_eq!(m, serde_json::json!([]));
    assert_eq!(
        validate(&kernel),
        Value::from(true),
        "worker is the built-in's again"
    );
    let toml = dir.path().join("settings.toml");
    std::fs::write(&toml, "version = \"from-file\"\n[limits]\nwall_ms = 3000\n").expect("write");
    let c = json(&kernel.lain_ok(&[
        "plugin",
        "config",
        "hostile",
        "-f",
        toml.to_str().expect("utf-8"),
        "-o",
        "json",
    ]));
    assert_eq!(
        (&c["effective"]["version"], &c["limits"]["wall_ms"]),
        (&Value::from("from-file"), &Value::from(3000))
    );
}

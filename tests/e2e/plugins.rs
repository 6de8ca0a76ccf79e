//! End-to-end: the real `lain` binary, `lain serve` and `lain plugin ...`, over real HTTP.

mod support;

use lain_builtin_plugins::fixtures;
use serde_json::Value;
use sha2::Digest;
use support::KernelProcess;

const BUILTINS: [&str; 13] = [
    "archive",
    "constraint",
    "dump-first",
    "graphite",
    "jwt",
    "oneshot",
    "portal",
    "prometheus",
    "resources",
    "spread",
    "token",
    "web",
    "worker",
];

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn plugin_lifecycle_through_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(dir.path(), "");

    let list = json(&kernel.lain_ok(&["plugin", "list", "--output", "json"]));
    assert_eq!(names(&list), BUILTINS);
    assert!(
        list.as_array()
            .expect("list")
            .iter()
            .all(|p| p["builtin"] == true
                && p["enabled"] == true
                && (p["compiled"] == "winch" || p["compiled"] == "cranelift"))
    );
    let table = kernel.lain_ok(&["plugin", "list"]);
    assert!(
        table.starts_with("NAME") && table.contains("auth-provider") && table.contains("built-in"),
        "{table}"
    );

    let out = kernel.lain_ok(&["plugin", "install", fixtures::TEMPLATE]);
    assert!(out.contains("installed cron 0.1.0 (proc-type)"), "{out}");
    let show = kernel.lain_ok(&["plugin", "show", "cron"]);
    assert!(
        show.contains("kind:          proc-type (lain:plugin/proc-type@0.2.0)"),
        "{show}"
    );
    assert!(show.contains("source:        installed"), "{show}");
    // Which build it runs: Winch until its Cranelift build is in (at once when it was cached).
    assert!(
        show.contains(
            "compiled:      winch (baseline; the Cranelift build replaces it when ready)"
        ) || show.contains("compiled:      cranelift\n"),
        "{show}"
    );

    let err = kernel.lain_err(&["plugin", "install", fixtures::TEMPLATE]);
    assert!(
        err.contains("a plugin named `cron` is installed; use upgrade"),
        "{err}"
    );

    let view = json(&kernel.lain_ok(&["plugin", "policy", "cron", "open", "-o", "json"]));
    assert_eq!(
        (
            view["health"]["policy"].as_str(),
            view["policy_overridden"].as_bool()
        ),
        (Some("open"), Some(true))
    );
    assert_eq!(
        json(&kernel.lain_ok(&["plugin", "disable", "cron", "-o", "json"]))["enabled"],
        false
    );
    assert_eq!(
        json(&kernel.lain_ok(&["plugin", "enable", "cron", "-o", "json"]))["enabled"],
        true
    );

    // Upgrade with a manifest lying beside the component (`<file>.toml`).
    let upgraded = dir.path().join("cron-2.wasm");
    std::fs::copy(fixtures::TEMPLATE, &upgraded).expect("copy");
    std::fs::write(
        upgraded.with_extension("toml"),
        "name = \"cron\"\nversion = \"0.2.0\"\nkind = \"proc-type\"\ndescription = \"cron, second cut\"\n",
    )
    .expect("manifest");
    let out = kernel.lain_ok(&[
        "plugin",
        "upgrade",
        "cron",
        upgraded.to_str().expect("utf-8"),
    ]);
    assert!(out.contains("upgraded cron to 0.2.0"), "{out}");
    let view = json(&kernel.lain_ok(&["plugin", "show", "cron", "-o", "json"]));
    assert_eq!(
        (view["version"].as_str(), view["health"]["policy"].as_str()),
        (Some("0.2.0"), Some("open"))
    );

    kernel.lain_ok(&["plugin", "remove", "cron"]);
    let list = json(&kernel.lain_ok(&["plugin", "list", "-o", "json"]));
    assert_eq!(names(&list), BUILTINS);
    let err = kernel.lain_err(&["plugin", "remove", "web"]);
    assert!(err.contains("`web` is built into the kernel"), "{err}");
}

#[test]
fn refusals_name_the_culprit_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kernel = KernelProcess::start(dir.path(), "");
    let err = kernel.lain_err(&["plugin", "install", fixtures::FORBIDDEN_IMPORT]);
    assert!(
        err.contains("imports `wasi:sockets/") && err.contains("which lain does not grant"),
        "{err}"
    );

    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "hello").expect("write");
    let err = kernel.lain_err(&["plugin", "install", text.to_str().expect("utf-8")]);
    assert!(err.contains("not a WebAssembly component"), "{err}");

    let liar = dir.path().join("liar.toml");
    std::fs::write(
        &liar,
        "name = \"liar\"\nversion = \"1\"\nkind = \"auth-provider\"\n",
    )
    .expect("write");
    let err = kernel.lain_err(&[
        "plugin",
        "install",
        fixtures::TEMPLATE,
        "--manifest",
        liar.to_str().expect("utf-8"),
    ]);
    assert!(
        err.contains("does not implement world `lain:plugin/auth-provider@0.2.0`"),
        "{err}"
    );
    assert!(
        err.contains("missing export `lain:plugin/authentication@0.2.0` or `lain:plugin/authentication@0.1.0`"),
        "{err}"
    );

    // A manifest only asks for files; one that grants itself a file is refused.
    let greedy = dir.path().join("greedy.toml");
    std::fs::write(
        &greedy,
        "name = \"greedy\"\nversion = \"1\"\nkind = \"proc-type\"\n[config.files]\nkey = \"/etc/shadow\"\n",
    )
    .expect("write");
    let greedy = greedy.to_str().expect("utf-8");
    let err = kernel.lain_err(&["plugin", "install", fixtures::HOSTILE, "--manifest", greedy]);
    assert!(err.contains("a manifest cannot grant files"), "{err}");
    // A plugin that says it serves a built-in type is refused naming the holder.
    let squatter = dir.path().join("squatter.toml");
    std::fs::write(
        &squatter,
        "name = \"zz-worker\"\nversion = \"1\"\nkind = \"proc-type\"\n[config]\ntype = \"worker\"\n",
    )
    .expect("write");
    let squatter = squatter.to_str().expect("utf-8");
    let err = kernel.lain_err(&[
        "plugin",
        "install",
        fixtures::HOSTILE,
        "--manifest",
        squatter,
    ]);
    assert!(
        err.contains("proc type `worker`") && err.contains("built-in plugin `worker`"),
        "{err}"
    );

    let err = kernel.lain_err(&["plugin", "upgrade", "nope", fixtures::TEMPLATE]);
    assert!(err.contains("no plugin named `nope`"), "{err}");
    assert_eq!(
        names(&json(&kernel.lain_ok(&["plugin", "list", "-o", "json"]))),
        BUILTINS
    );
}

#[test]
fn install_and_show_say_what_a_plugin_asks_for_and_what_the_operator_granted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let granted = dir.path().join("jwks.json");
    std::fs::write(&granted, "{}").expect("write");
    let config = format!(
        "[plugins.config.asker]\nfiles = {{ jwks = {:?} }}\n",
        granted.display().to_string()
    );
    let kernel = KernelProcess::start(dir.path(), &config);
    let manifest = dir.path().join("asker.toml");
    std::fs::write(
        &manifest,
        "name = \"asker\"\nversion = \"1\"\nkind = \"proc-type\"\n[config]\ntype = \"asker\"\n\
         [files]\njwks = \"the keys tokens are signed with\"\nca = \"the CA to trust\"\n",
    )
    .expect("write");
    let manifest = manifest.to_str().expect("utf-8");
    let out = kernel.lain_ok(&[
        "plugin",
        "install",
        fixtures::HOSTILE,
        "--manifest",
        manifest,
    ]);
    assert!(
        out.contains(&format!(
            "file jwks: granted {} (asked: the keys tokens are signed with)",
            granted.display()
        )),
        "{out}"
    );
    assert!(
        out.contains("file ca: asked, not granted (the CA to trust)"),
        "{out}"
    );
    assert!(
        out.contains("[plugins.config.asker] files = { ca = \"/path\" }"),
        "{out}"
    );
    let show = kernel.lain_ok(&["plugin", "show", "asker"]);
    assert!(show.contains("file ca: asked, not granted"), "{show}");
}

#[test]
fn kill_dash_nine_loses_no_plugin_and_no_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut kernel = KernelProcess::start(dir.path(), "");
    kernel.lain_ok(&["plugin", "install", fixtures::TEMPLATE]);
    kernel.lain_ok(&["plugin", "policy", "cron", "open"]);
    kernel.lain_ok(&["plugin", "disable", "spread"]);
    kernel.restart(); // SIGKILL, then start again on the same data dir
    let list = json(&kernel.lain_ok(&["plugin", "list", "-o", "json"]));
    let find = |n: &str| {
        list.as_array()
            .expect("list")
            .iter()
            .find(|p| p["name"] == n)
            .cloned()
            .expect(n)
    };
    assert_eq!(find("cron")["health"]["policy"], "open");
    assert_eq!(find("cron")["enabled"], true);
    assert_eq!(find("spread")["enabled"], false);
    assert_eq!(
        names(&list).len(),
        BUILTINS.len() + 1,
        "no duplicate, nothing lost"
    );
}

#[test]
fn api_serves_health_metrics_openapi_and_authenticates_through_plugins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = hex::encode(sha2::Sha256::digest(b"ci-token-0123456789"));
    let config = format!(
        "[plugins.config.token]\ntokens = [{{ user = \"ci\", groups = [\"admins\"], sha256 = \"{hash}\" }}]\n\
         [plugins.config.jwt]\nissuer = \"https://sso.example.org\"\naudience = \"lain\"\nhs256_secret = \"a-development-secret-that-is-long-enough\"\n"
    );
    let kernel = KernelProcess::start(dir.path(), &config);
    let get = |path: &str, token: Option<&str>| {
        let mut req = ureq::get(&format!("{}{path}", kernel.url))
            .config()
            .http_status_as_error(false)
            .build();
        if let Some(t) = token {
            req = req.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = req.call().expect("request");
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().expect("body"),
        )
    };

    let (status, body) = get("/healthz", None);
    assert_eq!((status, json(&body)["status"].as_str()), (200, Some("ok")));

    let (status, body) = get("/api/openapi.json", None);
    let doc = json(&body);
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{body}"
    );
    for path in [
        "/api/v1/plugins",
        "/api/v1/plugins/{name}",
        "/api/v1/whoami",
        "/healthz",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }

    let (status, _) = get("/api/v1/whoami", None);
    assert_eq!(status, 401);
    let (status, body) = get("/api/v1/whoami", Some("ci-token-0123456789"));
    assert_eq!(status, 200, "{body}");
    let me = json(&body);
    assert_eq!(
        (me["subject"].as_str(), me["provider"].as_str()),
        (Some("ci"), Some("token"))
    );
    let (status, body) = get(
        "/api/v1/whoami",
        Some("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),
    );
    assert_eq!(status, 401, "{body}");
    assert!(
        !body.contains("alg"),
        "the denial reason is logged, not returned: {body}"
    );

    // Metrics are not public: the `metrics` right, which admins hold (`ci` is in `admins`).
    let (status, _) = get("/metrics", None);
    assert_eq!(status, 401);
    let (status, body) = get("/metrics", Some("ci-token-0123456789"));
    assert_eq!(status, 200);
    assert!(
        body.contains("# TYPE lain_plugin_calls_total counter"),
        "{body}"
    );
    assert!(
        body.contains(
            r#"lain_plugin_calls_total{plugin="token",kind="auth-provider",version="0.1.0"}"#
        ),
        "{body}"
    );

    let (status, body) = get("/no/such/route", None);
    assert_eq!(
        (status, json(&body)["error"]["code"].as_str()),
        (404, Some("not-found"))
    );
}

#[test]
fn graphite_exporter_pushes_plaintext_lines() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let address = listener.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "[monitor.exporters.graphite]\npush = \"{address}\"\ninterval = 1\n[plugins.config.graphite]\nprefix = \"lain_local\"\npath_labels = [\"plugin\"]\n"
    );
    let _kernel = KernelProcess::start(dir.path(), &config);
    listener.set_nonblocking(false).expect("blocking");
    let (mut conn, _) = listener.accept().expect("the kernel connects");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut conn, &mut text).expect("read");
    let line = text
        .lines()
        .find(|l| l.starts_with("lain_local.graphite.lain_plugin_enabled "))
        .unwrap_or_else(|| panic!("{text}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 3, "{line}");
    assert_eq!(fields[1], "1");
    assert!(
        fields[2].parse::<i64>().is_ok_and(|t| t > 1_700_000_000),
        "{line}"
    );
}

#[test]
fn cli_without_a_kernel_says_how_to_fix_it() {
    let out = std::process::Command::new(support::lain_bin())
        .args(["plugin", "list"])
        .env(
            "LAIN_KERNEL",
            format!("http://127.0.0.1:{}", support::free_port()),
        )
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the kernel") && err.contains("LAIN_KERNEL"),
        "{err}"
    );
}

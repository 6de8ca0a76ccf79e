//! Secrets and access end to end: the real `lain` binary (kernel and CLI) and real processes.
//! Secret files reach instances and nowhere else, survive `kill -9`, and rotate; `lain login`
//! stores a token privately and the CLI uses it; maintainers and the audit log through the CLI.

mod support;

use serde_json::Value;
use sha2::Digest as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use support::{KernelProcess, instances, json};

const PLAINTEXT: &str = "db_password = \"tr0ub4dor-and-3-more-words\"\n";

fn app(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("lain.yaml"),
        "appname: vaulted\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sh -c 'sha256sum /lain/app/conf/db.toml; sleep 100000'\n  num_instances: 2\n  secret_files:\n    - conf/db.toml\n",
    )
    .expect("lain.yaml");
}

/// The names of the `worker` instances in a `lain ps` view, sorted.
fn worker_names(view: &Value) -> Vec<String> {
    let mut names: Vec<String> = instances(view, "worker")
        .iter()
        .map(|i| i["name"].as_str().expect("name").to_string())
        .collect();
    names.sort();
    names
}

/// `lain secret add worker conf/db.toml -a vaulted -f <file holding content>`; its output.
fn add_secret(kernel: &KernelProcess, file: &Path, content: &str) -> String {
    std::fs::write(file, content).expect("write");
    kernel.lain_ok(&[
        "secret",
        "add",
        "worker",
        "conf/db.toml",
        "-a",
        "vaulted",
        "-f",
        file.to_str().expect("utf-8"),
    ])
}

/// Every file under `dir` holding `needle`, except those under a `skip` component.
fn files_holding(dir: &Path, needle: &[u8], skip: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name() != skip {
                    stack.push(path);
                }
            } else if std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn secret_files_reach_instances_and_nowhere_else_and_survive_kill_9_and_rotation() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    let dir = tmp.path().join("vaulted");
    app(&dir);
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);

    let err = kernel.lain_err(&["deploy", "-a", "vaulted"]);
    assert!(
        err.contains("/lain/app/conf/db.toml")
            && err.contains("lain secret add worker")
            && err.contains("409"),
        "{err}"
    );
    let file = tmp.path().join("db.toml");
    let added = add_secret(&kernel, &file, PLAINTEXT);
    assert!(added.contains("/lain/app/conf/db.toml"), "{added}");
    let view = json(&kernel.lain_ok(&["deploy", "-a", "vaulted", "-o", "json"]));
    let names = worker_names(&view);
    assert_eq!(names.len(), 2);

    // Each instance has its own 0600 copy, which the app reads (it logs the digest).
    for name in &names {
        let placed = data
            .join("runtime/process")
            .join(name)
            .join("secrets/lain/app/conf/db.toml");
        assert_eq!(std::fs::read_to_string(&placed).expect("placed"), PLAINTEXT);
        let mode = std::fs::metadata(&placed)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{}", placed.display());
    }
    let digest = hex::encode(sha2::Sha256::digest(PLAINTEXT));
    let logs = support::until("the app reads its secret", || {
        let logs = kernel.lain_ok(&["logs", "worker", "-a", "vaulted"]);
        (logs.matches(&digest).count() == 2).then_some(logs)
    });
    assert!(!logs.contains("tr0ub4dor"), "{logs}");

    // Nowhere else: CLI output, listings, the audit log, the kernel's log, the data dir.
    let needle = "tr0ub4dor";
    for args in [
        vec!["ps", "-a", "vaulted", "-o", "json"],
        vec!["app", "list", "-o", "json"],
        vec!["secret", "list", "-a", "vaulted", "-o", "json"],
        vec!["audit", "-o", "json"],
    ] {
        let out = kernel.lain_ok(&args);
        assert!(!out.contains(needle), "{args:?}: {out}");
    }
    let listed = json(&kernel.lain_ok(&["secret", "list", "-a", "vaulted", "-o", "json"]));
    assert_eq!(listed[0]["size"], PLAINTEXT.len());
    assert_eq!(
        files_holding(&data, needle.as_bytes(), "secrets"),
        Vec::<String>::new(),
        "only the instances' own secret files hold the plaintext"
    );
    assert_eq!(
        kernel.lain_ok(&["secret", "show", "worker", "conf/db.toml", "-a", "vaulted"]),
        PLAINTEXT
    );

    // kill -9: the secret, the instances (no duplicate) and the audit trail are as they were.
    kernel.restart();
    assert_eq!(
        kernel.lain_ok(&["secret", "show", "worker", "conf/db.toml", "-a", "vaulted"]),
        PLAINTEXT
    );
    let view = kernel.wait_for("vaulted", "adoption", |v| v["converged"] == true);
    assert_eq!(
        names,
        worker_names(&view),
        "the same instances, no duplicate"
    );
    let before = names;

    let key = std::fs::read_to_string(data.join("vault.key")).expect("key");
    let rotated = json(&kernel.lain_ok(&["secret", "rotate-key", "-o", "json"]));
    assert_eq!(rotated["reencrypted"], 1);
    assert_ne!(
        key,
        std::fs::read_to_string(data.join("vault.key")).expect("key")
    );
    assert_eq!(
        kernel.lain_ok(&["secret", "show", "worker", "conf/db.toml", "-a", "vaulted"]),
        PLAINTEXT
    );

    // A deploy after the rotation replaces nothing (same versions of the secrets); a changed
    // secret rolls out with the next deploy, instance by instance.
    let view = json(&kernel.lain_ok(&["deploy", "-a", "vaulted", "-o", "json"]));
    assert_eq!(
        worker_names(&view),
        before,
        "a key rotation rolls nothing out"
    );
    let changed = "db_password = \"a-completely-new-passphrase\"\n";
    add_secret(&kernel, &file, changed);
    let unchanged = kernel.ps("vaulted");
    assert_eq!(
        worker_names(&unchanged),
        before,
        "nothing changes before the deploy"
    );
    kernel.lain_ok(&["deploy", "-a", "vaulted"]);
    let view = kernel.wait_for("vaulted", "the new secret's rollout", |v| {
        v["converged"] == true && worker_names(v).iter().all(|n| !before.contains(n))
    });
    assert_eq!(worker_names(&view).len(), 2);
    for name in worker_names(&view) {
        let placed = data
            .join("runtime/process")
            .join(&name)
            .join("secrets/lain/app/conf/db.toml");
        assert_eq!(std::fs::read_to_string(&placed).expect("placed"), changed);
    }

    let audit = json(&kernel.lain_ok(&["audit", "-a", "vaulted", "-o", "json"]));
    let actions: Vec<&str> = audit
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["subject"] == "bootstrap")
        .filter_map(|r| r["action"].as_str())
        .collect();
    for action in [
        "PUT /api/v1/apps/{app}/procs/{proc}/secrets",
        "GET /api/v1/apps/{app}/procs/{proc}/secrets/content",
        "POST /api/v1/apps/{app}/deploy",
    ] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    let failed = audit
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r["action"] == "POST /api/v1/apps/{app}/deploy" && r["result"] == "failed");
    assert_eq!(failed.map(|r| r["status"].clone()), Some(Value::from(409)));
}

#[test]
fn login_stores_the_token_privately_and_maintainers_decide_who_operates() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hash = |t: &str| hex::encode(sha2::Sha256::digest(t));
    let config = format!(
        "[auth]\nbootstrap = false\nregister_users = [\"token:alice\"]\n[plugins.config.token]\ntokens = [{{ user = \"alice\", sha256 = \"{}\" }}, {{ user = \"bob\", sha256 = \"{}\" }}, {{ user = \"root\", groups = [\"admins\"], sha256 = \"{}\" }}]\n",
        hash("alice-secret-token-000"),
        hash("bob-secret-token-00000"),
        hash("root-secret-token-0000"),
    );
    let kernel = KernelProcess::start(&tmp.path().join("data"), &config);
    assert!(
        !tmp.path().join("data/bootstrap.token").exists(),
        "no bootstrap when it is off"
    );
    let err = kernel.lain_err(&["app", "list"]);
    assert!(err.contains("401") && err.contains("lain login"), "{err}");

    // A wrong token is not stored.
    let login = |token: &str| {
        let mut child = kernel
            .lain_cmd(&["login"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("lain login");
        std::io::Write::write_all(
            child.stdin.as_mut().expect("stdin"),
            format!("{token}\n").as_bytes(),
        )
        .expect("token");
        child.wait_with_output().expect("login")
    };
    let out = login("not-a-known-token");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));
    let cli_config = kernel.data_dir.with_extension("cli.toml");
    assert!(!cli_config.exists());

    let out = login("alice-secret-token-000");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::fs::metadata(&cli_config)
        .expect("config")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(&cli_config)
            .expect("read")
            .contains("alice-secret-token-000")
    );
    let me = json(&kernel.lain_ok(&["whoami", "-o", "json"]));
    assert_eq!(
        (&me["subject"], &me["admin"]),
        (&Value::from("alice"), &Value::from(false))
    );

    // alice registers an app and so maintains it; bob may not touch it until she adds him.
    let dir = tmp.path().join("vaulted");
    app(&dir);
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let bob = |args: &[&str]| {
        let mut all = vec!["--token", "bob-secret-token-00000"];
        all.extend_from_slice(args);
        kernel.lain(&all)
    };
    let out = bob(&["secret", "list", "-a", "vaulted"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("403") && err.contains("secrets"),
        "{err}"
    );
    let err = kernel.lain_err(&["maintainer", "add", "bob", "-a", "vaulted"]);
    assert!(
        err.contains("token:bob"),
        "a bare subject is refused: {err}"
    );
    let m = json(&kernel.lain_ok(&[
        "maintainer",
        "add",
        "token:bob",
        "-a",
        "vaulted",
        "-o",
        "json",
    ]));
    assert_eq!(m["users"], serde_json::json!(["token:alice", "token:bob"]));
    assert!(bob(&["secret", "list", "-a", "vaulted"]).status.success());
    let err = kernel.lain_err(&["audit"]);
    assert!(err.contains("403") && err.contains("admin"), "{err}");

    let out = kernel.lain(&["--token", "root-secret-token-0000", "audit", "-o", "json"]);
    assert!(out.status.success());
    let audit = json(&String::from_utf8_lossy(&out.stdout));
    assert!(
        audit
            .as_array()
            .expect("records")
            .iter()
            .any(|r| r["subject"] == "alice"
                && r["action"] == "PUT /api/v1/apps/{app}/maintainers/{kind}/{name}"
                && r["result"] == "ok"),
        "{audit:#}"
    );

    kernel.lain_ok(&["logout"]);
    let err = kernel.lain_err(&["whoami"]);
    assert!(err.contains("401"), "{err}");
}

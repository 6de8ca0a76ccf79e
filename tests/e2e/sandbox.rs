//! The process runtime's sandbox end to end: the real `lain` binary (kernel and CLI), real
//! bubblewrap sandboxes, real processes. Run as root (as CI does), so the sandboxes switch to
//! the apps' own unprivileged uids.
//!
//! Builds and instances cannot read the kernel's token, key, data dir or environment, nor other
//! apps' releases, nor change their own release; each instance has its own `/lain/app`; volumes
//! outlive instances and the kernel; command health probes run inside the sandbox; `$VAR` build
//! arguments come from the client, never from the kernel; the data dir is the kernel's alone.

mod support;

use serde_json::Value;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use support::{KernelProcess, instances, json};

/// In the kernel's environment only: no sandbox may see it.
const CANARY: &str = "kernel-env-canary-7f3a91";

/// Default `[process] uid_base` and `uid_count`.
const UID_BASE: u32 = 0x7000_0000;
const UID_COUNT: u32 = 0x1_0000;

/// A script that tries what no sandbox may do and prints `DENIED <what>` or `LEAK <what>`, then
/// `ID <uid> <gid>`.
fn probe_script(data: &Path) -> String {
    let d = data.display();
    format!(
        r#"try() {{ if sh -c "$2" >/dev/null 2>&1; then echo "LEAK $1"; else echo "DENIED $1"; fi; }}
try bootstrap-token "cat {d}/bootstrap.token"
try vault-key "cat {d}/vault.key"
try state "cat {d}/state.redb"
try data-dir "ls {d}"
try other-release "ls {d}/releases/other"
try proc-1-environ "cat /proc/1/environ"
try kernel-env "(env; cat /proc/[0-9]*/environ) 2>/dev/null | tr '\0' '\n' | grep -q {CANARY}"
try host-root "ls /root"
echo "ID $(id -u) $(id -g)"
"#
    )
}

/// What the probe script printed in `text`: (denied, leaked) names, and the uid.
fn verdicts(text: &str) -> (Vec<String>, Vec<String>, Option<u32>) {
    // Lines the script printed (a build indents them; the build's steps are `==>` lines).
    let word = |prefix: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.trim_start().strip_prefix(prefix))
            .map(|w| w.trim().to_string())
            .collect()
    };
    let uid = word("ID ")
        .first()
        .and_then(|ids| ids.split_whitespace().next()?.parse().ok());
    (word("DENIED "), word("LEAK "), uid)
}

const PROBES: [&str; 8] = [
    "bootstrap-token",
    "vault-key",
    "state",
    "data-dir",
    "other-release",
    "proc-1-environ",
    "kernel-env",
    "host-root",
];

fn write_app(dir: &Path, yaml: &str, files: &[(&str, &str)]) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("lain.yaml"), yaml).expect("lain.yaml");
    for (name, content) in files {
        std::fs::write(dir.join(name), content).expect("file");
    }
    dir.to_str().expect("utf-8").to_string()
}

/// The stderr of a successful `lain build` (where the build's output is printed).
fn build(kernel: &KernelProcess, dir: &str) -> String {
    let out = kernel.lain(&["build", dir]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "lain build {dir}: {stderr}");
    stderr
}

#[test]
fn builds_and_instances_see_nothing_of_the_kernel_and_run_as_their_apps_own_uid() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start_with_env(&data, "", &[("LAIN_E2E_CANARY", CANARY)]);
    let kernel_log = || kernel.logs();

    // Another app, whose release must stay out of reach.
    let other = write_app(
        &tmp.path().join("other"),
        "appname: other\nbuild:\n  base: busybox\n  script:\n    - echo other-secret > secret.txt\n    - echo \"ID $(id -u) $(id -g)\"\n",
        &[],
    );
    let other_build = build(&kernel, &other);
    let (_, _, other_uid) = verdicts(&other_build);

    let probe = write_app(
        &tmp.path().join("probe"),
        "appname: probe\nbuild:\n  base: busybox\n  script:\n    - sh probe.sh\n    - echo original > release.txt\n\
         worker:\n  cmd: sh -c 'sh probe.sh; sh instance.sh; sleep 100000'\n  num_instances: 2\n",
        &[
            ("probe.sh", &probe_script(&data)),
            (
                "instance.sh",
                r#"if echo changed >> /lain/app/release.txt; then echo "LEAK release-in-place"; else echo "DENIED release-in-place"; fi
rm /lain/app/release.txt && echo "mine $LAIN_INSTANCE_NO" > /lain/app/release.txt && echo "OWN $(cat /lain/app/release.txt)"
touch "/lain/app/written-by-$LAIN_INSTANCE_NO"
sleep 3
echo "SEES $(ls /lain/app | grep written-by | tr '\n' ' ')"
"#,
            ),
        ],
    );
    let built = build(&kernel, &probe);
    let (denied, leaked, build_uid) = verdicts(&built);
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "a build script got through: {built}"
    );
    assert_eq!(denied, PROBES, "{built}");
    let build_uid = build_uid.expect("the build printed its uid");
    assert!(
        (UID_BASE..UID_BASE + UID_COUNT).contains(&build_uid),
        "neither root nor the kernel's uid, but the app's own: {build_uid}"
    );
    assert!(
        other_uid.is_some_and(|u| u != build_uid),
        "each app has its own uid: {other_uid:?} {build_uid}"
    );

    kernel.lain_ok(&["deploy", "-a", "probe"]);
    let logs = support::until("both instances report", || {
        let logs = kernel.lain_ok(&["logs", "worker", "-a", "probe"]);
        (logs.matches("SEES ").count() == 2).then_some(logs)
    });
    for no in ["1", "2"] {
        let mine: String = logs
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("[{no}] ")))
            .map(|l| format!("{l}\n"))
            .collect();
        let (denied, leaked, uid) = verdicts(&mine);
        assert_eq!(
            leaked,
            Vec::<String>::new(),
            "instance {no} got through: {mine}"
        );
        assert!(
            PROBES.iter().all(|p| denied.contains(&p.to_string()))
                && denied.contains(&"release-in-place".to_string()),
            "instance {no}: {mine}"
        );
        assert_eq!(uid, Some(build_uid), "instance {no} runs as its app's uid");
        assert!(
            mine.contains(&format!("OWN mine {no}")),
            "an instance may replace a file of its /lain/app: {mine}"
        );
        assert!(
            mine.contains(&format!("SEES written-by-{no} \n")),
            "instance {no} sees its own writes only: {mine}"
        );
    }
    let view = kernel.ps("probe");
    let release = view["release"].as_str().expect("release").to_string();
    let release_dir = data.join("releases/probe").join(&release);
    assert_eq!(
        std::fs::read_to_string(release_dir.join("release.txt")).expect("release file"),
        "original\n",
        "the release itself never changes"
    );
    assert!(!release_dir.join("written-by-1").exists());
    let meta = std::fs::metadata(release_dir.join("release.txt")).expect("meta");
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o644),
        "the release is the kernel's"
    );
    assert!(!kernel_log().contains(CANARY));
}

#[test]
fn volumes_outlive_instance_restarts_and_kill_9_and_command_probes_run_inside() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    // The probe passes only inside the sandbox: /lain/app/marker, the volume and a uid other
    // than root exist there, not on the host where the kernel (root) runs.
    let dir = write_app(
        &tmp.path().join("keeper"),
        "appname: keeper\nbuild:\n  base: busybox\n  script:\n    - touch marker\n\
         worker:\n  cmd: sh -c 'echo run >> /data/runs; echo \"RUNS $(wc -l < /data/runs)\"; sleep 100000'\n  volumes:\n    - /data\n\
         web:\n  cmd: sh -c 'exec python3 -m http.server --bind 127.0.0.1 \"$PORT\"'\n  volumes:\n    - /data\n\
         \x20 container_healthcheck:\n    cmd: sh -c 'test -f /lain/app/marker && test -d /data && test \"$(id -u)\" != 0'\n    options:\n      interval: 10\n      timeout: 3\n      retries: 3\n",
        &[],
    );
    build(&kernel, &dir);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "keeper", "-o", "json"]));
    let web = instances(&view, "web");
    assert_eq!(
        web[0]["health"], "healthy",
        "the command probe passed: {view:#}"
    );

    let runs = |kernel: &KernelProcess, n: usize| {
        support::until(&format!("RUNS {n}"), || {
            let logs = kernel.lain_ok(&["logs", "worker", "-a", "keeper"]);
            logs.contains(&format!("RUNS {n}")).then_some(())
        })
    };
    runs(&kernel, 1);
    let kill_worker = |kernel: &KernelProcess| {
        let view = kernel.ps("keeper");
        let pid = instances(&view, "worker")[0]["state"]["pid"]
            .as_i64()
            .expect("a running worker");
        let status = std::process::Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    kill_worker(&kernel);
    runs(&kernel, 2);
    kernel.restart();
    kernel.wait_for("keeper", "adoption", |v| v["converged"] == true);
    kill_worker(&kernel);
    runs(&kernel, 3);

    let volume = data.join("volumes/keeper/worker/1/data");
    assert_eq!(
        std::fs::read_to_string(volume.join("runs")).expect("the volume on the host"),
        "run\nrun\nrun\n"
    );
    let meta = std::fs::metadata(&volume).expect("meta");
    assert!(
        meta.uid() >= UID_BASE && meta.mode() & 0o777 == 0o700,
        "the app's own: {} {:o}",
        meta.uid(),
        meta.mode()
    );
}

#[test]
fn build_args_take_the_clients_values_and_never_the_kernels_environment() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel =
        KernelProcess::start_with_env(&data, "", &[("LAIN_E2E_KERNEL_VAR", "kernel-env-secret")]);
    let dir = write_app(
        &tmp.path().join("args"),
        "appname: args\nbuild:\n  base: busybox\n  build_arg:\n    - FROM_CLIENT=$LAIN_E2E_CLIENT_VAR\n    - FROM_KERNEL=$LAIN_E2E_KERNEL_VAR\n    - LITERAL=plain\n  script:\n    - echo \"ARGS client=$FROM_CLIENT kernel=[$FROM_KERNEL] literal=$LITERAL\"\n",
        &[],
    );
    let out = kernel
        .lain_cmd(&["build", &dir])
        .env("LAIN_E2E_CLIENT_VAR", "client-value-91c2")
        .env_remove("LAIN_E2E_KERNEL_VAR")
        .output()
        .expect("lain build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ARGS client=client-value-91c2 kernel=[] literal=plain"),
        "{stderr}"
    );
    assert!(
        stderr.contains("$LAIN_E2E_KERNEL_VAR is not set here")
            && stderr.contains("the client sent no $LAIN_E2E_KERNEL_VAR"),
        "the client and the build say the variable is empty: {stderr}"
    );
    assert!(!stderr.contains("kernel-env-secret"), "{stderr}");

    // The client's value is neither stored nor logged.
    let releases = kernel.lain_ok(&["app", "show", "-a", "args", "-o", "json"]);
    assert!(!releases.contains("client-value-91c2"), "{releases}");
    let audit = kernel.lain_ok(&["audit", "-o", "json"]);
    assert!(!audit.contains("client-value-91c2"), "{audit}");
    let mut stack = vec![data.clone()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                let found = bytes.windows(17).any(|w| w == b"client-value-91c2");
                assert!(!found, "{} holds the client's value", path.display());
            }
        }
    }

    // A malformed header is refused before anything is built.
    let (status, body) = {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent
            .post(&format!("{}/api/v1/builds", kernel.url))
            .header("Authorization", &format!("Bearer {}", kernel.token()))
            .header("x-lain-build-args", "%%%")
            .header("content-type", "application/x-tar")
            .send(&b""[..])
            .expect("request");
        (
            resp.status().as_u16(),
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    };
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("x-lain-build-args") && body.contains("base64"),
        "{body}"
    );
}

#[test]
fn the_data_dir_and_what_the_kernel_writes_in_it_are_the_kernels_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    let dir = write_app(
        &tmp.path().join("modes"),
        "appname: modes\nbuild:\n  base: busybox\n  script:\n    - echo built > out.txt\n    - chmod 4777 out.txt\n    - mkdir -p sub && chmod 777 sub\n\
         worker:\n  cmd: sh -c 'echo hello; sleep 100000'\n  volumes:\n    - /data\n",
        &[],
    );
    build(&kernel, &dir);
    kernel.lain_ok(&["deploy", "-a", "modes"]);
    support::until("the worker's log", || {
        kernel
            .lain_ok(&["logs", "worker", "-a", "modes"])
            .contains("hello")
            .then_some(())
    });

    let mode = |p: &Path| std::fs::symlink_metadata(p).expect("meta").mode() & 0o7777;
    assert_eq!(mode(&data), 0o700, "the data dir");
    for file in ["state.redb", "bootstrap.token", "vault.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    // Everything else the kernel and its shims wrote: owner only. The release's files are
    // readable by others (the sandboxes read them through their hard links) but sit in 0700
    // directories; the instances' own views and volumes belong to the sandbox.
    let mut stack = vec![data.clone()];
    let mut checked = 0;
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            let rel = path.strip_prefix(&data).expect("under data");
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            let m = meta.mode() & 0o7777;
            // The test harness's own files.
            if rel == Path::new("lain.toml") || rel == Path::new("kernel.log") {
                continue;
            }
            let in_release = rel.starts_with("releases") && rel.components().count() > 3;
            let sandbox_own = rel.starts_with("volumes") && rel.components().count() > 4
                || rel.starts_with("runtime/process")
                    && rel
                        .components()
                        .nth(3)
                        .is_some_and(|c| c.as_os_str() == "app");
            if sandbox_own {
                continue;
            }
            if meta.is_dir() {
                assert_eq!(m & 0o077, 0, "{} is {m:o}", rel.display());
                stack.push(path);
            } else if meta.is_file() {
                if in_release {
                    assert_eq!(m & 0o7022, 0, "release file {} is {m:o}", rel.display());
                } else {
                    assert_eq!(m & 0o077, 0, "{} is {m:o}", rel.display());
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 10, "{checked}");
    let view = kernel.ps("modes");
    let release = view["release"].as_str().expect("release");
    let out = data.join("releases/modes").join(release).join("out.txt");
    assert_eq!(mode(&out), 0o755, "no setuid, no group/other write");
    let log: Value = json(&kernel.lain_ok(&["ps", "-a", "modes", "-o", "json"]));
    assert_eq!(instances(&log, "worker").len(), 1);
    assert_eq!(
        std::fs::metadata(data.join("logs"))
            .expect("logs")
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn a_kernel_that_is_not_root_runs_sandboxes_as_itself_and_they_still_see_nothing_of_it() {
    const USER: u32 = 4242;
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start_with(&data, "", &[("LAIN_E2E_CANARY", CANARY)], Some(USER));
    let other = write_app(
        &tmp.path().join("other"),
        "appname: other\nbuild:\n  base: busybox\n  script:\n    - echo other-secret > secret.txt\n",
        &[],
    );
    build(&kernel, &other);
    let probe = write_app(
        &tmp.path().join("probe"),
        "appname: probe\nbuild:\n  base: busybox\n  script:\n    - sh probe.sh\n    - echo original > release.txt\n\
         worker:\n  cmd: sh -c 'sh probe.sh; echo changed >> release.txt && echo \"WROTE $(tr \"\\n\" \" \" < release.txt)\"; sh close.sh; sleep 100000'\n",
        &[
            ("probe.sh", &probe_script(&data)),
            // Directories the instance closes, even to its owner: removing it still works.
            (
                "close.sh",
                "mkdir -p closed/inner && touch closed/inner/f && chmod 000 closed/inner closed && echo CLOSED\n",
            ),
        ],
    );
    let built = build(&kernel, &probe);
    let (denied, leaked, uid) = verdicts(&built);
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "a build script got through: {built}"
    );
    assert_eq!(denied, PROBES, "{built}");
    assert_eq!(uid, Some(USER), "the kernel's own uid: {built}");

    kernel.lain_ok(&["deploy", "-a", "probe"]);
    let logs = support::until("the instance reports", || {
        let logs = kernel.lain_ok(&["logs", "worker", "-a", "probe"]);
        logs.contains("CLOSED").then_some(logs)
    });
    let mine: String = logs
        .lines()
        .filter_map(|l| l.strip_prefix("[1] "))
        .map(|l| format!("{l}\n"))
        .collect();
    let (denied, leaked, uid) = verdicts(&mine);
    assert_eq!(
        leaked,
        Vec::<String>::new(),
        "the instance got through: {mine}"
    );
    assert_eq!(denied, PROBES, "{mine}");
    assert_eq!(uid, Some(USER));
    assert!(
        mine.contains("WROTE original changed"),
        "its /lain/app is its own copy: {mine}"
    );
    let view = kernel.ps("probe");
    let release = view["release"].as_str().expect("release");
    assert_eq!(
        std::fs::read_to_string(
            data.join("releases/probe")
                .join(release)
                .join("release.txt")
        )
        .expect("release file"),
        "original\n",
        "the release itself never changes"
    );
    let meta = std::fs::metadata(&data).expect("meta");
    assert_eq!((meta.uid(), meta.mode() & 0o777), (USER, 0o700));

    // The kernel removes what its user's instance closed to it.
    kernel.lain_ok(&["undeploy", "-a", "probe"]);
    let instances_left = || {
        std::fs::read_dir(data.join("runtime/process"))
            .expect("instances")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("probe."))
            .count()
    };
    support::until("the instance is removed", || {
        (instances_left() == 0).then_some(())
    });
}

/// The stderr of a failed `lain build` (the build's output and why it failed).
fn build_fails(kernel: &KernelProcess, dir: &str) -> String {
    let out = kernel.lain(&["build", dir]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "lain build {dir} should fail: {stderr}"
    );
    stderr
}

const CACHED_APP: &str = r#"appname: APP
build:
  base: busybox
  volumes:
    - /cache/m2
  prepare:
    script:
      - echo PREPARING-APP; mkdir deps; echo dep > deps/lib; echo junk > junk; cat n.txt
    keep:
      - deps
  script:
    - echo "SEEN-APP $(cat /cache/m2/stamp 2>/dev/null || echo none)"
    - test -f deps/lib && test ! -e junk
    - cp n.txt /cache/m2/stamp
test:
  script:
    - touch from-test
    - echo TESTED-APP
worker:
  cmd: sleep 100000
"#;

#[test]
fn build_volumes_are_kept_per_app_prepared_directories_are_reused_and_tests_gate_the_build() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    let yaml = |app: &str| CACHED_APP.replace("APP", app);
    let a = write_app(&tmp.path().join("a"), &yaml("cachea"), &[("n.txt", "one")]);

    // Build 1: the prepare scripts run, the cache starts empty, the test runs.
    let out = build(&kernel, &a);
    assert!(out.contains("PREPARING-cachea"), "{out}");
    assert!(out.contains("SEEN-cachea none"), "{out}");
    assert!(out.contains("TESTED-cachea"), "{out}");

    // Build 2 (a changed context): the cache holds what build 1 wrote; the prepared directory
    // is reused without running the prepare scripts.
    std::fs::write(tmp.path().join("a/n.txt"), "two").expect("edit");
    let out = build(&kernel, &a);
    assert!(out.contains("SEEN-cachea one"), "{out}");
    assert!(!out.contains("PREPARING-cachea"), "{out}");
    assert!(out.contains("reusing the prepared directory"), "{out}");
    // Each release has the kept entries, not the rest, and nothing the test wrote.
    let releases = data.join("releases/cachea");
    let mut contexts = Vec::new();
    for release in std::fs::read_dir(&releases).expect("releases").flatten() {
        let release = release.path();
        assert_eq!(
            std::fs::read_to_string(release.join("deps/lib")).expect("kept"),
            "dep\n"
        );
        assert!(!release.join("junk").exists() && !release.join("from-test").exists());
        contexts.push(std::fs::read_to_string(release.join("n.txt")).expect("the context"));
    }
    contexts.sort();
    assert_eq!(contexts, ["one", "two"]);

    // A changed prepare section runs the scripts again.
    std::fs::write(
        tmp.path().join("a/lain.yaml"),
        yaml("cachea").replace("cat n.txt", "cat n.txt; echo v2"),
    )
    .expect("edit");
    let out = build(&kernel, &a);
    assert!(out.contains("PREPARING-cachea"), "{out}");
    assert!(out.contains("SEEN-cachea two"), "{out}");

    // Another app has a cache of its own.
    let b = write_app(&tmp.path().join("b"), &yaml("cacheb"), &[("n.txt", "b")]);
    let out = build(&kernel, &b);
    assert!(out.contains("SEEN-cacheb none"), "{out}");
    assert!(out.contains("PREPARING-cacheb"), "{out}");
    let volume = data.join("build-cache/cachea/volumes/cache/m2");
    assert_eq!(
        std::fs::read_to_string(volume.join("stamp")).expect("a's cache"),
        "two"
    );
    let meta = std::fs::metadata(&volume).expect("meta");
    assert!(meta.uid() >= UID_BASE, "the app's own: {}", meta.uid());

    // A failing test fails the build, its output shown, and no release is recorded.
    let before = std::fs::read_dir(&releases).expect("releases").count();
    std::fs::write(
        tmp.path().join("a/lain.yaml"),
        yaml("cachea").replace(
            "    - echo TESTED-cachea\n",
            "    - echo TEST-FAILS-HERE >&2; exit 3\n",
        ),
    )
    .expect("edit");
    let out = build_fails(&kernel, &a);
    assert!(out.contains("TEST-FAILS-HERE"), "{out}");
    assert!(out.contains("test:"), "{out}");
    assert_eq!(
        std::fs::read_dir(&releases).expect("releases").count(),
        before
    );
}

#[test]
fn a_procs_user_is_refused_naming_the_proc_and_cpu_is_set_and_changed_in_place() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    let dir = write_app(
        &tmp.path().join("limits"),
        "appname: limits\nbuild:\n  base: busybox\n  script:\n    - echo ok\n\
         worker:\n  cmd: sleep 100000\n  cpu: 500m\n\
         proc.other:\n  type: worker\n  cmd: sleep 100000\n  user: nobody\n",
        &[],
    );
    build(&kernel, &dir);
    let err = kernel.lain_err(&["deploy", "-a", "limits"]);
    assert!(
        err.contains("proc `other`") && err.contains("user `nobody`"),
        "{err}"
    );
    assert!(!err.contains("proc `worker`"), "{err}");

    std::fs::write(
        tmp.path().join("limits/lain.yaml"),
        "appname: limits\nbuild:\n  base: busybox\n  script:\n    - echo ok\n\
         worker:\n  cmd: sleep 100000\n  cpu: 500m\n",
    )
    .expect("edit");
    build(&kernel, &dir);
    kernel.lain_ok(&["deploy", "-a", "limits"]);
    let running = || {
        let view = kernel.ps("limits");
        let worker = (*instances(&view, "worker").first()?).clone();
        let pid = worker["state"]["pid"].as_u64()?;
        Some((worker["name"].as_str()?.to_string(), pid))
    };
    let (name, pid) = support::until("a running worker", running);
    let quota = |name: &str| {
        let v2 = Path::new("/sys/fs/cgroup/lain").join(name).join("cpu.max");
        let v1 = Path::new("/sys/fs/cgroup/cpu/lain")
            .join(name)
            .join("cpu.cfs_quota_us");
        std::fs::read_to_string(v2)
            .or_else(|_| std::fs::read_to_string(v1))
            .expect("the instance's cpu group")
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(quota(&name), "50000");
    kernel.lain_ok(&["scale", "worker", "-a", "limits", "--cpu", "1500"]);
    support::until("the new limit", || (quota(&name) == "150000").then_some(()));
    assert_eq!(
        running(),
        Some((name, pid)),
        "the same instance, not restarted"
    );
}

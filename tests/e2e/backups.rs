//! End-to-end: volume backups through the real `lain` binary, the process runtime, the built-in
//! `archive` hook and the real restic. Scheduled incremental backups happen and store about
//! what changed; restores are byte-identical (a hash of the tree), beside and in place;
//! `pre_run` and `post_run` run inside the instance, `post_run` also after a failure, and a
//! failed backup shows in `lain backup list` and `/metrics`; expire removes old backups but
//! keeps the newest full one; a kernel killed during a backup leaves it `interrupted`, never
//! complete, and the next one runs; a user without rights gets 403 and nothing happens. The
//! built-in `dump-first` hook, chosen per proc in the kernel config, backs up only the dump its
//! command made in the instance; a per-proc hook that is no backup hook fails the backup
//! naming it; `lain app list` shows how an app's backups stand.
//! With `[backup.s3]` the repository lives in a real S3 server the test starts (`s3s-fs`):
//! full and incremental backups, byte-identical restores, wrong credentials failing clearly
//! and the access key shown nowhere; a credentials file missing or readable by others stops
//! the kernel at start.

mod s3_server;
mod support;

use s3_server::S3Server;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::{KernelProcess, json, until};

const MIB: u64 = 1 << 20;

/// An app `store` whose worker keeps `/data`, with `policies` under the volume.
fn app_yaml(policies: &str) -> String {
    format!(
        "appname: store\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  volumes:\n    - /data:\n{policies}"
    )
}

/// The worker's `pre_run` and `post_run`: they write into the volume from inside the instance
/// (`LAIN_INSTANCE_NO` is the instance's own environment), and `pre_run` fails while
/// `/data/fail-pre` exists.
const PRE: &str = "echo \"pre in instance $LAIN_INSTANCE_NO\" > /data/pre-ran
[ -e /data/slow-pre ] && sleep 6
[ -e /data/fail-pre ] && { echo dump failed >&2; exit 3; }
exit 0
";
const POST: &str = "echo \"post in instance $LAIN_INSTANCE_NO\" >> /data/post-ran\n";

/// Builds and deploys `yaml` (with the pre/post scripts) and waits for the worker to run.
fn deploy(kernel: &KernelProcess, root: &Path, yaml: &str) {
    let dir = support::write_app(root, "store", yaml);
    std::fs::write(dir.join("pre.sh"), PRE).expect("pre.sh");
    std::fs::write(dir.join("post.sh"), POST).expect("post.sh");
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "store", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
}

/// The worker's volume on the host.
fn volume(data: &Path) -> PathBuf {
    data.join("volumes/store/worker/1/data")
}

/// `n` bytes no compressor shrinks (xorshift), different for each `seed`.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// A hash of the tree under `root`: every relative path, kind and content, in order.
fn tree_hash(root: &Path) -> String {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let meta = std::fs::symlink_metadata(&path).expect("meta");
            if meta.is_dir() {
                out.push((format!("d {rel}"), Vec::new()));
                walk(root, &path, out);
            } else {
                out.push((format!("f {rel}"), std::fs::read(&path).expect("read")));
            }
        }
    }
    let mut entries = Vec::new();
    walk(root, root, &mut entries);
    let mut h = Sha256::new();
    for (name, content) in entries {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(Sha256::digest(&content));
    }
    hex::encode(h.finalize())
}

fn backups(kernel: &KernelProcess) -> Vec<Value> {
    json(&kernel.lain_ok(&["backup", "list", "-a", "store", "-o", "json"]))
        .as_array()
        .expect("a list")
        .clone()
}

fn outcome(r: &Value) -> &str {
    r["outcome"].as_str().unwrap_or_default()
}

fn number(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn scheduled_incrementals_store_what_changed_and_restores_are_byte_identical() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    deploy(
        &kernel,
        tmp.path(),
        &app_yaml("        backup_increment:\n          schedule: \"@every 2s\"\n"),
    );
    let vol = volume(&data);
    assert!(vol.is_dir(), "the process runtime made the volume");
    // 8 files of 1 MiB of noise, one in a subdirectory, and a file the archive hook leaves out.
    std::fs::create_dir_all(vol.join("sub")).expect("mkdir");
    for i in 0..8u64 {
        let name = if i == 0 {
            "sub/f0".to_string()
        } else {
            format!("f{i}")
        };
        std::fs::write(vol.join(name), noise(i, MIB as usize)).expect("write");
    }
    std::fs::write(vol.join("scratch.tmp"), b"left out").expect("write");

    // A full backup on demand: every byte is new.
    let full = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    let full = &full[0];
    assert_eq!(
        (outcome(full), full["kind"].as_str()),
        ("succeeded", Some("full")),
        "{full:#}"
    );
    assert_eq!(number(&full["files"]), 8, "{full:#}");
    assert_eq!(number(&full["size"]), 8 * MIB, "{full:#}");
    // The schedule may have stored the files first: together the backups so far hold them.
    let stored: u64 = backups(&kernel)
        .iter()
        .filter(|r| number(&r["id"]) <= number(&full["id"]))
        .map(|r| number(&r["added"]))
        .sum();
    assert!(stored >= 8 * MIB, "{stored}");
    assert_eq!(full["hook"], "archive", "{full:#}");
    assert!(
        !full["hook_version"].as_str().unwrap_or_default().is_empty(),
        "{full:#}"
    );
    assert!(
        full["snapshot"].as_str().is_some_and(|s| s.len() == 64),
        "{full:#}"
    );

    // Scheduled incrementals follow on their own.
    until("two scheduled incrementals", || {
        let n = backups(&kernel)
            .iter()
            .filter(|r| r["trigger"] == "scheduled" && outcome(r) == "succeeded")
            .count();
        (n >= 2).then_some(())
    });

    // Change one file of the eight; the backups after it store about that file.
    let before = until("no backup running", || {
        let list = backups(&kernel);
        list.iter()
            .all(|r| outcome(r) != "running")
            .then(|| list.iter().map(|r| number(&r["id"])).max().unwrap_or(0))
    });
    let staged = tmp.path().join("f3.new");
    std::fs::write(&staged, noise(1000, MIB as usize)).expect("write");
    std::fs::rename(&staged, vol.join("f3")).expect("rename");
    let after = until("two scheduled incrementals after the change", || {
        let list = backups(&kernel);
        let later: Vec<Value> = list
            .into_iter()
            .filter(|r| number(&r["id"]) > before && outcome(r) != "running")
            .collect();
        (later.len() >= 2).then_some(later)
    });
    for r in &after {
        assert_eq!(
            (
                outcome(r),
                r["kind"].as_str(),
                number(&r["files"]),
                number(&r["size"])
            ),
            ("succeeded", Some("incremental"), 8, 8 * MIB),
            "every incremental is a complete snapshot: {r:#}"
        );
        assert!(r["parent"].as_str().is_some(), "{r:#}");
    }
    let added: u64 = after.iter().map(|r| number(&r["added"])).sum();
    assert!(
        (MIB..MIB + MIB / 4).contains(&added),
        "the changed 1 MiB file, stored once, plus metadata: {added} bytes in {after:#?}"
    );

    // Beside: a byte-identical tree (without what the hook left out).
    let newest = after.last().expect("a backup");
    let id = number(&newest["id"]).to_string();
    let expected = {
        std::fs::remove_file(vol.join("scratch.tmp")).expect("rm");
        tree_hash(&vol)
    };
    let target = tmp.path().join("restored");
    let out = json(&kernel.lain_ok(&[
        "backup",
        "restore",
        &id,
        "-a",
        "store",
        "--to",
        target.to_str().expect("utf-8"),
        "-o",
        "json",
    ]));
    assert_eq!(out["path"], target.to_str().expect("utf-8"), "{out:#}");
    assert_eq!(tree_hash(&target), expected);

    // In place: the volume damaged, then restored as it was; the instance runs again.
    std::fs::write(vol.join("f5"), b"damaged").expect("write");
    std::fs::remove_file(vol.join("sub/f0")).expect("rm");
    assert_ne!(tree_hash(&vol), expected);
    let out = json(&kernel.lain_ok(&["backup", "restore", &id, "-a", "store", "-o", "json"]));
    assert_eq!(
        (out["instance"].as_u64(), &out["restarted"]),
        (Some(1), &Value::Bool(true)),
        "{out:#}"
    );
    assert_eq!(tree_hash(&vol), expected);
    kernel.wait_for("store", "the worker running again", |v| {
        support::instances(v, "worker")
            .first()
            .is_some_and(|i| i["state"]["state"] == "running")
    });
    assert!(
        !vol.parent()
            .expect("parent")
            .read_dir()
            .expect("ls")
            .any(|e| e
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .starts_with(".lain-")),
        "no staging left beside the volume"
    );
}

#[test]
fn pre_and_post_run_inside_the_instance_and_a_failed_backup_is_listed_and_measured() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(
        &data,
        "[monitor.exporters.prometheus]\npull = \"/metrics\"\n",
    );
    deploy(
        &kernel,
        tmp.path(),
        &app_yaml(
            "        backup_full:\n          schedule: \"0 3 * * *\"\n          pre_run: /bin/sh /lain/app/pre.sh\n          post_run: /bin/sh /lain/app/post.sh\n",
        ),
    );
    let vol = volume(&data);
    std::fs::write(vol.join("db"), b"rows").expect("write");

    // pre_run ran before the snapshot (its file is in it), post_run after (its file is not).
    let ok = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    assert_eq!(outcome(&ok[0]), "succeeded", "{ok:#}");
    assert_eq!(
        std::fs::read_to_string(vol.join("pre-ran")).expect("pre-ran"),
        "pre in instance 1\n"
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("post-ran")).expect("post-ran"),
        "post in instance 1\n"
    );
    let target = tmp.path().join("restored");
    let id = number(&ok[0]["id"]).to_string();
    kernel.lain_ok(&[
        "backup",
        "restore",
        &id,
        "-a",
        "store",
        "--to",
        target.to_str().expect("utf-8"),
    ]);
    assert!(target.join("pre-ran").exists() && target.join("db").exists());
    assert!(
        !target.join("post-ran").exists(),
        "post_run runs after the snapshot"
    );

    // A failing pre_run fails the backup, names the command and its status, and post_run still runs.
    std::fs::write(vol.join("fail-pre"), b"").expect("write");
    let err = kernel.lain_err(&["backup", "run", "store", "worker"]);
    assert!(
        err.contains("pre_run") && err.contains("exit status 3") && err.contains("dump failed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(vol.join("post-ran")).expect("post-ran"),
        "post in instance 1\npost in instance 1\n"
    );
    let list = backups(&kernel);
    let failed = list.last().expect("a record");
    assert_eq!(
        (outcome(failed), &failed["snapshot"]),
        ("failed", &Value::Null),
        "{failed:#}"
    );
    let table = kernel.lain_ok(&["backup", "list", "-a", "store"]);
    assert!(table.contains("failed: pre_run"), "{table}");

    // /metrics says the volume's latest backup failed.
    let metrics = support::get_as(&format!("{}/metrics", kernel.url), &kernel.token());
    let line = metrics
        .lines()
        .find(|l| l.starts_with("lain_backup_last_failed{"))
        .unwrap_or_else(|| panic!("no backup metric: {metrics}"));
    assert!(
        line.contains("volume=\"/data\"") && line.trim_end().ends_with(" 1"),
        "{line}"
    );

    // A hook that cannot plan fails the backup, naming it; nothing runs in the instance.
    std::fs::remove_file(vol.join("fail-pre")).expect("rm");
    kernel.lain_ok(&["plugin", "disable", "archive"]);
    let err = kernel.lain_err(&["backup", "run", "store", "worker"]);
    assert!(err.contains("backup hook plugin `archive`"), "{err}");
    assert_eq!(
        std::fs::read_to_string(vol.join("post-ran"))
            .expect("post-ran")
            .lines()
            .count(),
        2,
        "no command ran without a plan"
    );
    kernel.lain_ok(&["plugin", "enable", "archive"]);
    let ok = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    assert_eq!(outcome(&ok[0]), "succeeded", "{ok:#}");
    let metrics = support::get_as(&format!("{}/metrics", kernel.url), &kernel.token());
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lain_backup_last_failed{") && l.trim_end().ends_with(" 0")),
        "{metrics}"
    );
}

/// The repository's snapshot ids, read with restic itself.
fn repository_snapshots(data: &Path) -> Vec<String> {
    let out = std::process::Command::new("restic")
        .args(["snapshots", "--json", "--no-lock"])
        .env("RESTIC_REPOSITORY", data.join("backups/restic"))
        .env("RESTIC_PASSWORD_FILE", data.join("backup.key"))
        .env("RESTIC_CACHE_DIR", data.join("restic-test-cache"))
        .output()
        .expect("restic");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
    let mut ids: Vec<String> = list
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn expire_removes_old_backups_but_keeps_the_newest_full_and_deletes_forget_snapshots() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(&data, "");
    deploy(
        &kernel,
        tmp.path(),
        &app_yaml(
            "        backup_full:\n          schedule: \"0 3 1 1 *\"\n          expire: 1m\n        backup_increment:\n          schedule: \"@every 5s\"\n          expire: 1m\n",
        ),
    );
    let vol = volume(&data);
    std::fs::write(vol.join("db"), noise(7, 4096)).expect("write");
    let full = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    let full_id = number(&full[0]["id"]);
    let first = until("a scheduled incremental", || {
        backups(&kernel)
            .into_iter()
            .find(|r| r["kind"] == "incremental" && outcome(r) == "succeeded")
    });
    let first_id = number(&first["id"]);
    // A minute on, the incrementals that are older are gone; the only full one stays.
    let started = Instant::now();
    let list = until("the first incremental expired", || {
        if started.elapsed() < Duration::from_secs(60) {
            return None;
        }
        let list = backups(&kernel);
        (!list.iter().any(|r| number(&r["id"]) == first_id)).then_some(list)
    });
    assert!(
        list.iter().any(|r| number(&r["id"]) == full_id),
        "the newest full backup is kept past its expiry: {list:#?}"
    );
    let now = list
        .iter()
        .filter_map(|r| r["started_at"].as_i64())
        .max()
        .expect("a backup");
    for r in list
        .iter()
        .filter(|r| r["kind"] == "incremental" && outcome(r) != "running")
    {
        assert!(
            r["started_at"].as_i64().expect("started") >= now - 70,
            "not expired: {r:#}"
        );
    }
    // Every snapshot left is a listed backup, and the other way round.
    let quiet = until("no backup running", || {
        let list = backups(&kernel);
        list.iter().all(|r| outcome(r) != "running").then_some(list)
    });
    let mut listed: Vec<String> = quiet
        .iter()
        .filter_map(|r| r["snapshot"].as_str().map(String::from))
        .collect();
    listed.sort();
    // The scheduler may start another one meanwhile: compare what both saw.
    let stored = repository_snapshots(&data);
    assert!(
        listed.iter().all(|s| stored.contains(s)),
        "{listed:?} vs {stored:?}"
    );
    assert!(stored.len() <= listed.len() + 1, "{listed:?} vs {stored:?}");

    // Deleting a backup forgets its snapshot.
    let gone = quiet.last().expect("a backup");
    let gone_snapshot = gone["snapshot"].as_str().expect("snapshot").to_string();
    kernel.lain_ok(&[
        "backup",
        "delete",
        &number(&gone["id"]).to_string(),
        "-a",
        "store",
    ]);
    assert!(!repository_snapshots(&data).contains(&gone_snapshot));
    assert!(!backups(&kernel).iter().any(|r| r["id"] == gone["id"]));
}

#[test]
fn a_kernel_killed_during_a_backup_leaves_it_interrupted_and_the_next_one_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let mut kernel = KernelProcess::start(&data, "");
    deploy(
        &kernel,
        tmp.path(),
        &app_yaml(
            "        backup_full:\n          schedule: \"0 3 * * *\"\n          pre_run: /bin/sh /lain/app/pre.sh\n",
        ),
    );
    let vol = volume(&data);
    std::fs::write(vol.join("db"), b"rows").expect("write");
    std::fs::write(vol.join("slow-pre"), b"").expect("write");
    let mut run = kernel
        .lain_cmd(&["backup", "run", "store", "worker"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("lain backup run");
    let running = until("a running backup", || {
        backups(&kernel)
            .into_iter()
            .find(|r| outcome(r) == "running")
    });
    kernel.restart();
    let _ = run.wait();
    let list = backups(&kernel);
    let left = list
        .iter()
        .find(|r| r["id"] == running["id"])
        .expect("still listed");
    assert_eq!(
        (outcome(left), &left["snapshot"]),
        ("interrupted", &Value::Null),
        "{left:#}"
    );
    assert!(!list.iter().any(|r| outcome(r) == "succeeded"), "{list:#?}");
    // The new kernel's `lain app list` says so, from the records the killed one left.
    until("the app's backups shown interrupted", || {
        let state = app_backup_state(&kernel);
        (state["outcome"] == "interrupted" && state["id"] == running["id"]).then_some(())
    });
    std::fs::remove_file(vol.join("slow-pre")).expect("rm");
    let next = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    assert_eq!(outcome(&next[0]), "succeeded", "{next:#}");
    assert_eq!(app_backup_state(&kernel)["outcome"], "succeeded");
}

const S3_KEY: &str = "lain-test-access-key";
const S3_SECRET: &str = "s3-test-secret-9f2c41d7e0";

/// Writes the access key to `file` (mode 0600) and returns `[backup.s3]` for `server`'s bucket
/// `lain-backups` under the prefix `site/a`.
fn s3_config(server: &S3Server, file: &Path, key: &str, secret: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(
        file,
        format!("access_key_id = \"{key}\"\nsecret_access_key = \"{secret}\"\n"),
    )
    .expect("credentials");
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    format!(
        "[backup.s3]\nendpoint = {:?}\nbucket = \"lain-backups\"\nprefix = \"site/a\"\ncredentials_file = {:?}\n",
        server.endpoint,
        file.display().to_string()
    )
}

/// Everything a user or operator sees of the backups: the CLI's list (table and JSON), the
/// audit trail and the kernel's log.
fn everything_shown(kernel: &KernelProcess) -> String {
    [
        kernel.lain_ok(&["backup", "list", "-a", "store"]),
        kernel.lain_ok(&["backup", "list", "-a", "store", "-o", "json"]),
        kernel.lain_ok(&["audit", "-o", "json"]),
        kernel.logs(),
    ]
    .join("\n")
}

#[test]
fn s3_storage_takes_full_and_incremental_backups_restores_them_and_never_shows_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let s3 = S3Server::start(&tmp.path().join("s3"), S3_KEY, S3_SECRET);
    let credentials = tmp.path().join("s3.credentials");
    let repository = s3.root.join("lain-backups/site/a");
    let location = format!("s3:{}/lain-backups/site/a", s3.endpoint);

    // A wrong secret: the backup fails naming the storage, nothing is listed as complete.
    let wrong = "wrong-secret-5be1e0aa77";
    let mut kernel = KernelProcess::start(&data, &s3_config(&s3, &credentials, S3_KEY, wrong));
    deploy(
        &kernel,
        tmp.path(),
        &app_yaml("        backup_full:\n          schedule: \"0 3 1 1 *\"\n"),
    );
    let vol = volume(&data);
    std::fs::create_dir_all(vol.join("sub")).expect("mkdir");
    for i in 0..8u64 {
        let name = if i == 0 {
            "sub/f0".into()
        } else {
            format!("f{i}")
        };
        std::fs::write(vol.join(name), noise(i, MIB as usize)).expect("write");
    }
    let err = kernel.lain_err(&["backup", "run", "store", "worker"]);
    assert!(err.contains(&location), "names the storage: {err}");
    let list = backups(&kernel);
    assert!(
        !list.is_empty()
            && list
                .iter()
                .all(|r| outcome(r) == "failed" && r["snapshot"].is_null()),
        "{list:#?}"
    );
    assert!(!repository.join("config").exists(), "no repository made");
    let shown = everything_shown(&kernel);
    assert!(shown.contains(&location), "{shown}");
    for secret in [S3_KEY, wrong] {
        assert!(
            !shown.contains(secret) && !err.contains(secret),
            "{err}\n{shown}"
        );
    }

    // The right key (read at start): the repository is made in the bucket on first use.
    s3_config(&s3, &credentials, S3_KEY, S3_SECRET);
    kernel.restart();
    let before_change = tree_hash(&vol);
    let full = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    let full = &full[0];
    assert_eq!(
        (outcome(full), full["kind"].as_str(), number(&full["files"])),
        ("succeeded", Some("full"), 8),
        "{full:#}"
    );
    assert!(number(&full["added"]) >= 8 * MIB, "{full:#}");
    assert!(
        repository.join("config").is_file(),
        "the repository is in the bucket"
    );
    assert!(
        !data.join("backups/restic").exists(),
        "and not on the local disk"
    );
    // Only the kernel with the wrong secret could not look for stale locks; the second one,
    // started before the repository existed, found nothing to unlock.
    let warnings = kernel
        .logs()
        .matches("cannot remove stale restic locks")
        .count();
    assert_eq!(warnings, 1, "{}", kernel.logs());

    // Change one file of eight: the incremental stores about that file.
    let staged = tmp.path().join("f3.new");
    std::fs::write(&staged, noise(1000, MIB as usize)).expect("write");
    std::fs::rename(&staged, vol.join("f3")).expect("rename");
    let inc = json(&kernel.lain_ok(&[
        "backup",
        "run",
        "store",
        "worker",
        "--incremental",
        "-o",
        "json",
    ]));
    let inc = &inc[0];
    assert_eq!(
        (
            outcome(inc),
            inc["kind"].as_str(),
            number(&inc["size"]),
            &inc["parent"]
        ),
        ("succeeded", Some("incremental"), 8 * MIB, &full["snapshot"]),
        "{inc:#}"
    );
    let added = number(&inc["added"]);
    assert!((MIB..MIB + MIB / 4).contains(&added), "{inc:#}");
    assert_eq!(
        std::fs::read_dir(repository.join("snapshots"))
            .expect("snapshots in the bucket")
            .count(),
        2
    );

    // Both restore byte-identical from the bucket.
    for (backup, expected, dir) in [
        (inc, tree_hash(&vol), "restored-inc"),
        (full, before_change, "restored-full"),
    ] {
        let target = tmp.path().join(dir);
        kernel.lain_ok(&[
            "backup",
            "restore",
            &number(&backup["id"]).to_string(),
            "-a",
            "store",
            "--to",
            target.to_str().expect("utf-8"),
        ]);
        assert_eq!(tree_hash(&target), expected, "{backup:#}");
    }

    // A new kernel finds the repository in the bucket and adds to it.
    kernel.restart();
    let next = json(&kernel.lain_ok(&[
        "backup",
        "run",
        "store",
        "worker",
        "--incremental",
        "-o",
        "json",
    ]));
    assert_eq!(
        (outcome(&next[0]), &next[0]["parent"]),
        ("succeeded", &inc["snapshot"]),
        "{next:#}"
    );
    assert!(number(&next[0]["added"]) < MIB / 4, "{next:#}");
    let shown = everything_shown(&kernel);
    for secret in [S3_KEY, S3_SECRET, wrong] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

/// Runs `lain serve` on `config` and returns its standard error once it exits (it must, soon).
fn refused_start(dir: &Path, config: &str) -> String {
    let data = dir.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let path = dir.join("lain.toml");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("plugin-cache");
    std::fs::write(
        &path,
        format!("cache_dir = {:?}\n{config}", cache.display().to_string()),
    )
    .expect("config");
    let mut child = std::process::Command::new(support::lain_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--config")
        .arg(&path)
        .env("LAIN_ROUTER_LISTEN", "127.0.0.1:0")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("lain serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("lain serve started with {config}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(!status.success(), "{stderr}");
    stderr
}

#[test]
fn a_missing_or_readable_s3_credentials_file_or_two_repositories_stop_the_kernel_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("s3.credentials");
    let config = format!(
        "[backup.s3]\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"lain-backups\"\ncredentials_file = {:?}\n",
        file.display().to_string()
    );
    let shown = file.display().to_string();
    let err = refused_start(tmp.path(), &config);
    assert!(
        err.contains(&shown) && err.contains("credentials_file"),
        "{err}"
    );
    std::fs::write(
        &file,
        format!("access_key_id = {S3_KEY}\nsecret_access_key = {S3_SECRET}\n"),
    )
    .expect("write");
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = refused_start(tmp.path(), &config);
        assert!(err.contains(&shown) && err.contains("0600"), "{err}");
        assert!(!err.contains(S3_SECRET) && !err.contains(S3_KEY), "{err}");
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let both = config.replace(
        "[backup.s3]",
        "[backup]\nrepository = \"/srv/b\"\n[backup.s3]",
    );
    let err = refused_start(tmp.path(), &both);
    assert!(
        err.contains("[backup] repository") && err.contains("[backup.s3]"),
        "{err}"
    );
}

#[test]
fn a_user_without_rights_gets_403_and_nothing_happens() {
    let hash = |t: &str| hex::encode(Sha256::digest(t.as_bytes()));
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let config = format!(
        "[auth]\nbootstrap = false\nregister_users = [\"token:alice\"]\n[plugins.config.token]\ntokens = [{{ user = \"alice\", sha256 = \"{}\" }}, {{ user = \"bob\", sha256 = \"{}\" }}]\n",
        hash("alice-secret-token-000"),
        hash("bob-secret-token-00000"),
    );
    let kernel = KernelProcess::start(&data, &config);
    let alice = |args: &[&str]| {
        let mut all = vec!["--token", "alice-secret-token-000"];
        all.extend_from_slice(args);
        kernel.lain(&all)
    };
    let dir = support::write_app(
        tmp.path(),
        "store",
        &app_yaml("        backup_full:\n          schedule: \"0 3 * * *\"\n"),
    );
    let out = alice(&["build", dir.to_str().expect("utf-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = alice(&["deploy", "-a", "store"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(volume(&data).join("db"), b"rows").expect("write");
    let out = alice(&["backup", "run", "store", "worker", "-o", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let taken = json(&String::from_utf8_lossy(&out.stdout));
    let id = number(&taken[0]["id"]);

    let bob = Some("bob-secret-token-00000");
    let calls = [
        ("GET", "/api/v1/apps/store/backups".to_string(), None),
        (
            "POST",
            "/api/v1/apps/store/procs/worker/backups".to_string(),
            Some(&b"{}"[..]),
        ),
        (
            "POST",
            format!("/api/v1/apps/store/backups/{id}/restore"),
            Some(&b"{}"[..]),
        ),
        ("DELETE", format!("/api/v1/apps/store/backups/{id}"), None),
    ];
    for (method, path, body) in &calls {
        let (status, text) = kernel.api(method, path, bob, *body);
        assert_eq!(status, 403, "{method} {path}: {text}");
    }
    // The CLI says so too.
    let out = kernel.lain(&[
        "--token",
        "bob-secret-token-00000",
        "backup",
        "list",
        "-a",
        "store",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A maintainer who is no cluster admin may not write on the kernel's host.
    let target = tmp.path().join("elsewhere");
    let out = alice(&[
        "backup",
        "restore",
        &id.to_string(),
        "-a",
        "store",
        "--to",
        target.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cluster admins"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!target.exists());
    // Nothing happened: one backup, the same one.
    let out = alice(&["backup", "list", "-a", "store", "-o", "json"]);
    let list = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list:#}");
    assert_eq!(number(&list[0]["id"]), id);
    assert_eq!(list[0]["outcome"], "succeeded");
}

/// Procs with a volume each; `[backup.hooks]` gives them different hooks.
const HOOKED: &str = "appname: store\nbuild:\n  base: busybox\n  script: []\nworker:\n  cmd: sleep 100000\n  volumes:\n    - /data:\n        backup_full:\n          schedule: \"0 3 * * *\"\nworker.plain:\n  cmd: sleep 100000\n  volumes:\n    - /data:\n        backup_full:\n          schedule: \"0 3 * * *\"\nworker.wrong:\n  cmd: sleep 100000\n  volumes:\n    - /data:\n        backup_full:\n          schedule: \"0 3 * * *\"\nworker.missing:\n  cmd: sleep 100000\n  volumes:\n    - /data:\n        backup_full:\n          schedule: \"0 3 * * *\"\n";

/// The `store` line of `lain app list`: its `last_backup`.
fn app_backup_state(kernel: &KernelProcess) -> Value {
    let apps = json(&kernel.lain_ok(&["app", "list", "-o", "json"]));
    apps.as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "store"))
        .map(|a| a["last_backup"].clone())
        .unwrap_or_else(|| panic!("no app store: {apps:#}"))
}

#[test]
fn dump_first_backs_up_only_the_dump_and_each_proc_gets_its_configured_hook() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let kernel = KernelProcess::start(
        &data,
        "[backup.hooks]\n\"store.worker\" = \"dump-first\"\n\"store.wrong\" = \"web\"\n\"store.missing\" = \"nope\"\n[plugins.config.dump-first]\ncommand = [\"/bin/cp\", \"{volume}/db\", \"{dump}\"]\ndump = \"db.dump\"\n",
    );
    let dir = support::write_app(tmp.path(), "store", HOOKED);
    kernel.lain_ok(&["build", dir.to_str().expect("utf-8")]);
    let view = json(&kernel.lain_ok(&["deploy", "-a", "store", "-o", "json"]));
    assert_eq!(view["converged"], true, "{view:#}");
    assert_eq!(app_backup_state(&kernel), Value::Null, "no backup yet");
    let vol = volume(&data);
    std::fs::write(vol.join("db"), b"rows of the live database").expect("write");
    std::fs::write(vol.join("db-journal"), b"half a transaction").expect("write");

    // The dump runs in the instance, only it is backed up, and it is removed afterwards.
    let ok = json(&kernel.lain_ok(&["backup", "run", "store", "worker", "-o", "json"]));
    let ok = &ok[0];
    assert_eq!(outcome(ok), "succeeded", "{ok:#}");
    assert_eq!(
        (&ok["hook"], &ok["hook_version"]),
        (&Value::from("dump-first"), &Value::from("0.1.0")),
        "{ok:#}"
    );
    assert_eq!(
        (number(&ok["files"]), number(&ok["size"])),
        (1, 25),
        "{ok:#}"
    );
    assert!(!vol.join("db.dump").exists(), "post_run removed the dump");
    assert!(vol.join("db").exists() && vol.join("db-journal").exists());
    let target = tmp.path().join("restored");
    let id = number(&ok["id"]).to_string();
    kernel.lain_ok(&[
        "backup",
        "restore",
        &id,
        "-a",
        "store",
        "--to",
        target.to_str().expect("utf-8"),
    ]);
    let restored: Vec<String> = std::fs::read_dir(&target)
        .expect("restored")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(restored, ["db.dump"]);
    assert_eq!(
        std::fs::read(target.join("db.dump")).expect("dump"),
        b"rows of the live database"
    );
    let state = app_backup_state(&kernel);
    assert_eq!(
        (&state["outcome"], &state["id"]),
        (&Value::from("succeeded"), &ok["id"]),
        "{state:#}"
    );

    // A proc without an entry gets `[backup] hook`.
    std::fs::write(data.join("volumes/store/plain/1/data/file"), b"x").expect("write");
    let plain = json(&kernel.lain_ok(&["backup", "run", "store", "plain", "-o", "json"]));
    assert_eq!(
        (outcome(&plain[0]), &plain[0]["hook"]),
        ("succeeded", &Value::from("archive")),
        "{plain:#}"
    );

    // A named hook that is no backup hook, or no plugin at all, fails the backup naming it.
    let err = kernel.lain_err(&["backup", "run", "store", "wrong"]);
    assert!(
        err.contains("plugin `web` is a proc-type plugin, not a backup hook"),
        "{err}"
    );
    let err = kernel.lain_err(&["backup", "run", "store", "missing"]);
    assert!(
        err.contains("backup hook plugin `nope` is not installed"),
        "{err}"
    );
    let list = backups(&kernel);
    let failed: Vec<(&str, &str)> = list
        .iter()
        .filter(|r| outcome(r) == "failed")
        .map(|r| {
            (
                r["proc"].as_str().unwrap_or(""),
                r["hook"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(failed, [("wrong", "web"), ("missing", "nope")], "{list:#?}");

    // `lain app list` says the app's backups fail, naming the latest failing volume.
    let state = app_backup_state(&kernel);
    assert_eq!(
        (&state["outcome"], &state["proc"], &state["failing"]),
        (
            &Value::from("failed"),
            &Value::from("missing"),
            &Value::from(2)
        ),
        "{state:#}"
    );
    let table = kernel.lain_ok(&["app", "list"]);
    assert!(
        table.contains("BACKUP")
            && table.contains("failed 2")
            && table.contains("(missing 1 /data), 2 volumes failing"),
        "{table}"
    );
    let shown = json(&kernel.lain_ok(&["app", "show", "-a", "store", "-o", "json"]));
    assert_eq!(shown["last_backup"], state, "{shown:#}");

    // A bad configuration is refused when the hook is built, naming the key; nothing runs.
    kernel.lain_ok(&["plugin", "config", "dump-first", "--set", "dump=../etc"]);
    let err = kernel.lain_err(&["backup", "run", "store", "worker"]);
    assert!(
        err.contains("dump-first")
            && err.contains("dump: `../etc` must be one name in the volume's root directory"),
        "{err}"
    );
    kernel.lain_ok(&["plugin", "config", "dump-first", "--reset"]);
    // The dump command failing fails the backup; the cleanup runs all the same.
    std::fs::remove_file(vol.join("db")).expect("rm");
    std::fs::write(vol.join("db.dump"), b"stale").expect("write");
    let err = kernel.lain_err(&["backup", "run", "store", "worker"]);
    assert!(
        err.contains("pre_run `/bin/cp /data/db /data/db.dump` failed"),
        "{err}"
    );
    assert!(!vol.join("db.dump").exists());
}

use super::expire::{due, parse};
use super::*;

pub(super) fn record(id: u64, kind: Kind, outcome: Outcome, started_at: i64) -> BackupRecord {
    BackupRecord {
        id,
        app: "a".into(),
        proc: "db".into(),
        instance: 1,
        volume: "/data".into(),
        kind,
        trigger: Trigger::Scheduled,
        outcome,
        started_at,
        ended_at: Some(started_at + 1),
        duration_ms: Some(1000),
        files: 1,
        size: 1,
        added: 1,
        snapshot: (outcome == Outcome::Succeeded).then(|| format!("snap{id}")),
        parent: None,
        hook: "archive".into(),
        hook_version: "0.1.0".into(),
        error: None,
        scheduled_at: None,
    }
}

#[test]
fn expire_durations_parse_as_validate_accepts_them() {
    assert_eq!(parse("30m"), Some(1800));
    assert_eq!(parse("2h"), Some(7200));
    assert_eq!(parse("7d"), Some(604_800));
    for bad in [
        "",
        "d",
        "7",
        "7s",
        "-1d",
        "0d",
        "1.5h",
        "99999999999999999d",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
}

#[test]
fn expire_keeps_the_newest_full_and_the_newest_backup_whatever_their_age() {
    use Kind::{Full, Incremental};
    use Outcome::{Failed, Running, Succeeded};
    let day = 86_400;
    let records = vec![
        record(1, Full, Succeeded, 0),
        record(2, Incremental, Succeeded, day),
        record(3, Full, Succeeded, 2 * day),
        record(4, Incremental, Failed, 3 * day),
        record(5, Incremental, Succeeded, 4 * day),
        record(6, Incremental, Running, 4 * day),
        record(7, Incremental, Succeeded, 10 * day),
    ];
    // Everything is older than a day at day 20: fulls keep only the newest (3).
    assert_eq!(due(&records, Full, day, 20 * day), vec![1]);
    // Incrementals: the newest (7) parents the next one; a running one is never touched.
    assert_eq!(due(&records, Incremental, day, 20 * day), vec![2, 4, 5]);
    // Nothing is old enough yet.
    assert!(due(&records, Incremental, 30 * day, 20 * day).is_empty());
    // When the newest backup is the newest full, both rules keep the same one.
    let only_fulls = vec![record(1, Full, Succeeded, 0), record(2, Full, Succeeded, 5)];
    assert_eq!(due(&only_fulls, Full, 1, 100), vec![1]);
}

#[test]
fn a_proc_entry_wins_over_its_apps_and_bad_names_are_refused_by_name() {
    let config: Config = toml::from_str(
        "hook = \"archive\"\n[hooks]\nstore = \"dump-first\"\n\"store.web\" = \"my-hook\"\n",
    )
    .expect("parses");
    config.check().expect("valid");
    assert_eq!(config.hook_for("store", "web"), "my-hook");
    assert_eq!(config.hook_for("store", "db"), "dump-first");
    assert_eq!(config.hook_for("shop", "db"), "archive");
    for (key, hook, expected) in [
        ("a.b.c", "archive", "[backup.hooks] `a.b.c`: name an app"),
        ("store.", "archive", "[backup.hooks] `store.`: invalid name"),
        ("St_ore", "archive", "[backup.hooks] `St_ore`: invalid name"),
        ("store", "Archive", "[backup] hooks.\"store\": "),
        ("store", "", "[backup] hooks.\"store\": "),
    ] {
        let bad = Config {
            hooks: [(key.to_string(), hook.to_string())].into(),
            ..Config::default()
        };
        let err = bad.check().expect_err(key);
        assert!(err.starts_with(expected), "{key} = {hook}: {err}");
    }
    let bad = Config {
        hook: "no way".into(),
        ..Config::default()
    };
    assert!(bad.check().is_err_and(|e| e.starts_with("[backup] hook: ")));
}

/// The `[backup]` lines of the documented example in config.rs, its `[backup.s3]` uncommented.
fn documented_backup_with_s3() -> String {
    include_str!("../config.rs")
        .lines()
        .map(|l| l.trim_start_matches("//!").trim_start_matches(' '))
        .skip_while(|l| *l != "[backup]")
        .take_while(|l| !l.starts_with("```"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_local_repository_and_s3_storage_together_are_refused_naming_both() {
    #[derive(serde::Deserialize)]
    struct File {
        backup: Config,
    }
    let doc = documented_backup_with_s3();
    assert!(doc.contains("[backup.s3]"), "{doc}");
    let both: File = toml::from_str(&doc).expect("the documented keys parse");
    let e = both.backup.check().expect_err("both set");
    assert!(
        e.contains("[backup] repository") && e.contains("[backup.s3]"),
        "{e}"
    );
    let mut s3 = both.backup;
    s3.repository = None;
    s3.check().expect("the documented [backup.s3] is valid");
    let location = s3.s3.as_ref().expect("s3").location().expect("location");
    assert_eq!(
        location,
        "s3:https://s3.eu-west-1.amazonaws.com/lain-backups/site-a"
    );
    // Its credentials file is missing here: the error names it.
    let e = s3
        .storage(Path::new("/data"))
        .expect_err("no file")
        .to_string();
    assert!(e.contains("/etc/lain/s3.credentials"), "{e}");
    assert!(Config::default().check().is_ok());
}

#[test]
fn the_s3_credentials_file_is_a_kernel_path_sandboxes_never_see() {
    let mut config = crate::config::KernelConfig::default();
    let file = PathBuf::from("/etc/lain/s3.credentials");
    assert!(!config.kernel_paths().contains(&file));
    config.backup.s3 = Some(s3::S3Config {
        endpoint: "http://127.0.0.1:9000".into(),
        bucket: "lain-backups".into(),
        prefix: String::new(),
        region: "us-east-1".into(),
        credentials_file: file.clone(),
    });
    assert!(config.kernel_paths().contains(&file));
}

/// A plan as a hook might return it.
fn plan(include: &[&str], exclude: &[&str]) -> crate::plugin::bindings::backup::BackupPlan {
    crate::plugin::bindings::backup::BackupPlan {
        pre_run: None,
        include_paths: include.iter().map(|p| p.to_string()).collect(),
        exclude_paths: exclude.iter().map(|p| p.to_string()).collect(),
        post_run: None,
    }
}

#[test]
fn a_hostile_plan_is_refused_naming_the_hook() {
    use super::run::{MAX_PLAN_PATHS, check_plan};
    let volume = tempfile::tempdir().expect("tempdir");
    let root = volume.path();
    std::fs::create_dir(root.join("data")).expect("mkdir");
    std::os::unix::fs::symlink("/etc", root.join("out")).expect("symlink");
    assert_eq!(
        check_plan(&plan(&[".", "data/db", "out"], &["data/tmp"]), root, "h"),
        Ok(())
    );
    for (include, exclude, why) in [
        (
            &["../etc/shadow"][..],
            &[][..],
            "not relative to the volume without `..`",
        ),
        (
            &["/etc/shadow"],
            &[],
            "not relative to the volume without `..`",
        ),
        (
            &["data/../../x"],
            &[],
            "not relative to the volume without `..`",
        ),
        (&[""], &[], "not relative to the volume without `..`"),
        (&["."], &["../x"], "not relative to the volume without `..`"),
        // Through a link the instance made, restic would read outside the volume.
        (&["out/passwd"], &[], "goes through a symbolic link"),
    ] {
        let e = check_plan(&plan(include, exclude), root, "evil").expect_err(why);
        assert!(
            e.starts_with("backup hook `evil` planned an invalid path") && e.contains(why),
            "{e}"
        );
    }
    let huge: Vec<String> = (0..=MAX_PLAN_PATHS).map(|i| format!("f{i}")).collect();
    let huge: Vec<&str> = huge.iter().map(String::as_str).collect();
    let e = check_plan(&plan(&huge, &[]), root, "evil").expect_err("huge");
    assert!(e.contains("backup hook `evil` planned 100001 paths"), "{e}");
    for argv in [
        Vec::new(),
        vec!["x".to_string(); 1025],
        vec!["x".repeat(65 << 10)],
    ] {
        let mut p = plan(&["."], &[]);
        p.post_run = Some(argv);
        let e = check_plan(&p, root, "evil").expect_err("command");
        assert!(
            e.contains("backup hook `evil` planned a command that is empty or too long"),
            "{e}"
        );
    }
}

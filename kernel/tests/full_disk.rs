//! A kernel whose data dir's disk fills up (issue 13): store writes fail with the disk's own
//! error, a build says "No space left on device", and once space is back the kernel works again
//! without a restart.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use std::process::Command;

/// A tmpfs on a temporary directory, unmounted when dropped.
struct SmallDisk(tempfile::TempDir);

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_data_dir_fails_with_its_own_error_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(dir.path())
        .status();
    if !mounted.as_ref().is_ok_and(|s| s.success()) {
        eprintln!(
            "\n!!!!!!!!!! SKIPPED: cannot mount a tmpfs ({mounted:?}); this full-disk test needs \
             root (mount -t tmpfs) !!!!!!!!!!\n"
        );
        return;
    }
    let disk = SmallDisk(dir);
    let data = disk.0.path().join("data");
    let mut config = common::config(&data);
    common::token_users(&mut config, &[("alice", &["admins"])]);
    let kernel = common::open_kernel(config).expect("kernel opens");
    let call = |method: &'static str, uri: &'static str, body: Vec<u8>| {
        let kernel = &kernel;
        async move {
            let (status, bytes) = common::api_raw(
                kernel,
                method,
                uri,
                Some(&common::token("alice")),
                Body::from(body),
            )
            .await;
            (status, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let (status, text) = call("POST", "/api/v1/plugins/spread/disable", Vec::new()).await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let filler = disk.0.path().join("filler");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0u8; 64 << 10];
        while file.write_all(&chunk).is_ok() {}
    }
    let big = vec![7u8; 1 << 20];
    let tar = common::hostile::RawTar::new()
        .file(
            "lain.yaml",
            0o644,
            b"appname: shop\nworker:\n  cmd: sleep 100\n",
        )
        .file("big", 0o644, &big)
        .finish();
    let (_, events) = call("POST", "/api/v1/builds", tar).await;
    assert!(events.contains("No space left on device"), "{events}");
    assert!(!events.contains("not a valid tar"), "{events}");
    let mut failed = Vec::new();
    for _ in 0..40 {
        for uri in [
            "/api/v1/plugins/spread/enable",
            "/api/v1/plugins/spread/disable",
        ] {
            let (status, text) = call("POST", uri, Vec::new()).await;
            if status != StatusCode::OK {
                failed.push((status, text));
            }
        }
    }
    assert!(failed.len() >= 2, "store writes on a full disk fail");
    for (status, text) in &failed {
        assert!(
            text.contains("No space left on device") && !text.contains("Previous I/O"),
            "{status}: {text}"
        );
    }

    std::fs::remove_file(&filler).expect("free the disk");
    for uri in [
        "/api/v1/plugins/spread/enable",
        "/api/v1/plugins/spread/disable",
    ] {
        let (status, text) = call("POST", uri, Vec::new()).await;
        assert_eq!(status, StatusCode::OK, "{uri} once space is back: {text}");
    }
}

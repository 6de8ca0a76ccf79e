//! `GET /api/v1/apps/{app}/procs/{proc}/logs` while the log files rotate: the files are
//! rotated by hand between two reads of the response (the stream reads nothing while it is not
//! polled), so each race is reproduced exactly.

mod common;

use axum::body::Body;
use axum::http::StatusCode;
use http_body_util::BodyExt as _;
use lain::kernel::Kernel;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tower::ServiceExt as _;

const APP: &str =
    "appname: shop\nbuild:\n  base: busybox\n  script:\n    - echo built\nweb:\n  cmd: sleep 100\n";

/// A kernel with app `shop` built and deployed (the reconciler does not run: no instance writes
/// to the log directory but the test), and the log directory of its proc `web`.
async fn deployed(dir: &Path) -> (Kernel, PathBuf) {
    let kernel = common::open_kernel(common::config(dir)).expect("kernel opens");
    let mut b = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(APP.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    b.append_data(&mut header, "lain.yaml", APP.as_bytes())
        .expect("append");
    let tar = b.into_inner().expect("tar");
    let (status, events) = call(&kernel, "POST", "/api/v1/builds", Body::from(tar)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        String::from_utf8_lossy(&events).contains("\"done\""),
        "{}",
        String::from_utf8_lossy(&events)
    );
    let (status, body) = call(&kernel, "POST", "/api/v1/apps/shop/deploy", Body::empty()).await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let logs = dir.join("logs/shop/web");
    std::fs::create_dir_all(&logs).expect("log dir");
    (kernel, logs)
}

async fn call(kernel: &Kernel, method: &str, uri: &str, body: Body) -> (StatusCode, Vec<u8>) {
    common::api_raw(kernel, method, uri, Some(&common::admin(kernel)), body).await
}

/// `lines` as `<prefix>-<i>` lines, `i` in `range`.
fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}-{i:04}\n")).collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write log");
}

/// What the shim does when a log grows too large: the file becomes `<file>.1` (replacing the
/// previous one) and a new file starts.
fn rotate(path: &Path) {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    std::fs::rename(path, rotated).expect("rotate");
    std::fs::File::create(path).expect("new log");
}

/// A streaming response's body, read frame by frame.
struct Stream {
    body: Body,
    text: String,
}

impl Stream {
    async fn open(kernel: &Kernel, uri: &str) -> Stream {
        let request = axum::http::Request::builder()
            .uri(uri)
            .header("authorization", common::admin(kernel))
            .body(Body::empty())
            .expect("request");
        let response = lain::api::app(kernel.app_state())
            .oneshot(request)
            .await
            .expect("router answers");
        assert_eq!(response.status(), StatusCode::OK);
        Stream {
            body: response.into_body(),
            text: String::new(),
        }
    }

    /// Reads until the text read so far ends with `last`; fails after 10 seconds.
    async fn until(&mut self, last: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.text.ends_with(last) {
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .unwrap_or_else(|_| panic!("no `{last:?}` within 10 s; read:\n{}", self.text))
                .expect("stream open")
                .expect("frame");
            if let Ok(data) = frame.into_data() {
                self.text.push_str(&String::from_utf8_lossy(&data));
            }
        }
    }
}

fn prefixed(no: u32, text: &str) -> String {
    text.lines().map(|l| format!("[{no}] {l}\n")).collect()
}

#[tokio::test]
async fn a_tail_right_after_a_rotation_reads_the_rotated_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kernel, logs) = deployed(dir.path()).await;
    // Instance 0 rotated a moment ago: its live file is empty. Instance 1's live file holds
    // less than the tail asked for, and only the start of a line.
    std::fs::write(logs.join("0.log.1"), lines("old", 0..100)).expect("write");
    std::fs::write(logs.join("0.log"), "").expect("write");
    std::fs::write(logs.join("1.log.1"), lines("one", 0..100)).expect("write");
    std::fs::write(logs.join("1.log"), "one-0100 and the rest").expect("write");
    let (status, body) = call(
        &kernel,
        "GET",
        "/api/v1/apps/shop/procs/web/logs?tail=30",
        Body::empty(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let text = String::from_utf8(body).expect("utf-8");
    assert_eq!(
        text,
        format!(
            "{}{}",
            prefixed(0, &lines("old", 97..100)),
            prefixed(
                1,
                &format!("{}one-0100 and the rest\n", lines("one", 99..100))
            )
        )
    );
}

#[tokio::test]
async fn follow_reads_on_across_rotations_and_marks_what_it_missed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (kernel, logs) = deployed(dir.path()).await;
    let live = logs.join("0.log");
    append(&live, &lines("a", 0..10));
    let mut stream = Stream::open(
        &kernel,
        "/api/v1/apps/shop/procs/web/logs?follow=true&tail=65536",
    )
    .await;
    stream.until("[0] a-0009\n").await;
    assert_eq!(stream.text, prefixed(0, &lines("a", 0..10)));

    // One rotation between two reads: the rest of the old file, then the new one.
    append(&live, &lines("b", 0..1000));
    rotate(&live);
    append(&live, &lines("c", 0..10));
    stream.text.clear();
    stream.until("[0] c-0009\n").await;
    let want = prefixed(0, &format!("{}{}", lines("b", 0..1000), lines("c", 0..10)));
    assert_eq!(stream.text, want);

    // Three rotations between two reads: the file being read is read to its end, the one
    // after it was replaced before anything read it, which the stream says.
    append(&live, &lines("d", 0..100));
    rotate(&live);
    append(&live, &lines("e", 0..100));
    rotate(&live);
    append(&live, &lines("f", 0..100));
    rotate(&live);
    append(&live, &lines("g", 0..10));
    stream.text.clear();
    stream.until("[0] g-0009\n").await;
    let marker = format!("[0] {}\n", lain::lifecycle::logs::MAYBE_SKIPPED);
    let want = prefixed(0, &lines("d", 0..100))
        + &marker
        + &prefixed(0, &format!("{}{}", lines("f", 0..100), lines("g", 0..10)));
    assert_eq!(stream.text, want);
}

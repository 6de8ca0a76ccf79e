use super::reader::KEPT;
use super::*;
use std::io::Write as _;

fn lines(prefix: &str, range: std::ops::Range<usize>) -> String {
    range.map(|i| format!("{prefix}-{i:04}\n")).collect()
}

fn prefixed(no: u32, text: &str) -> String {
    text.lines().map(|l| format!("[{no}] {l}\n")).collect()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log");
    f.write_all(text.as_bytes()).expect("write log");
}

/// What the shim does: the file becomes `<file>.1` and a new one starts.
fn rotate(path: &Path) {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    std::fs::rename(path, rotated).expect("rotate");
    std::fs::File::create(path).expect("new log");
}

fn request(follow: bool, tail: u64) -> LogRequest {
    LogRequest {
        follow,
        tail,
        access: false,
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).expect("utf-8")
}

#[test]
fn names_outside_the_log_store_are_refused() {
    let root = Path::new("/data/logs");
    assert_eq!(
        proc_dir(root, "shop", "web").expect("plain names"),
        Path::new("/data/logs/shop/web")
    );
    for (app, proc) in [("..", "web"), ("shop", "a/b"), ("", "web"), ("shop", ".")] {
        assert!(proc_dir(root, app, proc).is_err(), "{app}/{proc}");
    }
}

#[tokio::test]
async fn a_tail_spans_the_rotated_file_and_starts_at_a_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("0.log");
    std::fs::write(dir.path().join("0.log.1"), lines("old", 0..10)).expect("write");
    std::fs::write(&live, lines("new", 0..2)).expect("write");
    // 9 bytes a line: 2 lines of the live file, 2 of the rotated one and part of a third.
    let mut reader = Reader::new(dir.path().to_path_buf(), request(false, 40));
    assert_eq!(
        text(reader.tail().await),
        prefixed(0, &(lines("old", 8..10) + &lines("new", 0..2)))
    );
    // A tail shorter than the last line still gives that line's end rather than nothing.
    let mut reader = Reader::new(dir.path().to_path_buf(), request(false, 5));
    assert_eq!(text(reader.tail().await), "[0] 0001\n");
}

#[tokio::test]
async fn the_access_log_is_read_without_prefixes() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("access.log.1"), "GET /a 200\n").expect("write");
    std::fs::write(dir.path().join("access.log"), "GET /b 200\n").expect("write");
    std::fs::write(dir.path().join("0.log"), "instance output\n").expect("write");
    let access = LogRequest {
        follow: false,
        tail: 1 << 20,
        access: true,
    };
    let mut reader = Reader::new(dir.path().to_path_buf(), access);
    assert_eq!(text(reader.tail().await), "GET /a 200\nGET /b 200\n");
}

#[tokio::test]
async fn following_more_files_than_it_keeps_counts_what_it_drops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("0.log");
    append(&live, &lines("a", 0..2));
    let mut reader = Reader::new(dir.path().to_path_buf(), request(true, 1 << 20));
    assert_eq!(text(reader.tail().await), prefixed(0, &lines("a", 0..2)));
    // Every rotation is seen (discovery without reading, as when the client reads slower
    // than the instance writes), but no file is read to its end until more than KEPT are
    // held: the oldest go, their unread bytes counted (70 of `b`, 80 of `r0`).
    append(&live, &lines("b", 0..10));
    for round in 0..=KEPT {
        rotate(&live);
        append(&live, &lines(&format!("r{round}"), 0..10));
        reader.discover().await;
    }
    let mut want = format!("[0] {}\n", skipped(70 + 80));
    for round in 1..=KEPT {
        want += &prefixed(0, &lines(&format!("r{round}"), 0..10));
    }
    assert_eq!(text(reader.follow().await), want);
}

#[tokio::test]
async fn a_truncated_log_is_read_again_from_its_start_and_said_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let live = dir.path().join("3.log");
    append(&live, &lines("a", 0..10));
    let mut reader = Reader::new(dir.path().to_path_buf(), request(true, 1 << 20));
    reader.tail().await;
    std::fs::write(&live, lines("b", 0..2)).expect("truncate");
    assert_eq!(
        text(reader.follow().await),
        format!("[3] {TRUNCATED}\n{}", prefixed(3, &lines("b", 0..2)))
    );
}

#[tokio::test]
async fn an_instance_that_appears_while_following_is_read_from_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    append(&dir.path().join("0.log"), "zero\n");
    let mut reader = Reader::new(dir.path().to_path_buf(), request(true, 1 << 20));
    assert_eq!(text(reader.tail().await), "[0] zero\n");
    append(&dir.path().join("1.log"), &lines("one", 0..3));
    append(&dir.path().join("0.log"), "again\n");
    assert_eq!(
        text(reader.follow().await),
        format!("[0] again\n{}", prefixed(1, &lines("one", 0..3)))
    );
    assert_eq!(text(reader.follow().await), "", "nothing new");
}

#[tokio::test]
async fn a_tail_reads_at_most_max_tail_of_each_log_one_log_per_item() {
    use futures::StreamExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    // Two logs of 16 MiB + 2 MiB each (rotated file full, live file part), lines of 1 KiB.
    let line = format!("{}\n", "x".repeat(1023));
    for no in 0..2 {
        let live = dir.path().join(format!("{no}.log"));
        std::fs::write(format!("{}.1", live.display()), line.repeat(16 << 10)).expect("write");
        std::fs::write(&live, line.repeat(2 << 10)).expect("write");
    }
    let reader = Reader::new(dir.path().to_path_buf(), request(false, u64::MAX));
    let items: Vec<Vec<u8>> = reader.stream().collect().await;
    assert_eq!(items.len(), 2, "one item per log");
    for item in &items {
        // 16 MiB of the files, each 1 KiB line prefixed with `[n] `.
        assert_eq!(item.len() as u64, super::reader::MAX_TAIL / 1024 * 1028);
    }
}

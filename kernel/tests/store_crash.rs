//! Kill -9 safety of the embedded store: a child process (this test binary, re-run with an
//! environment variable) applies writes in a loop and acknowledges each on stdout; it is
//! SIGKILLed at a random moment, and the reopened store must hold every acknowledged write with
//! consistent revisions and change log.

use lain::store::embedded::{DEFAULT_LOG_RETENTION, EmbeddedStore};
use lain::store::{Op, Store};
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc::channel;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Set (to the database path) only in the child process.
const CHILD_ENV: &str = "LAIN_STORE_CRASH_CHILD_DB";
/// The name of the child's entry point below.
const CHILD_TEST: &str = "crash_writer_child";

/// The child: when [`CHILD_ENV`] is set, writes forever, printing `ack <i> <revision>` after
/// each apply returns; otherwise (a normal test run) does nothing.
#[test]
fn crash_writer_child() -> TestResult {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let store = EmbeddedStore::open(std::path::Path::new(&path))?;
    let mut out = std::io::stdout().lock();
    for i in store.revision()?.. {
        let value = i.to_be_bytes().to_vec();
        let rev = store.apply(vec![
            Op::Put(format!("k/{i:08}"), value.clone()),
            Op::Put("last".into(), value),
        ])?;
        writeln!(out, "ack {i} {rev}")?;
        out.flush()?;
    }
    Ok(())
}

/// The `(i, revision)` of an `ack <i> <revision>` line.
fn parse_ack(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix("ack ")?;
    let (i, rev) = rest.split_once(' ')?;
    Some((i.parse().ok()?, rev.parse().ok()?))
}

/// Runs the child on `path` and SIGKILLs it at a random moment after its first write;
/// returns the `(i, revision)` pairs it acknowledged.
fn write_until_killed(
    path: &std::path::Path,
    seed: u64,
) -> Result<Vec<(u64, u64)>, Box<dyn std::error::Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no child stdout")?;
    let (tx, rx) = channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ack) = parse_ack(&line) {
                let _ = tx.send(ack);
            }
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(60));
    let delay = std::collections::hash_map::RandomState::new().hash_one(seed) % 300;
    std::thread::sleep(Duration::from_millis(delay));
    child.kill()?;
    child.wait()?;
    reader.join().map_err(|_| "the reader panicked")?;
    let mut acks = vec![first.map_err(|_| "the child acknowledged no write")?];
    acks.extend(rx.try_iter());
    Ok(acks)
}

#[test]
fn acknowledged_writes_survive_kill_9() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state.redb");
    let mut acks = Vec::new();
    for round in 0..3 {
        acks.extend(write_until_killed(&path, round)?);
    }
    let store = EmbeddedStore::open(&path)?;
    let revision = store.revision()?;
    for &(i, rev) in &acks {
        assert_eq!(rev, i + 1, "each apply commits at the next revision");
        let value = store.get(&format!("k/{i:08}"))?;
        assert_eq!(
            value,
            Some(i.to_be_bytes().to_vec()),
            "acknowledged write {i} lost"
        );
    }
    let acked = acks.iter().map(|&(_, rev)| rev).max().unwrap_or(0);
    assert!(
        revision >= acked,
        "revision {revision} < acknowledged {acked}"
    );
    // Every committed apply is whole: one key per revision, `last` from the newest one.
    assert_eq!(u64::try_from(store.list("k/")?.len())?, revision);
    let last = revision.checked_sub(1).ok_or("nothing committed")?;
    assert_eq!(store.get("last")?, Some(last.to_be_bytes().to_vec()));
    // The change log holds each retained revision whole, in order.
    let from = revision.saturating_sub(DEFAULT_LOG_RETENTION);
    let watch = store.watch("", from)?;
    for rev in from + 1..=revision {
        let i = (rev - 1).to_be_bytes().to_vec();
        for expected in [
            Op::Put(format!("k/{:08}", rev - 1), i.clone()),
            Op::Put("last".into(), i),
        ] {
            let change = watch
                .recv_timeout(Duration::from_secs(10))?
                .ok_or("change log short")?;
            assert_eq!((change.revision, change.op), (rev, expected));
        }
    }
    assert_eq!(watch.recv_timeout(Duration::from_millis(100))?, None);
    Ok(())
}

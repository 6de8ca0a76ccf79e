//! One test per rule of the unpacker, on tars written byte by byte.

use super::*;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

use crate::hostile::{RawTar, kind};

/// A staging directory `stage` inside a temporary directory (so escapes would land beside it).
struct Stage {
    root: tempfile::TempDir,
    dir: Dir,
}

impl Stage {
    fn new() -> Stage {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("stage")).expect("stage");
        let dir = Dir::open_ambient_dir(root.path().join("stage"), cap_std::ambient_authority())
            .expect("open");
        Stage { root, dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join("stage").join(rel)
    }

    fn unpack(&self, tar: RawTar) -> Result<Unpacked, ContextError> {
        self.unpack_with(tar, &Limits::default())
    }

    fn unpack_with(&self, tar: RawTar, limits: &Limits) -> Result<Unpacked, ContextError> {
        unpack(&tar.finish(), &self.dir, limits)
    }

    /// Unpacks `tar`, expecting a refusal of `entry`; returns the message.
    fn refused(&self, tar: RawTar, entry: &str) -> String {
        match self.unpack(tar) {
            Err(ContextError::Entry {
                entry: got,
                problem,
            }) => {
                assert_eq!(got, entry, "{problem}");
                problem.to_string()
            }
            other => panic!("expected a refusal of {entry}, got {other:?}"),
        }
    }

    /// Whatever sits next to the staging directory.
    fn outside(&self) -> Vec<String> {
        std::fs::read_dir(self.root.path())
            .expect("read")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n != "stage")
            .collect()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn a_plain_context_unpacks_with_normalised_modes() {
    let s = Stage::new();
    let tar = RawTar::new()
        .file("lain.yaml", 0o600, b"appname: x\n")
        .dir("bin")
        .file("bin/run", 0o4777, b"#!/bin/sh\n")
        .file("./deep/er/data.txt", 0o2666, b"data")
        .entry("odd", kind::FILE, "", 0o1001, b"")
        .symlink("deep/link", "er/data.txt")
        .hard_link("copy", "deep/er/data.txt");
    let unpacked = s.unpack(tar).expect("unpacks");
    assert_eq!(unpacked.bytes, 11 + 10 + 4);
    assert_eq!(mode(&s.path("lain.yaml")), 0o644);
    assert_eq!(
        mode(&s.path("bin/run")),
        0o755,
        "setuid and world-write dropped"
    );
    assert_eq!(mode(&s.path("deep/er/data.txt")), 0o644, "setgid dropped");
    assert_eq!(mode(&s.path("odd")), 0o755, "sticky dropped, execute kept");
    for dir in ["bin", "deep", "deep/er"] {
        assert_eq!(mode(&s.path(dir)), 0o755, "{dir}");
    }
    assert_eq!(
        std::fs::read_link(s.path("deep/link")).expect("a symlink"),
        Path::new("er/data.txt")
    );
    assert_eq!(
        std::fs::metadata(s.path("copy")).expect("copy").ino(),
        std::fs::metadata(s.path("deep/er/data.txt"))
            .expect("data")
            .ino(),
        "a hard link"
    );
    assert_eq!(unpacked.tree.get(Path::new("deep/er")), Some(&Node::Dir));
}

#[test]
fn absolute_paths_and_parent_dirs_are_refused() {
    let s = Stage::new();
    let m = s.refused(RawTar::new().file("/tmp/abs", 0o644, b"x"), "/tmp/abs");
    assert!(m.contains("absolute paths are not allowed"), "{m}");
    let m = s.refused(
        RawTar::new().file("a/../../escape", 0o644, b"x"),
        "a/../../escape",
    );
    assert!(m.contains("`..` is not allowed"), "{m}");
    let m = s.refused(RawTar::new().dir("../up"), "../up");
    assert!(m.contains("`..`"), "{m}");
    assert!(s.outside().is_empty(), "{:?}", s.outside());
}

#[test]
fn depth_and_length_are_bounded_cheaply() {
    let s = Stage::new();
    let ok = "d/".repeat(63) + "f";
    s.unpack(RawTar::new().file(&ok, 0o644, b"x"))
        .expect("64 levels");
    let s = Stage::new();
    let deep = "d/".repeat(64) + "f";
    let m = s.refused(RawTar::new().file(&deep, 0o644, b"x"), &deep);
    assert!(m.contains("nested more than 64 levels"), "{m}");
    // Finding 10: three 1,000-level entries cost 38 s through `tar::Archive::unpack`.
    let s = Stage::new();
    let long = "a/".repeat(1_000) + "f";
    let started = Instant::now();
    let m = s.refused(
        RawTar::new()
            .file(&long, 0o644, b"x")
            .file(&long, 0o644, b"x")
            .file(&long, 0o644, b"x"),
        &long,
    );
    assert!(m.contains("2001 bytes long, more than 1024"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn devices_fifos_and_unknown_types_are_refused_by_name() {
    for (kind, what) in [
        (kind::CHAR, "device"),
        (kind::BLOCK, "device"),
        (kind::FIFO, "FIFO"),
        (b'V', "type 'V'"),
    ] {
        let s = Stage::new();
        let m = s.refused(
            RawTar::new().entry("dev/null", kind, "", 0o666, b""),
            "dev/null",
        );
        assert!(
            m.contains(&format!("{what} entries are not allowed")),
            "{m}"
        );
        assert!(!s.path("dev/null").exists(), "nothing created for {what}");
    }
}

#[test]
fn symlinks_must_resolve_inside_the_context() {
    // (symlinks, the entry refused, why)
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: &[Case] = &[
        (&[("lain.yaml", "/dev/zero")], "lain.yaml", "is absolute"),
        (&[("up", "..")], "up", "points outside"),
        (&[("a/b", "../../etc/passwd")], "a/b", "points outside"),
        // `s/up` is the context itself, so `s/up/..` is its parent: only resolving through the
        // tree (not the text of the target) sees it.
        (&[("t", "s/up/.."), ("s/up", "..")], "t", "points outside"),
        (&[("x", "y"), ("y", "x")], "x", "more than 16 symlinks"),
    ];
    for (links, entry, why) in cases {
        let s = Stage::new();
        let mut tar = RawTar::new().dir("s").dir("a");
        for (name, target) in *links {
            tar = tar.symlink(name, target);
        }
        let m = s.refused(tar, entry);
        assert!(m.contains(why), "{m}");
    }
    let s = Stage::new();
    let tar = RawTar::new()
        .dir("s")
        .symlink("s/up", "..")
        .symlink("t", "s/up/s")
        .symlink("dangling", "nowhere/yet")
        .symlink("self", ".");
    s.unpack(tar).expect("links inside are kept");
    assert_eq!(
        std::fs::read_link(s.path("t")).expect("link"),
        Path::new("s/up/s")
    );
}

#[test]
fn links_are_never_followed_while_unpacking() {
    let s = Stage::new();
    let m = s.refused(
        RawTar::new()
            .dir("real")
            .symlink("via", "real")
            .file("via/x", 0o644, b"x"),
        "via/x",
    );
    assert!(m.contains("its parent `via` is a symlink"), "{m}");
    assert!(!s.path("real/x").exists());
    let s = Stage::new();
    let m = s.refused(
        RawTar::new()
            .file("f", 0o644, b"x")
            .file("f/g", 0o644, b"y"),
        "f/g",
    );
    assert!(m.contains("is a file, not a directory"), "{m}");
}

#[test]
fn hard_links_only_to_earlier_regular_files_inside() {
    let cases: Vec<(RawTar, &str, &str)> = vec![
        (
            RawTar::new()
                .hard_link("h", "later")
                .file("later", 0o644, b"x"),
            "h",
            "no earlier regular file",
        ),
        (RawTar::new().hard_link("h", "/etc/passwd"), "h", "absolute"),
        (RawTar::new().hard_link("h", "../x"), "h", "`..`"),
        (
            RawTar::new().symlink("l", "f").hard_link("h", "l"),
            "h",
            "it is a symlink",
        ),
        (
            RawTar::new().dir("d").hard_link("h", "d"),
            "h",
            "it is a directory",
        ),
        (RawTar::new().hard_link("h", ""), "h", "no target"),
    ];
    for (tar, entry, why) in cases {
        let s = Stage::new();
        let m = s.refused(tar, entry);
        assert!(m.contains(why), "{m}");
    }
}

#[test]
fn an_entry_appears_once() {
    let s = Stage::new();
    let m = s.refused(
        RawTar::new()
            .file("lain.yaml", 0o644, b"appname: a\n")
            .file("lain.yaml", 0o644, b"appname: b\n"),
        "lain.yaml",
    );
    assert!(
        m.contains("appears twice in the build context (first as a file)"),
        "{m}"
    );
    let s = Stage::new();
    let m = s.refused(RawTar::new().dir("d").symlink("d", "."), "d");
    assert!(
        m.contains("appears twice in the build context (first as a directory)"),
        "{m}"
    );
    // A directory made for an earlier entry counts.
    let s = Stage::new();
    let m = s.refused(
        RawTar::new().file("a/b", 0o644, b"").file("a", 0o644, b""),
        "a",
    );
    assert!(m.contains("(first as a directory)"), "{m}");
    let s = Stage::new();
    s.unpack(
        RawTar::new()
            .dir("./")
            .dir("d")
            .dir("d/")
            .file("d/f", 0o644, b""),
    )
    .expect("directories may repeat");
    let s = Stage::new();
    let m = s.refused(RawTar::new().file("./", 0o644, b"x"), "./");
    assert!(
        m.contains("cannot replace the build context's top directory"),
        "{m}"
    );
}

#[test]
fn sizes_are_bounded_before_writing_sparse_files_included() {
    let limits = Limits {
        max_bytes: 1000,
        ..Limits::default()
    };
    let s = Stage::new();
    let tar = RawTar::new()
        .file("a", 0o644, &[1; 600])
        .file("b", 0o644, &[2; 600]);
    match s.unpack_with(tar, &limits) {
        Err(e @ ContextError::Entry { .. }) => {
            assert_eq!(
                e.to_string(),
                "build context entry `b`: the build context unpacks to more than 1000 bytes"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!s.path("b").exists(), "refused before writing");
    // Finding 17: a 1 TiB sparse file.
    let s = Stage::new();
    let started = Instant::now();
    let m = s.refused(RawTar::new().sparse("huge", 1 << 40, &[7; 512]), "huge");
    assert!(m.contains("unpacks to more than 268435456 bytes"), "{m}");
    assert!(!s.path("huge").exists());
    assert!(started.elapsed() < Duration::from_secs(2));
    let s = Stage::new();
    s.unpack(RawTar::new().sparse("small", 4096, &[7; 512]))
        .expect("a small sparse file");
    let data = std::fs::read(s.path("small")).expect("read");
    assert_eq!(data.len(), 4096);
    assert!(data[..512].iter().all(|b| *b == 7) && data[512..].iter().all(|b| *b == 0));
}

#[test]
fn entries_and_time_are_bounded() {
    let limits = Limits {
        max_entries: 5,
        ..Limits::default()
    };
    let s = Stage::new();
    let mut tar = RawTar::new();
    for i in 0..10 {
        tar = tar.file(&format!("f{i}"), 0o644, b"");
    }
    let e = s.unpack_with(tar, &limits).expect_err("too many");
    assert_eq!(e.to_string(), "the build context has more than 5 entries");
    // Directories made for an entry count too.
    let s = Stage::new();
    let e = s
        .unpack_with(RawTar::new().file("a/b/c/d/e/f/g", 0o644, b""), &limits)
        .expect_err("too many");
    assert!(matches!(e, ContextError::TooManyEntries { max: 5 }), "{e}");

    let limits = Limits {
        max_time: Duration::ZERO,
        ..Limits::default()
    };
    let s = Stage::new();
    let e = s
        .unpack_with(RawTar::new().file("first", 0o644, b""), &limits)
        .expect_err("no time");
    assert_eq!(
        e.to_string(),
        "unpacking the build context took longer than 0s (stopped at `first`)"
    );
}

#[test]
fn garbage_is_not_a_tar() {
    let s = Stage::new();
    let e =
        unpack(&b"not a tar at all".repeat(40), &s.dir, &Limits::default()).expect_err("garbage");
    assert!(
        e.to_string()
            .starts_with("the build context is not a valid tar"),
        "{e}"
    );
}

#[test]
fn input_files_are_opened_without_following_links() {
    let s = Stage::new();
    std::fs::write(s.path("lain.yaml"), "appname: x\n").expect("write");
    std::os::unix::fs::symlink("/dev/zero", s.path("zero")).expect("symlink");
    std::os::unix::fs::symlink("lain.yaml", s.path("inside")).expect("symlink");
    std::fs::create_dir(s.path("dir")).expect("dir");
    let mut text = String::new();
    open_file(&s.dir, Path::new("lain.yaml"))
        .expect("a file")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "appname: x\n");
    for (name, want) in [
        ("zero", "it is a symlink"),
        ("inside", "it is a symlink"),
        ("dir", "not a regular file"),
        ("missing", "not found"),
    ] {
        let e = open_file(&s.dir, Path::new(name)).expect_err(name);
        assert!(e.to_string().contains(want), "{name}: {e}");
    }
}

/// A context like an app's repository: `dirs` directories of `per_dir` 1 KiB files, three
/// levels deep, plus `lain.yaml`.
fn repository(dirs: usize, per_dir: usize) -> Vec<u8> {
    let mut tar = RawTar::new().file("lain.yaml", 0o644, b"appname: x\n");
    for d in 0..dirs {
        let dir = format!("src/m{}/p{d}", d % 10);
        for f in 0..per_dir {
            tar = tar.file(&format!("{dir}/f{f}.py"), 0o644, &[b'x'; 1024]);
        }
    }
    tar.finish()
}

/// Unpacks a 3,000-file context completely. With `LAIN_MEASURE_UNPACK=1` (and `--nocapture`)
/// it also prints what that costs next to `tar::Archive::unpack`, the unpacker before issue 12
/// (medians of 5 interleaved rounds; `TMPDIR=/dev/shm` leaves the disk out).
#[test]
fn a_few_thousand_files_unpack_completely() {
    let context = repository(100, 30);
    let rounds = if std::env::var_os("LAIN_MEASURE_UNPACK").is_some() {
        5
    } else {
        1
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = Stage::new();
        let started = Instant::now();
        let unpacked = unpack(&context, &s.dir, &Limits::default()).expect("unpacks");
        ours.push(started.elapsed());
        // 3,001 files, 100 + 10 + 1 directories.
        assert_eq!(unpacked.tree.count(), 3_001 + 111);
        assert_eq!(unpacked.bytes, 3_000 * 1024 + 11);
        if rounds == 1 {
            return;
        }
        let s = Stage::new();
        let started = Instant::now();
        tar::Archive::new(&context[..])
            .unpack(s.path(""))
            .expect("tar unpacks");
        theirs.push(started.elapsed());
    }
    ours.sort();
    theirs.sort();
    eprintln!(
        "unpack of 3,000 files ({} KiB): lain {:?}, tar::Archive::unpack {:?} (medians of 5)",
        context.len() / 1024,
        ours[2],
        theirs[2]
    );
}

#[test]
fn a_full_disk_is_reported_as_such_not_as_a_bad_tar() {
    let Some(disk) = crate::full_disk::SmallDisk::mount("2m") else {
        return;
    };
    let dir = Dir::open_ambient_dir(disk.path(), cap_std::ambient_authority()).expect("open");
    let big = vec![7u8; 3 << 20];
    let tar = RawTar::new()
        .file("lain.yaml", 0o644, b"appname: x\n")
        .file("big", 0o644, &big)
        .file("after", 0o644, b"more");
    let e = unpack(&tar.finish(), &dir, &Limits::default()).expect_err("the disk is full");
    assert!(
        matches!(&e, ContextError::Io { entry, source }
            if entry == "big" && source.kind() == std::io::ErrorKind::StorageFull),
        "{e:?}"
    );
    assert!(e.to_string().contains("No space left on device"), "{e}");
}

//! Hostile inputs for tests: deeply nested YAML and tars written byte by byte (the `tar` crate's
//! builder refuses `..` and absolute paths, which a hostile client does not). Shared by the
//! kernel's unit tests, its API tests and the end-to-end tests.
#![allow(dead_code)]

/// A `lain.yaml` with `appname: deep` and key `a` nested `n` levels deep in one of the ways YAML
/// allows. `indented-map` grows quadratically (it passes 1 MiB before 1,500 levels).
pub fn deep_yaml(kind: &str, n: usize) -> String {
    let body = match kind {
        "block-seq" => format!("a:\n  {}v\n", "- ".repeat(n)),
        "explicit-key" => format!("a:\n  {}v\n", "? ".repeat(n)),
        "flow-seq" => format!("a:\n  {}{}\n", "[".repeat(n), "]".repeat(n)),
        "flow-map" => format!("a:\n  {}v{}\n", "{a: ".repeat(n), "}".repeat(n)),
        "mixed" => format!("a:\n  {}v\n", "- ? ".repeat(n / 2)),
        "indented-map" => {
            let mut s = String::from("a:\n");
            for i in 1..n {
                s.push_str(&" ".repeat(i));
                s.push_str("k:\n");
            }
            s
        }
        other => panic!("no kind {other}"),
    };
    format!("{body}appname: deep\n")
}

/// The kinds [`deep_yaml`] writes on one line (any depth fits in 1 MiB).
pub const ONE_LINE_KINDS: [&str; 5] =
    ["block-seq", "explicit-key", "flow-seq", "flow-map", "mixed"];

/// A tar written header by header, with any name, type and link.
#[derive(Default)]
pub struct RawTar {
    bytes: Vec<u8>,
}

/// Tar entry types.
pub mod kind {
    pub const FILE: u8 = b'0';
    pub const HARD_LINK: u8 = b'1';
    pub const SYMLINK: u8 = b'2';
    pub const CHAR: u8 = b'3';
    pub const BLOCK: u8 = b'4';
    pub const DIR: u8 = b'5';
    pub const FIFO: u8 = b'6';
    pub const SPARSE: u8 = b'S';
}

impl RawTar {
    /// An empty tar.
    pub fn new() -> RawTar {
        RawTar::default()
    }

    /// A regular file.
    pub fn file(self, name: &str, mode: u32, data: &[u8]) -> RawTar {
        self.entry(name, kind::FILE, "", mode, data)
    }

    /// A directory.
    pub fn dir(self, name: &str) -> RawTar {
        self.entry(name, kind::DIR, "", 0o755, b"")
    }

    /// A symlink to `target`.
    pub fn symlink(self, name: &str, target: &str) -> RawTar {
        self.entry(name, kind::SYMLINK, target, 0o777, b"")
    }

    /// A hard link to `target`.
    pub fn hard_link(self, name: &str, target: &str) -> RawTar {
        self.entry(name, kind::HARD_LINK, target, 0o644, b"")
    }

    /// Any entry; names and links longer than a header holds get GNU long-name records.
    pub fn entry(mut self, name: &str, kind: u8, link: &str, mode: u32, data: &[u8]) -> RawTar {
        if link.len() > 99 {
            self.record(b"././@LongLink", b'K', "", 0o644, link.as_bytes(), |_| {});
        }
        if name.len() > 99 {
            self.record(b"././@LongLink", b'L', "", 0o644, name.as_bytes(), |_| {});
        }
        let short = &name.as_bytes()[..name.len().min(99)];
        let link = &link[..link.len().min(99)];
        self.record(short, kind, link, mode, data, |_| {});
        self
    }

    /// A GNU sparse file of `real_size` bytes holding only `data` at its start.
    pub fn sparse(mut self, name: &str, real_size: u64, data: &[u8]) -> RawTar {
        self.record(name.as_bytes(), kind::SPARSE, "", 0o644, data, |h| {
            let gnu = h.as_gnu_mut().expect("gnu header");
            gnu.set_real_size(real_size);
            gnu.sparse[0].set_offset(0);
            gnu.sparse[0].set_length(data.len() as u64);
            // An empty block at the end makes the file `real_size` long.
            gnu.sparse[1].set_offset(real_size);
            gnu.sparse[1].set_length(0);
        });
        self
    }

    fn record(
        &mut self,
        name: &[u8],
        kind: u8,
        link: &str,
        mode: u32,
        data: &[u8],
        edit: impl FnOnce(&mut tar::Header),
    ) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_mtime(1_700_000_000);
        h.as_old_mut().linkflag = [kind];
        edit(&mut h);
        h.set_cksum();
        self.bytes.extend_from_slice(h.as_bytes());
        self.bytes.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
    }

    /// The archive, with its end marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.bytes.extend(std::iter::repeat_n(0u8, 1024));
        self.bytes
    }
}

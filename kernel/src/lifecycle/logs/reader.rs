//! Reading a proc's log directory: a tail of each log, then (following) what each gains, across
//! rotations. Every file operation goes through `tokio::fs`, so no async worker blocks.

use super::{LogRequest, MAYBE_SKIPPED, TRUNCATED, skipped};
use crate::router::access::ACCESS_LOG;
use std::collections::VecDeque;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Files of one log held open while following; when more have been seen than this, the oldest
/// unread one is dropped and its unread bytes are reported as skipped.
pub const KEPT: usize = 4;
/// Bytes read from one log per read.
const CHUNK: usize = 1 << 20;
/// A line longer than this is delivered in pieces.
const MAX_LINE: usize = 1 << 20;
/// The most of each log a tail reads: one rotated file's worth (a request for more gets this).
pub const MAX_TAIL: u64 = 16 << 20;
/// How long a follow waits when nothing was written.
const IDLE: Duration = Duration::from_millis(250);

/// The logs of one proc: [`Reader::stream`] gives their bytes.
pub struct Reader {
    dir: PathBuf,
    request: LogRequest,
    logs: Vec<Log>,
}

/// The identity of a file (device and inode): a renamed file keeps it, a new one does not.
type FileId = (u64, u64);

/// One log (an instance's, or the access log) and the files of it being followed.
struct Log {
    /// The instance number (`None` for the access log, whose lines have no prefix).
    no: Option<u32>,
    /// The live file; the rotated one is this with `.1` appended.
    path: PathBuf,
    /// Files and gaps not yet delivered, oldest first; the last file is the newest seen.
    queue: VecDeque<Entry>,
    /// The last files read to their end (the newest last), so they are not read again. They
    /// stay open: the identity of a closed file that was removed can be reused by a new one.
    done: VecDeque<Open>,
    /// The start of a line whose end is not read yet.
    carry: Vec<u8>,
}

enum Entry {
    File(Open),
    Gap(Gap),
}

#[derive(Clone, Copy)]
enum Gap {
    Bytes(u64),
    Maybe,
}

struct Open {
    file: tokio::fs::File,
    id: FileId,
    /// Bytes of it read so far.
    pos: u64,
}

impl Reader {
    /// A reader of the logs in `dir` (a proc's log directory).
    pub fn new(dir: PathBuf, request: LogRequest) -> Reader {
        Reader {
            dir,
            request: LogRequest {
                tail: request.tail.min(MAX_TAIL),
                ..request
            },
            logs: Vec::new(),
        }
    }

    /// The tail of every log (one item per log, so a proc of many instances is never held in
    /// memory at once), then (when following) what they gain, one chunk per item; a tail of
    /// logs with nothing in them is one empty chunk.
    pub fn stream(self) -> impl futures::Stream<Item = Vec<u8>> + Send + 'static {
        futures::stream::unfold((self, None), |(mut reader, pending)| async move {
            let mut pending: VecDeque<(Option<u32>, PathBuf)> = match pending {
                Some(pending) => pending,
                None => {
                    let logs: VecDeque<_> = reader.scan().await.into();
                    if logs.is_empty() {
                        return Some((Vec::new(), (reader, Some(logs))));
                    }
                    logs
                }
            };
            if let Some((no, path)) = pending.pop_front() {
                let tail = reader.tail_of(no, path).await;
                return Some((tail, (reader, Some(pending))));
            }
            if !reader.request.follow {
                return None;
            }
            loop {
                let chunk = reader.follow().await;
                if !chunk.is_empty() {
                    return Some((chunk, (reader, Some(pending))));
                }
                tokio::time::sleep(IDLE).await;
            }
        })
    }

    /// The last `tail` bytes of each log (from a line start; the rotated file first when the
    /// live one holds less).
    pub async fn tail(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for (no, path) in self.scan().await {
            out.extend(self.tail_of(no, path).await);
        }
        out
    }

    /// The tail of one log, which is then followed.
    async fn tail_of(&mut self, no: Option<u32>, path: PathBuf) -> Vec<u8> {
        let mut out = Vec::new();
        let mut log = Log::new(no, path);
        log.tail(self.request.tail, self.request.follow, &mut out)
            .await;
        self.logs.push(log);
        out
    }

    /// What the logs gained since the last read; a log seen for the first time is read from
    /// its start.
    pub async fn follow(&mut self) -> Vec<u8> {
        for (no, path) in self.scan().await {
            if !self.logs.iter().any(|l| l.path == path) {
                self.logs.push(Log::new(no, path));
            }
        }
        let mut out = Vec::new();
        for log in &mut self.logs {
            log.follow(&mut out).await;
        }
        out
    }

    /// Notes the files that appeared in the logs already known, without reading anything.
    #[cfg(test)]
    pub(super) async fn discover(&mut self) {
        for log in &mut self.logs {
            log.discover().await;
        }
    }

    /// The logs in the directory, by instance number: `<n>.log` (or only its `<n>.log.1`), or
    /// the access log.
    async fn scan(&self) -> Vec<(Option<u32>, PathBuf)> {
        let mut found = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.dir).await else {
            return found;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let live = name.strip_suffix(".1").unwrap_or(&name);
            let log = if self.request.access {
                (live == ACCESS_LOG).then_some(None)
            } else {
                live.strip_suffix(".log")
                    .and_then(|n| n.parse().ok())
                    .map(Some)
            };
            if let Some(no) = log {
                found.push((no, self.dir.join(live)));
            }
        }
        found.sort();
        found.dedup();
        found
    }
}

impl Log {
    fn new(no: Option<u32>, path: PathBuf) -> Log {
        Log {
            no,
            path,
            queue: VecDeque::new(),
            done: VecDeque::new(),
            carry: Vec::new(),
        }
    }

    fn rotated(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".1");
        PathBuf::from(p)
    }

    /// The live and the rotated file, opened so that they are two different files.
    async fn open_both(&self) -> (Option<Open>, Option<Open>) {
        let rotated = self.rotated();
        for _ in 0..3 {
            let live = open(&self.path).await;
            let old = open(&rotated).await;
            // The live file was rotated between the two opens: open the new one.
            let rotated_meanwhile = matches!((&live, &old), (Some(l), Some(o)) if l.id == o.id);
            if !rotated_meanwhile {
                return (live, old);
            }
        }
        (None, open(&rotated).await)
    }

    async fn tail(&mut self, tail: u64, follow: bool, out: &mut Vec<u8>) {
        let (live, old) = self.open_both().await;
        let live_len = match &live {
            Some(l) => len(&l.file).await,
            None => 0,
        };
        let from_live = tail.min(live_len);
        if let Some(mut old) = old {
            let old_len = len(&old.file).await;
            let from_old = (tail - from_live).min(old_len);
            if from_old > 0 {
                let window = read_window(&mut old.file, old_len - from_old, old_len).await;
                self.deliver(&window, true, out);
            }
            if live.is_none() && follow {
                old.pos = old_len;
                self.queue.push_back(Entry::File(old));
            } else {
                self.finish(old);
            }
        }
        if let Some(mut live) = live {
            let window = read_window(&mut live.file, live_len - from_live, live_len).await;
            self.deliver(&window, !follow, out);
            live.pos = live_len;
            if follow {
                self.queue.push_back(Entry::File(live));
            }
        }
    }

    /// Delivers `window` (bytes of one file): its first line only if it is whole (unless that
    /// would leave nothing), its last even without an end when `finished`, else kept for later.
    fn deliver(&mut self, window: &Window, finished: bool, out: &mut Vec<u8>) {
        let mut bytes = window.bytes.as_slice();
        if !window.at_line_start
            && let Some(nl) = bytes.iter().position(|b| *b == b'\n')
            && nl + 1 < bytes.len()
        {
            bytes = &bytes[nl + 1..];
        }
        self.push(bytes, out);
        if finished {
            self.flush(out);
        }
    }

    /// Delivers the whole lines of `carry` + `bytes`, keeping the unfinished end.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        self.carry.extend_from_slice(bytes);
        let end = match self.carry.iter().rposition(|b| *b == b'\n') {
            Some(i) => i + 1,
            None if self.carry.len() >= MAX_LINE => self.carry.len(),
            None => return,
        };
        let rest = self.carry.split_off(end);
        let lines = std::mem::replace(&mut self.carry, rest);
        for line in lines.split_inclusive(|b| *b == b'\n') {
            self.line(line, out);
        }
    }

    /// Delivers the unfinished end as a line of its own.
    fn flush(&mut self, out: &mut Vec<u8>) {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line, out);
        }
    }

    fn line(&self, line: &[u8], out: &mut Vec<u8>) {
        if let Some(no) = self.no {
            out.extend_from_slice(format!("[{no}] ").as_bytes());
        }
        out.extend_from_slice(line);
        if !line.ends_with(b"\n") {
            out.push(b'\n');
        }
    }

    async fn follow(&mut self, out: &mut Vec<u8>) {
        self.discover().await;
        let mut budget = CHUNK;
        while budget > 0 {
            let newer = self.queue.len() > 1;
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            let open = match front {
                Entry::Gap(gap) => {
                    let marker = match *gap {
                        Gap::Bytes(n) => skipped(n),
                        Gap::Maybe => MAYBE_SKIPPED.to_string(),
                    };
                    self.flush(out);
                    self.line(marker.as_bytes(), out);
                    self.queue.pop_front();
                    continue;
                }
                Entry::File(open) => open,
            };
            let truncated = !newer
                && len(&open.file).await < open.pos
                && open.file.seek(std::io::SeekFrom::Start(0)).await.is_ok();
            if truncated {
                open.pos = 0;
            }
            let mut buf = vec![0; budget];
            let n = open.file.read(&mut buf).await.unwrap_or(0);
            open.pos += n as u64;
            buf.truncate(n);
            if truncated {
                self.flush(out);
                self.line(TRUNCATED.as_bytes(), out);
            }
            if n > 0 {
                budget -= n;
                self.push(&buf, out);
                continue;
            }
            if !newer {
                return;
            }
            // Nothing more, and a newer file exists: this one is complete.
            if let Some(Entry::File(open)) = self.queue.pop_front() {
                self.finish(open);
            }
            self.flush(out);
        }
    }

    /// Keeps `open` (read to its end) as the newest done file; only the newest two can still
    /// be the live or the rotated file.
    fn finish(&mut self, open: Open) {
        self.done.push_back(open);
        if self.done.len() > 2 {
            self.done.pop_front();
        }
    }

    /// Queues the files that appeared since the last read: the rotated file (when it is not
    /// known) before the live one. Between the newest known file and a rotated file first seen
    /// now there may have been another: a [`Gap::Maybe`] says so.
    async fn discover(&mut self) {
        let (live, old) = self.open_both().await;
        let newest = self
            .queue
            .iter()
            .rev()
            .find_map(|e| match e {
                Entry::File(o) => Some(o.id),
                Entry::Gap(_) => None,
            })
            .or_else(|| self.done.back().map(|o| o.id));
        let known = |id: FileId, log: &Log| {
            log.done.iter().any(|o| o.id == id)
                || log
                    .queue
                    .iter()
                    .any(|e| matches!(e, Entry::File(o) if o.id == id))
        };
        if let Some(old) = old
            && !known(old.id, self)
        {
            if newest.is_some() {
                self.queue.push_back(Entry::Gap(Gap::Maybe));
            }
            self.queue.push_back(Entry::File(old));
        }
        if let Some(live) = live
            && !known(live.id, self)
        {
            self.queue.push_back(Entry::File(live));
        }
        self.drop_oldest().await;
    }

    /// Drops the oldest held files beyond [`KEPT`], counting their unread bytes (and the
    /// unfinished line read of the one being read) as skipped.
    async fn drop_oldest(&mut self) {
        let files = |q: &VecDeque<Entry>| q.iter().filter(|e| matches!(e, Entry::File(_))).count();
        while files(&self.queue) > KEPT {
            let Some(i) = self.queue.iter().position(|e| matches!(e, Entry::File(_))) else {
                return;
            };
            let Some(Entry::File(open)) = self.queue.remove(i) else {
                return;
            };
            let mut bytes = len(&open.file).await.saturating_sub(open.pos);
            if i == 0 {
                bytes += self.carry.len() as u64;
                self.carry.clear();
            }
            match i.checked_sub(1).and_then(|p| self.queue.get_mut(p)) {
                Some(Entry::Gap(Gap::Bytes(n))) => *n += bytes,
                _ => self.queue.insert(i, Entry::Gap(Gap::Bytes(bytes))),
            }
        }
    }
}

/// Opens `path` for reading, with its identity; `None` if it does not exist (or cannot be read).
async fn open(path: &Path) -> Option<Open> {
    let file = tokio::fs::File::open(path).await.ok()?;
    let meta = file.metadata().await.ok()?;
    Some(Open {
        file,
        id: (meta.dev(), meta.ino()),
        pos: 0,
    })
}

async fn len(file: &tokio::fs::File) -> u64 {
    file.metadata().await.map_or(0, |m| m.len())
}

/// Bytes `start..end` of a file, and whether `start` is a line start.
struct Window {
    bytes: Vec<u8>,
    at_line_start: bool,
}

async fn read_window(file: &mut tokio::fs::File, start: u64, end: u64) -> Window {
    // One byte before the window tells whether it starts a line.
    let from = start.saturating_sub(1);
    let mut bytes = Vec::new();
    if file.seek(std::io::SeekFrom::Start(from)).await.is_ok() {
        let _ = (&mut *file).take(end - from).read_to_end(&mut bytes).await;
    }
    if start == 0 {
        return Window {
            bytes,
            at_line_start: true,
        };
    }
    let at_line_start = bytes.first() == Some(&b'\n');
    if !bytes.is_empty() {
        bytes.remove(0);
    }
    Window {
        bytes,
        at_line_start,
    }
}

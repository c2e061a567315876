//! Tasks' output on SQLite: plain files beside the database (`<db>-logs/<plan>/`), one per
//! plan and writing process, only ever appended to — as Nomad keeps an allocation's logs.
//!
//! Why not the database: output is bulk (a step printing 10,000 lines writes 50 KB), and
//! SQLite copies every byte, checksums it into its write-ahead log and copies it again at the
//! checkpoint: a 200-step chain printing 9.8 MB ran about 35 ms slower with its output in the
//! store (in a SQLite file of its own too). Why not a file per chunk: creating a file costs
//! ext4 an inode, and with files deleted around it (plans pruned) finding one costs more than
//! SQLite did (docs/benchmarks.md). Files are not synced to disk: what a task printed survives
//! weft's crash, and a crash of the machine can lose its last moments — as with any log file.
//! A plan's files go before the plan does (pruning), so none is left without its plan.
//!
//! A file is a sequence of records, each written by one `write` on a file opened for
//! appending, by the one process that owns the file (its name is the process's [`token`]):
//! - a chunk: `<id>.<len>.<at>.<step>.<attempt>.<offset>.<task>.<action>.<stream>\n` and then
//!   its `len` bytes;
//! - a drop (a chunk that fell out of its tail window):
//!   `-.<step>.<attempt>.<offset>.<task>.<action>.<stream>\n`.
//!
//! Strings are escaped to letters, digits, `-` and `_` (others as `%XX`). A record cut short
//! is the file's end: its writer is writing it (readers see it on their next read) or died (no
//! record ever follows it: a new process writes a file of its own). When dropped chunks
//! outweigh the kept ones (and 1 MiB), the owner rewrites the file with the kept ones only, so
//! that a task printing without end keeps its cap on disk too. Ids grow in write order:
//! microseconds of the clock (never less than one more than the last this process gave), with
//! the process id's low bits beside them so that two processes never share one.

use crate::{Error, LogChunk, LogKey, LogQuery, LogRow, LogWrite, Result};
use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};
use weft_model::PlanId;

/// The directory of a store's logs.
#[derive(Clone, Debug)]
pub(super) struct LogDir {
    root: PathBuf,
}

/// The files this process appends to, by path: one owner for each, whichever store handle
/// (of however many opened on one database) writes.
fn owned() -> Result<std::sync::MutexGuard<'static, HashMap<PathBuf, Owned>>> {
    static OWNED: OnceLock<Mutex<HashMap<PathBuf, Owned>>> = OnceLock::new();
    OWNED
        .get_or_init(Mutex::default)
        .lock()
        .map_err(|_| Error::Backend("the log files' lock was poisoned".into()))
}

/// Files kept open for appending; past this many, all are closed (and reopened when written).
const OPEN_FILES: usize = 64;
/// Dropped bytes a file may carry before it is rewritten, beyond as many as it keeps.
const SLACK: u64 = 1 << 20;
/// The longest record header read; a longer line is not a record.
const MAX_HEADER: usize = 4096;

/// A file this process appends to, and where its kept chunks are.
struct Owned {
    file: fs::File,
    path: PathBuf,
    kept: Vec<Kept>,
    kept_bytes: u64,
    dropped_bytes: u64,
}

/// A chunk record in an owned file.
struct Kept {
    key: LogKey,
    offset: u64,
    /// Where its record starts, and how long it is, header included.
    at: u64,
    size: u64,
}

/// Bits of an id that tell processes apart.
const PROCESS_BITS: u32 = 10;

/// The last clock reading (µs) an id was made of, in this process.
static LAST: AtomicI64 = AtomicI64::new(0);

/// A new id, greater than every id this process gave before.
fn next_id() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let mut last = LAST.load(Ordering::Relaxed);
    let micros = loop {
        let candidate = now.max(last + 1);
        match LAST.compare_exchange_weak(last, candidate, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break candidate,
            Err(seen) => last = seen,
        }
    };
    (micros << PROCESS_BITS) | i64::from(std::process::id() & ((1 << PROCESS_BITS) - 1))
}

/// This process's name for the files it writes: unique among processes, past and present.
fn token() -> &'static str {
    static TOKEN: OnceLock<String> = OnceLock::new();
    TOKEN.get_or_init(|| format!("{}.log", next_id()))
}

/// `s` with every byte but letters, digits, `-` and `_` as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `<step>.<attempt>.<offset>.<task>.<action>.<stream>`: where a chunk is.
fn place(key: &LogKey, offset: u64) -> String {
    format!(
        "{}.{}.{offset}.{}.{}.{}",
        key.step,
        key.attempt,
        escape(&key.task),
        escape(&key.action),
        escape(&key.stream)
    )
}

/// A chunk's record: its header and its bytes.
fn chunk_record(id: i64, chunk: &LogChunk) -> Vec<u8> {
    let mut record = format!(
        "{id}.{}.{}.{}\n",
        chunk.data.len(),
        chunk.at,
        place(&chunk.key, chunk.offset)
    )
    .into_bytes();
    record.extend_from_slice(&chunk.data);
    record
}

/// A record's header, as read.
#[derive(Debug, PartialEq)]
enum Header {
    /// A chunk (without its bytes), its id and its length.
    Chunk { id: i64, len: u64, chunk: LogChunk },
    /// A chunk dropped: its stream and offset.
    Drop(LogKey, u64),
}

fn parse_place(plan: PlanId, parts: &mut std::str::Split<'_, char>) -> Option<(LogKey, u64)> {
    let mut next = || parts.next();
    let step = next()?.parse().ok()?;
    let attempt = next()?.parse().ok()?;
    let offset = next()?.parse().ok()?;
    let task = unescape(next()?)?;
    let action = unescape(next()?)?;
    let stream = unescape(next()?)?;
    if next().is_some() {
        return None;
    }
    let key = LogKey {
        plan,
        step,
        attempt,
        task,
        action,
        stream,
    };
    Some((key, offset))
}

/// A header line (without its newline); `None` if it is not one.
fn parse(plan: PlanId, line: &str) -> Option<Header> {
    let mut parts = line.split('.');
    let first = parts.next()?;
    if first == "-" {
        let (key, offset) = parse_place(plan, &mut parts)?;
        return Some(Header::Drop(key, offset));
    }
    let id = first.parse().ok()?;
    let len = parts.next()?.parse().ok()?;
    let at = parts.next()?.parse().ok()?;
    let (key, offset) = parse_place(plan, &mut parts)?;
    Some(Header::Chunk {
        id,
        len,
        chunk: LogChunk {
            key,
            offset,
            at,
            data: Vec::new(),
        },
    })
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        std::io::ErrorKind::StorageFull => {
            Error::Unavailable(format!("the disk is full ({what} {})", path.display()))
        }
        _ => Error::Unavailable(format!("cannot {what} {}: {e}", path.display())),
    }
}

fn missing(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Reads a file's whole records, calling `on` with where each starts, its size (header
/// included), its header and a reader positioned at its bytes (which `on` reads, or not);
/// stops at a record cut short.
fn scan(
    path: &Path,
    plan: PlanId,
    mut on: impl FnMut(u64, u64, Header, &mut dyn Read) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let file = fs::File::open(path)?;
    let end = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(64 << 10, file);
    let mut pos = 0u64;
    let mut line = Vec::with_capacity(256);
    while pos < end {
        line.clear();
        let n = (&mut reader)
            .take(MAX_HEADER as u64)
            .read_until(b'\n', &mut line)?;
        if line.last() != Some(&b'\n') {
            return Ok(());
        }
        let Some(header) = std::str::from_utf8(&line[..n - 1])
            .ok()
            .and_then(|l| parse(plan, l))
        else {
            return Ok(());
        };
        let len = match &header {
            Header::Chunk { len, .. } => *len,
            Header::Drop(..) => 0,
        };
        let start = pos;
        pos += n as u64 + len;
        if pos > end {
            return Ok(());
        }
        let mut data = (&mut reader).take(len);
        on(start, pos - start, header, &mut data)?;
        // What `on` left unread is skipped.
        let left = data.limit();
        reader.seek_relative(left as i64)?;
    }
    Ok(())
}

impl LogDir {
    /// The log directory of the database at `db`.
    pub(super) fn beside(db: &Path) -> LogDir {
        let mut name = db.as_os_str().to_owned();
        name.push("-logs");
        LogDir {
            root: PathBuf::from(name),
        }
    }

    fn plan_dir(&self, plan: PlanId) -> PathBuf {
        self.root.join(plan.to_string())
    }

    /// Creates `dir` (and the root) readable by its owner only: tasks print secrets too.
    fn make(dir: &Path) -> Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io("create", dir, e))
    }

    /// This process's file of `plan`.
    fn own(&self, plan: PlanId) -> PathBuf {
        self.plan_dir(plan).join(token())
    }

    /// Opens (creating) this process's file of `plan`, learning its kept chunks.
    fn open(&self, plan: PlanId) -> Result<Owned> {
        Self::make(&self.plan_dir(plan))?;
        let path = self.own(plan);
        let file = fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io("open", &path, e))?;
        let mut owned = Owned {
            file,
            path,
            kept: Vec::new(),
            kept_bytes: 0,
            dropped_bytes: 0,
        };
        // Reopened after it was closed: what it holds.
        let mut drops = HashSet::new();
        let mut records = Vec::new();
        scan(&owned.path, plan, |at, size, header, _| {
            match header {
                Header::Chunk { chunk, .. } => records.push((at, size, chunk)),
                Header::Drop(key, offset) => {
                    drops.insert((key, offset));
                }
            }
            Ok(())
        })
        .map_err(|e| io("read", &owned.path, e))?;
        for (at, size, chunk) in records {
            if drops.contains(&(chunk.key.clone(), chunk.offset)) {
                owned.dropped_bytes += size;
            } else {
                owned.kept_bytes += size;
                owned.kept.push(Kept {
                    key: chunk.key,
                    offset: chunk.offset,
                    at,
                    size,
                });
            }
        }
        Ok(owned)
    }

    /// Drops and appends chunks (blocking).
    pub(super) fn write(&self, w: &LogWrite) -> Result<()> {
        let mut owned = owned()?;
        let mut touched: Vec<PlanId> = Vec::new();
        let plans = w
            .drop
            .iter()
            .map(|(k, _)| k.plan)
            .chain(w.append.iter().map(|c| c.key.plan));
        for plan in plans {
            if touched.contains(&plan) {
                continue;
            }
            touched.push(plan);
            let path = self.own(plan);
            if !owned.contains_key(&path) {
                if owned.len() >= OPEN_FILES {
                    owned.clear();
                }
                let file = self.open(plan)?;
                owned.insert(path, file);
            }
        }
        // Drops first: they name chunks of earlier writes.
        for (key, offset) in &w.drop {
            let Some(file) = owned.get_mut(&self.own(key.plan)) else {
                continue;
            };
            let Some(i) = file
                .kept
                .iter()
                .position(|k| k.key == *key && k.offset == *offset)
            else {
                continue;
            };
            let gone = file.kept.remove(i);
            file.kept_bytes -= gone.size;
            file.dropped_bytes += gone.size;
            let record = format!("-.{}\n", place(key, *offset));
            file.append(record.as_bytes())?;
        }
        for chunk in &w.append {
            let Some(file) = owned.get_mut(&self.own(chunk.key.plan)) else {
                continue;
            };
            let record = chunk_record(next_id(), chunk);
            let at = file.append(&record)?;
            file.kept_bytes += record.len() as u64;
            file.kept.push(Kept {
                key: chunk.key.clone(),
                offset: chunk.offset,
                at,
                size: record.len() as u64,
            });
        }
        for plan in touched {
            if let Some(file) = owned.get_mut(&self.own(plan)) {
                if file.dropped_bytes > file.kept_bytes.max(SLACK) {
                    file.compact()?;
                }
            }
        }
        Ok(())
    }

    /// The chunks a query asks for, in write order (blocking).
    pub(super) fn read(&self, q: &LogQuery) -> Result<Vec<LogRow>> {
        let dir = self.plan_dir(q.plan);
        let files = match fs::read_dir(&dir) {
            Ok(files) => files,
            Err(e) if missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &dir, e)),
        };
        let mut rows = Vec::new();
        for file in files {
            let path = file.map_err(|e| io("read", &dir, e))?.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let mut found: Vec<LogRow> = Vec::new();
            let mut drops = HashSet::new();
            let scanned = scan(&path, q.plan, |_, _, header, data| {
                match header {
                    Header::Chunk { id, chunk, .. } if q.matches(id, &chunk) => {
                        let mut chunk = chunk;
                        data.read_to_end(&mut chunk.data)?;
                        found.push(LogRow { id, chunk });
                    }
                    Header::Chunk { .. } => {}
                    Header::Drop(key, offset) => {
                        drops.insert((key, offset));
                    }
                }
                Ok(())
            });
            match scanned {
                Ok(()) => {}
                // Rewritten or pruned as it was listed.
                Err(e) if missing(&e) => continue,
                Err(e) => return Err(io("read", &path, e)),
            }
            rows.extend(
                found
                    .into_iter()
                    .filter(|r| !drops.contains(&(r.chunk.key.clone(), r.chunk.offset))),
            );
        }
        rows.sort_by_key(|r| r.id);
        // A chunk is at one offset of one stream once (two processes moving an older
        // version's logs at once may both have written it).
        let mut seen = HashSet::new();
        rows.retain(|r| seen.insert((r.chunk.key.clone(), r.chunk.offset)));
        if q.limit > 0 {
            rows.truncate(q.limit as usize);
        }
        Ok(rows)
    }

    /// Deletes every chunk of `plans` (blocking).
    pub(super) fn forget(&self, plans: &[PlanId]) -> Result<()> {
        {
            let mut owned = owned()?;
            for plan in plans {
                owned.remove(&self.own(*plan));
            }
        }
        for plan in plans {
            let dir = self.plan_dir(*plan);
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if missing(&e) => {}
                Err(e) => return Err(io("remove", &dir, e)),
            }
        }
        Ok(())
    }

    /// Copies every file into the log directory of the database at `db` (blocking): a
    /// backup's.
    pub(super) fn copy_beside(&self, db: &Path) -> Result<()> {
        let to = LogDir::beside(db);
        let plans = match fs::read_dir(&self.root) {
            Ok(plans) => plans,
            Err(e) if missing(&e) => return Ok(()),
            Err(e) => return Err(io("read", &self.root, e)),
        };
        for plan in plans {
            let plan = plan.map_err(|e| io("read", &self.root, e))?;
            let Some(id) = plan.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let dir = to.plan_dir(id);
            Self::make(&dir)?;
            let files = fs::read_dir(plan.path()).map_err(|e| io("read", &plan.path(), e))?;
            for file in files {
                let file = file.map_err(|e| io("read", &plan.path(), e))?;
                match fs::copy(file.path(), dir.join(file.file_name())) {
                    Ok(_) => {}
                    Err(e) if missing(&e) => {}
                    Err(e) => return Err(io("copy", &file.path(), e)),
                }
            }
        }
        Ok(())
    }

    /// Writes rows kept by an older version in the database's `step_logs` table, under their
    /// row ids (smaller than any new id, so they stay first).
    pub(super) fn import(&self, rows: &[(i64, LogChunk)]) -> Result<()> {
        let mut owned = owned()?;
        for (id, chunk) in rows {
            let path = self.own(chunk.key.plan);
            if !owned.contains_key(&path) {
                let file = self.open(chunk.key.plan)?;
                owned.insert(path.clone(), file);
            }
            if let Some(file) = owned.get_mut(&path) {
                file.append(&chunk_record(*id, chunk))?;
            }
        }
        Ok(())
    }
}

impl Owned {
    /// Appends one record in one write: where it starts.
    fn append(&mut self, record: &[u8]) -> Result<u64> {
        let at = self
            .file
            .seek(std::io::SeekFrom::End(0))
            .map_err(|e| io("write", &self.path, e))?;
        if let Err(e) = self.file.write_all(record) {
            // Half a record would end what readers see of this file (the disk filled, say):
            // cut it off, so that the next record follows the last whole one.
            let _ = self.file.set_len(at);
            return Err(io("write", &self.path, e));
        }
        Ok(at)
    }

    /// Rewrites the file with its kept chunks only, in their order; readers that opened the
    /// old one read it whole.
    fn compact(&mut self) -> Result<()> {
        let mut fresh = self.path.clone().into_os_string();
        fresh.push(".new");
        let fresh = PathBuf::from(fresh);
        let mut source = fs::File::open(&self.path).map_err(|e| io("read", &self.path, e))?;
        let mut out = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&fresh)
            .map_err(|e| io("create", &fresh, e))?;
        let mut at = 0;
        let mut buf = Vec::new();
        for k in &mut self.kept {
            buf.resize(k.size as usize, 0);
            source
                .seek(std::io::SeekFrom::Start(k.at))
                .and_then(|_| source.read_exact(&mut buf))
                .map_err(|e| io("read", &self.path, e))?;
            out.write_all(&buf).map_err(|e| io("write", &fresh, e))?;
            k.at = at;
            at += k.size;
        }
        drop(out);
        fs::rename(&fresh, &self.path).map_err(|e| io("rename", &self.path, e))?;
        self.file = fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| io("open", &self.path, e))?;
        self.dropped_bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(plan: PlanId, task: &str) -> LogKey {
        LogKey {
            plan,
            step: 3,
            attempt: 2,
            task: task.into(),
            action: "revert".into(),
            stream: "stderr".into(),
        }
    }

    #[test]
    fn headers_say_what_they_were_made_of() {
        let plan = PlanId::new();
        let chunk = LogChunk {
            key: key(plan, "fetch a.b/ü"),
            offset: 65_536,
            at: 1_700_000_000_000,
            data: b"hello".to_vec(),
        };
        let record = chunk_record(42, &chunk);
        let newline = record.iter().position(|&b| b == b'\n').expect("a header");
        let line = std::str::from_utf8(&record[..newline]).expect("utf-8");
        assert_eq!(&record[newline + 1..], b"hello");
        let chunk = LogChunk {
            data: Vec::new(),
            ..chunk
        };
        assert_eq!(
            parse(plan, line),
            Some(Header::Chunk {
                id: 42,
                len: 5,
                chunk
            })
        );
        let drop = format!("-.{}", place(&key(plan, ""), 7));
        assert_eq!(parse(plan, &drop), Some(Header::Drop(key(plan, ""), 7)));
        assert_eq!(parse(plan, "42.5.1.2.3.4.%G1.execute.stdout"), None);
        assert_eq!(parse(plan, "hello world"), None);
    }

    #[test]
    fn ids_grow_and_carry_the_process() {
        let ids: Vec<i64> = (0..1000).map(|_| next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let pid = i64::from(std::process::id() & ((1 << PROCESS_BITS) - 1));
        assert!(ids.iter().all(|id| id & ((1 << PROCESS_BITS) - 1) == pid));
    }

    fn chunk(plan: PlanId, offset: u64, data: &[u8]) -> LogChunk {
        LogChunk {
            key: key(plan, ""),
            offset,
            at: 1,
            data: data.to_vec(),
        }
    }

    fn all(logs: &LogDir, plan: PlanId) -> Vec<(u64, Vec<u8>)> {
        let query = LogQuery {
            plan,
            ..LogQuery::default()
        };
        logs.read(&query)
            .expect("read")
            .into_iter()
            .map(|r| (r.chunk.offset, r.chunk.data))
            .collect()
    }

    #[test]
    fn a_record_cut_short_ends_what_is_read_of_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogDir::beside(&dir.path().join("weft.db"));
        let plan = PlanId::new();
        logs.write(&LogWrite {
            append: vec![chunk(plan, 0, b"one\n")],
            drop: Vec::new(),
        })
        .expect("write");
        // Half a record: being written, or its writer died.
        let path = logs.plan_dir(plan).join(token());
        let record = chunk_record(next_id(), &chunk(plan, 4, b"two\n"));
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(&record[..record.len() - 2]))
            .expect("half");
        assert_eq!(all(&logs, plan), [(0, b"one\n".to_vec())]);
    }

    #[test]
    fn dropped_chunks_are_not_read_and_their_bytes_go_when_they_outweigh_the_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let logs = LogDir::beside(&dir.path().join("weft.db"));
        let plan = PlanId::new();
        let piece = vec![b'x'; 256 << 10];
        let mut offset = 0;
        for _ in 0..20 {
            let drop = if offset >= 2 * piece.len() as u64 {
                vec![(key(plan, ""), offset - 2 * piece.len() as u64)]
            } else {
                Vec::new()
            };
            logs.write(&LogWrite {
                append: vec![chunk(plan, offset, &piece)],
                drop,
            })
            .expect("write");
            offset += piece.len() as u64;
        }
        let kept: Vec<u64> = all(&logs, plan).into_iter().map(|(o, _)| o).collect();
        assert_eq!(kept, [18 * (256 << 10), 19 * (256 << 10)]);
        // 5 MiB written, two pieces kept: the file stays near its cap.
        let size = fs::metadata(logs.plan_dir(plan).join(token()))
            .expect("file")
            .len();
        assert!(size < 2 * SLACK + (1 << 20), "{size}");
        // Opened again (closed in between), it knows what it keeps.
        owned().expect("lock").remove(&logs.own(plan));
        let again = LogDir::beside(&dir.path().join("weft.db"));
        again
            .write(&LogWrite {
                append: Vec::new(),
                drop: vec![(key(plan, ""), 18 * (256 << 10))],
            })
            .expect("drop");
        let kept: Vec<u64> = all(&again, plan).into_iter().map(|(o, _)| o).collect();
        assert_eq!(kept, [19 * (256 << 10)]);
    }
}

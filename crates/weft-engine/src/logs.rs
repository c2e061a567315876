//! What tasks print, kept: every chunk a command writes to stdout or stderr goes to the log
//! pump, which writes what it has to the store every [`FLUSH`] — one write for every stream, off
//! the steps' path (a step's result does not wait for its output), and at once when asked
//! ([`LogSink::flush`], before a process exits) — capped per stream: the first half of the cap is kept as it comes, and
//! the second half as a window over the latest output — what falls out of it is dropped, so a
//! reader sees where the middle was cut. A step never waits for its logs: when the pump falls
//! behind, chunks are dropped (and counted, so the cut shows) instead.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use tokio::sync::mpsc;
use weft_model::PlanId;
use weft_store::{LogChunk, LogKey, LogWrite, SharedStore};

/// How often the pump writes what it has.
pub const FLUSH: Duration = Duration::from_millis(250);
/// The default cap on what is kept of one stream of one run (1 MiB).
pub const DEFAULT_CAP: usize = 1 << 20;
/// Chunks the pump may fall behind by before the readers drop output.
const BACKLOG: usize = 1024;
/// The largest piece kept in the tail window (the unit it moves by).
const PIECE: usize = 64 << 10;
/// The most bytes of output one write to the store carries.
const SLICE: usize = 256 << 10;

/// A handle on an engine's log pump.
#[derive(Clone)]
pub struct LogSink {
    tx: mpsc::Sender<Event>,
}

enum Event {
    /// `data` came after `skipped` bytes that were dropped.
    Chunk {
        key: LogKey,
        skipped: u64,
        data: Vec<u8>,
    },
    /// The stream ended: what is left of it goes with the next write.
    End(LogKey),
    /// Write everything now; say when it is durable.
    Flush(tokio::sync::oneshot::Sender<()>),
}

impl LogSink {
    /// Starts a pump writing to `store`, keeping at most `cap` bytes of each stream.
    pub fn start(store: SharedStore, cap: usize) -> LogSink {
        let (tx, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(pump(store, cap, rx));
        LogSink { tx }
    }

    /// Writes everything the pump holds now; resolves once it is durable (or the store
    /// failed). A process that is about to exit calls it.
    pub async fn flush(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Event::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// A writer for one stream of one run.
    pub(crate) fn stream(
        &self,
        plan: PlanId,
        step: u32,
        attempt: u32,
        task: &str,
        action: &str,
        stream: &str,
    ) -> StreamLog {
        StreamLog {
            tx: self.tx.clone(),
            key: LogKey {
                plan,
                step,
                attempt,
                task: task.to_string(),
                action: action.to_string(),
                stream: stream.to_string(),
            },
            skipped: 0,
            ended: false,
        }
    }
}

/// One stream's writer: hands chunks to the pump without ever waiting.
pub(crate) struct StreamLog {
    tx: mpsc::Sender<Event>,
    key: LogKey,
    skipped: u64,
    ended: bool,
}

impl StreamLog {
    /// Passes `data` on, or drops it if the pump is behind.
    pub(crate) fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let event = Event::Chunk {
            key: self.key.clone(),
            skipped: self.skipped,
            data: data.to_vec(),
        };
        match self.tx.try_send(event) {
            Ok(()) => self.skipped = 0,
            Err(_) => self.skipped += data.len() as u64,
        }
    }
}

impl StreamLog {
    /// The stream ended (its pipe closed): the pump writes the rest with its next write.
    pub(crate) async fn finish(mut self) {
        self.ended = true;
        let _ = self.tx.send(Event::End(self.key.clone())).await;
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        // Not finished (its reader was dropped): the end must still arrive, or the stream's
        // state stays in the pump; wait for room on a runtime thread if need be.
        let end = Event::End(self.key.clone());
        if let Err(mpsc::error::TrySendError::Full(end)) = self.tx.try_send(end) {
            let tx = self.tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(end).await;
            });
        }
    }
}

/// A piece of the tail window.
struct Piece {
    offset: u64,
    data: Vec<u8>,
    stored: bool,
    /// When it arrived, among all streams' chunks: writes keep that order.
    seq: u64,
}

/// What the pump knows of one stream.
struct Stream {
    /// The offset of its next byte.
    next: u64,
    /// Head bytes still to keep.
    head_left: usize,
    /// Head chunks not written yet, with when each arrived.
    head: Vec<(u64, LogChunk)>,
    tail: VecDeque<Piece>,
    tail_bytes: usize,
    /// Stored tail pieces that fell out of the window, to drop.
    dropped: Vec<u64>,
}

impl Stream {
    fn new(cap: usize) -> Stream {
        Stream {
            next: 0,
            head_left: cap / 2,
            head: Vec::new(),
            tail: VecDeque::new(),
            tail_bytes: 0,
            dropped: Vec::new(),
        }
    }

    fn take(&mut self, key: &LogKey, skipped: u64, mut data: &[u8], tail_cap: usize, seq: u64) {
        let at = weft_model::now_millis();
        let mut offset = self.next + skipped;
        self.next = offset + data.len() as u64;
        if skipped > 0 {
            // Nothing after a gap belongs to the head: the head is what came first, whole.
            self.head_left = 0;
        }
        if self.head_left > 0 {
            let n = self.head_left.min(data.len());
            match self.head.last_mut() {
                Some((_, c)) if c.offset + c.data.len() as u64 == offset => {
                    c.data.extend_from_slice(&data[..n])
                }
                _ => self.head.push((
                    seq,
                    LogChunk {
                        key: key.clone(),
                        offset,
                        at,
                        data: data[..n].to_vec(),
                    },
                )),
            }
            self.head_left -= n;
            offset += n as u64;
            data = &data[n..];
        }
        if data.is_empty() || tail_cap == 0 {
            return;
        }
        // Only the window's worth of a large chunk can stay.
        if data.len() > tail_cap {
            offset += (data.len() - tail_cap) as u64;
            data = &data[data.len() - tail_cap..];
        }
        match self.tail.back_mut() {
            Some(p)
                if !p.stored
                    && p.offset + p.data.len() as u64 == offset
                    && p.data.len() + data.len() <= PIECE =>
            {
                p.data.extend_from_slice(data)
            }
            _ => self.tail.push_back(Piece {
                offset,
                data: data.to_vec(),
                stored: false,
                seq,
            }),
        }
        self.tail_bytes += data.len();
        while self.tail_bytes > tail_cap && self.tail.len() > 1 {
            if let Some(p) = self.tail.pop_front() {
                self.tail_bytes -= p.data.len();
                if p.stored {
                    self.dropped.push(p.offset);
                }
            }
        }
    }

    /// What to write now: chunks (with when each arrived) and drops.
    fn flush(&mut self, key: &LogKey, append: &mut Vec<(u64, LogChunk)>, write: &mut LogWrite) {
        append.append(&mut self.head);
        let at = weft_model::now_millis();
        for p in self.tail.iter_mut().filter(|p| !p.stored) {
            p.stored = true;
            append.push((
                p.seq,
                LogChunk {
                    key: key.clone(),
                    offset: p.offset,
                    at,
                    data: p.data.clone(),
                },
            ));
        }
        write
            .drop
            .extend(self.dropped.drain(..).map(|o| (key.clone(), o)));
    }
}

/// `write` cut into writes of about `max` bytes of chunks each (a chunk is never split); the
/// drops go with the first. Nothing when there is nothing to write.
fn slices(write: LogWrite, max: usize) -> Vec<LogWrite> {
    let mut out = Vec::new();
    let mut current = LogWrite {
        append: Vec::new(),
        drop: write.drop,
    };
    let mut bytes = 0;
    for chunk in write.append {
        if bytes > 0 && bytes + chunk.data.len() > max {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += chunk.data.len();
        current.append.push(chunk);
    }
    if !current.append.is_empty() || !current.drop.is_empty() {
        out.push(current);
    }
    out
}

async fn pump(store: SharedStore, cap: usize, mut rx: mpsc::Receiver<Event>) {
    let tail_cap = cap - cap / 2;
    let mut streams: HashMap<LogKey, Stream> = HashMap::new();
    let mut ended: Vec<LogKey> = Vec::new();
    let mut arrived: u64 = 0;
    let mut tick = tokio::time::interval(FLUSH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut asked = None;
        let flush = tokio::select! {
            e = rx.recv() => match e {
                Some(Event::Chunk { key, skipped, data }) => {
                    arrived += 1;
                    streams
                        .entry(key.clone())
                        .or_insert_with(|| Stream::new(cap))
                        .take(&key, skipped, &data, tail_cap, arrived);
                    false
                }
                Some(Event::End(key)) => {
                    ended.push(key);
                    false
                }
                Some(Event::Flush(done)) => {
                    asked = Some(done);
                    true
                }
                None => true,
            },
            _ = tick.tick() => true,
        };
        let closed = rx.is_closed() && rx.is_empty();
        if !flush && !closed {
            continue;
        }
        let mut write = LogWrite::default();
        let mut append = Vec::new();
        for (key, s) in streams.iter_mut() {
            s.flush(key, &mut append, &mut write);
        }
        // In the order they arrived, across streams: ids give readers that order.
        append.sort_by_key(|(seq, _)| *seq);
        write.append = append.into_iter().map(|(_, c)| c).collect();
        for key in ended.drain(..) {
            streams.remove(&key);
        }
        // In slices, so that the store's writer — which commits steps too — is never held
        // long by output: a step's commit waits behind one slice at most.
        for slice in slices(write, SLICE) {
            if let Err(e) = store.write_logs(slice).await {
                tracing::warn!("cannot keep tasks' output: {e}");
            }
        }
        if let Some(done) = asked {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> LogKey {
        LogKey {
            plan: PlanId::new(),
            step: 0,
            attempt: 1,
            task: String::new(),
            action: "execute".into(),
            stream: "stdout".into(),
        }
    }

    fn flushed(s: &mut Stream, k: &LogKey) -> (Vec<(u64, Vec<u8>)>, Vec<u64>) {
        let (mut append, mut w) = (Vec::new(), LogWrite::default());
        s.flush(k, &mut append, &mut w);
        (
            append
                .into_iter()
                .map(|(_, c)| (c.offset, c.data))
                .collect(),
            w.drop.into_iter().map(|(_, o)| o).collect(),
        )
    }

    fn kept(s: &mut Stream, k: &LogKey) -> Vec<(u64, Vec<u8>)> {
        flushed(s, k).0
    }

    #[test]
    fn the_head_and_a_moving_tail_are_kept_and_the_middle_is_cut() {
        let k = key();
        // Cap 8: head 4, tail 4.
        let mut s = Stream::new(8);
        s.take(&k, 0, b"abc", 4, 1);
        s.take(&k, 0, b"defg", 4, 2);
        assert_eq!(
            kept(&mut s, &k),
            [(0, b"abcd".to_vec()), (4, b"efg".to_vec())]
        );
        s.take(&k, 0, b"hi", 4, 3);
        s.take(&k, 0, b"jklmn", 4, 4);
        // The window holds the last 4 bytes; "efg" (stored) fell out and is dropped.
        let (appended, dropped) = flushed(&mut s, &k);
        assert_eq!(appended, [(10, b"klmn".to_vec())]);
        assert_eq!(dropped, [4]);
        assert_eq!(s.next, 14);
    }

    #[test]
    fn writes_are_cut_into_slices_that_keep_chunks_whole_and_in_order() {
        let k = key();
        let chunk = |offset: u64, len: usize| LogChunk {
            key: k.clone(),
            offset,
            at: 0,
            data: vec![b'x'; len],
        };
        let write = LogWrite {
            append: vec![
                chunk(0, 100),
                chunk(100, 100),
                chunk(200, 300),
                chunk(500, 10),
            ],
            drop: vec![(k.clone(), 7)],
        };
        let out = slices(write, 250);
        let offsets: Vec<Vec<u64>> = out
            .iter()
            .map(|w| w.append.iter().map(|c| c.offset).collect())
            .collect();
        assert_eq!(offsets, vec![vec![0, 100], vec![200], vec![500]]);
        assert_eq!(out[0].drop, vec![(k.clone(), 7)]);
        assert!(out[1..].iter().all(|w| w.drop.is_empty()));
        assert!(slices(LogWrite::default(), 250).is_empty());
        let only_drops = LogWrite {
            append: Vec::new(),
            drop: vec![(k, 1)],
        };
        assert_eq!(slices(only_drops, 250).len(), 1);
    }

    #[test]
    fn skipped_bytes_leave_a_gap() {
        let k = key();
        let mut s = Stream::new(1 << 20);
        s.take(&k, 0, b"one\n", 1 << 19, 1);
        s.take(&k, 10, b"two\n", 1 << 19, 2);
        assert_eq!(
            kept(&mut s, &k),
            [(0, b"one\n".to_vec()), (14, b"two\n".to_vec())]
        );
    }
}

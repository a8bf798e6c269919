//! The public [`Log`]: validates calls, updates the in-memory view synchronously, and hands the
//! planned disk work to the writer thread.
//!
//! Every mutation (append, truncate, purge, flush) takes the state lock, checks itself against
//! the current view, updates the index, plans its disk layout and takes the next sequence number,
//! all under that one lock. So the in-memory order, the planned layout and the writer's execution
//! order are the same total order: the call order. The lock is never held across I/O or while
//! sending to the writer.

use std::any::Any;
use std::collections::BTreeMap;
use std::ops::{Bound, Range, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread::JoinHandle;

use bytes::Bytes;

use crate::error::LogError;
use crate::format::{self, Decoded, MAX_ENTRY_LEN, SEGMENT_HEADER_LEN};
use crate::fs::{FileSystem, LogFile, StdFs};
use crate::group_commit::{self, Command, Op, Writer};
use crate::index::{EntryIndex, Loc, Lookup};
use crate::meta::{self, MetaStore};
use crate::recovery;
use crate::segment::SegmentLayout;

/// Called exactly once with the outcome of an [`Log::append`] or [`Log::flush`]: `Ok` once the
/// operation and everything submitted before it are durable. Runs on the writer thread, so it
/// must be quick and must not call back into the log's blocking methods (`sync`, `close`).
pub type Completion = Box<dyn FnOnce(Result<(), LogError>) + Send + 'static>;

/// Tuning knobs. The defaults suit production; tests shrink `segment_size`.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Bytes preallocated per segment file (a segment grows past it only to fit one oversized
    /// entry). At least 64.
    pub segment_size: u64,
    /// Bytes of recent entry payloads kept in memory, so that replicating recent entries never
    /// reads the disk. Entries not yet written are always kept, whatever this says.
    pub cache_size: usize,
    /// Commands that may wait for the writer before `append` and friends block.
    pub queue_depth: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            segment_size: 64 << 20,
            cache_size: 64 << 20,
            queue_depth: 4096,
        }
    }
}

const MIN_SEGMENT_SIZE: u64 = 64;
/// Disk reads of adjacent records are merged into one read up to this size.
const MAX_READ_SPAN: u64 = 16 << 20;

/// State shared by callers and the writer thread.
pub(crate) struct Shared {
    state: RwLock<State>,
    poison: OnceLock<LogError>,
    pub(crate) fs: Arc<dyn FileSystem>,
    pub(crate) dir: PathBuf,
}

struct State {
    index: EntryIndex,
    layout: SegmentLayout,
    /// Open segment files, for reads. Maintained by the writer (it creates and deletes them).
    files: BTreeMap<u64, Arc<dyn LogFile>>,
    next_seq: u64,
    /// Highest sequence number whose writes are done; entries up to it may leave the cache.
    written_seq: u64,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn check_poison(&self) -> Result<(), LogError> {
        match self.poison.get() {
            None => Ok(()),
            Some(cause) => Err(LogError::Poisoned {
                cause: Box::new(cause.clone()),
            }),
        }
    }

    /// Records the first I/O failure; later ones are consequences.
    pub(crate) fn poison(&self, error: LogError) {
        if !matches!(error, LogError::Poisoned { .. }) {
            let _ = self.poison.set(error);
        }
    }

    pub(crate) fn mark_written(&self, seq: u64) {
        let mut state = self.write();
        state.written_seq = seq;
        state.index.evict(seq);
    }

    pub(crate) fn publish_file(&self, id: u64, file: Option<Arc<dyn LogFile>>) {
        let mut state = self.write();
        match file {
            Some(file) => state.files.insert(id, file),
            None => state.files.remove(&id),
        };
    }
}

/// A segmented write-ahead log of opaque entries keyed by consecutive `u64` indexes, plus small
/// named meta blobs. See the crate documentation for the guarantees.
///
/// `Log` is `Send + Sync`; share it with an `Arc`. Dropping it waits for the writer to finish
/// every submitted operation (and so runs every pending callback).
pub struct Log {
    shared: Arc<Shared>,
    meta: Arc<MetaStore>,
    tx: Option<SyncSender<Command>>,
    writer: Option<JoinHandle<()>>,
    _lock: Box<dyn Any + Send + Sync>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the real filesystem, recovering what is
    /// there. See [`Log::open_with`].
    pub fn open(dir: impl AsRef<Path>, options: LogOptions) -> Result<Log, LogError> {
        Self::open_with(Arc::new(StdFs), dir, options)
    }

    /// Opens (creating if needed) the log in `dir` through `fs`.
    ///
    /// Recovery verifies every record: a torn tail of the last segment is cut off (with a
    /// warning), any other damage fails with [`LogError::Corrupt`] naming the file and offset.
    /// Fails with [`LogError::Locked`] if another `Log` has the directory open.
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: LogOptions,
    ) -> Result<Log, LogError> {
        if options.segment_size < MIN_SEGMENT_SIZE {
            return Err(LogError::InvalidOptions(
                "segment_size must be at least 64 bytes",
            ));
        }
        if options.queue_depth == 0 {
            return Err(LogError::InvalidOptions("queue_depth must be at least 1"));
        }
        let dir = dir.as_ref().to_path_buf();
        fs.create_dir_all(&dir)
            .map_err(|e| LogError::io("create directory", &dir, e))?;
        let lock_path = dir.join(format::LOCK_FILE_NAME);
        let lock = fs.lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => LogError::Locked { dir: dir.clone() },
            _ => LogError::io("lock", &lock_path, e),
        })?;

        let meta = Arc::new(MetaStore::new(Arc::clone(&fs), dir.clone()));
        let names = fs
            .list(&dir)
            .map_err(|e| LogError::io("list directory", &dir, e))?;
        meta.remove_tmp_leftovers(&names)?;
        let recovered = recovery::recover(&*fs, &dir, &meta, &names)?;

        let state = State {
            index: EntryIndex::new(
                recovered.first,
                recovered.locs,
                recovered.purged,
                recovered.empty_next,
                options.cache_size,
            ),
            layout: SegmentLayout::new(options.segment_size, recovered.segments),
            files: recovered.files.clone(),
            next_seq: 1,
            written_seq: 0,
        };
        let shared = Arc::new(Shared {
            state: RwLock::new(state),
            poison: OnceLock::new(),
            fs,
            dir: dir.clone(),
        });
        let (tx, rx) = mpsc::sync_channel(options.queue_depth);
        let writer = Writer::new(
            Arc::clone(&shared),
            Arc::clone(&meta),
            recovered.files,
            1,
            options.queue_depth,
        );
        let handle = std::thread::Builder::new()
            .name("cairn-log-writer".to_owned())
            .spawn(move || writer.run(rx))
            .map_err(|e| LogError::io("spawn writer thread for", &dir, e))?;
        Ok(Log {
            shared,
            meta,
            tx: Some(tx),
            writer: Some(handle),
            _lock: lock,
        })
    }

    /// Appends `entries`, which must carry consecutive indexes continuing the log: the first one
    /// is [`Log::next_index`] (anything, if that is `None`).
    ///
    /// On `Ok` the entries are readable at once (by [`Log::read`], also from other threads), and
    /// `done` will be called exactly once, on the writer thread: with `Ok` after the entries and
    /// every operation submitted before them are durable (`fdatasync` returned), or with an error,
    /// after which the log is poisoned. On `Err` nothing was appended and `done` is dropped
    /// uncalled. An empty `entries` is a [`Log::flush`].
    ///
    /// Blocks only when `queue_depth` operations already wait for the writer.
    pub fn append(
        &self,
        entries: Vec<(u64, Bytes)>,
        done: impl FnOnce(Result<(), LogError>) + Send + 'static,
    ) -> Result<(), LogError> {
        self.shared.check_poison()?;
        let Some(&(first, _)) = entries.first() else {
            return self.flush(done);
        };
        for pair in entries.windows(2) {
            let expected = pair[0].0.checked_add(1);
            if expected != Some(pair[1].0) {
                return Err(LogError::NonContiguous {
                    expected: expected.unwrap_or(u64::MAX),
                    got: pair[1].0,
                });
            }
        }
        if let Some(&(index, _)) = entries.last().filter(|(i, _)| *i > format::MAX_INDEX) {
            return Err(LogError::IndexTooLarge { index });
        }
        if let Some((index, data)) = entries.iter().find(|(_, d)| d.len() > MAX_ENTRY_LEN) {
            return Err(LogError::EntryTooLarge {
                index: *index,
                len: data.len(),
            });
        }
        let cmd = {
            let mut guard = self.shared.write();
            let state = &mut *guard;
            if let Some(expected) = state.index.next_index() {
                if first != expected {
                    return Err(LogError::NonContiguous {
                        expected,
                        got: first,
                    });
                }
            }
            let seq = state.take_seq();
            let index = &mut state.index;
            let runs = state.layout.plan_append(&entries, |i, loc, data| {
                index.push(i, loc, data.clone(), seq)
            });
            index.evict(state.written_seq);
            Command {
                seq,
                op: Op::Append { entries, runs },
                done: Some(Box::new(done)),
            }
        };
        self.submit(cmd);
        Ok(())
    }

    /// Removes every entry `>= index` (conflict resolution). Visible at once; durable before any
    /// later append or flush reports durability. An `index` at or below the first entry removes
    /// everything, and the log then continues at the first entry's index; one past the last
    /// entry does nothing.
    ///
    /// On disk the segments after the one holding `index` are deleted and that one is cut at
    /// `index` (one or two extra syncs on the writer thread). A `read` racing with the truncation
    /// of the entries it reads may see [`LogError::Corrupt`] for them.
    pub fn truncate(&self, index: u64) -> Result<(), LogError> {
        self.shared.check_poison()?;
        let cmd = {
            let mut guard = self.shared.write();
            let state = &mut *guard;
            let (Some(first), Some(last)) = (state.index.first_index(), state.index.last_index())
            else {
                return Ok(());
            };
            let index = index.max(first);
            if index > last {
                return Ok(());
            }
            let Some(first_removed) = state.index.loc(index) else {
                return Ok(());
            };
            state.index.truncate_from(index);
            let plan = state.layout.plan_truncate(first_removed);
            Command {
                seq: state.take_seq(),
                op: Op::Truncate(plan),
                done: None,
            }
        };
        self.submit(cmd);
        Ok(())
    }

    /// Drops every entry `<= index` (after a snapshot). Visible at once; the purge point is
    /// durable before any later append or flush reports durability. On disk only whole segments
    /// are deleted, those holding nothing above the purge point. `index` may lie past the last
    /// entry: the log is then empty and continues at `index + 1`. The purge point never moves
    /// back; a point below the first entry is raised to just before it. A point above
    /// [`format::MAX_INDEX`] is [`LogError::IndexTooLarge`].
    pub fn purge(&self, index: u64) -> Result<(), LogError> {
        self.shared.check_poison()?;
        if index > format::MAX_INDEX {
            return Err(LogError::IndexTooLarge { index });
        }
        let cmd = {
            let mut guard = self.shared.write();
            let state = &mut *guard;
            let before = state.index.purged();
            state.index.purge_to(index);
            let Some(purged) = state.index.purged().filter(|&p| Some(p) != before) else {
                return Ok(());
            };
            let now_empty = state.index.last_index().is_none();
            let delete = state.layout.plan_purge(purged, now_empty);
            Command {
                seq: state.take_seq(),
                op: Op::Purge { purged, delete },
                done: None,
            }
        };
        self.submit(cmd);
        Ok(())
    }

    /// Calls `done` once every operation submitted before it is durable (or has failed).
    pub fn flush(
        &self,
        done: impl FnOnce(Result<(), LogError>) + Send + 'static,
    ) -> Result<(), LogError> {
        self.shared.check_poison()?;
        let seq = self.shared.write().take_seq();
        self.submit(Command {
            seq,
            op: Op::Flush,
            done: Some(Box::new(done)),
        });
        Ok(())
    }

    /// Blocks until every operation submitted before it is durable.
    pub fn sync(&self) -> Result<(), LogError> {
        let (tx, rx) = mpsc::channel();
        self.flush(move |result| {
            let _ = tx.send(result);
        })?;
        rx.recv().unwrap_or(Err(LogError::Closed))
    }

    /// The live entries within `range`, in order; indexes outside
    /// `first_index()..=last_index()` are skipped, so the result is contiguous but may be
    /// shorter than the range. Recent entries come from memory without copying; older ones are
    /// read from disk (adjacent records in one read) and their checksums verified.
    pub fn read(&self, range: impl RangeBounds<u64>) -> Result<Vec<(u64, Bytes)>, LogError> {
        let range = to_range(range);
        let mut out = Vec::new();
        let mut on_disk = Vec::new();
        {
            let state = self.shared.read();
            let range = state.index.clamp(range);
            out.reserve(range.end.saturating_sub(range.start) as usize);
            for index in range {
                match state.index.lookup(index) {
                    Lookup::Cached(data) => out.push((index, data)),
                    Lookup::Disk(loc) => {
                        let file = state.files.get(&loc.segment).cloned();
                        on_disk.push(DiskRead {
                            slot: out.len(),
                            loc,
                            file,
                        });
                        out.push((index, Bytes::new()));
                    }
                }
            }
        }
        let mut rest = &on_disk[..];
        while !rest.is_empty() {
            let span = span_len(rest);
            self.read_span(&rest[..span], &mut out)?;
            rest = &rest[span..];
        }
        Ok(out)
    }

    /// One entry, `None` if it is not live.
    pub fn entry(&self, index: u64) -> Result<Option<Bytes>, LogError> {
        Ok(self.read(index..=index)?.pop().map(|(_, data)| data))
    }

    /// Index of the first live entry, `None` when the log is empty.
    pub fn first_index(&self) -> Option<u64> {
        self.shared.read().index.first_index()
    }

    /// Index of the last live entry, `None` when the log is empty.
    pub fn last_index(&self) -> Option<u64> {
        self.shared.read().index.last_index()
    }

    /// The index the next append must start at: `last_index() + 1`, or where an empty log
    /// continues (after `purged()`, or at the point everything was truncated from). `None` for a
    /// log that has never held anything: any index may start it.
    pub fn next_index(&self) -> Option<u64> {
        self.shared.read().index.next_index()
    }

    /// The purge point: every index `<=` it is gone. `None` if the log was never purged.
    pub fn purged(&self) -> Option<u64> {
        self.shared.read().index.purged()
    }

    /// Durably and atomically replaces meta blob `name` (see [`LogError::InvalidMetaName`] for
    /// the allowed names). Blocks until durable (two syncs). Independent of the entry stream: it
    /// neither waits for nor orders against pending appends. A failure poisons the log.
    pub fn save_meta(&self, name: &str, value: &[u8]) -> Result<(), LogError> {
        meta::validate_user_name(name)?;
        self.shared.check_poison()?;
        self.meta
            .save(name, value)
            .inspect_err(|e| self.shared.poison(e.clone()))
    }

    /// The last value saved for meta blob `name`, `None` if never saved. A damaged file is
    /// [`LogError::Corrupt`], never `None`.
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, LogError> {
        meta::validate_user_name(name)?;
        self.meta.read(name)
    }

    /// `save_meta("vote", vote)`.
    pub fn save_vote(&self, vote: &[u8]) -> Result<(), LogError> {
        self.save_meta("vote", vote)
    }

    /// `read_meta("vote")`.
    pub fn read_vote(&self) -> Result<Option<Vec<u8>>, LogError> {
        self.read_meta("vote")
    }

    /// `save_meta("committed", committed)`.
    pub fn save_committed(&self, committed: &[u8]) -> Result<(), LogError> {
        self.save_meta("committed", committed)
    }

    /// `read_meta("committed")`.
    pub fn read_committed(&self) -> Result<Option<Vec<u8>>, LogError> {
        self.read_meta("committed")
    }

    /// The directory this log lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Waits for every submitted operation to finish, stops the writer and releases the
    /// directory. Returns the poisoning error if the log was poisoned.
    pub fn close(mut self) -> Result<(), LogError> {
        self.shutdown();
        self.shared.check_poison()
    }

    fn shutdown(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!(dir = %self.shared.dir.display(), "log writer thread panicked");
            }
        }
    }

    fn submit(&self, cmd: Command) {
        let sent = match &self.tx {
            Some(tx) => tx.send(cmd).map_err(|e| e.0),
            None => Err(cmd),
        };
        if let Err(cmd) = sent {
            if let Some(done) = cmd.done {
                group_commit::fail(done, LogError::Closed);
            }
        }
    }

    fn read_span(&self, span: &[DiskRead], out: &mut [(u64, Bytes)]) -> Result<(), LogError> {
        let (Some(first), Some(last)) = (span.first(), span.last()) else {
            return Ok(());
        };
        let path = self
            .shared
            .dir
            .join(format::segment_file_name(first.loc.segment));
        let Some(file) = &first.file else {
            return Err(LogError::corrupt(
                &path,
                first.loc.offset,
                "segment file is not open (internal error)",
            ));
        };
        let start = first.loc.offset;
        let end = last.loc.offset + format::entry_record_len(last.loc.len as usize);
        let mut buf = vec![0u8; (end - start) as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| LogError::io("read", &path, e))?;
        let buf = Bytes::from(buf);
        for DiskRead { slot, loc, .. } in span {
            let at = (loc.offset - start) as usize;
            let index = out[*slot].0;
            let bad = |reason: String| LogError::corrupt(&path, loc.offset, reason);
            match format::decode_record(&buf[at..]) {
                Ok(Decoded::Entry {
                    index: found, data, ..
                }) if found == index && data.len() == loc.len as usize => {
                    out[*slot].1 = buf.slice(at + data.start..at + data.end);
                }
                Ok(Decoded::Entry { index: found, .. }) => {
                    return Err(bad(format!("expected entry {index}, found entry {found}")))
                }
                Ok(Decoded::End) => {
                    return Err(bad(format!("expected entry {index}, found end of data")))
                }
                Err(e) => return Err(bad(e.describe())),
            }
        }
        Ok(())
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl State {
    fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// An entry to fetch from disk into `out[slot]` of a read.
struct DiskRead {
    slot: usize,
    loc: Loc,
    /// `None` only if the index and the open files disagree (a bug), reported as corruption.
    file: Option<Arc<dyn LogFile>>,
}

/// Length of the leading run of `reads` that are adjacent records of one segment.
fn span_len(reads: &[DiskRead]) -> usize {
    let start = reads[0].loc.offset;
    let mut n = 1;
    while let Some(DiskRead { loc: next, .. }) = reads.get(n) {
        let prev = reads[n - 1].loc;
        let prev_end = prev.offset + format::entry_record_len(prev.len as usize);
        let next_end = next.offset + format::entry_record_len(next.len as usize);
        if next.segment != prev.segment
            || next.offset != prev_end
            || next_end - start > MAX_READ_SPAN
        {
            break;
        }
        n += 1;
    }
    n
}

fn to_range(range: impl RangeBounds<u64>) -> Range<u64> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.saturating_add(1),
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.saturating_add(1),
        Bound::Excluded(&e) => e,
        Bound::Unbounded => u64::MAX,
    };
    start..end
}

// `Log` is shared across threads and async tasks.
const _: fn() = || {
    fn shareable<T: Send + Sync>() {}
    shareable::<Log>();
};

// The smallest segment must hold its header and an empty entry.
const _: () = assert!(SEGMENT_HEADER_LEN + format::entry_record_len(0) <= MIN_SEGMENT_SIZE);

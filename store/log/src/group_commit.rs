//! The writer thread: carries out planned mutations in call order, with group commit.
//!
//! Callers plan under the state lock and take a sequence number there, then send the command
//! without holding any lock. Commands can therefore arrive out of order; the writer buffers them
//! and executes strictly by sequence number, so disk order equals call order.
//!
//! Each round drains every command available, writes each run of consecutive records with one
//! `write` (one reusable buffer), then issues one `fdatasync` per file touched (normally one) and
//! only then completes the callbacks. Invariants:
//! * No callback reports success before the sync that covers it has returned `Ok`.
//! * A segment is fully synced before anything is written to its successor, and a new segment's
//!   header is synced (and its name, via a directory sync) before records go into it. Hence only
//!   the last segment can have a torn tail (see `recovery`).
//! * A truncation does its own syncs in the middle of the batch: the segments after the new tail
//!   are gone durably (directory sync) before the tail is cut, so no crash can leave a hole; the
//!   cut is synced before anything is written over the cut-off space, so stale records can never
//!   reappear behind new ones.
//! * A purge syncs everything before it, then makes the purge point durable: a crash never keeps
//!   a purge while losing earlier appends.
//! * The first failed write or sync poisons the log; from then on nothing is written and every
//!   callback gets an error.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;

use crate::error::LogError;
use crate::format::{self, SEGMENT_HEADER_LEN};
use crate::fs::LogFile;
use crate::log::{Completion, Shared};
use crate::meta::{MetaStore, PURGED_META};
use crate::segment::{Placement, Run, TruncatePlan};

/// A mutation, already planned, waiting for the writer.
pub(crate) struct Command {
    pub seq: u64,
    pub op: Op,
    /// Called once the operation (and everything before it) is durable, or has failed.
    pub done: Option<Completion>,
}

pub(crate) enum Op {
    Append {
        entries: Vec<(u64, Bytes)>,
        runs: Vec<Run>,
    },
    Truncate(TruncatePlan),
    Purge {
        purged: u64,
        delete: Vec<u64>,
    },
    /// Only a durability barrier.
    Flush,
}

/// A buffer larger than this is released after use rather than kept for the next batch.
const KEEP_BUFFER_CAPACITY: usize = 8 << 20;

pub(crate) struct Writer {
    shared: Arc<Shared>,
    meta: Arc<MetaStore>,
    files: BTreeMap<u64, Arc<dyn LogFile>>,
    /// Encoded records not yet written, destined for `staged_at`.
    buf: Vec<u8>,
    staged_at: Option<(u64, u64)>,
    /// Segments written since their last sync.
    dirty: BTreeSet<u64>,
    next_seq: u64,
    early: BTreeMap<u64, Command>,
    max_batch: usize,
}

impl Writer {
    pub(crate) fn new(
        shared: Arc<Shared>,
        meta: Arc<MetaStore>,
        files: BTreeMap<u64, Arc<dyn LogFile>>,
        first_seq: u64,
        max_batch: usize,
    ) -> Self {
        Self {
            shared,
            meta,
            files,
            buf: Vec::new(),
            staged_at: None,
            dirty: BTreeSet::new(),
            next_seq: first_seq,
            early: BTreeMap::new(),
            max_batch: max_batch.max(1),
        }
    }

    /// Runs until every sender is gone and every command received has been completed.
    pub(crate) fn run(mut self, rx: Receiver<Command>) {
        let mut batch = Vec::new();
        loop {
            if !self.early.contains_key(&self.next_seq) {
                match rx.recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => break,
                }
            }
            while self.early.len() < self.max_batch {
                match rx.try_recv() {
                    Ok(cmd) => self.accept(cmd),
                    Err(_) => break,
                }
            }
            while let Some(cmd) = self.early.remove(&self.next_seq) {
                batch.push(cmd);
                self.next_seq += 1;
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
        }
        // Only reachable with a gap in the sequence, i.e. a caller died between planning and
        // sending; nothing after the gap may be written.
        for cmd in std::mem::take(&mut self.early).into_values() {
            complete(cmd.done, Err(LogError::Closed));
        }
    }

    fn accept(&mut self, cmd: Command) {
        self.early.insert(cmd.seq, cmd);
    }

    fn commit(&mut self, batch: &mut Vec<Command>) {
        let last_seq = batch.last().map_or(0, |cmd| cmd.seq);
        let result = match self.shared.check_poison() {
            Ok(()) => self.execute(batch),
            Err(e) => Err(e),
        };
        match &result {
            Ok(()) => self.shared.mark_written(last_seq),
            Err(e) => {
                self.shared.poison(e.clone());
                self.buf.clear();
                self.staged_at = None;
                self.dirty.clear();
            }
        }
        if self.buf.capacity() > KEEP_BUFFER_CAPACITY {
            self.buf = Vec::new();
        }
        for cmd in batch.drain(..) {
            complete(cmd.done, result.clone());
        }
    }

    fn execute(&mut self, batch: &[Command]) -> Result<(), LogError> {
        for cmd in batch {
            match &cmd.op {
                Op::Append { entries, runs } => self.append(entries, runs)?,
                Op::Truncate(plan) => self.truncate(plan)?,
                Op::Purge { purged, delete } => self.purge(*purged, delete)?,
                Op::Flush => {}
            }
        }
        self.write_staged()?;
        self.sync_dirty()
    }

    fn append(&mut self, entries: &[(u64, Bytes)], runs: &[Run]) -> Result<(), LogError> {
        let mut entries = entries.iter();
        for run in runs {
            match run.placement {
                Placement::Existing => {}
                Placement::Create { size } => self.create_segment(run.segment, size)?,
                Placement::Grow { size } => {
                    self.write_staged()?;
                    let file = self.file(run.segment)?;
                    file.set_len(size)
                        .map_err(|e| LogError::io("extend", &self.path(run.segment), e))?;
                    self.dirty.insert(run.segment);
                }
            }
            self.stage(run.segment, run.offset)?;
            for (index, data) in entries.by_ref().take(run.count) {
                format::encode_entry(&mut self.buf, *index, data);
            }
        }
        Ok(())
    }

    fn truncate(&mut self, plan: &TruncatePlan) -> Result<(), LogError> {
        self.write_staged()?;
        for &id in &plan.delete {
            self.delete_segment(id)?;
        }
        if !plan.delete.is_empty() {
            self.sync_dir()?;
        }
        let id = plan.cut_segment;
        let path = self.path(id);
        let file = self.file(id)?;
        // Shrinking and growing back zeroes the cut-off bytes and keeps the preallocation.
        let size = file.size().map_err(|e| LogError::io("stat", &path, e))?;
        file.set_len(plan.cut_offset)
            .and_then(|()| file.set_len(size))
            .map_err(|e| LogError::io("truncate", &path, e))?;
        file.sync_data()
            .map_err(|e| LogError::io("fdatasync", &path, e))?;
        self.dirty.remove(&id);
        Ok(())
    }

    /// Everything before the purge is synced first, so that a crash cannot keep the purge but
    /// lose earlier appends (disk order is call order). Then the purge point is made durable; the
    /// deletions need not be, since recovery deletes segments left wholly below it.
    fn purge(&mut self, purged: u64, delete: &[u64]) -> Result<(), LogError> {
        self.write_staged()?;
        self.sync_dirty()?;
        self.meta.save(PURGED_META, &purged.to_le_bytes())?;
        for &id in delete {
            self.delete_segment(id)?;
        }
        Ok(())
    }

    /// Makes `(segment, offset)` the destination of the next encoded bytes, writing out what is
    /// staged unless the new bytes simply continue it.
    fn stage(&mut self, segment: u64, offset: u64) -> Result<(), LogError> {
        if let Some((staged, start)) = self.staged_at {
            if staged == segment && start + self.buf.len() as u64 == offset {
                return Ok(());
            }
        }
        self.write_staged()?;
        self.staged_at = Some((segment, offset));
        Ok(())
    }

    fn write_staged(&mut self) -> Result<(), LogError> {
        let Some((segment, offset)) = self.staged_at.take() else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file(segment)?;
        file.write_all_at(&self.buf, offset)
            .map_err(|e| LogError::io("write", &self.path(segment), e))?;
        self.buf.clear();
        self.dirty.insert(segment);
        Ok(())
    }

    fn sync_dirty(&mut self) -> Result<(), LogError> {
        while let Some(segment) = self.dirty.pop_first() {
            let file = self.file(segment)?;
            file.sync_data()
                .map_err(|e| LogError::io("fdatasync", &self.path(segment), e))?;
        }
        Ok(())
    }

    fn sync_dir(&self) -> Result<(), LogError> {
        let dir = &self.shared.dir;
        self.shared
            .fs
            .sync_dir(dir)
            .map_err(|e| LogError::io("fsync directory", dir, e))
    }

    /// Seals everything written so far, then creates the segment with its header durable and
    /// its name in the directory durable.
    fn create_segment(&mut self, id: u64, size: u64) -> Result<(), LogError> {
        self.write_staged()?;
        self.sync_dirty()?;
        let path = self.path(id);
        let file = self
            .shared
            .fs
            .create(&path)
            .map_err(|e| LogError::io("create", &path, e))?;
        file.set_len(size.max(SEGMENT_HEADER_LEN))
            .map_err(|e| LogError::io("preallocate", &path, e))?;
        file.write_all_at(&format::encode_segment_header(id), 0)
            .map_err(|e| LogError::io("write", &path, e))?;
        file.sync_data()
            .map_err(|e| LogError::io("fdatasync", &path, e))?;
        self.sync_dir()?;
        self.files.insert(id, Arc::clone(&file));
        self.shared.publish_file(id, Some(file));
        Ok(())
    }

    fn delete_segment(&mut self, id: u64) -> Result<(), LogError> {
        self.dirty.remove(&id);
        self.files.remove(&id);
        self.shared.publish_file(id, None);
        let path = self.path(id);
        match self.shared.fs.remove(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(LogError::io("remove", &path, e))
            }
            _ => Ok(()),
        }
    }

    fn file(&self, id: u64) -> Result<Arc<dyn LogFile>, LogError> {
        self.files.get(&id).cloned().ok_or_else(|| {
            LogError::corrupt(
                &self.path(id),
                0,
                "segment file is not open (internal error)",
            )
        })
    }

    fn path(&self, id: u64) -> PathBuf {
        self.shared.dir.join(format::segment_file_name(id))
    }
}

/// Runs a callback; a panicking callback must not take the writer (and every later callback)
/// down with it.
fn complete(done: Option<Completion>, result: Result<(), LogError>) {
    if let Some(done) = done {
        if catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
            tracing::error!("a log completion callback panicked");
        }
    }
}

pub(crate) fn fail(done: Completion, error: LogError) {
    complete(Some(done), Err(error));
}

//! [`Mvcc`]: the store handle — opening the redb file, reads (each in its own redb read
//! transaction, concurrent with the writer), starting write batches, snapshots, hashes and
//! defragmentation.
//!
//! The open file is held as an `Arc<Database>` that [`Mvcc::defragment`] replaces. Every
//! transaction is begun on a clone of that `Arc` taken under a lock held only for the clone, so
//! a reader that started on the old file finishes on it (it holds the same data), and a writer
//! checks, once it holds redb's writer, that its file is still the current one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse};
use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction,
};

use crate::backend::{self, BackendLayer};
use crate::batch::WriteBatch;
use crate::defrag::{self, DefragReport};
use crate::error::MvccError;
use crate::format::{
    decode_kv, Bytes, IndexKey, RevKey, FORMAT_VERSION, HISTORY, INDEX, LEASES, LEASE_KEYS, LIVE,
    META, STATE, STATE_COMPACT, STATE_CURRENT, STATE_FORMAT_VERSION,
};
use crate::hash::{hash_kv, KvHash};
use crate::history::{read_events, EventBatch};
use crate::key_range::KeyRange;
use crate::lease::{attached_keys, LeaseInfo};
use crate::range::range;
use crate::revision::{Revisions, INITIAL_REVISION, NEVER_COMPACTED};
use crate::snapshot::{install_image, write_image, Snapshot, SnapshotInfo};
use crate::view::KvView;

type ReadView<'v> = KvView<
    'v,
    ReadOnlyTable<Bytes, Bytes>,
    ReadOnlyTable<IndexKey, u8>,
    ReadOnlyTable<RevKey, Bytes>,
>;

/// The MVCC key-value state machine. Share it behind an `Arc`: every method takes `&self`.
pub struct Mvcc {
    /// The open file; replaced only by [`Mvcc::defragment`], while it holds the writer.
    db: RwLock<Arc<Database>>,
    path: PathBuf,
    revisions: Revisions,
    /// The last [`Mvcc::size_in_use`] measurement and when it was taken.
    in_use: Mutex<Option<(Instant, u64)>>,
    /// The last [`Mvcc::size_bytes_recent`] reading of the file's size and when it was taken.
    file_size: Mutex<Option<(Instant, u64)>>,
    /// Wraps every file opened (tests only; see [`crate::backend`]).
    layer: Option<BackendLayer>,
}

impl std::fmt::Debug for Mvcc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mvcc")
            .field("path", &self.path)
            .field("current_revision", &self.current_revision())
            .field("compact_revision", &self.compact_revision())
            .finish()
    }
}

/// redb's page cache. Its default (1 GiB) makes the process hold up to that much of the
/// database in its own memory; the kernel's page cache already keeps hot pages, so a modest
/// cache keeps the resident set close to the working set without a measurable cost on reads.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

impl Mvcc {
    /// Opens the store at `path`, creating an empty one (revision 1, never compacted) if the file
    /// does not exist. Fails with `UnsupportedFormat` on a file of another layout version.
    /// Deletes what an interrupted defragmentation left beside the file.
    pub fn open(path: &Path) -> Result<Self, MvccError> {
        Self::open_with(path, None)
    }

    /// [`Mvcc::open`], with every file the store opens (this one, and a defragmentation's new
    /// one) going through `layer`: the hook where tests inject storage faults and crashes.
    pub fn open_with(path: &Path, layer: Option<BackendLayer>) -> Result<Self, MvccError> {
        defrag::remove_leftover(path)?;
        let db = backend::open(
            redb::Builder::new().set_cache_size(CACHE_BYTES),
            path,
            layer.as_ref(),
        )?;
        let txn = db.begin_write()?;
        let (current, compact, created) = {
            // Opening creates missing tables, so readers can always open all of them.
            txn.open_table(HISTORY)?;
            txn.open_table(INDEX)?;
            txn.open_table(LIVE)?;
            txn.open_table(LEASES)?;
            txn.open_table(LEASE_KEYS)?;
            txn.open_table(META)?;
            let mut state = txn.open_table(STATE)?;
            let version = state.get(STATE_FORMAT_VERSION)?.map(|v| v.value());
            match version {
                None => {
                    state.insert(STATE_FORMAT_VERSION, i64::from(FORMAT_VERSION))?;
                    state.insert(STATE_CURRENT, INITIAL_REVISION)?;
                    state.insert(STATE_COMPACT, NEVER_COMPACTED)?;
                    (INITIAL_REVISION, NEVER_COMPACTED, true)
                }
                Some(v) if v == i64::from(FORMAT_VERSION) => {
                    let current = state
                        .get(STATE_CURRENT)?
                        .map_or(INITIAL_REVISION, |v| v.value());
                    let compact = state
                        .get(STATE_COMPACT)?
                        .map_or(NEVER_COMPACTED, |v| v.value());
                    (current, compact, false)
                }
                Some(found) => {
                    return Err(MvccError::UnsupportedFormat {
                        found,
                        supported: FORMAT_VERSION,
                    })
                }
            }
        };
        if created {
            txn.commit()?;
        } else {
            txn.abort()?;
        }
        Ok(Mvcc {
            db: RwLock::new(Arc::new(db)),
            path: path.to_owned(),
            revisions: Revisions::new(current, compact),
            in_use: Mutex::new(None),
            file_size: Mutex::new(None),
            layer,
        })
    }

    /// The current file. Hold the `Arc` for as long as a transaction begun on it lives.
    fn database(&self) -> Arc<Database> {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// redb's writer on the current file. Waiting for the writer may outlast a defragmentation
    /// that replaces the file; a writer obtained on the replaced file is given back and the
    /// wait starts over on the new one, so no commit can land in a file that is gone.
    fn writer(&self) -> Result<(Arc<Database>, WriteTransaction), MvccError> {
        loop {
            let db = self.database();
            let txn = db.begin_write()?;
            if Arc::ptr_eq(&db, &self.database()) {
                return Ok((db, txn));
            }
            txn.abort()?;
        }
    }

    /// Revision of the last committed change (1 on an empty store). Lock-free.
    pub fn current_revision(&self) -> i64 {
        self.revisions.current()
    }

    /// Revision of the last committed compaction, -1 if never compacted. Lock-free.
    pub fn compact_revision(&self) -> i64 {
        self.revisions.compact()
    }

    pub(crate) fn publish(&self, current: i64, compact: i64) {
        self.revisions.publish(current, compact);
    }

    fn with_view<T>(
        &self,
        f: impl FnOnce(&ReadView<'_>) -> Result<T, MvccError>,
    ) -> Result<T, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let (current, compact) = read_revisions(&txn)?;
        let live = txn.open_table(LIVE)?;
        let index = txn.open_table(INDEX)?;
        let history = txn.open_table(HISTORY)?;
        f(&KvView {
            live: &live,
            index: &index,
            history: &history,
            current,
            compact,
        })
    }

    /// Serves an etcd Range from the last commit. Runs concurrently with a write batch.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, MvccError> {
        self.with_view(|view| range(view, req))
    }

    /// Replays history from revision `start_rev` for the keys named by `key` / `range_end`
    /// (etcd conventions), up to `limit` events (0 = unlimited, rounded up to a whole revision).
    /// `Compacted` if `start_rev` is below the compact revision.
    pub fn events(
        &self,
        start_rev: i64,
        key: &[u8],
        range_end: &[u8],
        limit: usize,
    ) -> Result<EventBatch, MvccError> {
        self.with_view(|view| read_events(view, start_rev, KeyRange::new(key, range_end), limit))
    }

    /// Starts a write batch: one redb write transaction for any number of commands. Blocks while
    /// another batch (or snapshot install) is open.
    pub fn begin(&self) -> Result<WriteBatch<'_>, MvccError> {
        let (_, txn) = self.writer()?;
        let (current, compact) = {
            let state = txn.open_table(STATE)?;
            let current = state
                .get(STATE_CURRENT)?
                .map_or(INITIAL_REVISION, |v| v.value());
            let compact = state
                .get(STATE_COMPACT)?
                .map_or(NEVER_COMPACTED, |v| v.value());
            (current, compact)
        };
        Ok(WriteBatch::new(self, txn, current, compact))
    }

    /// Caller metadata written by [`WriteBatch::set_meta`], as of the last commit.
    pub fn read_meta(&self, name: &str) -> Result<Option<Vec<u8>>, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        Ok(meta.get(name)?.map(|v| v.value().to_vec()))
    }

    /// A consistent image of the whole store (data, leases, revisions, metadata) in memory.
    pub fn snapshot(&self) -> Result<Snapshot, MvccError> {
        let mut image = Vec::new();
        let info = self.write_snapshot(&mut image)?;
        Ok(Snapshot { image, info })
    }

    /// Streams a consistent image of the whole store to `out`.
    pub fn write_snapshot<W: Write>(&self, out: W) -> Result<SnapshotInfo, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        write_image(&txn, out)
    }

    /// Replaces the whole store with `image`, atomically and durably; on any error the store is
    /// unchanged. Blocks while a write batch is open (do not call it from the thread holding
    /// one).
    pub fn install_snapshot(&self, image: &[u8]) -> Result<SnapshotInfo, MvccError> {
        self.install_snapshot_from(image)
    }

    /// [`Self::install_snapshot`] from a stream.
    pub fn install_snapshot_from<R: Read>(&self, input: R) -> Result<SnapshotInfo, MvccError> {
        let (_db, txn) = self.writer()?;
        let info = install_image(txn, input)?;
        self.publish(info.current_revision, info.compact_revision);
        self.forget_size_in_use();
        Ok(info)
    }

    /// etcd HashKV: CRC-32C of the history up to `rev` (0 = current). See [`KvHash`].
    pub fn hash_kv(&self, rev: i64) -> Result<KvHash, MvccError> {
        self.with_view(|view| hash_kv(view, rev))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the database file in bytes (etcd's `dbSize`).
    pub fn size_bytes(&self) -> Result<u64, MvccError> {
        let bytes = std::fs::metadata(&self.path)?.len();
        *self.file_size.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), bytes));
        Ok(bytes)
    }

    /// [`Self::size_bytes`], reusing a reading younger than `max_age`: for checks on every
    /// request (the space quota), which should not each cost a `stat` of the file.
    pub fn size_bytes_recent(&self, max_age: Duration) -> Result<u64, MvccError> {
        let cached = *self.file_size.lock().unwrap_or_else(|p| p.into_inner());
        match cached {
            Some((at, bytes)) if at.elapsed() < max_age => Ok(bytes),
            _ => self.size_bytes(),
        }
    }

    /// Bytes the data occupies in the file (etcd's `dbSizeInUse`): the file's size minus the
    /// free pages, which only [`Self::defragment`] gives back. Measuring reads every page of
    /// the last commit in a read transaction (concurrent with writes), so a measurement younger
    /// than `max_age` is reused; pass `Duration::ZERO` for a fresh one. Never above
    /// [`Self::size_bytes`].
    pub fn size_in_use(&self, max_age: Duration) -> Result<u64, MvccError> {
        let cached = *self.in_use.lock().unwrap_or_else(|p| p.into_inner());
        let bytes = match cached {
            Some((at, bytes)) if at.elapsed() < max_age => bytes,
            _ => {
                let db = self.database();
                let txn = db.begin_read()?;
                let bytes = defrag::bytes_in_use(&txn)?;
                *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), bytes));
                bytes
            }
        };
        Ok(bytes.min(self.size_bytes()?))
    }

    fn forget_size_in_use(&self) {
        *self.in_use.lock().unwrap_or_else(|p| p.into_inner()) = None;
        *self.file_size.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Rewrites the store into a fresh, packed file and swaps it in (etcd's `Defragment`), so
    /// the file shrinks to about [`Self::size_in_use`]. The data, revisions and metadata are
    /// unchanged, and everything committed so far, durable or not, is durable afterwards.
    ///
    /// Reads keep being served (from the old file) throughout; write batches wait until it
    /// returns — do not call it from the thread holding one. A crash at any point leaves the
    /// old file or the complete new one (see `defrag`). On error the old file stays in use.
    pub fn defragment(&self) -> Result<DefragReport, MvccError> {
        let size_before = self.size_bytes()?;
        // Held until the new file is in place: a commit to the old file after the copy began
        // would be lost with it.
        let (old, writer) = self.writer()?;
        let tmp = defrag::temp_path(&self.path);
        let rewritten = old
            .begin_read()
            .map_err(MvccError::from)
            .and_then(|source| defrag::rewrite(&source, &tmp, CACHE_BYTES, self.layer.as_ref()))
            .and_then(|fresh| defrag::replace(&tmp, &self.path).map(|()| fresh));
        let fresh = match rewritten {
            Ok(fresh) => fresh,
            Err(e) => {
                if let Err(cleanup) = std::fs::remove_file(&tmp) {
                    if cleanup.kind() != std::io::ErrorKind::NotFound {
                        return Err(MvccError::Storage(format!(
                            "{e}; removing {} also failed: {cleanup}",
                            tmp.display()
                        )));
                    }
                }
                return Err(e);
            }
        };
        *self.db.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
        // Dropping the writer aborts it: waiting writers now find the file replaced and move to
        // the new one. The old file is unlinked; it closes when its last reader is done, and
        // nothing it could still report matters to the store any more.
        drop(writer);
        self.forget_size_in_use();
        Ok(DefragReport {
            size_before,
            size_after: self.size_bytes()?,
        })
    }

    /// Every granted lease, by ascending id.
    pub fn leases(&self) -> Result<Vec<LeaseInfo>, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let leases = txn.open_table(LEASES)?;
        let mut out = Vec::new();
        for entry in leases.iter()? {
            let (id, ttl) = entry?;
            out.push(LeaseInfo {
                id: id.value(),
                ttl: ttl.value(),
            });
        }
        Ok(out)
    }

    /// Lease `id`, if granted.
    pub fn lease(&self, id: i64) -> Result<Option<LeaseInfo>, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let leases = txn.open_table(LEASES)?;
        Ok(leases.get(id)?.map(|ttl| LeaseInfo {
            id,
            ttl: ttl.value(),
        }))
    }

    /// Keys attached to lease `id`, ascending (empty if none or no such lease).
    pub fn lease_keys(&self, id: i64) -> Result<Vec<Vec<u8>>, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let lease_keys = txn.open_table(LEASE_KEYS)?;
        attached_keys(&lease_keys, id)
    }

    /// The lease `key` is attached to: `None` if the key does not exist, `Some(0)` if it has no
    /// lease.
    pub fn key_lease(&self, key: &[u8]) -> Result<Option<i64>, MvccError> {
        let db = self.database();
        let txn = db.begin_read()?;
        let live = txn.open_table(LIVE)?;
        let Some(value) = live.get(key)? else {
            return Ok(None);
        };
        Ok(Some(decode_kv(value.value())?.lease))
    }
}

// The store is shared between the apply loop, readers and the watch hub.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Mvcc>();
};

fn read_revisions(txn: &ReadTransaction) -> Result<(i64, i64), MvccError> {
    let state = txn.open_table(STATE)?;
    let current = state
        .get(STATE_CURRENT)?
        .map_or(INITIAL_REVISION, |v| v.value());
    let compact = state
        .get(STATE_COMPACT)?
        .map_or(NEVER_COMPACTED, |v| v.value());
    Ok((current, compact))
}

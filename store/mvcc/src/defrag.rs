//! Defragmentation (etcd's `Defragment`): the store is rewritten into a fresh file, which then
//! replaces the old one.
//!
//! redb reuses freed pages but never gives them back to the file system by itself, so after a
//! large delete and a compaction the file keeps its size. redb's own `Database::compact` needs
//! the database to itself (no live read transaction anywhere), which would stall every reader
//! of the member for as long as it runs. Rewriting instead lets readers go on reading the old
//! file while the new one is built; only commits wait (see [`crate::Mvcc::defragment`]).
//!
//! The steps, and why a crash at any point loses nothing:
//! 1. `<file>.defrag` is created and every table is copied into it verbatim, from one read
//!    transaction, while the caller holds the old file's writer so no commit lands in the old
//!    file meanwhile. A crash here leaves a partial `<file>.defrag`, which [`remove_leftover`]
//!    deletes when the store is next opened; the old file is untouched.
//! 2. The copy is committed durably, packed (redb's `compact`, cheap on a private file that
//!    nothing else reads), and fsynced.
//! 3. `<file>.defrag` is renamed over `<file>` and the directory is fsynced. The rename is
//!    atomic: after a crash the path names either the old file (with the leftover copy beside
//!    it, deleted on open) or the complete new one, which holds everything the old one held,
//!    non-durable commits included.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use redb::{
    Database, Durability, Key, ReadTransaction, ReadableTable, ReadableTableMetadata,
    TableDefinition, TableHandle, Value,
};

use crate::backend::BackendLayer;
use crate::error::MvccError;
use crate::format::{HISTORY, INDEX, LEASES, LEASE_KEYS, LIVE, META, STATE};

/// Entries copied per (non-durable) write transaction of the new file: bounds the memory one
/// transaction holds however large the store is.
const COPY_CHUNK: u64 = 16 * 1024;

/// What a defragmentation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefragReport {
    /// File size before, in bytes.
    pub size_before: u64,
    /// File size after, in bytes.
    pub size_after: u64,
}

/// Where the new file is built: the store's file name with `.defrag` appended.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".defrag");
    path.with_file_name(name)
}

/// Deletes the partial copy an interrupted defragmentation left beside `path`, if any.
pub(crate) fn remove_leftover(path: &Path) -> Result<(), MvccError> {
    match fs::remove_file(temp_path(path)) {
        Ok(()) => {
            sync_parent(path)?;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Builds the packed copy of everything `source` sees in a new file at `tmp`, durably.
pub(crate) fn rewrite(
    source: &ReadTransaction,
    tmp: &Path,
    cache_bytes: usize,
    layer: Option<&BackendLayer>,
) -> Result<Database, MvccError> {
    if tmp.exists() {
        fs::remove_file(tmp)?;
    }
    let mut fresh =
        crate::backend::open(redb::Builder::new().set_cache_size(cache_bytes), tmp, layer)?;
    copy_table(source, &fresh, STATE)?;
    copy_table(source, &fresh, META)?;
    copy_table(source, &fresh, LEASES)?;
    copy_table(source, &fresh, LEASE_KEYS)?;
    copy_table(source, &fresh, LIVE)?;
    copy_table(source, &fresh, INDEX)?;
    copy_table(source, &fresh, HISTORY)?;
    let mut last = fresh.begin_write()?;
    last.set_durability(Durability::Immediate)?;
    last.commit()?;
    // Copying in several transactions leaves pages freed by the earlier ones behind; nothing
    // else has this file open, so redb can move the live pages down and truncate the tail.
    fresh.compact()?;
    File::open(tmp)?.sync_all()?;
    Ok(fresh)
}

/// Copies one table, in chunks of [`COPY_CHUNK`] entries; fails if the copy does not hold as
/// many entries as the source.
fn copy_table<K: Key + 'static, V: Value + 'static>(
    source: &ReadTransaction,
    dest: &Database,
    table: TableDefinition<K, V>,
) -> Result<(), MvccError> {
    let from = source.open_table(table)?;
    let mut entries = from.iter()?;
    let mut copied = 0u64;
    loop {
        let mut txn = dest.begin_write()?;
        txn.set_durability(Durability::None)?;
        let mut in_chunk = 0u64;
        {
            // Opening creates the table, so an empty one exists in the copy too.
            let mut to = txn.open_table(table)?;
            while in_chunk < COPY_CHUNK {
                let Some(entry) = entries.next() else {
                    break;
                };
                let (k, v) = entry?;
                to.insert(k.value(), v.value())?;
                in_chunk += 1;
            }
        }
        txn.commit()?;
        copied += in_chunk;
        if in_chunk < COPY_CHUNK {
            break;
        }
    }
    let expected = from.len()?;
    if copied != expected {
        return Err(MvccError::Internal(format!(
            "defragmentation copied {copied} of {expected} entries of table {}",
            table.name()
        )));
    }
    Ok(())
}

/// Puts `tmp` in place of `path` atomically and durably.
pub(crate) fn replace(tmp: &Path, path: &Path) -> Result<(), MvccError> {
    fs::rename(tmp, path)?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), MvccError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Bytes of pages the tables of `txn` occupy (data, b-tree structure and the unused room
/// inside those pages): etcd's "size in use", as opposed to the file's size, which also
/// counts free pages.
pub(crate) fn bytes_in_use(txn: &ReadTransaction) -> Result<u64, MvccError> {
    fn of<K: Key + 'static, V: Value + 'static>(
        txn: &ReadTransaction,
        table: TableDefinition<K, V>,
    ) -> Result<u64, MvccError> {
        let s = txn.open_table(table)?.stats()?;
        Ok(s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes())
    }
    Ok(of(txn, STATE)?
        + of(txn, META)?
        + of(txn, LEASES)?
        + of(txn, LEASE_KEYS)?
        + of(txn, LIVE)?
        + of(txn, INDEX)?
        + of(txn, HISTORY)?)
}

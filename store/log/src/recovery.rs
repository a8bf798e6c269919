//! Rebuilds the in-memory view from the segment files on open, checking every record.
//!
//! Rules, in the order they are applied:
//! * Segments are read in id order. Each header must be valid and name the same first index as
//!   the file. The last segment may have a damaged header if nothing follows it (its creation was
//!   torn: the writer syncs a new segment's header before writing records into it); it is removed,
//!   but only if its name continues the log as the next rule says — otherwise the segments
//!   before it lost data.
//! * Each segment must start at the index following the previous segment's last entry (at the
//!   previous segment's own id if that one holds no entry), and its entries must carry
//!   consecutive indexes. The one exception is a hole below the purge point: a purge whose
//!   deletions a crash interrupted. A zero length field ends a segment's data and everything
//!   after it must be zero.
//! * A torn or damaged record (short frame, checksum mismatch) or stray bytes after the end are a
//!   torn tail when in the last segment: the segment is cut there (the rest zeroed, so that later
//!   appends can never be followed by stale records) with a warning. Anywhere else they are an
//!   error: the writer syncs a segment completely before it writes into the next one, so only
//!   the last segment can hold an unacknowledged, half-written tail.
//! * A checksummed record that makes no sense (unknown kind, out-of-order index) is an error
//!   everywhere: it was written deliberately and cutting it could drop acknowledged data.
//! * Entries at or below the purge point are dropped; segments left without live entries are
//!   deleted (leftovers of a purge interrupted by a crash), except an empty tail named by the
//!   next index (or, in a log with no entries and no purge point, naming it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::error::LogError;
use crate::format::{
    self, decode_record, decode_segment_header, Decoded, HeaderError, SEGMENT_HEADER_LEN,
};
use crate::fs::{FileSystem, LogFile};
use crate::index::Loc;
use crate::meta::{MetaStore, PURGED_META};
use crate::segment::SegInfo;

pub(crate) struct Recovered {
    pub purged: Option<u64>,
    /// Index of `locs[0]` (meaningless when `locs` is empty).
    pub first: u64,
    pub locs: Vec<Loc>,
    /// The index the next append must carry when `locs` is empty; `None`: any.
    pub empty_next: Option<u64>,
    pub segments: BTreeMap<u64, SegInfo>,
    pub files: BTreeMap<u64, Arc<dyn LogFile>>,
}

/// Contiguous entries seen so far, before the purge point is applied.
#[derive(Default)]
struct Entries {
    first: u64,
    locs: Vec<Loc>,
}

impl Entries {
    fn last(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }

    fn push(&mut self, index: u64, loc: Loc) {
        if self.locs.is_empty() {
            self.first = index;
        }
        self.locs.push(loc);
    }

    fn purge_to(&mut self, index: u64) {
        let drop = index
            .saturating_add(1)
            .saturating_sub(self.first)
            .min(self.locs.len() as u64);
        self.locs.drain(..drop as usize);
        self.first += drop;
    }
}

struct Scanned {
    id: u64,
    info: SegInfo,
    file: Arc<dyn LogFile>,
}

pub(crate) fn recover(
    fs: &dyn FileSystem,
    dir: &Path,
    meta: &MetaStore,
    names: &[String],
) -> Result<Recovered, LogError> {
    let purged = read_purge_point(dir, meta)?;
    let mut ids: Vec<u64> = names
        .iter()
        .filter_map(|name| format::parse_segment_file_name(name))
        .collect();
    ids.sort_unstable();

    let mut entries = Entries::default();
    let mut scanned: Vec<Scanned> = Vec::with_capacity(ids.len());
    for (n, &id) in ids.iter().enumerate() {
        let is_last = n + 1 == ids.len();
        // Where the segments so far say the log continues: after the last entry of the previous
        // segment, or at its own id if it holds none.
        let continues_at = scanned.last().map(|prev| match prev.info.end {
            SEGMENT_HEADER_LEN => prev.id,
            _ => entries.last().map_or(prev.id, |last| last + 1),
        });
        let segment = scan_segment(fs, dir, id, is_last, purged, continues_at, &mut entries)?;
        if let Some(segment) = segment {
            scanned.push(segment);
        }
    }
    if let Some(p) = purged {
        entries.purge_to(p);
    }

    // Delete segments without live entries; `locs` is sorted by segment.
    let mut next_index = entries
        .last()
        .map(|last| last.saturating_add(1))
        .or(purged.map(|p| p.saturating_add(1)));
    let mut live = entries.locs.iter().map(|loc| loc.segment).peekable();
    let count = scanned.len();
    let mut segments = BTreeMap::new();
    let mut files = BTreeMap::new();
    for (n, segment) in scanned.into_iter().enumerate() {
        let mut has_live = false;
        while live.next_if(|&s| s <= segment.id).is_some() {
            has_live = true;
        }
        // An empty tail left by truncating everything also tells where the log continues.
        let empty_tail =
            !has_live && n + 1 == count && next_index.is_none_or(|next| next == segment.id);
        if empty_tail {
            next_index = Some(segment.id);
        }
        if has_live || empty_tail {
            segments.insert(segment.id, segment.info);
            files.insert(segment.id, segment.file);
        } else {
            // Not synced: if the removal is lost in a crash, the next recovery repeats it.
            let path = dir.join(format::segment_file_name(segment.id));
            tracing::info!(file = %path.display(), "removing segment without live entries");
            remove_if_present(fs, &path)?;
        }
    }

    Ok(Recovered {
        purged,
        first: entries.first,
        locs: entries.locs,
        empty_next: next_index,
        segments,
        files,
    })
}

fn read_purge_point(dir: &Path, meta: &MetaStore) -> Result<Option<u64>, LogError> {
    match meta.read(PURGED_META)? {
        None => Ok(None),
        Some(bytes) if bytes.len() == 8 => match format::read_u64(&bytes, 0) {
            point if point > format::MAX_INDEX => Err(LogError::corrupt(
                &dir.join(format::meta_file_name(PURGED_META)),
                format::META_HEADER_LEN as u64,
                format!("purge point {point} is beyond the largest index"),
            )),
            point => Ok(Some(point)),
        },
        Some(bytes) => Err(LogError::corrupt(
            &dir.join(format::meta_file_name(PURGED_META)),
            format::META_HEADER_LEN as u64,
            format!("purge point is {} bytes, expected 8", bytes.len()),
        )),
    }
}

/// Scans one segment into `entries`. `None` if it was a torn creation and has been removed.
/// `continues_at` is where the segments before it say the log continues (`None` for the first).
fn scan_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    id: u64,
    is_last: bool,
    purged: Option<u64>,
    continues_at: Option<u64>,
    entries: &mut Entries,
) -> Result<Option<Scanned>, LogError> {
    let path = dir.join(format::segment_file_name(id));
    let file = fs.open(&path).map_err(|e| LogError::io("open", &path, e))?;
    let size = file.size().map_err(|e| LogError::io("stat", &path, e))?;
    let mut data = vec![0u8; size as usize];
    file.read_exact_at(&mut data, 0)
        .map_err(|e| LogError::io("read", &path, e))?;

    match decode_segment_header(&data) {
        Ok(first) if first == id => {}
        Ok(first) => {
            return Err(LogError::corrupt(
                &path,
                12,
                format!("header names first index {first}, the file name {id}"),
            ))
        }
        Err(e @ HeaderError::UnsupportedVersion(_)) => {
            return Err(LogError::corrupt(&path, 8, e.describe()))
        }
        Err(e) if is_last && is_zero(data.get(SEGMENT_HEADER_LEN as usize..).unwrap_or(&[])) => {
            // The writer creates a segment only after the one before it is complete and
            // synced, and names it by the index the log continues at: a torn creation that does
            // not continue the log means the segments before it lost data.
            check_continuity(&path, id, continues_at, purged)?;
            tracing::warn!(
                file = %path.display(),
                offset = 0,
                reason = %e.describe(),
                "removing last segment whose creation was torn"
            );
            // Durably: were the file to come back after appends went into the segment before
            // it, its name would no longer continue the log.
            remove_if_present(fs, &path)?;
            fs.sync_dir(dir)
                .map_err(|e| LogError::io("fsync directory", dir, e))?;
            return Ok(None);
        }
        Err(e) => return Err(LogError::corrupt(&path, 0, e.describe())),
    }

    if check_continuity(&path, id, continues_at, purged)? == Continuity::HoleBelowPurge {
        *entries = Entries::default();
    }

    let mut expected = id;
    let mut pos = SEGMENT_HEADER_LEN as usize;
    let mut damage = None;
    loop {
        match decode_record(&data[pos..]) {
            Ok(Decoded::End) => break,
            Ok(Decoded::Entry { index, data, len }) => {
                if index > format::MAX_INDEX {
                    return Err(LogError::corrupt(
                        &path,
                        pos as u64,
                        format!("entry {index} is beyond the largest index"),
                    ));
                }
                if index != expected {
                    return Err(LogError::corrupt(
                        &path,
                        pos as u64,
                        format!("entry {index} where entry {expected} was expected"),
                    ));
                }
                entries.push(
                    index,
                    Loc {
                        segment: id,
                        offset: pos as u64,
                        len: data.len() as u32,
                    },
                );
                expected = expected.saturating_add(1);
                pos += len as usize;
            }
            Err(e) if e.is_torn_write() => {
                damage = Some(e.describe());
                break;
            }
            Err(e) => return Err(LogError::corrupt(&path, pos as u64, e.describe())),
        }
    }
    if damage.is_none() {
        if let Some(stray) = data[pos..].iter().position(|&b| b != 0) {
            damage = Some(format!(
                "non-zero bytes at offset {} after the end of the records",
                pos + stray
            ));
        }
    }
    if let Some(reason) = damage {
        if !is_last {
            return Err(LogError::corrupt(&path, pos as u64, reason));
        }
        tracing::warn!(
            file = %path.display(),
            offset = pos,
            reason = %reason,
            "truncating torn tail of the last segment"
        );
        cut_tail(&*file, &path, pos as u64, size)?;
    }

    Ok(Some(Scanned {
        id,
        info: SegInfo {
            size,
            end: pos as u64,
        },
        file,
    }))
}

#[derive(Debug, PartialEq, Eq)]
enum Continuity {
    Continues,
    /// A hole below the purge point: a purge whose deletions a crash interrupted.
    HoleBelowPurge,
}

/// Segment `id` must start where the segments before it say the log continues, or, with no
/// segment before it, no later than just past the purge point.
fn check_continuity(
    path: &Path,
    id: u64,
    continues_at: Option<u64>,
    purged: Option<u64>,
) -> Result<Continuity, LogError> {
    let purged_next = purged.map(|p| p.saturating_add(1));
    match continues_at {
        Some(next) if id == next => Ok(Continuity::Continues),
        _ if purged_next.is_some_and(|next| id <= next) => Ok(Continuity::HoleBelowPurge),
        Some(next) => Err(LogError::corrupt(
            path,
            12,
            format!("segment starts at index {id} but the log before it continues at {next}"),
        )),
        None => match purged_next {
            Some(next) => Err(LogError::corrupt(
                path,
                12,
                format!(
                    "first segment starts at index {id} but the log is purged only up to {}",
                    next - 1
                ),
            )),
            None => Ok(Continuity::Continues),
        },
    }
}

/// Zeroes `[end, size)` durably by cutting the file and growing it back.
fn cut_tail(file: &dyn LogFile, path: &Path, end: u64, size: u64) -> Result<(), LogError> {
    file.set_len(end)
        .and_then(|()| file.set_len(size))
        .map_err(|e| LogError::io("truncate", path, e))?;
    file.sync_data()
        .map_err(|e| LogError::io("fdatasync", path, e))
}

fn remove_if_present(fs: &dyn FileSystem, path: &Path) -> Result<(), LogError> {
    match fs.remove(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LogError::io("remove", path, e)),
        _ => Ok(()),
    }
}

fn is_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

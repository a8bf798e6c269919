//! The Compaction request: forget history no read at or above the compact revision can need.
//!
//! etcd semantics: compacting at or below the current compact revision fails with `Compacted`,
//! above the current revision with `FutureRevision`; compaction takes no revision, and its header
//! carries the current revision. For each key, the newest change at or below the compact
//! revision is kept unless it is a tombstone, and every older change is dropped (etcd's
//! `keyIndex.compact`), so reads at any revision `>= compact` are unaffected.
//!
//! Unlike etcd, which answers first and deletes in the background, the deletion happens inside
//! the applying transaction; it walks `INDEX` in chunks so memory stays bounded.

use cairn_proto::etcdserverpb::{CompactionRequest, CompactionResponse, ResponseHeader};
use redb::{ReadableTable, Table};

use crate::error::MvccError;
use crate::format::{Bytes, IndexKey, RevKey, KIND_TOMBSTONE};
use crate::revision::to_key;
use crate::writer::KvWriter;

/// Index entries dropped per pass over `INDEX`.
const CHUNK: usize = 4096;

/// Applies a Compaction request.
pub(crate) fn apply(
    w: &mut KvWriter<'_>,
    req: &CompactionRequest,
) -> Result<CompactionResponse, MvccError> {
    if req.revision <= w.compact {
        return Err(MvccError::Compacted);
    }
    if req.revision > w.rev() {
        return Err(MvccError::FutureRevision);
    }
    drop_history(&mut w.index, &mut w.history, to_key(req.revision))?;
    w.compact = req.revision;
    Ok(CompactionResponse {
        header: Some(ResponseHeader {
            revision: w.rev(),
            ..ResponseHeader::default()
        }),
    })
}

/// Drops from `INDEX` and `HISTORY` every change not needed for reads at revisions `>= at`.
fn drop_history(
    index: &mut Table<'_, IndexKey, u8>,
    history: &mut Table<'_, RevKey, Bytes>,
    at: u64,
) -> Result<(), MvccError> {
    let mut resume: Option<Vec<u8>> = None;
    loop {
        let (doomed, next) = find_droppable(index, at, resume.as_deref())?;
        for (key, main, sub) in &doomed {
            index.remove((key.as_slice(), *main, *sub))?;
            history.remove((*main, *sub))?;
        }
        match next {
            Some(key) => resume = Some(key),
            None => return Ok(()),
        }
    }
}

type Doomed = Vec<(Vec<u8>, u64, u64)>;

/// Collects droppable entries of whole keys starting at `from`, stopping at a key boundary once
/// [`CHUNK`] entries are collected; returns them and the key to resume at, if any.
fn find_droppable(
    index: &Table<'_, IndexKey, u8>,
    at: u64,
    from: Option<&[u8]>,
) -> Result<(Doomed, Option<Vec<u8>>), MvccError> {
    let mut doomed: Doomed = Vec::new();
    let start: (&[u8], u64, u64) = (from.unwrap_or(&[]), 0, 0);
    let mut key_buf: Vec<u8> = Vec::new();
    let mut have_key = false;
    // Newest change at or below `at` of the key being walked: (main, sub, kind).
    let mut newest: Option<(u64, u64, u8)> = None;
    for entry in index.range::<(&[u8], u64, u64)>(start..)? {
        let (entry_key, kind) = entry?;
        let (key, main, sub) = entry_key.value();
        if !have_key || key != key_buf.as_slice() {
            if let Some((m, s, KIND_TOMBSTONE)) = newest {
                doomed.push((key_buf.clone(), m, s));
            }
            if doomed.len() >= CHUNK {
                return Ok((doomed, Some(key.to_vec())));
            }
            key_buf.clear();
            key_buf.extend_from_slice(key);
            have_key = true;
            newest = None;
        }
        if main <= at {
            if let Some((m, s, _)) = newest {
                doomed.push((key_buf.clone(), m, s));
            }
            newest = Some((main, sub, kind.value()));
        }
    }
    if let Some((m, s, KIND_TOMBSTONE)) = newest {
        doomed.push((key_buf, m, s));
    }
    Ok((doomed, None))
}

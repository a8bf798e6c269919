//! HashKV: a checksum of the key-value history up to a revision, equal on every member that
//! applied the same commands, so divergence can be detected.
//!
//! The algorithm is etcd 3.5's `unsafeHashByRev`, so with the same history and compactions the
//! hash equals a real etcd's: CRC-32C (Castagnoli) over the bucket name `key`, then, for every
//! history entry with main revision `<= rev` in revision order, etcd's backend key (main u64 BE,
//! `_`, sub u64 BE, plus `t` for a tombstone) followed by the marshalled `KeyValue`. Entries at or
//! below the compact revision count only if they are still the newest version of their key at
//! `rev` (etcd's `kvindex.Keep(rev)`), unless that keep set is empty — etcd's quirk, reproduced.

use std::collections::HashSet;

use redb::ReadableTable;

use crate::error::MvccError;
use crate::format::{split_change, Bytes, IndexKey, RevKey, KIND_PUT, KIND_TOMBSTONE};
use crate::revision::to_key;
use crate::view::KvView;

/// Result of [`crate::Mvcc::hash_kv`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C of the history up to `hash_revision`.
    pub hash: u32,
    /// Compact revision at the time of hashing (-1 if never compacted).
    pub compact_revision: i64,
    /// Revision the hash covers (the current revision when 0 was asked for).
    pub hash_revision: i64,
    /// Store revision when hashing; etcd puts it in the response header.
    pub current_revision: i64,
}

pub(crate) fn hash_kv<L, I, H>(view: &KvView<'_, L, I, H>, rev: i64) -> Result<KvHash, MvccError>
where
    L: ReadableTable<Bytes, Bytes>,
    I: ReadableTable<IndexKey, u8>,
    H: ReadableTable<RevKey, Bytes>,
{
    let (current, compact) = (view.current, view.compact);
    if rev > 0 && rev < compact {
        return Err(MvccError::Compacted);
    }
    if rev > current {
        return Err(MvccError::FutureRevision);
    }
    let rev = if rev == 0 { current } else { rev };
    let mut result = KvHash {
        hash: 0,
        compact_revision: compact,
        hash_revision: rev,
        current_revision: current,
    };
    let mut crc = Crc32c::new();
    crc.update(b"key");
    if rev < 1 {
        result.hash = crc.finish();
        return Ok(result);
    }
    let upto = to_key(rev);

    let (keep, keep_is_empty) = if compact >= 1 {
        keep_at(view.index, upto, to_key(compact))?
    } else {
        (HashSet::new(), true)
    };

    let mut backend_key = [0u8; 18];
    for entry in view.history.range::<(u64, u64)>(..=(upto, u64::MAX))? {
        let (at, value) = entry?;
        let (main, sub) = at.value();
        if i64::try_from(main).unwrap_or(i64::MAX) <= compact
            && !keep_is_empty
            && !keep.contains(&(main, sub))
        {
            continue;
        }
        let (kind, kv) = split_change(value.value())?;
        backend_key[..8].copy_from_slice(&main.to_be_bytes());
        backend_key[8] = b'_';
        backend_key[9..17].copy_from_slice(&sub.to_be_bytes());
        let key_len = if kind == KIND_TOMBSTONE {
            backend_key[17] = b't';
            18
        } else {
            17
        };
        crc.update(&backend_key[..key_len]);
        crc.update(kv);
    }
    result.hash = crc.finish();
    Ok(result)
}

/// etcd's `Keep(rev)`, restricted to entries at or below `compact` (the only ones it filters):
/// per key, the newest change at or below `rev` if it is a put. Also reports whether the full
/// keep set (any revision) is empty.
fn keep_at<I>(index: &I, rev: u64, compact: u64) -> Result<(HashSet<RevKey>, bool), MvccError>
where
    I: ReadableTable<IndexKey, u8>,
{
    let mut keep = HashSet::new();
    let mut any = false;
    let mut key_buf: Vec<u8> = Vec::new();
    let mut have_key = false;
    let mut newest: Option<(u64, u64, u8)> = None;
    let mut flush = |newest: Option<(u64, u64, u8)>| {
        if let Some((m, s, KIND_PUT)) = newest {
            any = true;
            if m <= compact {
                keep.insert((m, s));
            }
        }
    };
    for entry in index.iter()? {
        let (k, kind) = entry?;
        let (key, main, sub) = k.value();
        if !have_key || key != key_buf.as_slice() {
            flush(newest.take());
            key_buf.clear();
            key_buf.extend_from_slice(key);
            have_key = true;
        }
        if main <= rev {
            newest = Some((main, sub, kind.value()));
        }
    }
    flush(newest);
    Ok((keep, !any))
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Go's `crc32.MakeTable(Castagnoli)`.
pub(crate) struct Crc32c(u32);

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

impl Crc32c {
    pub(crate) fn new() -> Self {
        Crc32c(!0)
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut c = self.0;
        for &b in bytes {
            c = CRC32C_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
        }
        self.0 = c;
    }

    pub(crate) fn finish(&self) -> u32 {
        !self.0
    }
}

#[cfg(test)]
mod tests {
    use super::Crc32c;

    #[test]
    fn crc32c_check_value() {
        let mut crc = Crc32c::new();
        crc.update(b"1234");
        crc.update(b"56789");
        assert_eq!(crc.finish(), 0xE306_9283);
    }
}

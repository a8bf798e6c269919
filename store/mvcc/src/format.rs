//! Everything that reaches the disk, byte for byte: the redb tables, the encoding of their values,
//! and the framing of snapshot images. `docs/mvcc-format.md` mirrors this file; change both
//! together and bump [`FORMAT_VERSION`] when an existing reader would misread the new bytes.
//!
//! Invariants the rest of the crate relies on:
//! * `HISTORY` holds every retained change, keyed by `(main, sub)` revision; `INDEX` holds exactly
//!   one `(key, main, sub)` entry per `HISTORY` entry, with the same kind.
//! * `LIVE` holds, for every key whose newest `HISTORY` entry is a put, that put's `KeyValue`; no
//!   other key.
//! * `LEASE_KEYS` holds `(lease, key)` for every `LIVE` key with a non-zero lease, and nothing else.
//! * `STATE` holds the current and compacted revisions, written in the same redb transaction as
//!   the changes they describe.

use cairn_proto::mvccpb::KeyValue;
use prost::Message;
use redb::TableDefinition;

use crate::error::MvccError;

/// Version of the table layout and of the snapshot image; stored in `STATE` under
/// `format_version` and in every snapshot header.
pub const FORMAT_VERSION: u32 = 1;

/// A key or value stored as raw bytes.
pub(crate) type Bytes = &'static [u8];
/// `(main revision, sub revision)`, the key of `HISTORY`.
pub(crate) type RevKey = (u64, u64);
/// `(user key, main revision, sub revision)`, the key of `INDEX`.
pub(crate) type IndexKey = (&'static [u8], u64, u64);
/// `(lease id, user key)`, the key of `LEASE_KEYS`.
pub(crate) type LeaseKey = (i64, &'static [u8]);

/// Every change ever applied and not yet compacted: `(main, sub)` -> [`encode_change`] bytes.
pub(crate) const HISTORY: TableDefinition<RevKey, Bytes> = TableDefinition::new("kv_history");
/// Per-key revision list: `(key, main, sub)` -> [`KIND_PUT`] or [`KIND_TOMBSTONE`].
pub(crate) const INDEX: TableDefinition<IndexKey, u8> = TableDefinition::new("kv_index");
/// Current value of every existing key: key -> prost-encoded `mvccpb.KeyValue`.
pub(crate) const LIVE: TableDefinition<Bytes, Bytes> = TableDefinition::new("kv_live");
/// Granted leases: lease id -> TTL in seconds, as granted.
pub(crate) const LEASES: TableDefinition<i64, i64> = TableDefinition::new("lease");
/// Keys attached to each lease: `(lease id, key)` -> `()`.
pub(crate) const LEASE_KEYS: TableDefinition<LeaseKey, ()> = TableDefinition::new("lease_key");
/// Opaque metadata of the caller (applied log id, membership, ...): name -> bytes.
pub(crate) const META: TableDefinition<&str, Bytes> = TableDefinition::new("meta");
/// The store's own counters: name -> i64.
pub(crate) const STATE: TableDefinition<&str, i64> = TableDefinition::new("mvcc_state");

/// `STATE` entry: the layout version the file was written with.
pub(crate) const STATE_FORMAT_VERSION: &str = "format_version";
/// `STATE` entry: the store revision (revision of the newest change; 1 on an empty store).
pub(crate) const STATE_CURRENT: &str = "current_revision";
/// `STATE` entry: the revision of the last compaction; -1 if the store was never compacted.
pub(crate) const STATE_COMPACT: &str = "compact_revision";

/// First byte of a `HISTORY` value and the whole `INDEX` value: the change wrote a value.
pub(crate) const KIND_PUT: u8 = 0;
/// First byte of a `HISTORY` value and the whole `INDEX` value: the change deleted the key.
pub(crate) const KIND_TOMBSTONE: u8 = 1;

/// Encodes a `HISTORY` value: the kind byte, then the prost-encoded `KeyValue` (for a tombstone,
/// a `KeyValue` holding only the key, as etcd stores it). Reuses `buf`.
pub(crate) fn encode_change(buf: &mut Vec<u8>, kind: u8, kv: &KeyValue) {
    buf.clear();
    buf.reserve(1 + kv.encoded_len());
    buf.push(kind);
    // Encoding into a Vec cannot fail: it grows as needed.
    kv.encode(buf).expect("encoding into a Vec cannot fail");
}

/// Splits a `HISTORY` value into its kind and its prost-encoded `KeyValue`.
pub(crate) fn split_change(bytes: &[u8]) -> Result<(u8, &[u8]), MvccError> {
    match bytes.split_first() {
        Some((&kind, rest)) if kind == KIND_PUT || kind == KIND_TOMBSTONE => Ok((kind, rest)),
        _ => Err(MvccError::Corrupted(
            "history record has no valid kind byte".into(),
        )),
    }
}

/// Decodes a prost-encoded `KeyValue` read from `LIVE` or `HISTORY`.
pub(crate) fn decode_kv(bytes: &[u8]) -> Result<KeyValue, MvccError> {
    KeyValue::decode(bytes).map_err(|e| MvccError::Corrupted(format!("bad KeyValue record: {e}")))
}

/// Encodes a `KeyValue` for `LIVE`, reusing `buf`.
pub(crate) fn encode_kv(buf: &mut Vec<u8>, kv: &KeyValue) {
    buf.clear();
    buf.reserve(kv.encoded_len());
    kv.encode(buf).expect("encoding into a Vec cannot fail");
}

/// Snapshot images start with these 8 bytes.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"CAIRNMVC";

/// Snapshot record tags. Each record is `tag u8 | key_len u32 LE | key | value_len u32 LE | value`,
/// except the trailer ([`record::END`]).
pub(crate) mod record {
    /// `STATE` entry: key = UTF-8 name, value = i64 little-endian.
    pub(crate) const STATE: u8 = 1;
    /// `META` entry: key = UTF-8 name, value = raw bytes.
    pub(crate) const META: u8 = 2;
    /// `LEASES` entry: key = lease id i64 LE, value = TTL i64 LE.
    pub(crate) const LEASE: u8 = 3;
    /// `HISTORY` entry: key = main u64 BE then sub u64 BE, value = the `HISTORY` value as stored.
    /// History records appear in strictly ascending revision order.
    pub(crate) const HISTORY: u8 = 4;
    /// Trailer, not a generic record: `0xFF | record_count u64 LE | crc32 u32 LE`, where the count
    /// is the number of records before the trailer and the CRC-32 (IEEE, `crc32fast`) covers every
    /// byte of the image before the CRC field itself.
    pub(crate) const END: u8 = 0xFF;
}

/// A single snapshot record key or value may not exceed this many bytes; bounds what a corrupt
/// length field can make the reader allocate.
pub(crate) const MAX_RECORD_PART: u32 = 256 << 20;

/// The key of a prost-encoded `KeyValue` without decoding the rest: prost writes fields in tag
/// order, so a non-empty key is the leading field 1 (`0x0A`, varint length, bytes). `None` if the
/// bytes do not start that way (the caller then decodes fully).
pub(crate) fn peek_key(encoded: &[u8]) -> Option<&[u8]> {
    let (&tag, mut rest) = encoded.split_first()?;
    if tag != 0x0A {
        return None;
    }
    let mut len: u64 = 0;
    let mut shift = 0u32;
    loop {
        let (&b, tail) = rest.split_first()?;
        rest = tail;
        len |= u64::from(b & 0x7F).checked_shl(shift)?;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    rest.get(..usize::try_from(len).ok()?)
}

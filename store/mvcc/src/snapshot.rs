//! Snapshot images: a consistent copy of the whole state machine (key-value history, leases,
//! revisions and the caller's metadata) in the framed format of [`crate::format`].
//!
//! Only primary data is written; `INDEX`, `LIVE` and `LEASE_KEYS` are derived from `HISTORY` on
//! install, so an image cannot carry an inconsistent index. Installing replaces every table in
//! one durable redb transaction: a malformed or truncated image (checked by the trailing CRC)
//! aborts that transaction and leaves the store as it was.

use std::collections::BTreeMap;
use std::io::{self, BufReader, BufWriter, Read, Write};

use redb::{ReadTransaction, ReadableTable, WriteTransaction};

use crate::error::MvccError;
use crate::format::{
    decode_kv, record, split_change, FORMAT_VERSION, HISTORY, INDEX, KIND_PUT, LEASES, LEASE_KEYS,
    LIVE, MAX_RECORD_PART, META, SNAPSHOT_MAGIC, STATE, STATE_COMPACT, STATE_CURRENT,
    STATE_FORMAT_VERSION,
};

/// What an image holds, besides the key-value data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Store revision of the image.
    pub current_revision: i64,
    /// Compact revision of the image (-1 if never compacted).
    pub compact_revision: i64,
    /// The caller's metadata (see [`crate::WriteBatch::set_meta`]) as of the image.
    pub meta: BTreeMap<String, Vec<u8>>,
    /// Size of the image in bytes.
    pub size: u64,
}

/// A snapshot image held in memory.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The framed image, as documented in `docs/mvcc-format.md`.
    pub image: Vec<u8>,
    /// What the image holds.
    pub info: SnapshotInfo,
}

/// Counts and checksums everything written through it.
struct FramedWriter<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    records: u64,
    size: u64,
}

impl<W: Write> FramedWriter<W> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.crc.update(bytes);
        self.size += bytes.len() as u64;
        self.out.write_all(bytes)
    }

    fn record(&mut self, tag: u8, key: &[u8], value: &[u8]) -> Result<(), MvccError> {
        let key_len = part_len(key)?;
        let value_len = part_len(value)?;
        self.raw(&[tag])?;
        self.raw(&key_len.to_le_bytes())?;
        self.raw(key)?;
        self.raw(&value_len.to_le_bytes())?;
        self.raw(value)?;
        self.records += 1;
        Ok(())
    }
}

fn part_len(bytes: &[u8]) -> Result<u32, MvccError> {
    u32::try_from(bytes.len())
        .ok()
        .filter(|&n| n <= MAX_RECORD_PART)
        .ok_or_else(|| MvccError::Storage(format!("record of {} bytes too large", bytes.len())))
}

/// Writes the image of the state seen by `txn` to `out`.
pub(crate) fn write_image<W: Write>(
    txn: &ReadTransaction,
    out: W,
) -> Result<SnapshotInfo, MvccError> {
    let mut w = FramedWriter {
        out: BufWriter::new(out),
        crc: crc32fast::Hasher::new(),
        records: 0,
        size: 0,
    };
    let mut info = SnapshotInfo::default();
    w.raw(&SNAPSHOT_MAGIC)?;
    w.raw(&FORMAT_VERSION.to_le_bytes())?;

    for entry in txn.open_table(STATE)?.iter()? {
        let (name, value) = entry?;
        match name.value() {
            STATE_CURRENT => info.current_revision = value.value(),
            STATE_COMPACT => info.compact_revision = value.value(),
            _ => {}
        }
        w.record(
            record::STATE,
            name.value().as_bytes(),
            &value.value().to_le_bytes(),
        )?;
    }
    for entry in txn.open_table(META)?.iter()? {
        let (name, value) = entry?;
        w.record(record::META, name.value().as_bytes(), value.value())?;
        info.meta
            .insert(name.value().to_owned(), value.value().to_vec());
    }
    for entry in txn.open_table(LEASES)?.iter()? {
        let (id, ttl) = entry?;
        w.record(
            record::LEASE,
            &id.value().to_le_bytes(),
            &ttl.value().to_le_bytes(),
        )?;
    }
    let mut rev_key = [0u8; 16];
    for entry in txn.open_table(HISTORY)?.iter()? {
        let (at, value) = entry?;
        let (main, sub) = at.value();
        rev_key[..8].copy_from_slice(&main.to_be_bytes());
        rev_key[8..].copy_from_slice(&sub.to_be_bytes());
        w.record(record::HISTORY, &rev_key, value.value())?;
    }

    let records = w.records;
    w.raw(&[record::END])?;
    w.raw(&records.to_le_bytes())?;
    let crc = w.crc.clone().finalize();
    w.raw(&crc.to_le_bytes())?;
    w.out.flush()?;
    info.size = w.size;
    Ok(info)
}

/// Checksums everything read through it.
struct FramedReader<R: Read> {
    input: R,
    crc: crc32fast::Hasher,
    size: u64,
}

impl<R: Read> FramedReader<R> {
    fn exact<const N: usize>(&mut self) -> Result<[u8; N], MvccError> {
        let mut buf = [0u8; N];
        self.input.read_exact(&mut buf).map_err(truncated)?;
        self.crc.update(&buf);
        self.size += N as u64;
        Ok(buf)
    }

    fn part(&mut self, buf: &mut Vec<u8>) -> Result<(), MvccError> {
        let len = u32::from_le_bytes(self.exact::<4>()?);
        if len > MAX_RECORD_PART {
            return Err(bad(format!("record part of {len} bytes exceeds the limit")));
        }
        buf.clear();
        // Read through `take` rather than preallocating, so a corrupt length cannot make us
        // allocate more than the image actually holds.
        (&mut self.input).take(u64::from(len)).read_to_end(buf)?;
        if buf.len() != len as usize {
            return Err(bad("image is truncated".to_owned()));
        }
        self.crc.update(buf);
        self.size += u64::from(len);
        Ok(())
    }
}

fn truncated(e: io::Error) -> MvccError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        bad("image is truncated".to_owned())
    } else {
        MvccError::from(e)
    }
}

fn bad(msg: String) -> MvccError {
    MvccError::BadSnapshot(msg)
}

fn i64_le(bytes: &[u8], what: &str) -> Result<i64, MvccError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| bad(format!("{what} is not 8 bytes")))?;
    Ok(i64::from_le_bytes(arr))
}

fn utf8<'b>(bytes: &'b [u8], what: &str) -> Result<&'b str, MvccError> {
    std::str::from_utf8(bytes).map_err(|_| bad(format!("{what} is not UTF-8")))
}

/// Replaces the whole database content with the image read from `input` in `txn`, and commits
/// it durably.
pub(crate) fn install_image<R: Read>(
    mut txn: WriteTransaction,
    input: R,
) -> Result<SnapshotInfo, MvccError> {
    // Deleting and recreating the tables (rather than clearing them) frees their pages at once.
    txn.delete_table(HISTORY)?;
    txn.delete_table(INDEX)?;
    txn.delete_table(LIVE)?;
    txn.delete_table(LEASES)?;
    txn.delete_table(LEASE_KEYS)?;
    txn.delete_table(META)?;
    txn.delete_table(STATE)?;
    let info = fill(&txn, input)?;
    txn.set_durability(redb::Durability::Immediate)?;
    txn.commit()?;
    Ok(info)
}

fn fill<R: Read>(txn: &WriteTransaction, input: R) -> Result<SnapshotInfo, MvccError> {
    let mut r = FramedReader {
        input: BufReader::new(input),
        crc: crc32fast::Hasher::new(),
        size: 0,
    };
    if r.exact::<8>()? != SNAPSHOT_MAGIC {
        return Err(bad("not a cairn mvcc snapshot (bad magic)".to_owned()));
    }
    let version = u32::from_le_bytes(r.exact::<4>()?);
    if version != FORMAT_VERSION {
        return Err(MvccError::UnsupportedFormat {
            found: version.into(),
            supported: FORMAT_VERSION,
        });
    }

    let mut state = txn.open_table(STATE)?;
    let mut meta = txn.open_table(META)?;
    let mut leases = txn.open_table(LEASES)?;
    let mut history = txn.open_table(HISTORY)?;
    let mut index = txn.open_table(INDEX)?;
    let mut live = txn.open_table(LIVE)?;
    let mut lease_keys = txn.open_table(LEASE_KEYS)?;

    let mut info = SnapshotInfo::default();
    let mut format_seen = false;
    let (mut current_seen, mut compact_seen) = (false, false);
    let mut last_rev: Option<(u64, u64)> = None;
    let mut records = 0u64;
    let (mut key, mut value) = (Vec::new(), Vec::new());
    loop {
        let [tag] = r.exact::<1>()?;
        if tag == record::END {
            break;
        }
        r.part(&mut key)?;
        r.part(&mut value)?;
        records += 1;
        match tag {
            record::STATE => {
                let name = utf8(&key, "state name")?;
                let v = i64_le(&value, "state value")?;
                match name {
                    STATE_FORMAT_VERSION => format_seen = v == i64::from(FORMAT_VERSION),
                    STATE_CURRENT => (info.current_revision, current_seen) = (v, true),
                    STATE_COMPACT => (info.compact_revision, compact_seen) = (v, true),
                    _ => {}
                }
                state.insert(name, v)?;
            }
            record::META => {
                let name = utf8(&key, "meta name")?;
                meta.insert(name, value.as_slice())?;
                info.meta.insert(name.to_owned(), value.clone());
            }
            record::LEASE => {
                leases.insert(i64_le(&key, "lease id")?, i64_le(&value, "lease ttl")?)?;
            }
            record::HISTORY => {
                let rev: [u8; 16] = key
                    .as_slice()
                    .try_into()
                    .map_err(|_| bad("history key is not 16 bytes".into()))?;
                let main = u64::from_be_bytes(rev[..8].try_into().unwrap_or_default());
                let sub = u64::from_be_bytes(rev[8..].try_into().unwrap_or_default());
                if last_rev.is_some_and(|last| last >= (main, sub)) {
                    return Err(bad(format!("history out of order at ({main}, {sub})")));
                }
                last_rev = Some((main, sub));
                let (kind, encoded) = split_change(&value).map_err(|e| bad(e.to_string()))?;
                let kv = decode_kv(encoded).map_err(|e| bad(e.to_string()))?;
                history.insert((main, sub), value.as_slice())?;
                index.insert((kv.key.as_slice(), main, sub), kind)?;
                // History is ascending, so the last change of each key decides LIVE.
                if kind == KIND_PUT {
                    live.insert(kv.key.as_slice(), encoded)?;
                } else {
                    live.remove(kv.key.as_slice())?;
                }
            }
            other => return Err(bad(format!("unknown record tag {other:#x}"))),
        }
    }
    let count = u64::from_le_bytes(r.exact::<8>()?);
    let expected = r.crc.clone().finalize();
    let mut crc = [0u8; 4];
    r.input.read_exact(&mut crc).map_err(truncated)?;
    r.size += 4;
    if u32::from_le_bytes(crc) != expected {
        return Err(bad("checksum mismatch".to_owned()));
    }
    if count != records {
        return Err(bad(format!(
            "trailer counts {count} records, image has {records}"
        )));
    }
    if !(format_seen && current_seen && compact_seen) {
        return Err(bad("image lacks the format version or revisions".to_owned()));
    }

    for entry in live.iter()? {
        let (key, value) = entry?;
        let kv = decode_kv(value.value())?;
        if kv.lease != 0 {
            lease_keys.insert((kv.lease, key.value()), ())?;
        }
    }
    info.size = r.size;
    Ok(info)
}

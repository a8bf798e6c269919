//! The on-disk format: file names, the segment header, record framing and the meta-file layout.
//!
//! Everything here is pure (no I/O) and mirrored byte by byte in `docs/log-format.md`; a change to
//! any constant or layout below is a format change and must bump [`FORMAT_VERSION`].
//!
//! All integers are little-endian. A record is `[len u32][crc32 u32][kind u8][payload]` where
//! `len` counts `kind + payload` and the CRC-32 (IEEE, `crc32fast`) covers the same bytes. A zero
//! `len` is where the data ends: segments are preallocated with zeros. Entries are the only kind of
//! record: a truncation cuts the tail segment physically, so no record ever voids another.

use std::ops::Range;

/// First eight bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNLOG";
/// First eight bytes of every meta file.
pub const META_MAGIC: [u8; 8] = *b"CAIRNMTA";
/// Version of both the segment and meta layouts.
pub const FORMAT_VERSION: u32 = 1;

/// Segment header: magic (8), version (4), first index (8), CRC-32 of the preceding 20 bytes (4).
pub const SEGMENT_HEADER_LEN: u64 = 24;
/// Record frame before the payload: len (4), crc (4), kind (1).
pub const FRAME_LEN: u64 = 9;
/// Meta header: magic (8), version (4), payload len (4), crc (4).
pub const META_HEADER_LEN: usize = 20;

/// Record kind: a log entry. Payload: index (u64) then the opaque entry bytes. Other values are
/// reserved for future versions and rejected.
pub const KIND_ENTRY: u8 = 1;

/// Largest entry payload whose record `len` (kind + index + payload) still fits in a u32.
pub const MAX_ENTRY_LEN: usize = u32::MAX as usize - 1 - 8;

/// Largest entry index (and purge point) a log holds, so that the index after the last entry
/// always exists. A record or purge point beyond it is corruption.
pub const MAX_INDEX: u64 = u64::MAX - 1;

const SEGMENT_SUFFIX: &str = ".log";
const SEGMENT_NAME_DIGITS: usize = 20;

/// `00000000000000000001.log`: the first index the segment holds, zero-padded so that the
/// lexicographic and numeric orders agree.
pub fn segment_file_name(first_index: u64) -> String {
    format!("{first_index:020}{SEGMENT_SUFFIX}")
}

/// Inverse of [`segment_file_name`]; `None` for any other file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != SEGMENT_NAME_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The durable file holding meta blob `name`.
pub fn meta_file_name(name: &str) -> String {
    format!("{name}.meta")
}

/// The scratch file a new value of `name` is written to before it is renamed over the real one.
pub fn meta_tmp_file_name(name: &str) -> String {
    format!("{name}{TMP_SUFFIX}")
}

/// Suffix of scratch files; any left over from a crash are deleted on open.
pub const TMP_SUFFIX: &str = ".meta.tmp";

/// Name of the lock file that keeps two `Log`s off one directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut header = [0u8; SEGMENT_HEADER_LEN as usize];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    header[12..20].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32fast::hash(&header[0..20]);
    header[20..24].copy_from_slice(&crc.to_le_bytes());
    header
}

/// Why a segment header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    Short,
    BadMagic,
    UnsupportedVersion(u32),
    BadChecksum,
}

impl HeaderError {
    pub fn describe(self) -> String {
        match self {
            HeaderError::Short => "file is shorter than a segment header".to_owned(),
            HeaderError::BadMagic => "bad segment magic".to_owned(),
            HeaderError::UnsupportedVersion(v) => {
                format!(
                    "unsupported segment format version {v} (this build reads {FORMAT_VERSION})"
                )
            }
            HeaderError::BadChecksum => "segment header checksum mismatch".to_owned(),
        }
    }
}

/// Returns the segment's first index.
pub fn decode_segment_header(bytes: &[u8]) -> Result<u64, HeaderError> {
    let header = bytes
        .get(..SEGMENT_HEADER_LEN as usize)
        .ok_or(HeaderError::Short)?;
    if header[0..8] != SEGMENT_MAGIC {
        return Err(HeaderError::BadMagic);
    }
    if crc32fast::hash(&header[0..20]) != read_u32(header, 20) {
        return Err(HeaderError::BadChecksum);
    }
    let version = read_u32(header, 8);
    if version != FORMAT_VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    Ok(read_u64(header, 12))
}

/// Total on-disk size of an entry record carrying `data_len` payload bytes.
pub const fn entry_record_len(data_len: usize) -> u64 {
    FRAME_LEN + 8 + data_len as u64
}

/// Appends an entry record to `buf`. The caller has checked `data.len() <= MAX_ENTRY_LEN`.
pub fn encode_entry(buf: &mut Vec<u8>, index: u64, data: &[u8]) {
    encode_record(buf, KIND_ENTRY, index, data);
}

fn encode_record(buf: &mut Vec<u8>, kind: u8, index: u64, data: &[u8]) {
    let len = 1 + 8 + data.len();
    debug_assert!(len <= u32::MAX as usize);
    buf.reserve(FRAME_LEN as usize + 8 + data.len());
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    let crc_at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    let body_at = buf.len();
    buf.push(kind);
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(data);
    let crc = crc32fast::hash(&buf[body_at..]);
    buf[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Result of looking at the bytes where the next record would start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A zero length field: the end of the written data.
    End,
    /// A valid entry record of `len` bytes (frame included); `data` is the payload's range
    /// within the slice given to [`decode_record`].
    Entry {
        index: u64,
        data: Range<usize>,
        len: u64,
    },
}

/// Why the bytes at a record position are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The frame or the payload runs past the end of the available bytes.
    Incomplete,
    BadChecksum,
    /// The checksum matched but the kind is not one this build knows.
    UnknownKind(u8),
    /// The checksum matched but the payload is too short for its kind.
    Malformed,
}

impl RecordError {
    pub fn describe(self) -> String {
        match self {
            RecordError::Incomplete => "record runs past the end of the file".to_owned(),
            RecordError::BadChecksum => "record checksum mismatch".to_owned(),
            RecordError::UnknownKind(k) => format!("unknown record kind {k}"),
            RecordError::Malformed => "record payload too short for its kind".to_owned(),
        }
    }

    /// Torn writes produce incomplete frames and checksum mismatches; a checksummed record of an
    /// unknown kind or shape was written deliberately (e.g. by a newer version) and is never
    /// cut away as a torn tail.
    pub fn is_torn_write(self) -> bool {
        matches!(self, RecordError::Incomplete | RecordError::BadChecksum)
    }
}

/// Decodes the record at the start of `buf`.
///
/// Fewer than four bytes left, or a zero length field, is [`Decoded::End`] when those bytes are
/// zero (preallocated space), [`RecordError::Incomplete`] otherwise.
pub fn decode_record(buf: &[u8]) -> Result<Decoded, RecordError> {
    if buf.len() < 4 {
        return if buf.iter().all(|&b| b == 0) {
            Ok(Decoded::End)
        } else {
            Err(RecordError::Incomplete)
        };
    }
    let len = read_u32(buf, 0) as usize;
    if len == 0 {
        return Ok(Decoded::End);
    }
    let total = FRAME_LEN as usize - 1 + len;
    if buf.len() < total {
        return Err(RecordError::Incomplete);
    }
    let body = &buf[8..total];
    if crc32fast::hash(body) != read_u32(buf, 4) {
        return Err(RecordError::BadChecksum);
    }
    match body[0] {
        KIND_ENTRY if body.len() >= 9 => Ok(Decoded::Entry {
            index: read_u64(body, 1),
            data: FRAME_LEN as usize + 8..total,
            len: total as u64,
        }),
        KIND_ENTRY => Err(RecordError::Malformed),
        other => Err(RecordError::UnknownKind(other)),
    }
}

/// Meta file: magic (8), version (4), payload len (4), CRC-32 over bytes 0..16 and the payload
/// (4), payload.
pub fn encode_meta(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(META_HEADER_LEN + payload.len());
    out.extend_from_slice(&META_MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[0..16]);
    hasher.update(payload);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Returns the payload, or the offset and reason of the first inconsistency.
pub fn decode_meta(bytes: &[u8]) -> Result<&[u8], (u64, String)> {
    if bytes.len() < META_HEADER_LEN {
        return Err((0, "file is shorter than a meta header".to_owned()));
    }
    if bytes[0..8] != META_MAGIC {
        return Err((0, "bad meta magic".to_owned()));
    }
    let version = read_u32(bytes, 8);
    if version != FORMAT_VERSION {
        return Err((8, format!("unsupported meta format version {version}")));
    }
    let len = read_u32(bytes, 12) as usize;
    let payload = &bytes[META_HEADER_LEN..];
    if payload.len() != len {
        return Err((
            12,
            format!(
                "meta payload length {len} does not match the {} bytes present",
                payload.len()
            ),
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[0..16]);
    hasher.update(payload);
    if hasher.finalize() != read_u32(bytes, 16) {
        return Err((16, "meta checksum mismatch".to_owned()));
    }
    Ok(payload)
}

pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut le = [0u8; 4];
    le.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(le)
}

pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_sort_numerically_and_round_trip() {
        assert_eq!(segment_file_name(1), "00000000000000000001.log");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.log");
        assert!(segment_file_name(9) < segment_file_name(10));
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_segment_file_name("0000000000000000001.log"), None);
        assert_eq!(parse_segment_file_name("0000000000000000000a.log"), None);
        assert_eq!(parse_segment_file_name("00000000000000000001.meta"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.log"), None);
    }

    #[test]
    fn header_round_trips_and_detects_damage() {
        let header = encode_segment_header(77);
        assert_eq!(decode_segment_header(&header), Ok(77));
        assert_eq!(
            decode_segment_header(&header[..23]),
            Err(HeaderError::Short)
        );
        let mut bad = header;
        bad[0] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadMagic));
        let mut bad = header;
        bad[13] ^= 1;
        assert_eq!(decode_segment_header(&bad), Err(HeaderError::BadChecksum));
    }

    #[test]
    fn records_round_trip() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 5, b"hello");
        encode_entry(&mut buf, 6, b"");
        assert_eq!(buf.len() as u64, entry_record_len(5) + entry_record_len(0));
        let Ok(Decoded::Entry { index, data, len }) = decode_record(&buf) else {
            panic!("entry did not decode");
        };
        assert_eq!(
            (index, &buf[data], len),
            (5, &b"hello"[..], entry_record_len(5))
        );
        assert_eq!(
            decode_record(&buf[len as usize..]),
            Ok(Decoded::Entry {
                index: 6,
                data: 17..17,
                len: entry_record_len(0)
            })
        );
        assert_eq!(decode_record(&[0; 16]), Ok(Decoded::End));
        assert_eq!(decode_record(&[0; 2]), Ok(Decoded::End));
        assert_eq!(decode_record(&[0, 1]), Err(RecordError::Incomplete));
    }

    #[test]
    fn every_single_bit_flip_in_a_record_is_detected() {
        let mut buf = Vec::new();
        encode_entry(&mut buf, 9, b"payload");
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                match decode_record(&damaged) {
                    Ok(Decoded::Entry { .. }) => panic!("flip at {byte}.{bit} went unnoticed"),
                    // A flipped length can only shrink to zero when it was a single set bit.
                    Ok(Decoded::End) => assert!(byte < 4),
                    Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn unknown_kind_with_valid_checksum_is_not_a_torn_write() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 2, 1, b"");
        let err = decode_record(&buf).unwrap_err();
        assert_eq!(err, RecordError::UnknownKind(2));
        assert!(!err.is_torn_write());
    }

    #[test]
    fn meta_round_trips_and_detects_damage() {
        let file = encode_meta(b"vote");
        assert_eq!(decode_meta(&file), Ok(&b"vote"[..]));
        assert!(decode_meta(&file[..file.len() - 1]).is_err());
        for byte in 0..file.len() {
            let mut damaged = file.clone();
            damaged[byte] ^= 0x10;
            assert!(
                decode_meta(&damaged).is_err(),
                "flip at {byte} went unnoticed"
            );
        }
    }
}

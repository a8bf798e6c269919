//! Fuzz target `log_recovery`: opening `cairn-log` on whatever a disk may hold.
//!
//! Two kinds of input, both on the in-memory [`MemFs`]:
//! * **Raw disk** — segment and purge-point files whose bytes the input dictates (a valid or
//!   broken header, records with right or wrong checksums, unknown kinds, out-of-order indexes,
//!   trailing garbage). Opening must not panic: it refuses with [`LogError::Corrupt`] or
//!   recovers, and every entry it recovers is one the input wrote as a valid record at that
//!   index.
//! * **Built log** — appends, truncations, purges, meta saves and clean reopens from the input,
//!   checked step by step against a `Vec` model; then one more operation whose syncs are held,
//!   and a power loss that keeps a prefix of its unsynced writes (plus a torn one). Recovery must
//!   give the synced state or one the held operation passes through (a prefix of its entries, a
//!   partial truncation), never less. Then, optionally, one piece of media damage (a flipped
//!   byte, a file cut short, garbage appended) to one file: damage in the last segment's records
//!   is a torn tail, so the log opens with exactly the entries whose records end before the
//!   damage; damage anywhere else refuses to open, or opens without losing a visible entry.
//!
//! Whatever opened must then accept appends, read back exactly what it holds, and reopen — after
//! a clean close and after a power loss — to the same state.

#![no_main]

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU8;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};

use arbitrary::Arbitrary;
use bytes::Bytes;
use cairn_log::{format, FileSystem, Log, LogError, LogOptions, MemFs};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Input {
    Raw(RawDisk),
    Built(Scenario),
}

fuzz_target!(|input: Input| match input {
    Input::Raw(disk) => raw_disk(disk),
    Input::Built(scenario) => built_log(scenario),
});

fn log_dir() -> PathBuf {
    PathBuf::from("/fuzz/log")
}

fn options(segment_size: u16, cache: bool) -> LogOptions {
    LogOptions {
        segment_size: 64 + u64::from(segment_size % 1024),
        // No cache: reads go to the disk, which is what recovery rebuilt.
        cache_size: if cache { 1 << 12 } else { 0 },
        queue_depth: 64,
    }
}

fn open(fs: &MemFs, options: &LogOptions) -> Result<Log, LogError> {
    Log::open_with(Arc::new(fs.clone()), log_dir(), options.clone())
}

fn segment_path(id: u64) -> PathBuf {
    log_dir().join(format::segment_file_name(id))
}

fn purge_meta_path() -> PathBuf {
    log_dir().join("_purged.meta")
}

/// An entry payload, cheap to describe in the input.
#[derive(Arbitrary, Debug, Clone)]
enum Payload {
    Pattern { len: u16, seed: u8 },
    Bytes(Vec<u8>),
}

impl Payload {
    fn bytes(&self) -> Bytes {
        match self {
            Payload::Pattern { len, seed } => Bytes::from(
                (0..usize::from(len % 600))
                    .map(|i| seed.wrapping_add((i as u8).wrapping_mul(41)))
                    .collect::<Vec<u8>>(),
            ),
            Payload::Bytes(b) => Bytes::from(b.clone()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What a log holds, as seen through its public API.

#[derive(Debug, Clone, PartialEq)]
struct Observed {
    purged: Option<u64>,
    entries: Vec<(u64, Bytes)>,
    next: Option<u64>,
}

fn observe(log: &Log) -> Observed {
    let entries = log
        .read(..)
        .unwrap_or_else(|e| panic!("reading back a recovered log failed: {e}"));
    let seen = Observed {
        purged: log.purged(),
        entries,
        next: log.next_index(),
    };
    // The accessors and the data must tell one story.
    let first = seen.entries.first().map(|e| e.0);
    let last = seen.entries.last().map(|e| e.0);
    assert_eq!((log.first_index(), log.last_index()), (first, last));
    for pair in seen.entries.windows(2) {
        assert_eq!(pair[0].0 + 1, pair[1].0, "entries are not contiguous");
    }
    if let Some(last) = last {
        assert_eq!(seen.next, last.checked_add(1), "next index after {last}");
    }
    if let (Some(p), Some(first)) = (seen.purged, first) {
        assert!(
            first > p,
            "entry {first} is at or below the purge point {p}"
        );
    }
    for &(index, ref data) in seen.entries.iter().take(4) {
        assert_eq!(
            log.entry(index).unwrap().as_ref(),
            Some(data),
            "entry({index})"
        );
    }
    seen
}

fn append_durably(log: &Log, entries: Vec<(u64, Bytes)>) -> Result<(), LogError> {
    let (tx, rx) = mpsc::channel();
    log.append(entries, move |result| {
        let _ = tx.send(result);
    })?;
    rx.recv().expect("completion dropped")
}

/// A recovered log must accept appends, hold exactly what it held plus them, and come back the
/// same after a clean reopen and after a power loss (everything was synced).
fn exercise(fs: &MemFs, options: &LogOptions, log: Log, mut expected: Observed, more: &[Payload]) {
    let start = expected.next.unwrap_or(1);
    let room = u64::MAX - start;
    let entries: Vec<(u64, Bytes)> = more
        .iter()
        .take(6)
        .take(usize::try_from(room).unwrap_or(usize::MAX))
        .enumerate()
        .map(|(k, p)| (start + k as u64, p.bytes()))
        .collect();
    if let Some(&(last, _)) = entries.last() {
        append_durably(&log, entries.clone())
            .unwrap_or_else(|e| panic!("append at {start} after recovery: {e}"));
        expected.entries.extend(entries);
        expected.next = Some(last + 1);
    }
    assert_eq!(
        observe(&log),
        expected,
        "after appending to the recovered log"
    );
    drop(log);

    let log = open(fs, options).unwrap_or_else(|e| panic!("clean reopen: {e}"));
    assert_eq!(observe(&log), expected, "after a clean reopen");
    log.sync().unwrap();
    let crashed = fs.crash();
    drop(log);
    let log = open(&crashed, options).unwrap_or_else(|e| panic!("reopen after power loss: {e}"));
    assert_eq!(
        observe(&log),
        expected,
        "after a power loss with everything synced"
    );
}

// ---------------------------------------------------------------------------------------------
// Raw disks.

#[derive(Arbitrary, Debug)]
struct RawDisk {
    segment_size: u16,
    purged: Option<RawMeta>,
    segments: Vec<RawSegment>,
    more: Vec<Payload>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum IndexChoice {
    Small(u8),
    NearMax(u8),
}

impl IndexChoice {
    fn get(self) -> u64 {
        match self {
            IndexChoice::Small(k) => u64::from(k),
            IndexChoice::NearMax(k) => u64::MAX - u64::from(k),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum RawMeta {
    Point(IndexChoice),
    Garbage(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct RawSegment {
    id: IndexChoice,
    header: RawHeader,
    records: Vec<RawRecord>,
    garbage: Vec<u8>,
    /// Zero bytes after everything else, in units of 16.
    padding: u8,
}

#[derive(Arbitrary, Debug)]
enum RawHeader {
    Valid,
    Names(IndexChoice),
    Version(u32),
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug)]
struct RawRecord {
    index: RecordIndex,
    payload: Payload,
    frame: RawFrame,
}

#[derive(Arbitrary, Debug)]
enum RecordIndex {
    Next,
    At(IndexChoice),
}

#[derive(Arbitrary, Debug)]
enum RawFrame {
    Valid,
    BadChecksum(NonZeroU8),
    Kind(u8),
    /// A valid checksum over a body too short to hold an index.
    Short(u8),
    /// The length field off by some amount (the checksum covers what the writer meant).
    Length(i8),
}

/// A segment header as docs/log-format.md lays it out.
fn header_bytes(first_index: u64, version: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(b"CAIRNLOG");
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&first_index.to_le_bytes());
    let crc = crc32(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

/// A record as docs/log-format.md lays it out: `len`, `crc` of kind + payload, kind, payload.
fn record_bytes(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
    let mut covered = Vec::with_capacity(1 + body.len());
    covered.push(kind);
    covered.extend_from_slice(body);
    out.extend_from_slice(&(covered.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32(&covered).to_le_bytes());
    out.extend_from_slice(&covered);
}

fn entry_body(index: u64, data: &[u8]) -> Vec<u8> {
    let mut body = index.to_le_bytes().to_vec();
    body.extend_from_slice(data);
    body
}

/// CRC-32 (IEEE), bit by bit: independent of the crate's own checksum code.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A meta file as docs/log-format.md lays it out.
fn meta_bytes(payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    m.extend_from_slice(b"CAIRNMTA");
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    let mut covered = m.clone();
    covered.extend_from_slice(payload);
    m.extend_from_slice(&crc32(&covered).to_le_bytes());
    m.extend_from_slice(payload);
    m
}

fn raw_disk(disk: RawDisk) {
    let fs = MemFs::new();
    fs.create_dir_all(&log_dir()).unwrap();
    let options = options(disk.segment_size, false);
    match &disk.purged {
        Some(RawMeta::Point(p)) => {
            fs.put_file(&purge_meta_path(), &meta_bytes(&p.get().to_le_bytes()))
        }
        Some(RawMeta::Garbage(bytes)) => fs.put_file(&purge_meta_path(), bytes),
        None => {}
    }
    for segment in disk.segments.iter().take(6) {
        let id = segment.id.get();
        let mut file = match &segment.header {
            RawHeader::Valid => header_bytes(id, 1),
            RawHeader::Names(other) => header_bytes(other.get(), 1),
            RawHeader::Version(v) => header_bytes(id, *v),
            RawHeader::Bytes(b) => b.iter().copied().take(32).collect(),
        };
        let mut next = id;
        for record in segment.records.iter().take(16) {
            let index = match record.index {
                RecordIndex::Next => next,
                RecordIndex::At(i) => i.get(),
            };
            next = index.wrapping_add(1);
            let data = record.payload.bytes();
            let body = entry_body(index, &data);
            match record.frame {
                RawFrame::Valid => record_bytes(&mut file, 1, &body),
                RawFrame::BadChecksum(mask) => {
                    let at = file.len() + 4;
                    record_bytes(&mut file, 1, &body);
                    file[at] ^= mask.get();
                }
                RawFrame::Kind(kind) => record_bytes(&mut file, kind, &body),
                RawFrame::Short(n) => record_bytes(&mut file, 1, &body[..usize::from(n % 8)]),
                RawFrame::Length(delta) => {
                    let at = file.len();
                    record_bytes(&mut file, 1, &body);
                    let len = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
                    let len = len.wrapping_add_signed(i32::from(delta));
                    file[at..at + 4].copy_from_slice(&len.to_le_bytes());
                }
            }
        }
        file.extend(segment.garbage.iter().copied().take(64));
        file.resize(file.len() + 16 * usize::from(segment.padding), 0);
        fs.put_file(&segment_path(id), &file);
    }
    // Every (index, payload) held by a valid entry record in some segment, per the format doc.
    let mut written: HashSet<(u64, Bytes)> = HashSet::new();
    for name in fs.list(&log_dir()).unwrap() {
        let Some(id) = format::parse_segment_file_name(&name) else {
            continue;
        };
        let bytes = fs.file_bytes(&segment_path(id)).unwrap();
        for found in walk_records(&bytes) {
            written.insert((
                found.index,
                Bytes::copy_from_slice(&bytes[found.data.clone()]),
            ));
        }
    }

    let log = match open(&fs, &options) {
        Ok(log) => log,
        Err(LogError::Corrupt { .. }) => return,
        Err(other) => panic!("opening a damaged log must fail only as corruption, not {other}"),
    };
    let seen = observe(&log);
    for entry in &seen.entries {
        assert!(
            written.contains(entry),
            "recovered entry {} was never written as a valid record",
            entry.0
        );
    }
    exercise(&fs, &options, log, seen, &disk.more);
}

// ---------------------------------------------------------------------------------------------
// Built logs: a model, a crash with one operation in flight, and one piece of damage.

#[derive(Arbitrary, Debug)]
struct Scenario {
    segment_size: u16,
    cache: bool,
    /// Where the first append starts, if nothing says otherwise.
    start: u8,
    ops: Vec<Op>,
    in_flight: Option<InFlight>,
    keep: u16,
    torn: u16,
    damage: Option<Damage>,
    more: Vec<Payload>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Append(Vec<Payload>),
    /// Relative to the first live entry (or where the log continues): `index = base + k - 1`.
    Truncate(u8),
    Purge(u8),
    SaveVote(Vec<u8>),
    Reopen,
}

/// The operation whose syncs are still held when the power fails.
#[derive(Arbitrary, Debug)]
enum InFlight {
    Append(Vec<Payload>),
    Truncate(u8),
    Purge(u8),
}

#[derive(Arbitrary, Debug)]
struct Damage {
    /// Picks a segment (oldest first) or, past the last one, the purge-point file.
    file: u8,
    kind: DamageKind,
}

#[derive(Arbitrary, Debug)]
enum DamageKind {
    Flip { offset: u16, mask: NonZeroU8 },
    CutTo(u16),
    Append(Vec<u8>),
}

/// The log the operations should have produced, maintained from the documented semantics of
/// `Log::append`, `truncate` and `purge`.
#[derive(Debug, Clone)]
struct Model {
    purged: Option<u64>,
    entries: Vec<(u64, Bytes)>,
    /// Where an empty log continues; `None` while it never held anything.
    empty_next: Option<u64>,
}

impl Model {
    fn first(&self) -> Option<u64> {
        self.entries.first().map(|e| e.0)
    }

    fn next(&self) -> Option<u64> {
        match self.entries.last() {
            Some(&(last, _)) => Some(last + 1),
            None => self.empty_next,
        }
    }

    fn base(&self) -> u64 {
        self.first().or(self.next()).unwrap_or(1)
    }

    fn observed(&self) -> Observed {
        Observed {
            purged: self.purged,
            entries: self.entries.clone(),
            next: self.next(),
        }
    }

    fn append(&mut self, start: u64, payloads: &[Payload]) -> Vec<(u64, Bytes)> {
        let start = self.next().unwrap_or(start);
        let entries: Vec<(u64, Bytes)> = payloads
            .iter()
            .take(8)
            .enumerate()
            .map(|(k, p)| (start + k as u64, p.bytes()))
            .collect();
        self.entries.extend(entries.iter().cloned());
        entries
    }

    /// Removes every entry `>= index`; at or below the first, the log continues at the first.
    fn truncate(&mut self, index: u64) {
        let Some(first) = self.first() else { return };
        let keep = index.max(first) - first;
        self.entries.truncate(keep as usize);
        if self.entries.is_empty() {
            self.empty_next = Some(first);
        }
    }

    /// Drops every entry `<= index`; never moves back, never below just before the first entry.
    fn purge(&mut self, index: u64) {
        let index = match self.first().or(self.empty_next) {
            Some(start) if start > 0 => index.max(start - 1),
            _ => index,
        };
        if self.purged.is_some_and(|p| p >= index) {
            return;
        }
        self.purged = Some(index);
        self.entries.retain(|e| e.0 > index);
        if self.entries.is_empty() {
            self.empty_next = Some(index + 1);
        }
    }
}

/// Recovery after a crash with `op` in flight may give the state before it, after it, or (for
/// an append or truncation) one between: same purge point, entries a prefix of the longer one.
fn allowed_after_crash(
    before: &Model,
    after: &Model,
    in_flight: &InFlight,
    seen: &Observed,
) -> bool {
    if *seen == before.observed() || *seen == after.observed() {
        return true;
    }
    if matches!(in_flight, InFlight::Purge(_)) {
        return false;
    }
    let (shorter, longer) = if before.entries.len() <= after.entries.len() {
        (before, after)
    } else {
        (after, before)
    };
    let n = seen.entries.len();
    seen.purged == before.purged
        && (shorter.entries.len()..=longer.entries.len()).contains(&n)
        && longer.entries[..n] == seen.entries[..]
}

fn built_log(scenario: Scenario) {
    let options = options(scenario.segment_size, scenario.cache);
    let start = u64::from(scenario.start);
    let fs = MemFs::new();
    let mut log = open(&fs, &options).expect("open an empty log");
    let mut model = Model {
        purged: None,
        entries: Vec::new(),
        empty_next: None,
    };
    let mut vote: Option<Vec<u8>> = None;

    for op in scenario.ops.iter().take(16) {
        match op {
            Op::Append(payloads) => {
                let entries = model.append(start, payloads);
                if !entries.is_empty() {
                    log.append(entries, |result| {
                        result.expect("append on a healthy disk");
                    })
                    .expect("append continuing the log");
                }
            }
            Op::Truncate(k) => {
                let index = (model.base() + u64::from(*k)).saturating_sub(1);
                log.truncate(index).unwrap();
                model.truncate(index);
            }
            Op::Purge(k) => {
                let index = (model.base() + u64::from(*k)).saturating_sub(1);
                log.purge(index).unwrap();
                model.purge(index);
            }
            Op::SaveVote(value) => {
                log.save_vote(value).unwrap();
                vote = Some(value.clone());
            }
            Op::Reopen => {
                drop(log);
                log = open(&fs, &options).unwrap_or_else(|e| panic!("clean reopen: {e}"));
            }
        }
        assert_eq!(observe(&log), model.observed(), "after {op:?}");
    }
    // Everything so far is durable; the in-flight operation runs with its syncs held.
    log.sync().unwrap();
    let before = model.clone();
    if let Some(in_flight) = &scenario.in_flight {
        fs.hold_syncs();
        match in_flight {
            InFlight::Append(payloads) => {
                let entries = model.append(start, payloads);
                if !entries.is_empty() {
                    log.append(entries, |_| {}).unwrap();
                }
            }
            InFlight::Truncate(k) => {
                let index = (model.base() + u64::from(*k)).saturating_sub(1);
                log.truncate(index).unwrap();
                model.truncate(index);
            }
            InFlight::Purge(k) => {
                let index = (model.base() + u64::from(*k)).saturating_sub(1);
                log.purge(index).unwrap();
                model.purge(index);
            }
        }
        // Every operation that changes the log syncs a file; wait until the writer is stuck in
        // the first such sync, so that what is pending is one operation's writes, no more.
        if model.observed() != before.observed() {
            fs.wait_for_held_syncs(1);
        }
    }
    let pending = fs.pending_ops() as u64;
    let crashed = fs.crash_keeping(
        (u64::from(scenario.keep) % (pending + 1)) as usize,
        usize::from(scenario.torn % 2048),
    );
    fs.release_syncs();
    drop(log);

    // The crashed disk, undamaged.
    let undamaged = crashed.crash();
    let log =
        open(&undamaged, &options).unwrap_or_else(|e| panic!("recovery after power loss: {e}"));
    let recovered = observe(&log);
    match &scenario.in_flight {
        Some(in_flight) => assert!(
            allowed_after_crash(&before, &model, in_flight, &recovered),
            "recovered {recovered:?}\nsynced {before:?}\nin flight {in_flight:?} -> {model:?}"
        ),
        None => assert_eq!(recovered, before.observed(), "recovery lost synced state"),
    }
    assert_eq!(log.read_vote().unwrap(), vote, "the saved vote");

    let Some(damage) = &scenario.damage else {
        exercise(&undamaged, &options, log, recovered, &scenario.more);
        return;
    };
    drop(log);
    let damaged = crashed.crash();
    let Some(expect) = apply_damage(&damaged, damage, &recovered) else {
        return;
    };
    let result = open(&damaged, &options);
    match (expect, result) {
        (Expect::Exactly(want), Ok(log)) => {
            let seen = observe(&log);
            assert_eq!(
                (seen.purged, &seen.entries),
                (recovered.purged, &want),
                "damage {damage:?} in the last segment must cut exactly the records from it on"
            );
            exercise(&damaged, &options, log, seen, &scenario.more);
        }
        (Expect::Exactly(_), Err(e)) => {
            panic!("damage {damage:?} in the last segment's records refused to open: {e}")
        }
        (Expect::CorruptOrAll, Ok(log)) => {
            let seen = observe(&log);
            assert_eq!(
                (seen.purged, &seen.entries),
                (recovered.purged, &recovered.entries),
                "damage {damage:?} outside the tail opened but lost entries"
            );
            exercise(&damaged, &options, log, seen, &scenario.more);
        }
        (Expect::Corrupt, Ok(_)) => {
            panic!("damage {damage:?} went unnoticed: the log opened")
        }
        (Expect::Corrupt | Expect::CorruptOrAll, Err(LogError::Corrupt { .. })) => {}
        (_, Err(e)) => panic!("damage {damage:?} must be reported as corruption, not {e}"),
    }
}

/// What opening a damaged disk must do.
enum Expect {
    /// Open, holding exactly these entries (the purge point unchanged).
    Exactly(Vec<(u64, Bytes)>),
    /// Refuse with `Corrupt`, or open with every entry.
    CorruptOrAll,
    /// Refuse with `Corrupt`.
    Corrupt,
}

/// A record found by walking a segment's bytes as docs/log-format.md describes.
struct Found {
    index: u64,
    data: std::ops::Range<usize>,
    end: u64,
}

fn walk_records(bytes: &[u8]) -> Vec<Found> {
    let mut found = Vec::new();
    let mut pos = 24usize;
    while let Some(len_bytes) = bytes.get(pos..pos + 4) {
        let len = u32::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        let end = pos + 8 + len;
        let (Some(crc), Some(body)) = (bytes.get(pos + 4..pos + 8), bytes.get(pos + 8..end)) else {
            break;
        };
        if len < 9 || body[0] != 1 || crc32(body) != u32::from_le_bytes(crc.try_into().unwrap()) {
            break;
        }
        let index = u64::from_le_bytes(body[1..9].try_into().unwrap());
        found.push(Found {
            index,
            data: pos + 17..end,
            end: end as u64,
        });
        pos = end;
    }
    found
}

/// Applies `damage` to `fs` and says what opening must do; `None` if it changed nothing.
fn apply_damage(fs: &MemFs, damage: &Damage, recovered: &Observed) -> Option<Expect> {
    let mut ids: Vec<u64> = fs
        .list(&log_dir())
        .unwrap()
        .iter()
        .filter_map(|name| format::parse_segment_file_name(name))
        .collect();
    ids.sort_unstable();
    // Where each entry's record ends, before the damage.
    let mut ends: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for &id in &ids {
        for found in walk_records(&fs.file_bytes(&segment_path(id)).unwrap()) {
            ends.insert(found.index, (id, found.end));
        }
    }
    let target = usize::from(damage.file) % (ids.len() + 1);
    let segment = ids.get(target).copied();
    let is_last = target + 1 == ids.len();
    let path = segment.map_or_else(purge_meta_path, segment_path);
    let bytes = fs.file_bytes(&path)?;
    let len = bytes.len() as u64;

    // The offset from which the file no longer holds what was written.
    let damaged_from = match &damage.kind {
        DamageKind::Flip { offset, mask } => {
            let at = u64::from(*offset) % len.max(1);
            if at >= len {
                return None;
            }
            fs.corrupt(&path, at, mask.get()).unwrap();
            at
        }
        DamageKind::CutTo(to) => {
            let to = u64::from(*to) % (len + 1);
            if to == len {
                return None;
            }
            fs.truncate_file(&path, to).unwrap();
            to
        }
        DamageKind::Append(extra) => {
            let mut grown = bytes.clone();
            grown.extend_from_slice(extra);
            if extra.is_empty() || walk_records(&grown).len() > walk_records(&bytes).len() {
                // Nothing, or valid records continuing the data: not damage.
                return None;
            }
            fs.put_file(&path, &grown);
            if segment.is_some() && extra.iter().all(|&b| b == 0) {
                // Zeros after the end read like preallocated space.
                return Some(Expect::CorruptOrAll);
            }
            len
        }
    };
    let Some(id) = segment else {
        return Some(Expect::Corrupt);
    };
    if !is_last {
        // Only the last segment may end in a torn write. A file cut short at a record boundary
        // can pass for a shorter segment, which is harmless only below the purge point.
        return Some(match damage.kind {
            DamageKind::CutTo(_) => Expect::CorruptOrAll,
            _ => Expect::Corrupt,
        });
    }

    // The last segment: damage there reads as a torn tail, or as a torn creation if the header
    // is broken (by the damage, or already by the crash) and nothing but zeros follows it.
    let after = fs.file_bytes(&path).unwrap();
    let header_ok = after.len() >= 24 && after[..24] == header_bytes(id, 1)[..];
    if !header_ok && after.get(24..).unwrap_or(&[]).iter().any(|&b| b != 0) {
        // A segment with data behind a broken header is not a torn creation.
        return Some(Expect::Corrupt);
    }
    let keep = recovered
        .entries
        .iter()
        .filter(|(index, _)| {
            let &(in_segment, end) = ends
                .get(index)
                .unwrap_or_else(|| panic!("recovered entry {index} has no record on disk"));
            in_segment < id || (header_ok && end <= damaged_from)
        })
        .cloned()
        .collect();
    Some(Expect::Exactly(keep))
}

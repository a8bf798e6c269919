//! Integration tests of `cairn-log`, one binary: each module tells one part of the story.
//!
//! Bugs these tests found (keep the guarding test when changing the code it names):
//!
//! | # | found by | bug | guarded by |
//! |---|----------|-----|------------|
//! | 1 | `model` (crash) | truncating through a segment whose header voided older entries resurrected them after a crash | `truncate::a_truncation_in_progress_never_resurrects_entries_removed_by_an_earlier_one` |
//! | 2 | `model` (crash) | a purge's meta file became durable before the appends submitted before it | `model` (purge now syncs earlier writes first) |
//! | 3 | `truncate` | truncating everything left an empty tail while the log accepted any next index | `truncate::truncating_everything_leaves_an_empty_log_that_continues_at_the_same_index` |
//! | 4 | fuzz target `log_recovery` | a segment ending at index `u64::MAX` overflowed on open; a log at `u64::MAX` (or purged to it) took any next index | `recovery::indexes_stop_one_short_of_u64_max_on_disk_and_in_calls` |
//! | 5 | fuzz target `log_recovery` | a segment that lost its records at a record boundary went unnoticed when it became empty, or when a torn segment creation followed it | `recovery::a_first_segment_cut_back_to_its_header_is_a_gap`, `recovery::a_torn_creation_is_removed_only_where_the_log_continues` |

mod crash;
mod group_commit;
mod meta;
mod model;
mod purge;
mod recovery;
mod roundtrip;
mod truncate;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use cairn_log::{format, FileSystem, Log, LogError, LogOptions, MemFs};

/// The directory every in-memory test uses.
pub fn log_dir() -> PathBuf {
    PathBuf::from("/cairn/log")
}

/// 4 KiB segments and no cache beyond unwritten entries, so reads exercise the disk path.
pub fn small_options() -> LogOptions {
    LogOptions {
        segment_size: 4096,
        cache_size: 0,
        queue_depth: 64,
    }
}

/// Deterministic payload of varying length (0..=150 bytes); `version` tells rewrites apart.
pub fn payload(index: u64, version: u8) -> Bytes {
    let len = (index * 37 % 151) as usize;
    Bytes::from(
        (0..len)
            .map(|k| (index as u8) ^ (k as u8).wrapping_mul(31) ^ version)
            .collect::<Vec<u8>>(),
    )
}

pub fn batch(indexes: impl IntoIterator<Item = u64>, version: u8) -> Vec<(u64, Bytes)> {
    indexes
        .into_iter()
        .map(|i| (i, payload(i, version)))
        .collect()
}

/// Appends and waits for the durability callback.
pub fn append_durably(log: &Log, entries: Vec<(u64, Bytes)>) -> Result<(), LogError> {
    let (tx, rx) = mpsc::channel();
    log.append(entries, move |result| {
        let _ = tx.send(result);
    })?;
    rx.recv().expect("callback dropped")
}

pub fn open_mem(fs: &MemFs, options: LogOptions) -> Result<Log, LogError> {
    Log::open_with(Arc::new(fs.clone()), log_dir(), options)
}

pub fn all_entries(log: &Log) -> Vec<(u64, Bytes)> {
    log.read(..).expect("read the whole log")
}

/// Segment file names in `dir`, oldest first.
pub fn segment_names(fs: &dyn FileSystem, dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(dir)
        .unwrap()
        .into_iter()
        .filter(|n| format::parse_segment_file_name(n).is_some())
        .collect();
    names.sort();
    names
}

/// Byte offset of the record of entry `index` in a segment that holds `first..` written in
/// order with [`payload`] version `version` and nothing else.
pub fn record_offset(first: u64, index: u64) -> u64 {
    format::SEGMENT_HEADER_LEN
        + (first..index)
            .map(|i| format::entry_record_len(payload(i, 0).len()))
            .sum::<u64>()
}

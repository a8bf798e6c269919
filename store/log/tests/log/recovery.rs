//! Opening verifies every record: the last segment's torn tail is cut, anything else refuses to
//! open with the file and byte offset.

use std::path::Path;

use bytes::Bytes;
use cairn_log::{format, Log, LogError, LogOptions, MemFs, StdFs};

use crate::{
    all_entries, append_durably, batch, log_dir, open_mem, record_offset, segment_names,
    small_options,
};

fn corrupt_error(result: Result<Log, LogError>) -> (String, u64, String) {
    match result {
        Err(LogError::Corrupt {
            file,
            offset,
            reason,
        }) => (
            file.file_name().unwrap().to_string_lossy().into_owned(),
            offset,
            reason,
        ),
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("expected a corruption error, the log opened"),
    }
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
}

fn big_segments() -> LogOptions {
    LogOptions {
        segment_size: 1 << 20,
        ..small_options()
    }
}

#[test]
fn a_torn_write_at_the_tail_is_cut_and_earlier_records_survive() {
    let fs = MemFs::new();
    let log = open_mem(&fs, big_segments()).unwrap();
    append_durably(&log, batch(1..=10, 0)).unwrap();

    // Power fails while the next batch's write is done but its sync has not happened: the
    // disk kept the first record and ten bytes of the second.
    fs.hold_syncs();
    log.append(batch(11..=13, 0), |_| {}).unwrap();
    fs.wait_for_held_syncs(1);
    let first_record = format::entry_record_len(batch(11..=11, 0)[0].1.len()) as usize;
    let crashed = fs.crash_keeping(0, first_record + 10);
    fs.release_syncs();
    drop(log);

    let log = open_mem(&crashed, big_segments()).unwrap();
    assert_eq!(
        all_entries(&log),
        batch(1..=11, 0),
        "whole records of an unacknowledged write may survive, the torn one may not"
    );
    // Appending over the cut tail and reopening must not resurrect the torn bytes.
    append_durably(&log, batch(12..=12, 9)).unwrap();
    drop(log);
    let log = open_mem(&crashed, big_segments()).unwrap();
    let mut expected = batch(1..=11, 0);
    expected.extend(batch(12..=12, 9));
    assert_eq!(all_entries(&log), expected);
}

#[test]
fn a_bit_flip_in_the_last_segment_cuts_the_log_from_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), big_segments()).unwrap();
    append_durably(&log, batch(1..=10, 0)).unwrap();
    log.close().unwrap();

    let segment = dir.path().join(format::segment_file_name(1));
    flip(&segment, record_offset(1, 5) + 20);
    let log = Log::open(dir.path(), big_segments()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=4, 0));

    append_durably(&log, batch(5..=6, 1)).unwrap();
    log.close().unwrap();
    let log = Log::open(dir.path(), big_segments()).unwrap();
    let mut expected = batch(1..=4, 0);
    expected.extend(batch(5..=6, 1));
    assert_eq!(
        all_entries(&log),
        expected,
        "entries 7..=10 of the old tail stay gone"
    );
}

#[test]
fn a_bit_flip_in_an_older_segment_refuses_to_open_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    log.close().unwrap();
    assert!(segment_names(&StdFs, dir.path()).len() >= 3);

    let segment = dir.path().join(format::segment_file_name(1));
    let offset = record_offset(1, 3);
    flip(&segment, offset + 12);
    let (file, at, reason) = corrupt_error(Log::open(dir.path(), small_options()));
    assert_eq!((file.as_str(), at), ("00000000000000000001.log", offset));
    assert!(reason.contains("checksum"), "{reason}");

    let message = Log::open(dir.path(), small_options())
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("00000000000000000001.log") && message.contains(&offset.to_string()),
        "{message}"
    );
}

#[test]
fn a_missing_middle_segment_is_a_gap_and_refuses_to_open() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());
    assert!(names.len() >= 3);
    cairn_log::FileSystem::remove(&fs, &log_dir().join(&names[1])).unwrap();
    let (file, _, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!(file, names[2]);
    assert!(reason.contains("continues at"), "{reason}");
}

#[test]
fn a_cut_short_older_segment_refuses_to_open_and_a_cut_short_last_one_is_repaired() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());
    let last = names.last().unwrap().clone();
    let last_first = format::parse_segment_file_name(&last).unwrap();

    // The last segment loses half of its second record: a torn tail.
    fs.truncate_file(
        &log_dir().join(&last),
        record_offset(last_first, last_first + 1) + 5,
    )
    .unwrap();
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=last_first, 0));
    drop(log);

    // The first segment loses its tail mid-record: that is damage, not a torn write.
    fs.truncate_file(&log_dir().join(&names[0]), record_offset(1, 3) + 5)
        .unwrap();
    let (file, offset, _) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file, offset), (names[0].clone(), record_offset(1, 3)));
}

#[test]
fn a_file_shorter_than_a_header_is_an_error_unless_it_is_a_torn_last_segment() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());

    // A last segment whose creation was torn: part of a header, nothing after it.
    let header = format::encode_segment_header(201);
    fs.put_file(
        &log_dir().join(format::segment_file_name(201)),
        &header[..10],
    );
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(log.last_index(), Some(200));
    assert_eq!(
        segment_names(&fs, &log_dir()),
        names,
        "the torn segment is removed"
    );
    drop(log);

    // The same short file in the middle of the log is damage.
    fs.put_file(&log_dir().join(names[1].as_str()), &header[..10]);
    let (file, offset, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file, offset), (names[1].clone(), 0));
    assert!(reason.contains("shorter"), "{reason}");
}

#[test]
fn a_bad_magic_followed_by_records_is_damage_even_in_the_last_segment() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=3, 0)).unwrap();
    drop(log);
    fs.corrupt(&log_dir().join(format::segment_file_name(1)), 0, 0x01)
        .unwrap();
    let (file, offset, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file.as_str(), offset), ("00000000000000000001.log", 0));
    assert!(reason.contains("magic"), "{reason}");
}

#[test]
fn zero_filled_preallocated_space_is_the_normal_end() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=3, 0)).unwrap();
    drop(log);
    let segment = log_dir().join(format::segment_file_name(1));
    let bytes = fs.file_bytes(&segment).unwrap();
    assert_eq!(bytes.len(), 4096, "preallocated to the segment size");
    let end = record_offset(1, 4) as usize;
    assert!(bytes[end..].iter().all(|&b| b == 0));

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=3, 0));
    drop(log);

    // An entirely zero last segment (preallocated, header never written) is empty.
    fs.put_file(&log_dir().join(format::segment_file_name(4)), &[0; 4096]);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=3, 0));
    append_durably(&log, vec![(4, Bytes::from_static(b"four"))]).unwrap();
    assert_eq!(log.entry(4).unwrap(), Some(Bytes::from_static(b"four")));
}

#[test]
fn stray_bytes_after_the_end_of_an_older_segment_refuse_to_open() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());
    let second_first = format::parse_segment_file_name(&names[1]).unwrap();
    let end = record_offset(1, second_first);
    assert!(end < 4095, "the first segment has zero padding at its end");
    fs.corrupt(&log_dir().join(&names[0]), 4095, 0xff).unwrap();
    let (file, offset, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file, offset), (names[0].clone(), end));
    assert!(reason.contains("after the end"), "{reason}");
}

/// Found by the `log_recovery` fuzz target: a segment ending at index `u64::MAX` made opening
/// overflow (a panic with overflow checks; without them, a log whose next index was "any").
#[test]
fn indexes_stop_one_short_of_u64_max_on_disk_and_in_calls() {
    let fs = MemFs::new();
    let mut segment = format::encode_segment_header(u64::MAX).to_vec();
    format::encode_entry(&mut segment, u64::MAX, b"last");
    fs.put_file(
        &log_dir().join(format::segment_file_name(u64::MAX)),
        &segment,
    );
    let (file, offset, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file.as_str(), offset), ("18446744073709551615.log", 24));
    assert!(reason.contains("beyond the largest index"), "{reason}");

    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    let top = format::MAX_INDEX;
    append_durably(&log, vec![(top, Bytes::from_static(b"top"))]).unwrap();
    assert_eq!(log.next_index(), Some(u64::MAX));
    assert!(matches!(
        log.append(vec![(u64::MAX, Bytes::new())], |_| {}),
        Err(LogError::IndexTooLarge { index: u64::MAX })
    ));
    assert!(matches!(
        log.purge(u64::MAX),
        Err(LogError::IndexTooLarge { .. })
    ));
    drop(log);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), vec![(top, Bytes::from_static(b"top"))]);
}

/// Found by the `log_recovery` fuzz target: a segment that lost everything after its header
/// (a file system losing the end of a file) read as an empty segment, and the log silently
/// started at the next one. A segment holding no entry continues the log at its own id.
#[test]
fn a_first_segment_cut_back_to_its_header_is_a_gap() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());
    fs.truncate_file(&log_dir().join(&names[0]), format::SEGMENT_HEADER_LEN)
        .unwrap();
    let (file, offset, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!((file, offset), (names[1].clone(), 12));
    assert!(reason.contains("continues at 1"), "{reason}");
}

/// Found by the `log_recovery` fuzz target: a torn segment creation was removed whatever its
/// name, so when the segment before it had lost its last records at a record boundary, the log
/// opened without them. A torn creation is removed only if its name continues the log, and the
/// removal is made durable: once appends go into the segment before it, its name no longer
/// would.
#[test]
fn a_torn_creation_is_removed_only_where_the_log_continues() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    drop(log);
    let names = segment_names(&fs, &log_dir());
    let last = names.last().unwrap().clone();
    let last_first = format::parse_segment_file_name(&last).unwrap();
    let torn = log_dir().join(format::segment_file_name(201));

    // Continuing the log: a torn creation, removed for good.
    fs.put_file(&torn, &[0; 64]);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=200, 0));
    drop(log);
    assert!(fs.crash().file_bytes(&torn).is_none(), "removal is durable");

    // The segment before it lost its last records: refuse, naming the torn file.
    fs.put_file(&torn, &[0; 64]);
    fs.truncate_file(&log_dir().join(&last), record_offset(last_first, 200))
        .unwrap();
    let (file, _, reason) = corrupt_error(open_mem(&fs, small_options()));
    assert_eq!(file, format::segment_file_name(201));
    assert!(reason.contains("continues at 200"), "{reason}");
}

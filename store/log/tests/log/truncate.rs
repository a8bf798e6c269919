//! Conflict truncation (Raft §5.3): removed entries never come back, whichever way the
//! truncation was recorded on disk.

use bytes::Bytes;
use cairn_log::{format, LogOptions, MemFs};

use crate::{all_entries, append_durably, batch, log_dir, open_mem, segment_names, small_options};

fn expected(
    kept: std::ops::RangeInclusive<u64>,
    rewritten: std::ops::RangeInclusive<u64>,
) -> Vec<(u64, Bytes)> {
    let mut entries = batch(kept, 0);
    entries.extend(batch(rewritten, 1));
    entries
}

#[test]
fn truncate_then_append_then_reopen_within_one_segment() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=10, 0)).unwrap();
    log.truncate(6).unwrap();
    assert_eq!(log.last_index(), Some(5), "visible at once");
    append_durably(&log, batch(6..=8, 1)).unwrap();
    assert_eq!(all_entries(&log), expected(1..=5, 6..=8));
    drop(log);

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), expected(1..=5, 6..=8));
}

#[test]
fn truncate_across_segments_deletes_the_later_ones() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    let before = segment_names(&fs, &log_dir());
    assert!(before.len() >= 4);
    log.truncate(30).unwrap();
    append_durably(&log, batch(30..=40, 1)).unwrap();
    let after = segment_names(&fs, &log_dir());
    assert!(after.len() < before.len(), "{after:?}");
    drop(log);

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), expected(1..=29, 30..=40));
    append_durably(&log, batch(41..=45, 1)).unwrap();
    assert_eq!(all_entries(&log), expected(1..=29, 30..=45));
}

#[test]
fn truncating_a_full_segment_cuts_it_and_reuses_the_space() {
    // Three 33-byte entries (50-byte records) fill a 174-byte segment to the last byte.
    let options = LogOptions {
        segment_size: format::SEGMENT_HEADER_LEN + 3 * 50,
        ..small_options()
    };
    let fs = MemFs::new();
    let log = open_mem(&fs, options.clone()).unwrap();
    let entry = |i: u64, v: u8| (i, Bytes::from(vec![v; 33]));
    append_durably(&log, vec![entry(1, 0), entry(2, 0), entry(3, 0)]).unwrap();
    log.truncate(2).unwrap();
    append_durably(&log, vec![entry(2, 1), entry(3, 1)]).unwrap();
    assert_eq!(
        segment_names(&fs, &log_dir()),
        vec![format::segment_file_name(1)]
    );
    let crashed = fs.crash();
    drop(log);

    let log = open_mem(&crashed, options).unwrap();
    assert_eq!(
        all_entries(&log),
        vec![entry(1, 0), entry(2, 1), entry(3, 1)]
    );
}

#[test]
fn a_truncation_in_progress_never_resurrects_entries_removed_by_an_earlier_one() {
    // Bug 1 in main.rs: when a truncation was recorded by a new segment whose header voided the
    // older entries, a second truncation deleting that segment brought them back if power failed
    // before its own record was durable. Truncation is now a physical cut.
    let options = LogOptions {
        segment_size: format::SEGMENT_HEADER_LEN + 3 * 50,
        ..small_options()
    };
    let fs = MemFs::new();
    let log = open_mem(&fs, options.clone()).unwrap();
    let entry = |i: u64, v: u8| (i, Bytes::from(vec![v; 33]));
    append_durably(&log, (1..=6).map(|i| entry(i, 0)).collect()).unwrap();
    log.truncate(2).unwrap();
    append_durably(&log, vec![entry(2, 1), entry(3, 1), entry(4, 1)]).unwrap();
    log.truncate(3).unwrap();
    // Every crash point of the second truncation recovers a prefix of [1, 2', 3', 4'].
    let mut crash_points = Vec::new();
    fs.hold_syncs();
    append_in_background(&log, vec![entry(3, 2)]);
    fs.wait_for_held_syncs(1);
    for keep in 0..=fs.pending_ops() {
        crash_points.push(fs.crash_keeping(keep, 0));
    }
    fs.release_syncs();
    drop(log);
    let acknowledged = [entry(1, 0), entry(2, 1), entry(3, 1), entry(4, 1)];
    for crashed in crash_points {
        let log = open_mem(&crashed, options.clone()).unwrap();
        let seen = all_entries(&log);
        assert!(
            seen.len() >= 2 && acknowledged.starts_with(&seen)
                || seen == vec![entry(1, 0), entry(2, 1), entry(3, 2)],
            "{seen:?}"
        );
    }
}

fn append_in_background(log: &cairn_log::Log, entries: Vec<(u64, Bytes)>) {
    log.append(entries, |r| r.unwrap()).unwrap();
}

#[test]
fn truncation_is_durable_before_the_next_append_is_acknowledged() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=10, 0)).unwrap();
    log.truncate(4).unwrap();
    append_durably(&log, batch(4..=5, 1)).unwrap();
    let crashed = fs.crash();
    drop(log);
    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(all_entries(&log), expected(1..=3, 4..=5));
}

#[test]
fn truncating_everything_leaves_an_empty_log_that_continues_at_the_same_index() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    log.truncate(0).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    assert_eq!(log.next_index(), Some(1));
    log.sync().unwrap();
    assert_eq!(
        segment_names(&fs, &log_dir()),
        vec![format::segment_file_name(1)]
    );
    assert!(log.append(batch(7..=9, 1), |_| {}).is_err());
    drop(log);

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!((log.last_index(), log.next_index()), (None, Some(1)));
    append_durably(&log, batch(1..=3, 1)).unwrap();
    drop(log);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=3, 1));
}

#[test]
fn truncating_past_the_end_does_nothing() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=5, 0)).unwrap();
    log.truncate(6).unwrap();
    assert_eq!(all_entries(&log), batch(1..=5, 0));
}

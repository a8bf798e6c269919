//! Purging after a snapshot: whole segments go, the first index survives a reopen, and purged
//! entries in a partly purged segment never come back.

use cairn_log::{format, MemFs};

use crate::{all_entries, append_durably, batch, log_dir, open_mem, segment_names, small_options};

fn first_indexes(fs: &MemFs) -> Vec<u64> {
    segment_names(fs, &log_dir())
        .iter()
        .filter_map(|n| format::parse_segment_file_name(n))
        .collect()
}

#[test]
fn purge_deletes_whole_segments_and_reopen_keeps_the_first_index() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    let segments = first_indexes(&fs);
    // Purge into the middle of the third segment.
    let point = segments[2] + 3;
    log.purge(point).unwrap();
    assert_eq!(log.first_index(), Some(point + 1));
    assert_eq!(log.purged(), Some(point));
    assert_eq!(log.read(..).unwrap(), batch(point + 1..=200, 0));
    log.sync().unwrap();
    assert_eq!(
        first_indexes(&fs),
        segments[2..].to_vec(),
        "the segment holding the point stays"
    );
    drop(log);

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(log.first_index(), Some(point + 1));
    assert_eq!(log.purged(), Some(point));
    assert_eq!(all_entries(&log), batch(point + 1..=200, 0));
    append_durably(&log, batch(201..=210, 0)).unwrap();
    assert_eq!(all_entries(&log), batch(point + 1..=210, 0));
}

#[test]
fn purge_past_the_end_empties_the_log_which_continues_after_the_point() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=100, 0)).unwrap();
    log.purge(500).unwrap();
    assert_eq!((log.first_index(), log.last_index()), (None, None));
    let early = log.append(batch(101..=101, 0), |_| {});
    assert!(early.is_err(), "the log continues at 501");
    append_durably(&log, batch(501..=510, 0)).unwrap();
    assert_eq!(first_indexes(&fs), vec![501]);
    drop(log);

    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(log.purged(), Some(500));
    assert_eq!(all_entries(&log), batch(501..=510, 0));
}

#[test]
fn a_purge_interrupted_before_its_deletions_is_completed_on_open() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=200, 0)).unwrap();
    let segments = first_indexes(&fs);
    log.purge(segments[3]).unwrap();
    log.sync().unwrap();
    // The purge point is durable; the unlinks were never synced, so the crash undoes them.
    let crashed = fs.crash();
    drop(log);
    assert_eq!(first_indexes(&crashed), segments);

    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(log.first_index(), Some(segments[3] + 1));
    assert_eq!(all_entries(&log), batch(segments[3] + 1..=200, 0));
    assert_eq!(first_indexes(&crashed), segments[3..].to_vec());
}

#[test]
fn purge_then_truncate_everything_left() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=20, 0)).unwrap();
    log.purge(10).unwrap();
    log.truncate(11).unwrap();
    assert_eq!(
        (log.first_index(), log.last_index(), log.purged()),
        (None, None, Some(10))
    );
    append_durably(&log, batch(11..=12, 1)).unwrap();
    drop(log);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(11..=12, 1));
}

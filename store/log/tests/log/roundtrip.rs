//! Appended entries read back unchanged: from the cache, from disk, across segments, after
//! reopening.

use std::sync::mpsc;
use std::sync::Arc;

use bytes::Bytes;
use cairn_log::{FileSystem, Log, LogError, LogOptions, MemFs, StdFs};

use crate::{all_entries, append_durably, batch, log_dir, open_mem, segment_names, small_options};

#[test]
fn entries_round_trip_across_several_segments() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    for start in (1..=300).step_by(20) {
        append_durably(&log, batch(start..start + 20, 0)).unwrap();
    }
    let segments = segment_names(&fs, &log_dir());
    assert!(
        segments.len() >= 5,
        "300 entries of up to 167 bytes span 4 KiB segments: {segments:?}"
    );
    assert_eq!(segments[0], "00000000000000000001.log");

    assert_eq!(all_entries(&log), batch(1..=300, 0));
    assert_eq!(log.read(37..=123).unwrap(), batch(37..=123, 0));
    assert_eq!(
        log.read(290..1000).unwrap(),
        batch(290..=300, 0),
        "clamped to the log"
    );
    assert_eq!(
        log.entry(150).unwrap(),
        Some(batch(150..=150, 0)[0].1.clone())
    );
    assert_eq!(log.entry(301).unwrap(), None);
    assert_eq!((log.first_index(), log.last_index()), (Some(1), Some(300)));
}

#[test]
fn reopening_returns_identical_entries_on_the_real_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    let options = LogOptions {
        segment_size: 4096,
        ..LogOptions::default()
    };
    {
        let log = Log::open(dir.path(), options.clone()).unwrap();
        append_durably(&log, batch(0..=99, 3)).unwrap();
        append_durably(&log, batch(100..=199, 3)).unwrap();
        log.close().unwrap();
    }
    let log = Log::open(dir.path(), options.clone()).unwrap();
    assert_eq!(all_entries(&log), batch(0..=199, 3));
    assert_eq!((log.first_index(), log.last_index()), (Some(0), Some(199)));
    // Preallocation: every segment file is at least the configured size.
    for name in segment_names(&StdFs, dir.path()) {
        let len = std::fs::metadata(dir.path().join(&name)).unwrap().len();
        assert!(len >= 4096, "{name} is {len} bytes");
    }
    append_durably(&log, batch(200..=210, 3)).unwrap();
    drop(log);
    let log = Log::open(dir.path(), options).unwrap();
    assert_eq!(all_entries(&log), batch(0..=210, 3));
}

#[test]
fn appended_entries_are_readable_before_they_are_durable() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=3, 0)).unwrap();

    fs.hold_syncs();
    let (tx, rx) = mpsc::channel();
    log.append(batch(4..=6, 0), move |r| tx.send(r).unwrap())
        .unwrap();
    assert_eq!(log.read(4..=6).unwrap(), batch(4..=6, 0));
    fs.wait_for_held_syncs(1);
    assert!(
        rx.try_recv().is_err(),
        "durability reported before the sync"
    );
    fs.release_syncs();
    rx.recv().unwrap().unwrap();
}

#[test]
fn entries_larger_than_a_segment_get_a_segment_of_their_own() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    let big = Bytes::from(vec![7u8; 10_000]);
    append_durably(&log, vec![(1, Bytes::from_static(b"a")), (2, big.clone())]).unwrap();
    append_durably(&log, vec![(3, Bytes::from_static(b"b"))]).unwrap();
    drop(log);
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(log.entry(2).unwrap(), Some(big));
    assert_eq!(log.last_index(), Some(3));
}

#[test]
fn appends_must_continue_the_log() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(5..=6, 0)).unwrap();
    let gap = log.append(batch(8..=8, 0), |_| {
        panic!("rejected appends never call back")
    });
    assert!(matches!(
        gap,
        Err(LogError::NonContiguous {
            expected: 7,
            got: 8
        })
    ));
    let holey = log.append(vec![(7, Bytes::new()), (9, Bytes::new())], |_| {});
    assert!(matches!(
        holey,
        Err(LogError::NonContiguous {
            expected: 8,
            got: 9
        })
    ));
    assert_eq!(log.last_index(), Some(6));
}

#[test]
fn a_second_log_on_the_same_directory_is_refused() {
    let fs = MemFs::new();
    let _log = open_mem(&fs, small_options()).unwrap();
    let second = Log::open_with(
        Arc::new(fs.clone()) as Arc<dyn FileSystem>,
        log_dir(),
        small_options(),
    );
    assert!(matches!(second, Err(LogError::Locked { .. })));
}

#[test]
fn empty_appends_and_flushes_are_barriers() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    let (tx, rx) = mpsc::channel();
    log.append(batch(1..=2, 0), |_| {}).unwrap();
    log.append(Vec::new(), move |r| tx.send(r).unwrap())
        .unwrap();
    rx.recv().unwrap().unwrap();
    let crashed = fs.crash();
    drop(log);
    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=2, 0));
}

//! Group commit: many appends share one fdatasync, nothing is acknowledged before its sync, and a
//! failed sync is final.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_log::{Log, LogError, LogOptions, MemFs};

use crate::{all_entries, append_durably, batch, open_mem, payload, small_options};

fn roomy() -> LogOptions {
    LogOptions {
        segment_size: 1 << 20,
        cache_size: 1 << 20,
        queue_depth: 256,
    }
}

#[test]
fn appends_queued_during_a_sync_share_the_next_one() {
    let fs = MemFs::new();
    let log = Arc::new(open_mem(&fs, roomy()).unwrap());
    append_durably(&log, batch(1..=1, 0)).unwrap();
    let syncs_before = fs.sync_count();

    // Hold the writer inside the sync of entry 2, queue 100 single-entry appends from four
    // threads behind it, then let go.
    fs.hold_syncs();
    let (tx, rx) = mpsc::channel();
    let done = tx.clone();
    log.append(batch(2..=2, 0), move |r| done.send(r).unwrap())
        .unwrap();
    fs.wait_for_held_syncs(1);

    let next = Arc::new(Mutex::new(3u64));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (log, next, tx) = (Arc::clone(&log), Arc::clone(&next), tx.clone());
            std::thread::spawn(move || {
                for _ in 0..25 {
                    // Indexes must be handed out in the order the appends are made.
                    let mut next = next.lock().unwrap();
                    let tx = tx.clone();
                    log.append(batch(*next..=*next, 0), move |r| tx.send(r).unwrap())
                        .unwrap();
                    *next += 1;
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    drop(tx);
    fs.release_syncs();
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), 101);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(
        fs.sync_count() - syncs_before,
        2,
        "one sync for entry 2, one for the hundred appends queued behind it"
    );
    assert_eq!(all_entries(&log), batch(1..=102, 0));
}

#[test]
fn concurrent_writers_waiting_for_durability_get_batched() {
    let fs = MemFs::new();
    fs.set_sync_delay(Duration::from_millis(1));
    let log = Arc::new(open_mem(&fs, roomy()).unwrap());
    let next = Arc::new(Mutex::new(1u64));
    let syncs_before = fs.sync_count();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (log, next) = (Arc::clone(&log), Arc::clone(&next));
            std::thread::spawn(move || {
                for _ in 0..40 {
                    let (tx, rx) = mpsc::channel();
                    {
                        let mut next = next.lock().unwrap();
                        log.append(batch(*next..=*next, 0), move |r| tx.send(r).unwrap())
                            .unwrap();
                        *next += 1;
                    }
                    rx.recv().unwrap().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let syncs = fs.sync_count() - syncs_before;
    assert!(
        syncs * 2 <= 320,
        "{syncs} syncs for 320 appends: no batching"
    );
    assert_eq!(all_entries(&log), batch(1..=320, 0));
}

#[test]
fn a_failed_sync_fails_the_append_and_poisons_the_log() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=5, 0)).unwrap();

    fs.fail_nth_sync(1);
    let failed = append_durably(&log, batch(6..=7, 0));
    assert!(
        matches!(
            &failed,
            Err(LogError::Io {
                context: "fdatasync",
                ..
            })
        ),
        "{failed:?}"
    );
    // fsync errors are not retryable: nothing is accepted any more.
    let later = log.append(batch(8..=8, 0), |_| {});
    assert!(matches!(later, Err(LogError::Poisoned { .. })), "{later:?}");
    assert!(matches!(log.truncate(2), Err(LogError::Poisoned { .. })));
    assert!(matches!(log.purge(2), Err(LogError::Poisoned { .. })));
    assert!(matches!(
        log.save_vote(b"v"),
        Err(LogError::Poisoned { .. })
    ));
    let crashed = fs.crash();
    assert!(log.close().is_err());

    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(
        all_entries(&log),
        batch(1..=5, 0),
        "the failed batch is not on disk"
    );
}

#[test]
fn a_failed_write_fails_every_append_queued_with_it() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=1, 0)).unwrap();
    fs.hold_syncs();
    let (tx, rx) = mpsc::channel();
    let first = tx.clone();
    log.append(batch(2..=2, 0), move |r| first.send((2, r)).unwrap())
        .unwrap();
    fs.wait_for_held_syncs(1);
    fs.fail_nth_write(1);
    for i in 3..=5 {
        let tx = tx.clone();
        log.append(batch(i..=i, 0), move |r| tx.send((i, r)).unwrap())
            .unwrap();
    }
    fs.release_syncs();
    drop(tx);
    let mut results: Vec<_> = rx.iter().collect();
    results.sort_by_key(|(i, _)| *i);
    assert!(
        results[0].1.is_ok(),
        "entry 2 was synced before the failure"
    );
    assert!(results[1..].iter().all(|(_, r)| r.is_err()), "{results:?}");
}

#[test]
fn callbacks_run_even_when_the_log_is_dropped_with_work_queued() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    let acked = Arc::new(AtomicU64::new(0));
    for i in 1..=50 {
        let acked = Arc::clone(&acked);
        log.append(vec![(i, payload(i, 0))], move |r| {
            r.unwrap();
            acked.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    }
    drop(log);
    assert_eq!(acked.load(Ordering::SeqCst), 50);
    let log: Log = open_mem(&fs.crash(), small_options()).unwrap();
    assert_eq!(log.last_index(), Some(50));
}

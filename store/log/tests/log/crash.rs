//! Power loss at arbitrary moments: nothing acknowledged is lost, and what survives is a prefix
//! of what was appended.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use cairn_log::MemFs;

use crate::{all_entries, append_durably, batch, open_mem, small_options};

#[test]
fn a_crash_between_write_and_sync_loses_only_the_unacknowledged_batch() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    append_durably(&log, batch(1..=20, 0)).unwrap();

    fs.hold_syncs();
    let (tx, rx) = mpsc::channel();
    log.append(batch(21..=30, 0), move |r| tx.send(r).unwrap())
        .unwrap();
    fs.wait_for_held_syncs(1);
    let crashed = fs.crash();
    fs.release_syncs();
    rx.recv().unwrap().unwrap();
    drop(log);

    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(all_entries(&log), batch(1..=20, 0));
    append_durably(&log, batch(21..=22, 5)).unwrap();
}

#[test]
fn crashes_at_random_moments_never_lose_acknowledged_entries() {
    for round in 0..8u64 {
        let fs = MemFs::new();
        fs.set_sync_delay(Duration::from_micros(200));
        let log = Arc::new(open_mem(&fs, small_options()).unwrap());
        let acked = Arc::new(AtomicU64::new(0));
        let writer = {
            let (log, acked) = (Arc::clone(&log), Arc::clone(&acked));
            std::thread::spawn(move || {
                for start in (1..=400u64).step_by(4) {
                    let acked = Arc::clone(&acked);
                    let end = start + 3;
                    log.append(batch(start..=end, 0), move |r| {
                        if r.is_ok() {
                            acked.fetch_max(end, Ordering::SeqCst);
                        }
                    })
                    .unwrap();
                }
            })
        };
        // Let the writer get going, then pull the plug.
        std::thread::sleep(Duration::from_millis(2 + round));
        let acked_before_crash = acked.load(Ordering::SeqCst);
        let crashed = fs.crash_keeping(round as usize % 3, 7 * round as usize);
        writer.join().unwrap();
        drop(log);

        let log = open_mem(&crashed, small_options()).unwrap();
        let recovered = all_entries(&log);
        let last = log.last_index().unwrap_or(0);
        assert!(
            last >= acked_before_crash,
            "round {round}: acknowledged up to {acked_before_crash}, recovered up to {last}"
        );
        assert_eq!(recovered, batch(1..=last, 0), "round {round}: not a prefix");
    }
}

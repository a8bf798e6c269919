//! The log: group commit against one `fdatasync` per entry, and recovery of a large log.
//!
//! - `group_commit/N`: N threads each append one 256-byte entry and wait until it is durable,
//!   over and over (Raft's proposals under N concurrent clients). Throughput is entries/s; the
//!   entries each `fdatasync` covered is printed after each group.
//! - `fdatasync_per_entry`: the same entries written and synced one at a time to a plain file,
//!   the cost group commit saves.
//! - `recovery`: opening (verifying every record of) a log of `CAIRN_BENCH_LOG_MIB` MiB
//!   (default 1024).

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_log::{Log, LogOptions, StdFs};
use cairn_microbench::env_or;
use cairn_store::metrics::histogram::{Histogram, DISK_BUCKETS};
use cairn_store::metrics::timed_fs::TimedFs;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const ENTRY: usize = 256;

/// Appends `total` entries from `appenders` threads, each waiting for its entry to be durable
/// before the next; returns the time taken.
fn append_concurrently(
    log: &Arc<Log>,
    next: &Arc<Mutex<u64>>,
    appenders: u64,
    total: u64,
) -> Duration {
    let payload = Bytes::from(vec![7u8; ENTRY]);
    let start = Instant::now();
    let threads: Vec<_> = (0..appenders)
        .map(|t| {
            let (log, next, payload) = (log.clone(), next.clone(), payload.clone());
            // Spread `total` over the threads, the first ones taking the remainder.
            let mine = total / appenders + u64::from(t < total % appenders);
            thread::spawn(move || {
                for _ in 0..mine {
                    let (tx, rx) = mpsc::sync_channel(1);
                    {
                        // Indexes must be consecutive in submission order.
                        let mut next = next.lock().expect("not poisoned");
                        log.append(vec![(*next, payload.clone())], move |r| {
                            let _ = tx.send(r);
                        })
                        .expect("append");
                        *next += 1;
                    }
                    rx.recv().expect("completed").expect("durable");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("appender");
    }
    start.elapsed()
}

fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("group_commit");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    for appenders in [1u64, 16, 256] {
        let dir = tempfile::tempdir().expect("temp dir");
        // The member's own wrapper, which times (and so counts) every fdatasync of the log.
        let syncs = Arc::new(Histogram::new(DISK_BUCKETS));
        let fs = TimedFs::new(Arc::new(StdFs), syncs.clone());
        let log =
            Arc::new(Log::open_with(Arc::new(fs), dir.path(), LogOptions::default()).expect("log"));
        let next = Arc::new(Mutex::new(1u64));
        let (syncs_before, entries_before) = (syncs.count(), 1);
        g.bench_function(appenders.to_string(), |b| {
            b.iter_custom(|iters| append_concurrently(&log, &next, appenders, iters.max(appenders)))
        });
        let entries = *next.lock().expect("not poisoned") - entries_before;
        let syncs = syncs.count() - syncs_before;
        println!(
            "group_commit/{appenders}: {entries} entries, {syncs} fdatasyncs, {:.1} entries per fdatasync",
            entries as f64 / syncs.max(1) as f64
        );
    }
    g.finish();
}

fn fdatasync_per_entry(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(dir.path().join("plain"))
        .expect("file");
    file.set_len(64 << 20).expect("preallocate");
    let payload = vec![7u8; ENTRY];
    let mut offset = 0u64;
    let mut g = c.benchmark_group("fdatasync_per_entry");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Elements(1));
    g.bench_function("1", |b| {
        b.iter(|| {
            file.write_all_at(&payload, offset % (64 << 20))
                .expect("write");
            file.sync_data().expect("sync");
            offset += ENTRY as u64;
        })
    });
    g.finish();
}

fn recovery(c: &mut Criterion) {
    let mib = env_or("CAIRN_BENCH_LOG_MIB", 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    let payload = Bytes::from(vec![3u8; 4096]);
    let entries = mib * (1 << 20) / payload.len() as u64;
    {
        let log = Log::open(dir.path(), LogOptions::default()).expect("log");
        let mut index = 1u64;
        while index <= entries {
            let batch: Vec<(u64, Bytes)> = (index..(index + 1024).min(entries + 1))
                .map(|i| (i, payload.clone()))
                .collect();
            index += batch.len() as u64;
            log.append(batch, |r| r.expect("durable")).expect("append");
        }
        log.sync().expect("sync");
        log.close().expect("close");
    }
    let mut g = c.benchmark_group("recovery");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Bytes(mib << 20));
    g.bench_function(format!("{mib}MiB"), |b| {
        b.iter(|| {
            let log = Log::open(dir.path(), LogOptions::default()).expect("recovers");
            assert_eq!(log.last_index(), Some(entries));
            log.close().expect("close");
        })
    });
    g.finish();
}

criterion_group!(benches, group_commit, fdatasync_per_entry, recovery);
criterion_main!(benches);

//! The MVCC store (redb) holding `CAIRN_BENCH_KEYS` keys (default 1 000 000), 8-byte keys and
//! 256-byte values, as the compare table's fill leaves it:
//!
//! - `mvcc/put`: one Put in its own write batch, committed without a sync (as the state
//!   machine commits between durable checkpoints), to a random existing key;
//! - `mvcc/put_batch_64`: 64 Puts in one batch, as an apply of a busy Raft batch (throughput
//!   counted in puts);
//! - `mvcc/range`: a serializable read of one random key.

use std::time::Duration;

use cairn_microbench::env_or;
use cairn_mvcc::{Command, Mvcc};
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn key(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn put(i: u64) -> Command {
    Command::Put(PutRequest {
        key: key(i),
        value: vec![b'v'; 256],
        ..Default::default()
    })
}

/// A small xorshift generator: the same keys every run.
struct Keys(u64, u64);

impl Keys {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % self.1
    }
}

fn mvcc(c: &mut Criterion) {
    let keys = env_or("CAIRN_BENCH_KEYS", 1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Mvcc::open(&dir.path().join("db")).expect("open");
    for start in (0..keys).step_by(10_000) {
        let mut batch = db.begin().expect("batch");
        for i in start..(start + 10_000).min(keys) {
            batch.apply(&put(i)).expect("put");
        }
        batch.commit(false).expect("commit");
    }
    db.begin().expect("batch").commit(true).expect("checkpoint");

    let mut g = c.benchmark_group("mvcc");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let mut rng = Keys(0x9e37_79b9_7f4a_7c15, keys);
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("put/{keys}"), |b| {
        b.iter(|| {
            let mut batch = db.begin().expect("batch");
            batch.apply(&put(rng.next())).expect("put");
            batch.commit(false).expect("commit");
        })
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function(format!("put_batch_64/{keys}"), |b| {
        b.iter(|| {
            let mut batch = db.begin().expect("batch");
            for _ in 0..64 {
                batch.apply(&put(rng.next())).expect("put");
            }
            batch.commit(false).expect("commit");
        })
    });
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("range/{keys}"), |b| {
        b.iter(|| {
            let resp = db
                .range(&RangeRequest {
                    key: key(rng.next()),
                    serializable: true,
                    ..Default::default()
                })
                .expect("range");
            assert_eq!(resp.kvs.len(), 1);
        })
    });
    g.finish();
}

criterion_group!(benches, mvcc);
criterion_main!(benches);

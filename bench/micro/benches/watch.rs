//! Watch fan-out on the member's side, without the network: one put published to the hub,
//! read back as a chunk, and one response per watcher of the key (N of them) built from the
//! shared event encoding and written into a transport buffer — what `watch::stream` and the
//! Watch service's codec do per event. Throughput is counted in events delivered (N per put).

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use cairn_mvcc::KeyRange;
use cairn_proto::etcdserverpb::ResponseHeader;
use cairn_proto::mvccpb::{Event, KeyValue};
use cairn_store::watch::hub::{ReadLimit, WatchHub};
use cairn_store::watch::response::{self, EncodedHeader, Outgoing};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn fan_out(c: &mut Criterion) {
    let mut g = c.benchmark_group("watch_fan_out");
    g.sample_size(20).measurement_time(Duration::from_secs(5));
    let limit = ReadLimit {
        max_events: 512,
        max_bytes: 4 << 20,
    };
    for watchers in [1i64, 100, 1000] {
        let hub = Arc::new(WatchHub::new(1));
        let mut rev = 1i64;
        let mut buf = BytesMut::with_capacity(64 << 10);
        g.throughput(Throughput::Elements(watchers as u64));
        g.bench_function(watchers.to_string(), |b| {
            b.iter(|| {
                rev += 1;
                hub.publish(
                    rev,
                    vec![Event {
                        r#type: 0,
                        kv: Some(KeyValue {
                            key: b"watched-key-0000000000000000000".to_vec(),
                            create_revision: 2,
                            mod_revision: rev,
                            version: rev - 1,
                            value: vec![b'x'; 256],
                            lease: 0,
                        }),
                        prev_kv: None,
                    }],
                );
                let chunk = hub
                    .read(
                        rev,
                        rev,
                        KeyRange::Single(b"watched-key-0000000000000000000"),
                        limit,
                    )
                    .expect("in the ring");
                let header = EncodedHeader::from(ResponseHeader {
                    cluster_id: 0x1234_5678_9abc_def0,
                    member_id: 0x0fed_cba9_8765_4321,
                    revision: chunk.through,
                    raft_term: 2,
                });
                buf.clear();
                for id in 0..watchers {
                    let events = chunk
                        .events
                        .iter()
                        .map(|e| e.encoded(false).clone())
                        .collect();
                    Outgoing::from(response::events(header.clone(), id, events)).encode(&mut buf);
                }
                buf.len()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);

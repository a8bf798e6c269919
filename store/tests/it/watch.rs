//! The Watch service through its gRPC client, with etcd's guarantees: ordered by revision,
//! every event exactly once, one revision per response unless fragmented, replay from any
//! retained revision, compaction cancels, filters and prev_kv, progress, many watchers and
//! streams, a slow reader that blocks nobody and catches up, and watches on a follower —
//! also across a snapshot install.
//!
//! The exact response shapes are etcd 3.4's (checked side by side in `cairn-tests`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::harness::{channel, cluster, kv, leader_of, member_id_of, put, wait_ready, Solo};

fn phase(what: &str) {
    eprintln!("--- {what}");
}

impl Solo {
    fn hub(&self) -> std::sync::Arc<cairn_store::watch::WatchHub> {
        self.node().watch_hub.clone()
    }
}

/// One client watch stream.
struct Stream {
    tx: mpsc::Sender<WatchRequest>,
    rx: Streaming<WatchResponse>,
}

const WAIT: Duration = Duration::from_secs(20);

impl Stream {
    async fn open(endpoint: &str) -> Stream {
        Stream::on(channel(endpoint).await.expect("connect")).await
    }

    async fn on(ch: Channel) -> Stream {
        let (tx, rx) = mpsc::channel(4096);
        let rx = WatchClient::new(ch)
            .max_decoding_message_size(usize::MAX)
            .watch(ReceiverStream::new(rx))
            .await
            .expect("watch stream")
            .into_inner();
        Stream { tx, rx }
    }

    async fn send(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .expect("request stream open");
    }

    async fn create(&self, req: WatchCreateRequest) {
        self.send(RequestUnion::CreateRequest(req)).await;
    }

    /// Creates a watcher and returns its id from the created response.
    async fn watch(&mut self, req: WatchCreateRequest) -> i64 {
        self.create(req).await;
        let r = self.next().await;
        assert!(r.created && !r.canceled, "{r:?}");
        r.watch_id
    }

    async fn cancel(&self, watch_id: i64) {
        self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }))
            .await;
    }

    async fn progress(&self) {
        self.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
            .await;
    }

    async fn next(&mut self) -> WatchResponse {
        match tokio::time::timeout(WAIT, self.rx.message()).await {
            Ok(Ok(Some(r))) => r,
            other => panic!("expected a watch response, got {other:?}"),
        }
    }

    /// Collects responses until `n` events for `watch_id` arrived (responses of other
    /// watchers are returned too, in arrival order).
    async fn events_for(&mut self, watch_id: i64, n: usize) -> (Vec<Event>, Vec<WatchResponse>) {
        let mut events = Vec::new();
        let mut responses = Vec::new();
        while events.len() < n {
            let r = self.next().await;
            if r.watch_id == watch_id {
                events.extend(r.events.iter().cloned());
            }
            responses.push(r);
        }
        assert_eq!(events.len(), n, "no more than asked for");
        (events, responses)
    }
}

fn create(key: &str, range_end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn rev(e: &Event) -> i64 {
    e.kv.as_ref().expect("kv").mod_revision
}

fn key(e: &Event) -> String {
    String::from_utf8_lossy(&e.kv.as_ref().expect("kv").key).into_owned()
}

fn header_rev(r: &WatchResponse) -> i64 {
    r.header.expect("header").revision
}

fn is_delete(e: &Event) -> bool {
    e.r#type == EventType::Delete as i32
}

fn txn_of_puts(keys: impl IntoIterator<Item = String>, value: &[u8]) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success: keys
            .into_iter()
            .map(|k| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: k.into_bytes(),
                    value: value.to_vec(),
                    ..Default::default()
                })),
            })
            .collect(),
        failure: vec![],
    }
}

/// Every create option, cancel and progress request, with etcd's ids and response shapes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_option_behaves_as_in_etcd() {
    let s = Solo::start(&[]).await;
    let mut kv = kv(&s.endpoint).await;
    phase("history: a@2 b@3 a@4, b deleted @5");
    kv.put(put("a", "1")).await.expect("put");
    kv.put(put("b", "1")).await.expect("put");
    kv.put(put("a", "2")).await.expect("put");
    kv.delete_range(DeleteRangeRequest {
        key: "b".into(),
        ..Default::default()
    })
    .await
    .expect("delete");

    phase("creates: ids count from 0, header at the current revision");
    let mut w = Stream::open(&s.endpoint).await;
    w.create(create("a", "")).await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.created, r.canceled, header_rev(&r)),
        (0, true, false, 5)
    );
    assert!(r.events.is_empty() && r.header.expect("h").member_id != 0);
    let all = w
        .watch(WatchCreateRequest {
            prev_kv: true,
            ..create("", "\0")
        })
        .await;
    assert_eq!(all, 1, "empty key with range_end \\0 watches every key");
    let no_put = w
        .watch(WatchCreateRequest {
            filters: vec![FilterType::Noput as i32],
            ..create("b", "d")
        })
        .await;
    assert_eq!(no_put, 2);

    phase("explicit id with a start revision in the past replays history");
    w.create(WatchCreateRequest {
        watch_id: 10,
        start_revision: 2,
        ..create("a", "")
    })
    .await;
    let r = w.next().await;
    assert_eq!((r.watch_id, r.created), (10, true));
    let r = w.next().await;
    assert_eq!(r.watch_id, 10);
    assert_eq!(header_rev(&r), 5, "replay header is the store revision");
    let revs: Vec<i64> = r.events.iter().map(rev).collect();
    assert_eq!(revs, vec![2, 4], "both of a's revisions, in one response");
    assert!(
        r.events.iter().all(|e| e.prev_kv.is_none()),
        "prev_kv not asked"
    );

    phase("duplicate id and empty range are refused with id -1, created and canceled");
    w.create(WatchCreateRequest {
        watch_id: 10,
        ..create("x", "")
    })
    .await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.created, r.canceled, r.cancel_reason.as_str()),
        (
            -1,
            true,
            true,
            "mvcc: duplicate watch ID provided on the WatchStream"
        )
    );
    assert_eq!(header_rev(&r), 5);
    w.create(create("b", "a")).await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.created, r.canceled, r.cancel_reason.as_str()),
        (-1, true, true, "mvcc: watcher range is empty")
    );

    phase("automatic ids skip ids taken explicitly");
    let c_no_delete = w
        .watch(WatchCreateRequest {
            watch_id: 4,
            filters: vec![FilterType::Nodelete as i32],
            ..create("c", "")
        })
        .await;
    assert_eq!(c_no_delete, 4);
    assert_eq!(w.watch(create("zz", "")).await, 3);
    assert_eq!(w.watch(create("zz", "")).await, 5, "4 is taken");

    phase("a put reaches the watchers of its key; prev_kv only where asked");
    kv.put(put("a", "3")).await.expect("put"); // rev 6
    let mut got = HashMap::new();
    for _ in 0..3 {
        let r = w.next().await;
        assert_eq!((header_rev(&r), r.events.len()), (6, 1), "{r:?}");
        got.insert(r.watch_id, r.events[0].clone());
    }
    let mut ids: Vec<i64> = got.keys().copied().collect();
    ids.sort();
    assert_eq!(ids, vec![0, 1, 10]);
    assert_eq!(got[&0].prev_kv, None);
    let prev = got[&1].prev_kv.clone().expect("prev_kv asked for");
    assert_eq!((prev.value.as_slice(), prev.mod_revision), (&b"2"[..], 4));

    phase("one txn: one response per watcher holding all its events of that revision");
    kv.txn(txn_of_puts(["b".to_string(), "c".to_string()], b"v"))
        .await
        .expect("txn"); // rev 7
    let mut by_watcher: HashMap<i64, Vec<Event>> = HashMap::new();
    for _ in 0..2 {
        let r = w.next().await;
        assert_eq!(header_rev(&r), 7);
        assert!(
            by_watcher.insert(r.watch_id, r.events).is_none(),
            "one response per watcher"
        );
    }
    assert_eq!(
        by_watcher[&1].iter().map(key).collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(by_watcher[&4].iter().map(key).collect::<Vec<_>>(), ["c"]);

    phase("deletes: NOPUT lets them through, NODELETE drops them");
    kv.delete_range(DeleteRangeRequest {
        key: "b".into(),
        range_end: "d".into(),
        ..Default::default()
    })
    .await
    .expect("delete"); // rev 8
    let mut by_watcher: HashMap<i64, Vec<Event>> = HashMap::new();
    for _ in 0..2 {
        let r = w.next().await;
        by_watcher.insert(r.watch_id, r.events);
    }
    for id in [1, 2] {
        let evs = &by_watcher[&id];
        assert!(evs.iter().all(is_delete), "{evs:?}");
        assert_eq!(evs.iter().map(key).collect::<Vec<_>>(), ["b", "c"]);
        assert!(evs.iter().all(|e| rev(e) == 8));
    }
    assert!(by_watcher[&1][0].prev_kv.is_some(), "deletes carry prev_kv");
    assert!(by_watcher[&2][0].prev_kv.is_none());

    phase("cancel: a canceled response; unknown ids get nothing");
    w.cancel(0).await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.canceled, r.created, header_rev(&r)),
        (0, true, false, 8)
    );
    w.cancel(99).await;
    w.progress().await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.events.len(), header_rev(&r)),
        (-1, 0, 8),
        "progress, not an answer to the unknown cancel"
    );
    kv.put(put("a", "4")).await.expect("put"); // rev 9
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(w.next().await.watch_id);
    }
    ids.sort();
    assert_eq!(ids, vec![1, 10], "the canceled watcher hears nothing");

    phase("a start revision in the future: nothing before it");
    let future = w
        .watch(WatchCreateRequest {
            start_revision: 12,
            ..create("f", "")
        })
        .await;
    for v in ["1", "2", "3"] {
        kv.put(put("f", v)).await.expect("put"); // revs 10, 11, 12
    }
    let (evs, _) = w.events_for(future, 1).await;
    assert_eq!(rev(&evs[0]), 12);
    s.stop().await;
}

/// 10k writes from concurrent clients: one watcher sees every revision exactly once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revision_exactly_once_across_10k_writes() {
    let s = Solo::start(&[]).await;
    let mut w = Stream::open(&s.endpoint).await;
    let id = w.watch(create("w/", "w0")).await;
    let start = kv(&s.endpoint)
        .await
        .range(crate::harness::get("x"))
        .await
        .expect("range")
        .into_inner()
        .header
        .expect("h")
        .revision;

    phase("8 writers, 1250 puts each");
    let mut writers = Vec::new();
    for t in 0..8 {
        let endpoint = s.endpoint.clone();
        writers.push(tokio::spawn(async move {
            let mut c = kv(&endpoint).await;
            for i in 0..1250 {
                c.put(put(&format!("w/{t}/{i}"), "v")).await.expect("put");
            }
        }));
    }
    let (events, responses) = w.events_for(id, 10_000).await;
    for t in writers {
        t.await.expect("writer");
    }
    let revs: Vec<i64> = events.iter().map(rev).collect();
    let expected: Vec<i64> = (start + 1..=start + 10_000).collect();
    assert!(revs == expected, "every revision once, in order");
    for r in &responses {
        assert!(
            r.events.iter().all(|e| rev(e) <= header_rev(r)),
            "header revision covers the events"
        );
    }
    s.stop().await;
}

/// Watches from any retained revision replay history exactly as it was seen live, prev_kv
/// included, across more events than one read returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_replays_from_any_revision() {
    let s = Solo::start(&[]).await;
    let mut live = Stream::open(&s.endpoint).await;
    let id = live
        .watch(WatchCreateRequest {
            prev_kv: true,
            ..create("h/", "h0")
        })
        .await;
    let mut kv = kv(&s.endpoint).await;

    phase("1500 events: puts, overwrites, deletes, txns; unrelated keys in between");
    let mut n = 0;
    for i in 0..300 {
        kv.put(put(&format!("h/{}", i % 40), &i.to_string()))
            .await
            .expect("put");
        kv.put(put(&format!("other/{i}"), "x")).await.expect("put");
        n += 1;
        if i % 10 == 9 {
            kv.delete_range(DeleteRangeRequest {
                key: format!("h/{}", i % 40).into(),
                ..Default::default()
            })
            .await
            .expect("delete");
            n += 1;
        }
        if i % 3 == 0 {
            kv.txn(txn_of_puts((0..3).map(|j| format!("h/t{i}/{j}")), b"v"))
                .await
                .expect("txn");
            n += 3;
        }
    }
    let (seen, _) = live.events_for(id, n).await;
    let first = rev(&seen[0]);
    let last = rev(&seen[seen.len() - 1]);

    for start in [1, first, first + 1, (first + last) / 2, last] {
        phase(&format!("replay from revision {start}"));
        let mut w = Stream::open(&s.endpoint).await;
        let rid = w
            .watch(WatchCreateRequest {
                prev_kv: true,
                start_revision: start,
                ..create("h/", "h0")
            })
            .await;
        let expected: Vec<Event> = seen.iter().filter(|e| rev(e) >= start).cloned().collect();
        let (got, responses) = w.events_for(rid, expected.len()).await;
        assert!(got == expected, "replay from {start} equals the live view");
        for r in &responses {
            let revs: Vec<i64> = r.events.iter().map(rev).collect();
            assert!(
                revs.windows(2).all(|p| p[0] <= p[1]),
                "ordered within a response"
            );
        }
        // A revision never straddles two responses.
        for pair in responses.windows(2) {
            let (a, b) = (&pair[0].events, &pair[1].events);
            if let (Some(x), Some(y)) = (a.last(), b.first()) {
                assert!(rev(x) < rev(y), "revision split across responses");
            }
        }
    }

    phase("the replayed watcher then continues live");
    let mut w = Stream::open(&s.endpoint).await;
    let rid = w
        .watch(WatchCreateRequest {
            start_revision: last,
            ..create("h/", "h0")
        })
        .await;
    kv.put(put("h/after", "x")).await.expect("put");
    let expected = seen.iter().filter(|e| rev(e) == last).count() + 1;
    let (got, _) = w.events_for(rid, expected).await;
    assert_eq!(key(&got[got.len() - 1]), "h/after");
    s.stop().await;
}

/// A start revision below the compaction point: the created response, then a response with
/// `compact_revision` and `canceled` (header revision 0, as etcd sends it). The id stays taken
/// until the client cancels it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_start_revision_cancels_the_watcher() {
    let s = Solo::start(&[]).await;
    let mut kv = kv(&s.endpoint).await;
    for i in 0..10 {
        kv.put(put("c", &i.to_string())).await.expect("put"); // revs 2..=11
    }
    kv.compact(CompactionRequest {
        revision: 6,
        physical: true,
    })
    .await
    .expect("compact");

    let mut w = Stream::open(&s.endpoint).await;
    w.create(WatchCreateRequest {
        watch_id: 7,
        start_revision: 3,
        ..create("c", "")
    })
    .await;
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.created, r.canceled, header_rev(&r)),
        (7, true, false, 11)
    );
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.canceled, r.compact_revision, header_rev(&r)),
        (7, true, 6, 0)
    );
    assert!(r.events.is_empty() && !r.created && r.cancel_reason.is_empty());

    phase("the compacted id is still taken until canceled");
    w.create(WatchCreateRequest {
        watch_id: 7,
        ..create("c", "")
    })
    .await;
    assert_eq!(w.next().await.watch_id, -1, "duplicate");
    w.cancel(7).await;
    let r = w.next().await;
    assert_eq!((r.watch_id, r.canceled), (7, true));

    phase("at the compaction revision itself history is still there");
    let id = w
        .watch(WatchCreateRequest {
            watch_id: 7,
            start_revision: 6,
            ..create("c", "")
        })
        .await;
    let (evs, _) = w.events_for(id, 6).await;
    assert_eq!(
        evs.iter().map(rev).collect::<Vec<_>>(),
        (6..=11).collect::<Vec<_>>()
    );

    phase("a negative start revision counts as compacted");
    w.create(WatchCreateRequest {
        start_revision: -3,
        ..create("c", "")
    })
    .await;
    let created = w.next().await;
    assert!(created.created);
    let r = w.next().await;
    assert_eq!(
        (r.watch_id, r.canceled, r.compact_revision),
        (created.watch_id, true, 6)
    );
    s.stop().await;
}

/// Thousands of watchers on one stream and hundreds of streams: each gets exactly its events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_watchers_and_hundreds_of_streams() {
    let s = Solo::start(&[]).await;
    phase("3000 single-key watchers and 50 prefix watchers on one stream");
    let mut w = Stream::open(&s.endpoint).await;
    for i in 0..3000 {
        w.create(create(&format!("m/{i:04}"), "")).await;
    }
    for _ in 0..50 {
        w.create(create("m/", "m0")).await;
    }
    for expect in 0..3050 {
        let r = w.next().await;
        assert_eq!((r.watch_id, r.created), (expect, true));
    }

    phase("300 streams over 3 connections, 10 watchers each");
    let mut streams = Vec::new();
    for c in 0..3 {
        let ch = channel(&s.endpoint).await.expect("connect");
        for _ in 0..100 {
            let st = Stream::on(ch.clone()).await;
            for _ in 0..10 {
                st.create(create("m/", "m0")).await;
            }
            streams.push(st);
        }
        eprintln!("connection {c}: 100 streams open");
    }
    for st in &mut streams {
        for expect in 0..10 {
            assert_eq!(st.next().await.watch_id, expect);
        }
    }

    phase("200 keys written in 20 txns");
    let mut kv = kv(&s.endpoint).await;
    for t in 0..20 {
        kv.txn(txn_of_puts(
            (0..10).map(|j| format!("m/{:04}", t * 10 + j)),
            b"v",
        ))
        .await
        .expect("txn");
    }
    // 200 single-key responses; the 50 prefix watchers get 20 revisions of 10 events each
    // (a response may hold several revisions when the stream is behind, never part of one).
    let mut single = 0;
    let mut prefix_events = 0;
    while single < 200 || prefix_events < 50 * 200 {
        let r = w.next().await;
        if r.watch_id < 3000 {
            assert_eq!(r.events.len(), 1);
            assert_eq!(key(&r.events[0]), format!("m/{:04}", r.watch_id));
            single += 1;
        } else {
            assert_eq!(r.events.len() % 10, 0, "a txn's events together");
            prefix_events += r.events.len();
        }
    }
    assert_eq!((single, prefix_events), (200, 50 * 200));
    for st in &mut streams {
        let mut n = 0;
        while n < 10 * 200 {
            n += st.next().await.events.len();
        }
        assert_eq!(n, 2000);
    }
    s.stop().await;
}

/// A watcher whose client stops reading while 100k events are written: writes and another
/// watcher are not slowed down, the hub stays within its bounds, and once the client reads
/// again it gets every event, in order, once (etcd's slow watcher / unsynced catch-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_blocks_nobody_and_catches_up() {
    let s = Solo::start(&["--max-txn-ops", "1000"]).await;
    let hub = s.hub();
    let bound = hub.bounds().max_events;

    let mut slow = Stream::open(&s.endpoint).await;
    let slow_id = slow.watch(create("s/", "s0")).await;
    let slow_start = hub.head() + 1;
    let mut fast = Stream::open(&s.endpoint).await;
    let fast_id = fast.watch(create("s/", "s0")).await;
    let fast_reader = tokio::spawn(async move {
        let (events, _) = fast.events_for(fast_id, 100_000).await;
        events
    });

    // 100-byte values make 100k events ~14 MB: far more than the hub's window plus what the
    // HTTP/2 flow-control windows let through to the idle client, so most of the slow
    // watcher's events can only come from redb.
    phase("100k puts as 200 txns of 500, from 4 writers, while the slow client reads nothing");
    let value = vec![b'x'; 100];
    let started = Instant::now();
    let mut max_buffered = 0;
    let mut writers = Vec::new();
    for t in 0..4 {
        let endpoint = s.endpoint.clone();
        let value = value.clone();
        writers.push(tokio::spawn(async move {
            let mut c = kv(&endpoint).await;
            for i in 0..50 {
                let base = (t * 50 + i) * 500;
                c.txn(txn_of_puts(
                    (0..500).map(|j| format!("s/{:06}", base + j)),
                    &value,
                ))
                .await
                .expect("txn");
            }
        }));
    }
    while !writers.iter().all(|w| w.is_finished()) {
        max_buffered = max_buffered.max(hub.buffered_events());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in writers {
        w.await.expect("writer");
    }
    eprintln!("writes took {:?}", started.elapsed());
    assert!(max_buffered <= bound, "hub held {max_buffered} > {bound}");
    assert!(hub.buffered_events() <= bound);
    assert!(
        hub.floor() > slow_start,
        "the slow watcher's next events left memory: it must catch up from redb"
    );
    let fast_events = tokio::time::timeout(Duration::from_secs(60), fast_reader)
        .await
        .expect("the fast watcher is not held up by the slow one")
        .expect("reader");
    assert_eq!(fast_events.len(), 100_000);
    eprintln!("fast watcher done after {:?}", started.elapsed());

    phase("the slow client reads: everything, in order, once");
    let (events, responses) = slow.events_for(slow_id, 100_000).await;
    let keys: Vec<String> = events.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 100_000, "no duplicates");
    let revs: Vec<i64> = events.iter().map(rev).collect();
    assert!(revs.windows(2).all(|p| p[0] <= p[1]), "revision order");
    assert!(
        events == fast_events,
        "same events as the watcher that kept up"
    );
    for r in &responses {
        assert!(
            r.events.len() % 500 == 0,
            "txns never split across responses"
        );
    }
    eprintln!("slow watcher done after {:?}", started.elapsed());
    s.stop().await;
}

/// Periodic progress notifications for idle watchers that ask, and progress requests answered
/// only once every watcher of the stream has caught up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_and_requests() {
    let s = Solo::start(&["--experimental-watch-progress-notify-interval", "300ms"]).await;
    let mut kv = kv(&s.endpoint).await;
    for i in 0..2000 {
        kv.put(put(&format!("p/{}", i % 7), "v"))
            .await
            .expect("put");
    }
    let current = 2001;

    phase("an idle watcher with progress_notify hears the revision periodically");
    let mut w = Stream::open(&s.endpoint).await;
    let quiet = w.watch(create("nothing-here", "")).await;
    let notified = w
        .watch(WatchCreateRequest {
            progress_notify: true,
            ..create("p/", "p0")
        })
        .await;
    let mut at = Vec::new();
    for _ in 0..2 {
        let r = w.next().await;
        at.push(Instant::now());
        assert_eq!(
            (r.watch_id, r.events.len(), header_rev(&r)),
            (notified, 0, current)
        );
        assert_ne!(r.watch_id, quiet);
    }
    assert!(at[1] - at[0] >= Duration::from_millis(250), "periodic");

    phase("a progress request waits for a replaying watcher to catch up");
    let mut w = Stream::open(&s.endpoint).await;
    let replay = w
        .watch(WatchCreateRequest {
            start_revision: 2,
            ..create("p/", "p0")
        })
        .await;
    w.progress().await;
    let mut replayed = 0;
    loop {
        let r = w.next().await;
        if r.watch_id == -1 {
            assert_eq!((r.events.len(), header_rev(&r)), (0, current));
            break;
        }
        assert_eq!(r.watch_id, replay);
        replayed += r.events.len();
    }
    assert_eq!(
        replayed, 2000,
        "all history came before the progress response"
    );
    s.stop().await;
}

/// Watchers that allow fragmentation get large revisions split at --max-request-bytes plus
/// gRPC overhead (etcd's sendFragments); others get one response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_revisions_are_fragmented_on_request() {
    // Fragments are cut at max-request-bytes + 512 KiB, as in etcd.
    let s = Solo::start(&["--max-request-bytes", "65536"]).await;
    let limit = 65536 + 512 * 1024;
    let mut kv = kv(&s.endpoint).await;
    let value = "x".repeat(10_000);
    for i in 0..150 {
        kv.put(put(&format!("g/{i:03}"), &value))
            .await
            .expect("put");
    }
    let mut w = Stream::open(&s.endpoint).await;
    let whole = w
        .watch(WatchCreateRequest {
            prev_kv: true,
            ..create("g/", "g0")
        })
        .await;
    let split = w
        .watch(WatchCreateRequest {
            prev_kv: true,
            fragment: true,
            ..create("g/", "g0")
        })
        .await;
    kv.delete_range(DeleteRangeRequest {
        key: "g/".into(),
        range_end: "g0".into(),
        ..Default::default()
    })
    .await
    .expect("delete 150 keys of 10 KB: 1.5 MB of prev_kv in one revision");

    let (events, responses) = w.events_for(split, 150).await;
    let whole_resp: Vec<&WatchResponse> =
        responses.iter().filter(|r| r.watch_id == whole).collect();
    let pieces: Vec<&WatchResponse> = responses.iter().filter(|r| r.watch_id == split).collect();
    // Within a revision responses go out in watcher id order, so the unfragmented one came
    // before the last fragment.
    assert_eq!(whole_resp.len(), 1);
    assert_eq!(whole_resp[0].events.len(), 150);
    assert!(!whole_resp[0].fragment);
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    for (i, p) in pieces.iter().enumerate() {
        assert_eq!(p.fragment, i + 1 < pieces.len());
        assert!(prost::Message::encoded_len(*p) < limit);
    }
    assert_eq!(events, whole_resp[0].events);
    s.stop().await;
}

/// A watch on a follower of a 3-member cluster sees the writes made through the leader, then
/// keeps every event across a snapshot install on that follower (the hub resyncs from redb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_watch_sees_leader_writes_and_survives_a_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["w1", "w2", "w3"], dir.path());
    for m in &mut members {
        m.extra = [
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let leader = leader_of(&members[0].client_url).await;
    let mut ids = Vec::new();
    for m in &members {
        ids.push(member_id_of(&m.client_url).await);
    }
    let li = ids.iter().position(|id| *id == leader).expect("leader");
    let fi = (li + 1) % 3;

    phase("watch on the follower, 200 writes through the leader");
    let mut w = Stream::open(&members[fi].client_url).await;
    let id = w.watch(create("f/", "f0")).await;
    let mut c = kv(&members[li].client_url).await;
    let mut revs = Vec::new();
    for i in 0..200 {
        let r = c.put(put(&format!("f/{i:03}"), "v")).await.expect("put");
        revs.push(r.into_inner().header.expect("h").revision);
    }
    let (events, responses) = w.events_for(id, 200).await;
    assert_eq!(events.iter().map(rev).collect::<Vec<_>>(), revs);
    assert!(
        responses
            .iter()
            .all(|r| r.header.expect("h").member_id == ids[fi]),
        "served by the follower"
    );

    phase("the follower freezes; 400 writes go past its log; it thaws and gets a snapshot");
    members[fi].freeze(true);
    let mut more = Vec::new();
    for i in 0..400 {
        let r = c.put(put(&format!("f/s{i:03}"), "v")).await.expect("put");
        more.push(r.into_inner().header.expect("h").revision);
    }
    members[fi].freeze(false);
    let (events, _) = w.events_for(id, 400).await;
    assert!(
        events.iter().map(rev).collect::<Vec<_>>() == more,
        "every write once, in order"
    );
}

//! The same watch scenario on one stream against real etcd and against cairn-store: creates
//! with every option, refused creates, history replay, filters, prev_kv, cancels, progress
//! requests, compaction cancels and fragmented responses. Each step's responses are compared
//! field by field (cluster id, member id and raft term cleared; large values summarized).
//!
//! etcd sends the responses of one revision to different watchers in no fixed order (a Go map
//! walk), so each step's responses are compared as a sorted list. Ordering guarantees are
//! checked by cairn-store's own watch tests.
//!
//! How many responses a step produces is learned from etcd, by reading until its stream has
//! been quiet for longer than its 100 ms watcher sync period; cairn-store must then produce
//! exactly as many (an extra one shows up in the next step, or in the final quiet check).

use std::time::Duration;

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, PutRequest, RequestOp, TxnRequest, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::KeyValue;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

use crate::harness::{have, kv_client, Cairn, Etcd};

/// Longer than etcd's 100 ms unsynced-watcher sync loop.
const ETCD_QUIET: Duration = Duration::from_millis(500);
const WAIT: Duration = Duration::from_secs(10);

enum Do {
    Put(String, String),
    Txn(Vec<(&'static str, &'static str)>),
    Delete(&'static str, &'static str),
    Compact(i64),
    Create(WatchCreateRequest),
    Cancel(i64),
    Progress,
}

fn create(key: &str, range_end: &str) -> WatchCreateRequest {
    WatchCreateRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..Default::default()
    }
}

fn put(k: &str, v: &str) -> Do {
    Do::Put(k.to_string(), v.to_string())
}

fn steps() -> Vec<(&'static str, Vec<Do>)> {
    let big = "x".repeat(12_000);
    let fragment_puts = (0..200).map(|i| put(&format!("g/{i:03}"), &big)).collect();
    vec![
        (
            "history",
            vec![
                put("a", "1"),
                put("b", "1"),
                put("a", "2"),
                Do::Delete("b", ""),
            ],
        ),
        ("create a", vec![Do::Create(create("a", ""))]),
        (
            "create all with prev_kv",
            vec![Do::Create(WatchCreateRequest {
                prev_kv: true,
                ..create("", "\0")
            })],
        ),
        (
            "create b..d NOPUT",
            vec![Do::Create(WatchCreateRequest {
                filters: vec![FilterType::Noput as i32],
                ..create("b", "d")
            })],
        ),
        (
            "create id 10 from revision 2",
            vec![Do::Create(WatchCreateRequest {
                watch_id: 10,
                start_revision: 2,
                ..create("a", "")
            })],
        ),
        (
            "duplicate id",
            vec![Do::Create(WatchCreateRequest {
                watch_id: 10,
                ..create("x", "")
            })],
        ),
        ("empty range", vec![Do::Create(create("b", "a"))]),
        (
            "explicit id 4 NODELETE",
            vec![Do::Create(WatchCreateRequest {
                watch_id: 4,
                filters: vec![FilterType::Nodelete as i32],
                ..create("c", "")
            })],
        ),
        (
            "auto ids skip taken ones",
            vec![Do::Create(create("zz", "")), Do::Create(create("zz", ""))],
        ),
        ("empty key watches \\0", vec![Do::Create(create("", ""))]),
        ("put a", vec![put("a", "3")]),
        ("txn b c", vec![Do::Txn(vec![("b", "2"), ("c", "2")])]),
        ("delete b..d", vec![Do::Delete("b", "d")]),
        ("cancel 0", vec![Do::Cancel(0)]),
        ("cancel unknown", vec![Do::Cancel(99)]),
        ("progress request", vec![Do::Progress]),
        ("put a after cancel", vec![put("a", "4")]),
        ("compact 6", vec![Do::Compact(6)]),
        (
            "create from compacted revision",
            vec![Do::Create(WatchCreateRequest {
                watch_id: 20,
                start_revision: 3,
                ..create("a", "")
            })],
        ),
        (
            "compacted id still taken",
            vec![Do::Create(WatchCreateRequest {
                watch_id: 20,
                ..create("a", "")
            })],
        ),
        ("cancel compacted", vec![Do::Cancel(20)]),
        (
            "create at compact revision",
            vec![Do::Create(WatchCreateRequest {
                start_revision: 6,
                ..create("a", "")
            })],
        ),
        (
            "negative start revision",
            vec![Do::Create(WatchCreateRequest {
                start_revision: -5,
                ..create("a", "")
            })],
        ),
        ("cancel the all-keys watcher", vec![Do::Cancel(1)]),
        // Written before anyone watches them: how a burst of writes is grouped into
        // responses for a client that is not reading depends on timing, in etcd too.
        ("200 puts of 12 KB", fragment_puts),
        (
            "fragment watchers",
            vec![
                Do::Create(WatchCreateRequest {
                    prev_kv: true,
                    fragment: true,
                    ..create("g/", "g0")
                }),
                Do::Create(WatchCreateRequest {
                    prev_kv: true,
                    ..create("g/", "g0")
                }),
            ],
        ),
        (
            "delete them: 2.4 MB of prev_kv in one revision",
            vec![Do::Delete("g/", "g0")],
        ),
        ("final progress request", vec![Do::Progress]),
    ]
}

struct Session {
    kv: KvClient<Channel>,
    tx: mpsc::Sender<WatchRequest>,
    /// The response stream, once the server has answered the call.
    rx: Option<Streaming<WatchResponse>>,
    /// The call itself. etcd (grpc-go) sends the response headers only with the first
    /// response, which comes after the first create request, so the call is left to run
    /// in the background while requests are queued.
    call: Option<tokio::task::JoinHandle<Streaming<WatchResponse>>>,
}

impl Session {
    async fn open(endpoint: &str) -> Session {
        let kv = kv_client(endpoint).await;
        let ch = Channel::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let (tx, rx) = mpsc::channel(64);
        let call = tokio::spawn(async move {
            WatchClient::new(ch)
                .max_decoding_message_size(usize::MAX)
                .watch(ReceiverStream::new(rx))
                .await
                .expect("watch")
                .into_inner()
        });
        Session {
            kv,
            tx,
            rx: None,
            call: Some(call),
        }
    }

    async fn request(&self, r: RequestUnion) {
        self.tx
            .send(WatchRequest {
                request_union: Some(r),
            })
            .await
            .expect("request stream");
    }

    async fn run(&mut self, d: Do) {
        match d {
            Do::Put(k, v) => {
                self.kv
                    .put(PutRequest {
                        key: k.into(),
                        value: v.into(),
                        ..Default::default()
                    })
                    .await
                    .expect("put");
            }
            Do::Txn(puts) => {
                let success = puts
                    .into_iter()
                    .map(|(k, v)| RequestOp {
                        request: Some(Op::RequestPut(PutRequest {
                            key: k.into(),
                            value: v.into(),
                            ..Default::default()
                        })),
                    })
                    .collect();
                self.kv
                    .txn(TxnRequest {
                        compare: vec![],
                        success,
                        failure: vec![],
                    })
                    .await
                    .expect("txn");
            }
            Do::Delete(k, end) => {
                self.kv
                    .delete_range(DeleteRangeRequest {
                        key: k.into(),
                        range_end: end.into(),
                        prev_kv: false,
                    })
                    .await
                    .expect("delete");
            }
            Do::Compact(revision) => {
                self.kv
                    .compact(CompactionRequest {
                        revision,
                        physical: true,
                    })
                    .await
                    .expect("compact");
            }
            Do::Create(c) => self.request(RequestUnion::CreateRequest(c)).await,
            Do::Cancel(watch_id) => {
                self.request(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }))
                    .await
            }
            Do::Progress => {
                self.request(RequestUnion::ProgressRequest(WatchProgressRequest {}))
                    .await
            }
        }
    }

    /// The next response, or `None` after `within` without one.
    async fn next_within(&mut self, within: Duration) -> Option<WatchResponse> {
        if let Some(call) = &mut self.call {
            // Before the first create there is no answer yet, hence nothing to read.
            let rx = tokio::time::timeout(within, call).await.ok()?;
            self.rx = Some(rx.expect("watch call"));
            self.call = None;
        }
        let rx = self.rx.as_mut().expect("stream open");
        match tokio::time::timeout(within, rx.message()).await {
            Err(_) => None,
            Ok(Ok(Some(r))) => Some(r),
            Ok(other) => panic!("watch stream ended: {other:?}"),
        }
    }
}

fn summarize(kv: &mut Option<KeyValue>) {
    if let Some(kv) = kv {
        if kv.value.len() > 32 {
            kv.value = format!("<{} bytes>", kv.value.len()).into_bytes();
        }
    }
}

fn normalize(mut r: WatchResponse) -> String {
    if let Some(h) = &mut r.header {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
    for e in &mut r.events {
        summarize(&mut e.kv);
        summarize(&mut e.prev_kv);
    }
    format!("{r:?}")
}

/// Runs the scenario; with `counts`, reads exactly that many responses per step, otherwise
/// reads until the stream is quiet. Returns each step's normalized, sorted responses.
async fn scenario(endpoint: &str, counts: Option<&[usize]>) -> Vec<(String, Vec<String>)> {
    let mut s = Session::open(endpoint).await;
    let mut out = Vec::new();
    for (i, (name, ops)) in steps().into_iter().enumerate() {
        eprintln!("--- {endpoint}: {name}");
        for d in ops {
            s.run(d).await;
        }
        let mut got = Vec::new();
        match counts {
            None => {
                while let Some(r) = s.next_within(ETCD_QUIET).await {
                    got.push(normalize(r));
                }
            }
            Some(counts) => {
                for _ in 0..counts[i] {
                    match s.next_within(WAIT).await {
                        Some(r) => got.push(normalize(r)),
                        None => break,
                    }
                }
            }
        }
        got.sort();
        out.push((name.to_string(), got));
    }
    if counts.is_some() {
        let extra = s.next_within(ETCD_QUIET).await.map(normalize);
        assert_eq!(extra, None, "cairn-store sent more than etcd");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_scenario_matches_etcd() {
    if !have("etcd") {
        return;
    }
    let etcd = Etcd::start().await;
    let cairn = Cairn::start().await;
    let expected = scenario(&etcd.endpoint, None).await;
    let counts: Vec<usize> = expected.iter().map(|(_, r)| r.len()).collect();
    let got = scenario(&cairn.endpoint, Some(&counts)).await;
    if std::env::var("CAIRN_DUMP").is_ok() {
        for (name, responses) in &expected {
            eprintln!("{name}:");
            for r in responses {
                eprintln!("  {r}");
            }
        }
    }
    // The reference really answered: history replay, compaction and fragments happened.
    let step = |name: &str| &expected.iter().find(|(n, _)| n == name).expect("step").1;
    assert_eq!(step("create id 10 from revision 2").len(), 2);
    assert_eq!(step("create from compacted revision").len(), 2);
    assert!(step("delete them: 2.4 MB of prev_kv in one revision").len() >= 3);
    let mut mismatches = Vec::new();
    for ((name, e), (_, g)) in expected.iter().zip(&got) {
        if e != g {
            mismatches.push(format!("{name}:\n  etcd:  {e:?}\n  cairn: {g:?}"));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ from etcd:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches.join("\n\n")
    );
}

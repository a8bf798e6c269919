//! Hostile and malformed input: each gets a clear error (or is ignored safely) and the member
//! keeps serving with its data intact. docs/robustness.md has the table these tests back.

use std::time::Duration;

use cairn_proto::cairnraftpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnraftpb::{ForwardRequest, RaftMessage, SnapshotChunk};
use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, RangeRequest, RequestOp, TxnRequest, WatchCancelRequest, WatchCreateRequest,
    WatchRequest,
};
use cairn_store::raft::{codec, LogId, Vote};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_stream::StreamExt;
use tonic::Code;

use crate::harness::{channel, get, kv, leader_of, put, Solo};

/// A transaction nested `depth` levels deep whose innermost level puts `key`.
fn nested(depth: usize, key: &str) -> TxnRequest {
    let mut txn = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestPut(put(key, "deep"))),
        }],
        ..Default::default()
    };
    for _ in 1..depth {
        txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(Op::RequestTxn(txn)),
            }],
            ..Default::default()
        };
    }
    txn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_kv_requests_get_etcd_errors_and_change_nothing() {
    let s = Solo::start(&[]).await;
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("a", "1")).await.expect("put");
    kv.put(put("b", "2")).await.expect("put");

    // Nesting that a client can reasonably build works; absurd nesting is refused by the
    // decoder before it reaches the state machine.
    let r = kv
        .txn(nested(20, "n"))
        .await
        .expect("20 levels")
        .into_inner();
    assert!(r.succeeded);
    let err = kv.txn(nested(500, "m")).await.expect_err("500 levels");
    assert_ne!(err.code(), Code::Ok);
    assert!(kv
        .range(get("m"))
        .await
        .expect("range")
        .into_inner()
        .kvs
        .is_empty());

    let err = kv.put(put("", "v")).await.expect_err("empty key");
    assert_eq!(
        (err.code(), err.message()),
        (Code::InvalidArgument, "etcdserver: key is not provided")
    );
    let dup = TxnRequest {
        success: vec![
            RequestOp {
                request: Some(Op::RequestPut(put("d", "1"))),
            },
            RequestOp {
                request: Some(Op::RequestPut(put("d", "2"))),
            },
        ],
        ..Default::default()
    };
    let err = kv.txn(dup).await.expect_err("duplicate keys");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::InvalidArgument,
            "etcdserver: duplicate key given in txn request"
        )
    );

    // range_end before key: an empty range, as etcd answers. Negative limit: no limit.
    let r = kv
        .range(RangeRequest {
            key: b"z".to_vec(),
            range_end: b"a".to_vec(),
            ..Default::default()
        })
        .await
        .expect("inverted range")
        .into_inner();
    assert!(r.kvs.is_empty());
    let r = kv
        .range(RangeRequest {
            key: b"a".to_vec(),
            range_end: b"c".to_vec(),
            limit: -5,
            ..Default::default()
        })
        .await
        .expect("negative limit")
        .into_inner();
    assert_eq!(r.kvs.len(), 2);

    let err = kv
        .range(RangeRequest {
            revision: i64::MAX,
            ..get("a")
        })
        .await
        .expect_err("future revision");
    assert_eq!(
        (err.code(), err.message()),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )
    );

    // Nothing above changed the data.
    let r = kv
        .range(RangeRequest {
            key: b"\0".to_vec(),
            range_end: b"\0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("all")
        .into_inner();
    let keys: Vec<_> = r.kvs.iter().map(|kv| kv.key.clone()).collect();
    assert_eq!(keys, vec![b"a".to_vec(), b"b".to_vec(), b"n".to_vec()]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_ttl_extremes() {
    let s = Solo::start(&[]).await;
    let mut lease = LeaseClient::new(channel(&s.endpoint).await.expect("connect"));
    let err = lease
        .lease_grant(LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 0,
        })
        .await
        .expect_err("huge ttl");
    assert_eq!(
        (err.code(), err.message()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    // Zero and negative TTLs are raised to the minimum TTL, as etcd does.
    for ttl in [0, -30] {
        let r = lease
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await
            .expect("small ttl")
            .into_inner();
        assert!(r.ttl > 0, "ttl {ttl} granted as {}", r.ttl);
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_watchers_and_bad_watch_ids_on_one_stream() {
    let s = Solo::start(&[]).await;
    let mut client = WatchClient::new(channel(&s.endpoint).await.expect("connect"));
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let mut stream = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    const N: i64 = 100_000;
    let sender = tokio::spawn(async move {
        for i in 0..N {
            let create = WatchCreateRequest {
                key: format!("w{}", i % 100).into_bytes(),
                ..Default::default()
            };
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await
            .expect("send");
        }
        tx
    });
    let mut created = 0;
    while created < N {
        let r = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("created in time")
            .expect("stream open")
            .expect("response");
        assert!(r.created && !r.canceled, "{r:?}");
        created += 1;
    }
    let tx = sender.await.expect("sender");

    // An id already in use is refused on the create response; cancelling an id nobody holds
    // is ignored; the stream goes on.
    tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"x".to_vec(),
            watch_id: 7,
            ..Default::default()
        })),
    })
    .await
    .expect("send");
    let r = stream.next().await.expect("open").expect("response");
    assert!(r.created && r.canceled, "{r:?}");
    for bogus in [N + 10, -3] {
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: bogus,
            })),
        })
        .await
        .expect("send");
    }
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("w42", "v")).await.expect("put");
    // The thousand watchers on w42 each get the event.
    let mut seen = 0;
    while seen < N / 100 {
        let r = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("events in time")
            .expect("open")
            .expect("response");
        assert!(!r.canceled, "{r:?}");
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].kv.as_ref().expect("kv").key, b"w42");
        seen += 1;
    }
    drop(tx);
    s.stop().await;
}

/// Bytes that are not the protocol the port speaks close that connection and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_client_and_peer_ports() {
    let s = Solo::start(&[]).await;
    let server = s.server.as_ref().expect("server");
    let client_addr = server.client_addrs[0];
    let peer_addr = server.peer_addrs[0];
    let junk: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut h2_junk = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_junk.extend_from_slice(&junk);
    for addr in [client_addr, peer_addr] {
        for bytes in [&junk, &h2_junk] {
            let mut conn = TcpStream::connect(addr).await.expect("connect");
            let _ = conn.write_all(bytes).await;
            let mut sink = Vec::new();
            let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut sink));
            assert!(read.await.is_ok(), "{addr} kept a garbage connection open");
        }
    }
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("after", "garbage"))
        .await
        .expect("still serving");
    s.stop().await;
}

/// Stamps a peer request with a cluster id, as members do.
fn from_cluster<T>(msg: T, cluster: Option<u64>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(id) = cluster {
        req.metadata_mut().insert(
            cairn_store::raft::network::CLUSTER_ID_METADATA,
            format!("{id:x}").parse().expect("ascii"),
        );
    }
    req
}

/// Peer RPCs that name no cluster or another cluster are refused before Raft sees them;
/// well-framed ones from this cluster with nonsense or stale content are refused too; none
/// disturbs the leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bogus_foreign_and_stale_peer_messages_leave_the_leader_alone() {
    let s = Solo::start(&[]).await;
    let server = s.server.as_ref().expect("server");
    let leader = leader_of(&s.endpoint).await;
    assert_ne!(leader, 0);
    let ours = server.node.cluster_id;
    let peer = format!("http://{}", server.peer_addrs[0]);
    let mut raft = RaftPeerClient::new(channel(&peer).await.expect("peer connect"));
    let stranger = 0x5eed_u64;
    let vote_of = |term: u64| {
        let req = openraft::raft::VoteRequest::<cairn_store::raft::TypeConfig>::new(
            Vote::new(term, stranger),
            None::<LogId>,
        );
        RaftMessage {
            data: codec::encode_vote_request(&req),
        }
    };

    // A member of another cluster (or one that says nothing) asking for votes with a much
    // higher term: refused up front.
    for cluster in [None, Some(ours ^ 1)] {
        let err = raft
            .vote(from_cluster(vote_of(1000), cluster))
            .await
            .expect_err("foreign vote");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().starts_with("cluster ID mismatch"), "{err:?}");
        let err = raft
            .forward(from_cluster(ForwardRequest { data: vec![1] }, cluster))
            .await
            .expect_err("foreign forward");
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    }

    let garbage = RaftMessage {
        data: vec![0xff; 37],
    };
    let here = Some(ours);
    raft.append_entries(from_cluster(garbage.clone(), here))
        .await
        .expect_err("garbage append");
    raft.vote(from_cluster(garbage.clone(), here))
        .await
        .expect_err("garbage vote");
    raft.pre_vote(from_cluster(garbage.clone(), here))
        .await
        .expect_err("garbage pre-vote");
    // Forwarding answers in-band: an encoded error naming the problem.
    let r = raft
        .forward(from_cluster(
            ForwardRequest {
                data: vec![0xee; 11],
            },
            here,
        ))
        .await
        .expect("forward answers")
        .into_inner();
    let text = String::from_utf8_lossy(&r.data).to_string();
    assert!(text.contains("unknown forwarded request"), "{text}");
    let chunks = tokio_stream::iter(vec![SnapshotChunk {
        meta: vec![1, 2, 3],
        data: vec![4; 100],
        done: true,
    }]);
    raft.install_snapshot(from_cluster(chunks, here))
        .await
        .expect_err("garbage snapshot");

    // A stranger of this cluster with a stale term and an empty log asks for votes: not
    // granted, and the leader keeps leading.
    for term in [0, 1] {
        let resp = raft.vote(from_cluster(vote_of(term), here)).await;
        if let Ok(resp) = resp {
            let resp = codec::decode_vote_response(&resp.into_inner().data).expect("decodes");
            assert!(!resp.vote_granted, "{resp:?}");
        }
    }
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("k", "v")).await.expect("still serving");
    assert_eq!(leader_of(&s.endpoint).await, leader);
    s.stop().await;
}

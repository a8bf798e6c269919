//! Maintenance.Defragment: the member's file shrinks while clients keep writing, reading and
//! watching (nothing fails, nothing is lost or reordered); etcd's NOSPACE cycle — fill past
//! `--quota-backend-bytes`, compact, defragment, disarm, write again; and a kill -9 in the
//! middle of a defragmentation loses no acknowledged write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, CompactionRequest, DefragmentRequest, DeleteRangeRequest,
    PutRequest, RangeRequest, RequestOp, StatusRequest, StatusResponse, TxnRequest,
    WatchCreateRequest, WatchRequest,
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

use crate::harness::{channel, cluster, get, kv, put, wait_ready, Solo};

fn phase(what: &str) {
    eprintln!("--- {what}");
}

async fn maintenance(endpoint: &str) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(channel(endpoint).await.expect("connect"))
}

async fn status(endpoint: &str) -> StatusResponse {
    maintenance(endpoint)
        .await
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
}

/// `count` keys `prefix<i>` with `value_bytes`-byte values, written as txns of up to 100 puts
/// and about 1 MB (under etcd's default request size limit).
async fn fill(endpoint: &str, prefix: &str, count: usize, value_bytes: usize) {
    let per_txn = (1_000_000 / value_bytes.max(1)).clamp(1, 100);
    let mut c = kv(endpoint).await;
    for first in (0..count).step_by(per_txn) {
        let success = (first..(first + per_txn).min(count))
            .map(|i| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: format!("{prefix}{i:06}").into_bytes(),
                    value: vec![b'x'; value_bytes],
                    ..Default::default()
                })),
            })
            .collect();
        c.txn(TxnRequest {
            success,
            ..Default::default()
        })
        .await
        .expect("fill txn");
    }
}

/// Deletes every key under `prefix` and compacts at the current revision.
async fn delete_and_compact(endpoint: &str, prefix: &str) {
    let mut c = kv(endpoint).await;
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("prefix") += 1;
    let deleted = c
        .delete_range(DeleteRangeRequest {
            key: prefix.into(),
            range_end: end,
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    c.compact(CompactionRequest {
        revision: deleted.header.expect("header").revision,
        physical: true,
    })
    .await
    .expect("compact");
}

/// etcd: a member defragments while the cluster serves. Here a client writes continuously, a
/// second one reads and a watcher follows the writes while the member defragments three
/// times: every request succeeds, every acknowledged write is there afterwards with the
/// revision it was acknowledged with, and the watcher saw each of them once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defragment_while_clients_write_read_and_watch() {
    let s = Solo::start(&[]).await;
    let ep = s.endpoint.clone();

    phase("4 MB of values, then all deleted and compacted away");
    fill(&ep, "bulk/", 4000, 1000).await;
    delete_and_compact(&ep, "bulk/").await;
    let before = status(&ep).await;
    assert!(
        before.db_size_in_use < before.db_size / 2,
        "mostly free pages before: {} of {}",
        before.db_size_in_use,
        before.db_size
    );

    phase("a watcher on the keys about to be written");
    let (w_tx, w_rx) = tokio::sync::mpsc::channel(1);
    let mut watch = WatchClient::new(channel(&ep).await.expect("connect"))
        .watch(ReceiverStream::new(w_rx))
        .await
        .expect("watch")
        .into_inner();
    w_tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            ..Default::default()
        })),
    })
    .await
    .expect("create watcher");
    assert!(
        watch
            .message()
            .await
            .expect("created")
            .expect("open")
            .created
    );

    phase("a writer and a reader run while the member defragments three times");
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (ep, stop) = (ep.clone(), stop.clone());
        async move {
            let mut c = kv(&ep).await;
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) || acked.len() < 20 {
                let r = c
                    .put(put(&format!("w/{i:05}"), &format!("v{i}")))
                    .await
                    .unwrap_or_else(|e| panic!("put {i} during defrag: {e}"));
                acked.push(r.into_inner().header.expect("header").revision);
                i += 1;
            }
            acked
        }
    });
    let reader = tokio::spawn({
        let (ep, stop) = (ep.clone(), stop.clone());
        async move {
            let mut c = kv(&ep).await;
            let mut reads = 0;
            while !stop.load(Ordering::Relaxed) {
                for serializable in [true, false] {
                    c.range(RangeRequest {
                        serializable,
                        ..get("w/00000")
                    })
                    .await
                    .unwrap_or_else(|e| panic!("read during defrag: {e}"));
                    reads += 1;
                }
            }
            reads
        }
    });
    let mut m = maintenance(&ep).await;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = m
            .defragment(DefragmentRequest {})
            .await
            .expect("defragment")
            .into_inner();
        assert!(r.header.expect("header").revision > 1);
    }
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.expect("writer");
    assert!(reader.await.expect("reader") > 0);

    phase("the file shrank; every acknowledged write is there, once, in order");
    let after = status(&ep).await;
    assert!(
        after.db_size < before.db_size / 2,
        "dbSize {} -> {}",
        before.db_size,
        after.db_size
    );
    assert!(after.db_size_in_use <= after.db_size);
    assert!(
        acked.windows(2).all(|p| p[1] == p[0] + 1),
        "one revision per put, in order"
    );
    let all = kv(&ep)
        .await
        .range(RangeRequest {
            key: b"w/".to_vec(),
            range_end: b"w0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(all.kvs.len(), acked.len());
    for (i, (kv, rev)) in all.kvs.iter().zip(&acked).enumerate() {
        assert_eq!(kv.value, format!("v{i}").into_bytes());
        assert_eq!(kv.mod_revision, *rev);
    }
    let mut seen = Vec::new();
    while seen.len() < acked.len() {
        let r = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("watch events in time")
            .expect("watch")
            .expect("open");
        seen.extend(
            r.events
                .iter()
                .map(|e| e.kv.as_ref().expect("kv").mod_revision),
        );
    }
    assert_eq!(seen, acked, "the watcher saw every write once, in order");
    s.stop().await;
}

fn is_nospace(e: &tonic::Status) -> bool {
    e.code() == Code::ResourceExhausted
        && e.message() == "etcdserver: mvcc: database space exceeded"
}

/// etcd's documented recovery from NOSPACE (op-guide/maintenance.md, "Space quota"): fill past
/// the quota, the alarm goes up and writes fail; compact, defragment and disarm; writes work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nospace_alarm_compact_defragment_disarm_cycle() {
    const QUOTA: i64 = 16 * 1024 * 1024;
    let s = Solo::start(&["--quota-backend-bytes", &QUOTA.to_string()]).await;
    let ep = s.endpoint.clone();
    let member = s.node().id;
    let mut c = kv(&ep).await;
    let mut m = maintenance(&ep).await;
    assert_eq!(status(&ep).await.db_size_quota, QUOTA);

    phase("100 KB values until the backend outgrows its quota");
    let value = "x".repeat(100 * 1024);
    let mut refused = None;
    for i in 0..400 {
        if let Err(e) = c.put(put(&format!("big/{i:04}"), &value)).await {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("the quota was reached");
    assert!(is_nospace(&refused), "{refused:?}");

    phase("NOSPACE is raised for this member; writes that add data are refused");
    let alarms = m
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await
        .expect("alarm list")
        .into_inner()
        .alarms;
    let nospace = AlarmMember {
        member_id: member,
        alarm: AlarmType::Nospace as i32,
    };
    assert_eq!(alarms, vec![nospace]);
    let e = c.put(put("small", "v")).await.expect_err("refused");
    assert!(is_nospace(&e), "{e:?}");
    assert!(status(&ep).await.errors[0].contains("NOSPACE"));

    phase("delete and compact (allowed under the alarm), then defragment");
    delete_and_compact(&ep, "big/").await;
    m.defragment(DefragmentRequest {})
        .await
        .expect("defragment");
    let st = status(&ep).await;
    assert!(
        st.db_size < QUOTA / 4,
        "dbSize after defrag: {}",
        st.db_size
    );
    let e = c.put(put("small", "v")).await.expect_err("still armed");
    assert!(is_nospace(&e), "the alarm stays until disarmed: {e:?}");

    phase("disarm: the alarm is gone and writes succeed again");
    let r = m
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: member,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .expect("disarm")
        .into_inner();
    assert_eq!(
        r.alarms,
        vec![nospace],
        "the response lists what was disarmed"
    );
    let alarms = m
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            ..Default::default()
        })
        .await
        .expect("alarm list")
        .into_inner()
        .alarms;
    assert!(alarms.is_empty(), "{alarms:?}");
    c.put(put("small", "v")).await.expect("writes work again");
    assert!(status(&ep).await.errors.is_empty());
    s.stop().await;
}

/// kill -9 while a defragmentation is copying the store: after a restart every acknowledged
/// write is there, and the member defragments normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_defragment_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["solo"], dir.path());
    let m = &mut members[0];
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    let copy = m.data_dir.join("member").join("db.defrag");

    phase("30 MB of values, so a defragmentation takes a while");
    fill(&m.client_url, "bulk/", 300, 100 * 1024).await;
    let mut c = kv(&m.client_url).await;
    let mut acked = Vec::new();
    for i in 0..50 {
        c.put(put(&format!("acked/{i:03}"), "v"))
            .await
            .expect("put");
        acked.push(i);
    }

    phase("defragment; kill -9 as soon as the new file appears");
    let mut killed_mid_copy = false;
    for attempt in 0..5 {
        let endpoint = m.client_url.clone();
        let defrag = tokio::spawn(async move {
            maintenance(&endpoint)
                .await
                .defragment(DefragmentRequest {})
                .await
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !copy.exists() && !defrag.is_finished() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if copy.exists() {
            eprintln!("killing during attempt {attempt}");
            m.kill9();
            killed_mid_copy = true;
            let _ = defrag.await;
            break;
        }
        defrag.await.expect("join").expect("defragment");
    }
    assert!(killed_mid_copy, "never caught the defragmentation mid-copy");
    // The copy may have been renamed into place between the look and the kill: either way
    // the restart below must find everything.
    eprintln!("partial copy left by the kill: {}", copy.exists());

    phase("restart: the partial copy is dropped, every acknowledged write is there");
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    assert!(!copy.exists());
    let mut c = kv(&m.client_url).await;
    let all = c
        .range(RangeRequest {
            key: b"acked/".to_vec(),
            range_end: b"acked0".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(all.kvs.len(), acked.len());
    let bulk = c
        .range(RangeRequest {
            key: b"bulk/".to_vec(),
            range_end: b"bulk0".to_vec(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("count")
        .into_inner();
    assert_eq!(bulk.count, 300);
    maintenance(&m.client_url)
        .await
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment after restart");
    c.put(put("after", "restart")).await.expect("put");
}

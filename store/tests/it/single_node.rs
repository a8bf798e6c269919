//! Every KV field against one in-process member, through a gRPC client, with the values
//! etcd returns (checked side by side against etcd by the `cairn-tests` suite).

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::response_op::Response as OpResp;
use cairn_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tonic::transport::Channel;
use tonic::Code;

use crate::harness::{get, kv, put, Solo as InProcess};

fn rev_of<T>(h: &Option<cairn_proto::etcdserverpb::ResponseHeader>, _: &T) -> i64 {
    h.as_ref().expect("header").revision
}

async fn keys(kv: &mut KvClient<Channel>, req: RangeRequest) -> Vec<String> {
    kv.range(req)
        .await
        .expect("range")
        .into_inner()
        .kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn all_from(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: vec![0],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_versions_and_headers_follow_etcd() {
    let s = InProcess::start(&[]).await;
    let mut kv = kv(&s.endpoint).await;

    // An empty store is at revision 1; each put is one revision.
    let r = kv.range(get("a")).await.expect("range").into_inner();
    let h = r.header.expect("header");
    assert_eq!(h.revision, 1);
    assert!(h.cluster_id != 0 && h.member_id != 0 && h.raft_term >= 1);
    assert_eq!(r.count, 0);

    let p = kv.put(put("a", "1")).await.expect("put").into_inner();
    assert_eq!(rev_of(&p.header, &p), 2);
    let p = kv
        .put(PutRequest {
            prev_kv: true,
            ..put("a", "2")
        })
        .await
        .expect("put")
        .into_inner();
    assert_eq!(rev_of(&p.header, &p), 3);
    let prev = p.prev_kv.expect("prev kv");
    assert_eq!(
        (prev.value.as_slice(), prev.mod_revision, prev.version),
        (&b"1"[..], 2, 1)
    );

    let a = kv
        .range(get("a"))
        .await
        .expect("range")
        .into_inner()
        .kvs
        .remove(0);
    assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 3, 2));

    // A delete resets the version; re-creating starts a new life.
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: "a".into(),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!((d.deleted, rev_of(&d.header, &d)), (1, 4));
    assert_eq!(d.prev_kvs[0].value, b"2");
    // Deleting nothing does not bump the revision.
    let d = kv
        .delete_range(DeleteRangeRequest {
            key: "a".into(),
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    assert_eq!((d.deleted, rev_of(&d.header, &d)), (0, 4));
    kv.put(put("a", "3")).await.expect("put");
    let a = kv
        .range(get("a"))
        .await
        .expect("range")
        .into_inner()
        .kvs
        .remove(0);
    assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));

    // Reads in the past.
    let old = kv
        .range(RangeRequest {
            revision: 3,
            ..get("a")
        })
        .await
        .expect("old read")
        .into_inner();
    assert_eq!(old.kvs[0].value, b"2");
    assert_eq!(
        rev_of(&old.header, &old),
        5,
        "the header carries the current revision"
    );
    let gone = kv
        .range(RangeRequest {
            revision: 4,
            ..get("a")
        })
        .await
        .expect("read at delete")
        .into_inner();
    assert!(gone.kvs.is_empty());
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_options() {
    let s = InProcess::start(&[]).await;
    let mut kv = kv(&s.endpoint).await;
    for (k, v) in [
        ("k1", "c"),
        ("k2", "a"),
        ("k3", "b"),
        ("k4", "d"),
        ("z", "e"),
    ] {
        kv.put(put(k, v)).await.expect("put");
    }
    kv.put(put("k2", "aa")).await.expect("put again");

    let r = kv
        .range(RangeRequest {
            limit: 2,
            ..RangeRequest {
                key: "k".into(),
                range_end: "l".into(),
                ..Default::default()
            }
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!((r.kvs.len(), r.more, r.count), (2, true, 4));

    assert_eq!(keys(&mut kv, all_from("k3")).await, ["k3", "k4", "z"]);
    let by_value = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Value as i32,
        ..all_from("k")
    };
    assert_eq!(keys(&mut kv, by_value).await, ["z", "k4", "k1", "k3", "k2"]);
    let by_mod = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Mod as i32,
        limit: 2,
        ..all_from("k")
    };
    assert_eq!(keys(&mut kv, by_mod).await, ["k2", "z"]);
    let by_key_desc = RangeRequest {
        sort_order: SortOrder::Descend as i32,
        ..all_from("k")
    };
    assert_eq!(
        keys(&mut kv, by_key_desc).await,
        ["z", "k4", "k3", "k2", "k1"]
    );

    let ko = kv
        .range(RangeRequest {
            keys_only: true,
            ..get("k1")
        })
        .await
        .expect("keys only")
        .into_inner();
    assert!(ko.kvs[0].value.is_empty());
    let co = kv
        .range(RangeRequest {
            count_only: true,
            ..all_from("k")
        })
        .await
        .expect("count only")
        .into_inner();
    assert_eq!((co.kvs.len(), co.count), (0, 5));

    // Revision filters: k2 was modified last (revision 7), k1 created first (revision 2).
    let f = RangeRequest {
        min_mod_revision: 7,
        ..all_from("k")
    };
    assert_eq!(keys(&mut kv, f).await, ["k2"]);
    let f = RangeRequest {
        max_create_revision: 2,
        ..all_from("k")
    };
    assert_eq!(keys(&mut kv, f).await, ["k1"]);
    let ser = RangeRequest {
        serializable: true,
        ..get("k1")
    };
    assert_eq!(keys(&mut kv, ser).await, ["k1"]);

    let err = kv.range(get("")).await.expect_err("empty key");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: key is not provided");
    let err = kv
        .range(RangeRequest {
            revision: 100,
            ..get("k1")
        })
        .await
        .expect_err("future");
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(
        err.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
    s.stop().await;
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(put(k, v))),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn txn_compare_and_swap() {
    let s = InProcess::start(&["--max-txn-ops", "8"]).await;
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("lock", "free")).await.expect("put");

    let cas = |expect: &str| TxnRequest {
        compare: vec![Compare {
            key: "lock".into(),
            target: CompareTarget::Value as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Value(expect.into())),
            range_end: vec![],
        }],
        success: vec![op_put("lock", "held"), op_put("owner", "me")],
        failure: vec![RequestOp {
            request: Some(Op::RequestRange(get("lock"))),
        }],
    };
    let t = kv.txn(cas("free")).await.expect("txn").into_inner();
    assert!(t.succeeded);
    assert_eq!(
        t.header.expect("header").revision,
        3,
        "a txn is one revision"
    );
    let t = kv.txn(cas("free")).await.expect("txn").into_inner();
    assert!(!t.succeeded);
    match &t.responses[0].response {
        Some(OpResp::ResponseRange(r)) => assert_eq!(r.kvs[0].value, b"held"),
        other => panic!("expected a range response, got {other:?}"),
    }
    let owner = kv.range(get("owner")).await.expect("range").into_inner();
    assert_eq!(owner.kvs[0].mod_revision, 3);

    // A missing key has version 0: the classic "create if absent".
    let create = TxnRequest {
        compare: vec![Compare {
            key: "new".into(),
            target: CompareTarget::Version as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Version(0)),
            range_end: vec![],
        }],
        success: vec![op_put("new", "1")],
        failure: vec![],
    };
    assert!(
        kv.txn(create.clone())
            .await
            .expect("txn")
            .into_inner()
            .succeeded
    );
    assert!(!kv.txn(create).await.expect("txn").into_inner().succeeded);

    let dup = TxnRequest {
        compare: vec![],
        success: vec![op_put("d", "1"), op_put("d", "2")],
        failure: vec![],
    };
    let err = kv.txn(dup).await.expect_err("duplicate");
    assert_eq!(
        err.message(),
        "etcdserver: duplicate key given in txn request"
    );
    let many = TxnRequest {
        compare: vec![],
        success: (0..9).map(|i| op_put(&format!("m{i}"), "v")).collect(),
        failure: vec![],
    };
    let err = kv.txn(many).await.expect_err("too many");
    assert_eq!(
        err.message(),
        "etcdserver: too many operations in txn request"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_and_limits() {
    let s = InProcess::start(&["--max-request-bytes", "4096"]).await;
    let mut kv = kv(&s.endpoint).await;
    for i in 0..5 {
        kv.put(put("c", &i.to_string())).await.expect("put");
    }
    // Revisions 2..=6 hold c=0..4.
    kv.compact(CompactionRequest {
        revision: 4,
        physical: true,
    })
    .await
    .expect("compact");
    let err = kv
        .range(RangeRequest {
            revision: 3,
            ..get("c")
        })
        .await
        .expect_err("compacted");
    assert_eq!(err.code(), Code::OutOfRange);
    assert_eq!(
        err.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let at = kv
        .range(RangeRequest {
            revision: 4,
            ..get("c")
        })
        .await
        .expect("read at the compaction point")
        .into_inner();
    assert_eq!(at.kvs[0].value, b"2");
    let err = kv
        .compact(CompactionRequest {
            revision: 3,
            physical: false,
        })
        .await
        .expect_err("compact below");
    assert_eq!(
        err.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );

    let big = "x".repeat(8192);
    let err = kv.put(put("big", &big)).await.expect_err("too large");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: request is too large");

    let err = kv
        .put(PutRequest {
            lease: 42,
            ..put("l", "v")
        })
        .await
        .expect_err("lease");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "etcdserver: requested lease not found");
    let err = kv
        .put(PutRequest {
            ignore_value: true,
            ..put("absent", "")
        })
        .await
        .expect_err("ignore value on a missing key");
    assert_eq!(err.message(), "etcdserver: key not found");
    s.stop().await;
}

/// The backend quota: writes that add data fail with "database space exceeded" once the
/// backend outgrows --quota-backend-bytes, the NOSPACE alarm is listed, deletes and reads keep
/// working, and disarming clears the alarm (until the next write finds the backend still full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_raises_nospace_alarm() {
    use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::{AlarmRequest, AlarmType, StatusRequest};

    let s = InProcess::start(&["--quota-backend-bytes", "1048576"]).await;
    let mut kv = kv(&s.endpoint).await;
    let value = "v".repeat(64 * 1024);
    let mut stored = 0;
    let err = loop {
        match kv.put(put(&format!("big/{stored}"), &value)).await {
            Ok(_) => stored += 1,
            Err(e) => break e,
        }
        assert!(stored < 1000, "the quota was never enforced");
    };
    assert!(stored > 0);
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");

    let ch = crate::harness::channel(&s.endpoint).await.expect("connect");
    let mut m = MaintenanceClient::new(ch);
    let alarms = m
        .alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        })
        .await
        .expect("alarm list")
        .into_inner()
        .alarms;
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].alarm, AlarmType::Nospace as i32);
    let status = m
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert!(status.errors[0].contains("NOSPACE"), "{:?}", status.errors);

    // Space can be reclaimed: reads and deletes still work, txns that only delete too.
    assert_eq!(keys(&mut kv, all_from("big/")).await.len(), stored);
    kv.delete_range(DeleteRangeRequest {
        key: "big/".into(),
        range_end: "big0".into(),
        ..Default::default()
    })
    .await
    .expect("delete while NOSPACE");
    let err = kv.put(put("small", "x")).await.expect_err("still NOSPACE");
    assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");

    let disarmed = m
        .alarm(AlarmRequest {
            action: AlarmAction::Deactivate as i32,
            member_id: alarms[0].member_id,
            alarm: AlarmType::Nospace as i32,
        })
        .await
        .expect("disarm")
        .into_inner();
    // etcd answers a disarm with the alarm it cleared (`etcdctl alarm disarm` prints it).
    assert_eq!(disarmed.alarms, alarms);
    s.stop().await;
}

/// --auto-compaction-mode periodic: history older than the retention is compacted by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_auto_compaction_discards_old_history() {
    let s = InProcess::start(&[
        "--auto-compaction-mode",
        "periodic",
        "--auto-compaction-retention",
        "1s",
    ])
    .await;
    let mut kv = kv(&s.endpoint).await;
    kv.put(put("old", "1")).await.expect("put");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        // Keep writing so there are newer revisions to compact to.
        kv.put(put("tick", "x")).await.expect("put");
        let r = kv
            .range(RangeRequest {
                revision: 2,
                ..get("old")
            })
            .await;
        match r {
            Err(e) if e.message() == "etcdserver: mvcc: required revision has been compacted" => {
                break
            }
            Ok(_) => {}
            Err(e) => panic!("unexpected error {e}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revision 2 was never compacted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // The latest value survives compaction.
    let r = kv.range(get("old")).await.expect("range").into_inner();
    assert_eq!(r.kvs[0].value, b"1");
    s.stop().await;
}

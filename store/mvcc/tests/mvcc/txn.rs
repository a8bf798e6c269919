//! Txn: compare semantics (missing keys, range_end), branch choice, one revision with sub
//! revisions, reads of earlier writes, nested txns, header revisions, and atomic failure.

use cairn_mvcc::{Command, MvccError};
use cairn_proto::etcdserverpb::compare::{
    CompareResult as R, CompareTarget as T, TargetUnion as U,
};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response as Resp;
use cairn_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};

use crate::support::*;

fn holds(s: &TestStore, compare: Compare) -> bool {
    s.txn(TxnRequest {
        compare: vec![compare],
        ..TxnRequest::default()
    })
    .unwrap()
    .succeeded
}

#[test]
fn compares_on_an_existing_key() {
    let s = store();
    s.put("k", "b"); // 2
    s.put("k", "b"); // 3: version 2, create 2, mod 3
    assert!(holds(
        &s,
        cmp("k", T::Value, R::Equal, U::Value(b"b".to_vec()))
    ));
    assert!(holds(
        &s,
        cmp("k", T::Value, R::Greater, U::Value(b"a".to_vec()))
    ));
    assert!(holds(
        &s,
        cmp("k", T::Value, R::Less, U::Value(b"c".to_vec()))
    ));
    assert!(holds(
        &s,
        cmp("k", T::Value, R::NotEqual, U::Value(b"x".to_vec()))
    ));
    assert!(holds(&s, cmp("k", T::Version, R::Equal, U::Version(2))));
    assert!(holds(
        &s,
        cmp("k", T::Create, R::Equal, U::CreateRevision(2))
    ));
    assert!(holds(&s, cmp("k", T::Mod, R::Equal, U::ModRevision(3))));
    assert!(holds(&s, cmp("k", T::Mod, R::Greater, U::ModRevision(2))));
    assert!(holds(&s, cmp("k", T::Lease, R::Equal, U::Lease(0))));
    assert!(!holds(&s, cmp("k", T::Version, R::Less, U::Version(2))));
    // A union of the wrong kind compares against zero.
    assert!(holds(
        &s,
        cmp("k", T::Version, R::Greater, U::ModRevision(99))
    ));
}

#[test]
fn compares_on_a_missing_key() {
    let s = store();
    // VALUE on a missing key always fails, whatever the operator.
    assert!(!holds(
        &s,
        cmp("nope", T::Value, R::Equal, U::Value(Vec::new()))
    ));
    assert!(!holds(
        &s,
        cmp("nope", T::Value, R::NotEqual, U::Value(b"x".to_vec()))
    ));
    // Other targets compare against zero: the idiom "create_revision == 0" means absent.
    assert!(holds(
        &s,
        cmp("nope", T::Create, R::Equal, U::CreateRevision(0))
    ));
    assert!(holds(&s, cmp("nope", T::Version, R::Equal, U::Version(0))));
    assert!(holds(&s, cmp("nope", T::Mod, R::Less, U::ModRevision(1))));
    assert!(!holds(
        &s,
        cmp("nope", T::Version, R::Greater, U::Version(0))
    ));
}

#[test]
fn a_compare_with_range_end_must_hold_for_every_key() {
    let s = store();
    s.put("p/a", "1");
    s.put("p/b", "1");
    s.put("p/c", "2");
    let over = |end: &str, result: R, v: &str| Compare {
        range_end: end.into(),
        ..cmp("p/", T::Value, result, U::Value(v.into()))
    };
    assert!(!holds(&s, over("p0", R::Equal, "1")));
    assert!(holds(&s, over("p/c", R::Equal, "1")));
    assert!(holds(&s, over("p0", R::Greater, "0")));
    // An empty range behaves like a missing key.
    assert!(!holds(&s, over("p/", R::NotEqual, "x")));
    let created = Compare {
        range_end: "q".into(),
        ..cmp("x", T::Create, R::Equal, U::CreateRevision(0))
    };
    assert!(holds(&s, created));
}

#[test]
fn chosen_branch_runs_in_one_revision_with_sub_revisions() {
    let s = store();
    s.put("a", "1"); // 2
    let resp = s
        .txn(TxnRequest {
            compare: vec![cmp("a", T::Value, R::Equal, U::Value(b"1".to_vec()))],
            success: vec![op_put("b", "x"), op_put("c", "y"), op_delete("a", "")],
            failure: vec![op_put("failed", "!")],
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.unwrap().revision, 3);
    assert_eq!(resp.responses.len(), 3);
    for r in &resp.responses {
        let rev = match r.response.as_ref().unwrap() {
            Resp::ResponsePut(p) => p.header.as_ref().unwrap().revision,
            Resp::ResponseDeleteRange(d) => d.header.as_ref().unwrap().revision,
            other => panic!("{other:?}"),
        };
        assert_eq!(rev, 3);
    }
    assert_eq!(s.get("b").unwrap().mod_revision, 3);
    assert_eq!(s.get("c").unwrap().mod_revision, 3);
    assert_eq!(s.get("a"), None);
    assert_eq!(s.get("failed"), None);
    assert_eq!(s.current_revision(), 3);

    let resp = s
        .txn(TxnRequest {
            compare: vec![cmp("a", T::Value, R::Equal, U::Value(b"1".to_vec()))],
            success: vec![],
            failure: vec![op_put("failed", "!")],
        })
        .unwrap();
    assert!(!resp.succeeded);
    assert_eq!(s.get("failed").unwrap().mod_revision, 4);
}

#[test]
fn a_txn_that_changes_nothing_does_not_bump_the_revision() {
    let s = store();
    s.put("a", "1");
    let resp = s
        .txn(TxnRequest {
            success: vec![op_range("a", ""), op_delete("missing", "")],
            ..TxnRequest::default()
        })
        .unwrap();
    assert_eq!(resp.header.unwrap().revision, 2);
    let Some(Resp::ResponseDeleteRange(d)) = &resp.responses[1].response else {
        panic!()
    };
    assert_eq!((d.deleted, d.header.as_ref().unwrap().revision), (0, 2));
    assert_eq!(s.current_revision(), 2);
    let resp = s.txn(TxnRequest::default()).unwrap();
    assert!(resp.succeeded, "no compares means success");
    assert_eq!(s.current_revision(), 2);
}

#[test]
fn ranges_inside_a_txn_see_its_earlier_writes() {
    let s = store();
    s.put("a", "old"); // 2
    let resp = s
        .txn(TxnRequest {
            success: vec![
                op_range("a", ""),
                op_put("a", "new"),
                op_range("a", ""),
                op_delete("zzz", ""),
                RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        revision: 2,
                        ..range("a", "")
                    })),
                },
            ],
            ..TxnRequest::default()
        })
        .unwrap();
    let ranges: Vec<(i64, String)> = resp
        .responses
        .iter()
        .filter_map(|r| match r.response.as_ref()? {
            Resp::ResponseRange(rr) => {
                Some((rr.header.as_ref()?.revision, value(&rr.kvs[0]).to_string()))
            }
            _ => None,
        })
        .collect();
    // The header of a range in a txn is the revision as that range saw it.
    assert_eq!(
        ranges,
        vec![(2, "old".into()), (3, "new".into()), (3, "old".into())]
    );
    let Some(Resp::ResponseDeleteRange(d)) = &resp.responses[3].response else {
        panic!()
    };
    assert_eq!(
        d.header.as_ref().unwrap().revision,
        3,
        "after a change, even a no-op delete reports it"
    );
}

#[test]
fn nested_txns_compare_against_the_state_before_the_outer_txn() {
    let s = store();
    s.put("x", "1"); // 2
    let inner = TxnRequest {
        // Evaluated before the outer put of y: y does not exist yet.
        compare: vec![cmp("y", T::Version, R::Equal, U::Version(0))],
        success: vec![op_put("inner-success", "1"), op_range("y", "")],
        failure: vec![op_put("inner-failure", "1")],
    };
    let resp = s
        .txn(TxnRequest {
            compare: vec![cmp("x", T::Value, R::Equal, U::Value(b"1".to_vec()))],
            success: vec![op_put("y", "1"), op_txn(inner)],
            failure: vec![],
        })
        .unwrap();
    assert!(resp.succeeded);
    assert_eq!(resp.header.as_ref().unwrap().revision, 3);
    let Some(Resp::ResponseTxn(nested)) = &resp.responses[1].response else {
        panic!()
    };
    assert!(nested.succeeded);
    assert_eq!(
        nested.header.as_ref().unwrap().revision,
        0,
        "etcd leaves nested headers zero"
    );
    let Some(Resp::ResponseRange(rr)) = &nested.responses[1].response else {
        panic!()
    };
    assert_eq!(rr.kvs.len(), 1, "the nested range sees the outer put");
    assert!(s.get("inner-success").is_some());
    assert!(s.get("inner-failure").is_none());
    let (y, inner) = (s.get("y").unwrap(), s.get("inner-success").unwrap());
    assert_eq!((y.mod_revision, inner.mod_revision), (3, 3));
}

#[test]
fn a_failing_txn_changes_nothing() {
    let s = store();
    s.put("a", "1"); // 2
                     // checkPut: unknown lease anywhere on the chosen path fails the txn before any write.
    let err = s
        .txn(TxnRequest {
            success: vec![
                op_put("b", "1"),
                op_txn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            lease: 5,
                            ..put("c", "1")
                        })),
                    }],
                    ..TxnRequest::default()
                }),
            ],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert_eq!(err, MvccError::LeaseNotFound);
    // checkRange: a future revision anywhere on the chosen path.
    let err = s
        .txn(TxnRequest {
            success: vec![
                op_put("b", "1"),
                RequestOp {
                    request: Some(Request::RequestRange(RangeRequest {
                        revision: 3,
                        ..range("a", "")
                    })),
                },
            ],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert_eq!(err, MvccError::FutureRevision);
    // The unchosen branch is not checked.
    s.txn(TxnRequest {
        failure: vec![RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                lease: 5,
                ..put("c", "1")
            })),
        }],
        ..TxnRequest::default()
    })
    .unwrap();
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.keys(&range("a", FROM)), ["a"]);
}

#[test]
fn ignore_value_inside_a_txn_follows_etcd() {
    let s = store();
    s.put("a", "1"); // 2
    let ignore = |k: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            ignore_value: true,
            ..put(k, "")
        })),
    };
    // etcd checks ignore_* against the state before the txn: a key created earlier in the same
    // txn does not count.
    let err = s
        .txn(TxnRequest {
            success: vec![op_put("b", "1"), ignore("b")],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert_eq!(err, MvccError::KeyNotFound);
    // A key deleted earlier in the txn: etcd panics; we reject the whole txn.
    let err = s
        .txn(TxnRequest {
            success: vec![op_delete("a", ""), ignore("a")],
            ..TxnRequest::default()
        })
        .unwrap_err();
    assert_eq!(err, MvccError::KeyNotFound);
    assert_eq!(s.current_revision(), 2);
    // Deleted and re-put first: fine.
    s.txn(TxnRequest {
        success: vec![op_delete("a", ""), op_put("a", "2"), ignore("a")],
        ..TxnRequest::default()
    })
    .unwrap();
    let a = s.get("a").unwrap();
    assert_eq!((value(&a), a.version, a.create_revision), ("2", 2, 3));
}

#[test]
fn an_empty_request_op_gets_an_empty_response_op() {
    let s = store();
    let resp = s
        .txn(TxnRequest {
            success: vec![RequestOp { request: None }],
            ..TxnRequest::default()
        })
        .unwrap();
    assert_eq!(resp.responses.len(), 1);
    assert!(resp.responses[0].response.is_none());
    let _ = Command::Txn(TxnRequest::default());
}

//! Range: key conventions, limit / more / count, sorting, filters, keys_only, count_only, and
//! reads at past revisions — shaped as etcd 3.5's `applierV3backend.Range`.

use cairn_mvcc::MvccError;
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::RangeRequest;

use crate::support::*;

/// Keys a..d with versions a=3, b=2, c=1, d=1 and distinct create / mod revisions.
fn versioned_store() -> TestStore {
    let s = store();
    s.put("a", "z"); // 2
    s.put("b", "y"); // 3
    s.put("c", "x"); // 4
    s.put("d", "w"); // 5
    s.put("a", "z2"); // 6
    s.put("b", "y2"); // 7
    s.put("a", "z3"); // 8
    s
}

#[test]
fn key_range_conventions() {
    let s = versioned_store();
    assert_eq!(s.keys(&range("b", "")), ["b"]);
    assert_eq!(s.keys(&range("bb", "")), Vec::<String>::new());
    assert_eq!(s.keys(&range("b", "d")), ["b", "c"]);
    assert_eq!(s.keys(&range("b", FROM)), ["b", "c", "d"]);
    assert_eq!(s.keys(&range("\0", FROM)), ["a", "b", "c", "d"]);
    assert_eq!(
        s.keys(&range("d", "b")),
        Vec::<String>::new(),
        "range_end <= key is empty"
    );
}

#[test]
fn limit_sets_more_and_count_ignores_the_limit() {
    let s = versioned_store();
    let resp = s
        .range(&RangeRequest {
            limit: 2,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!(
        (keys_of(&resp), resp.more, resp.count),
        (vec!["a".into(), "b".into()], true, 4)
    );
    let resp = s
        .range(&RangeRequest {
            limit: 4,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (4, false, 4));
    let resp = s
        .range(&RangeRequest {
            limit: 0,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!((resp.kvs.len(), resp.more), (4, false));
}

#[test]
fn count_only_and_keys_only() {
    let s = versioned_store();
    let resp = s
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!((resp.count, resp.kvs.len(), resp.more), (4, 0, false));
    let resp = s
        .range(&RangeRequest {
            keys_only: true,
            ..range("a", "c")
        })
        .unwrap();
    assert_eq!(keys_of(&resp), ["a", "b"]);
    assert!(resp.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(resp.kvs[0].version, 3, "keys_only keeps the metadata");
}

fn sorted(s: &TestStore, order: SortOrder, target: SortTarget, limit: i64) -> (Vec<String>, bool) {
    let req = RangeRequest {
        sort_order: order as i32,
        sort_target: target as i32,
        limit,
        ..range("a", FROM)
    };
    let resp = s.range(&req).unwrap();
    (keys_of(&resp), resp.more)
}

#[test]
fn sorting_by_every_target() {
    let s = versioned_store();
    let v = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        sorted(&s, SortOrder::Descend, SortTarget::Key, 0).0,
        v(&["d", "c", "b", "a"])
    );
    assert_eq!(
        sorted(&s, SortOrder::Ascend, SortTarget::Version, 0).0,
        v(&["c", "d", "b", "a"])
    );
    // Ties keep ascending key order in both directions.
    assert_eq!(
        sorted(&s, SortOrder::Descend, SortTarget::Version, 0).0,
        v(&["a", "b", "c", "d"])
    );
    assert_eq!(
        sorted(&s, SortOrder::Ascend, SortTarget::Create, 0).0,
        v(&["a", "b", "c", "d"])
    );
    assert_eq!(
        sorted(&s, SortOrder::Descend, SortTarget::Mod, 0).0,
        v(&["a", "b", "d", "c"])
    );
    assert_eq!(
        sorted(&s, SortOrder::Ascend, SortTarget::Value, 0).0,
        v(&["d", "c", "b", "a"])
    );
    // Sorting fetches everything, then truncates to the limit.
    assert_eq!(
        sorted(&s, SortOrder::Ascend, SortTarget::Version, 1),
        (v(&["c"]), true)
    );
    assert_eq!(
        sorted(&s, SortOrder::Descend, SortTarget::Key, 2),
        (v(&["d", "c"]), true)
    );
}

#[test]
fn sort_order_none_with_another_target_sorts_only_the_fetched_page() {
    // etcd 3.5 turns NONE into ASCEND when the target is not KEY, but still fetches only
    // limit + 1 keys in key order before sorting them.
    let s = versioned_store();
    let (keys, more) = sorted(&s, SortOrder::None, SortTarget::Version, 1);
    assert_eq!((keys, more), (vec!["b".to_string()], true));
    let (keys, _) = sorted(&s, SortOrder::None, SortTarget::Version, 0);
    assert_eq!(keys, ["c", "d", "b", "a"]);
    let (keys, _) = sorted(&s, SortOrder::None, SortTarget::Key, 0);
    assert_eq!(keys, ["a", "b", "c", "d"]);
}

#[test]
fn revision_filters_apply_after_the_fetch_and_before_the_limit() {
    let s = versioned_store();
    let f = |req: RangeRequest| {
        let resp = s.range(&req).unwrap();
        (keys_of(&resp), resp.more, resp.count)
    };
    // mod revisions: a=8, b=7, c=4, d=5; create revisions: a=2, b=3, c=4, d=5.
    assert_eq!(
        f(RangeRequest {
            min_mod_revision: 5,
            ..range("a", FROM)
        })
        .0,
        ["a", "b", "d"]
    );
    assert_eq!(
        f(RangeRequest {
            max_mod_revision: 5,
            ..range("a", FROM)
        })
        .0,
        ["c", "d"]
    );
    assert_eq!(
        f(RangeRequest {
            min_create_revision: 4,
            ..range("a", FROM)
        })
        .0,
        ["c", "d"]
    );
    assert_eq!(
        f(RangeRequest {
            max_create_revision: 3,
            ..range("a", FROM)
        })
        .0,
        ["a", "b"]
    );
    // Filtering drops the early limit: the page is taken from the filtered kvs, count is not
    // filtered.
    let (keys, more, count) = f(RangeRequest {
        min_mod_revision: 5,
        limit: 2,
        ..range("a", FROM)
    });
    assert_eq!((keys, more, count), (vec!["a".into(), "b".into()], true, 4));
    let (keys, more, _) = f(RangeRequest {
        min_mod_revision: 5,
        limit: 3,
        ..range("a", FROM)
    });
    assert_eq!((keys.len(), more), (3, false));
}

#[test]
fn reads_at_past_revisions_carry_the_current_revision_in_the_header() {
    let s = versioned_store();
    let resp = s
        .range(&RangeRequest {
            revision: 4,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!(resp.header.unwrap().revision, 8);
    assert_eq!(keys_of(&resp), ["a", "b", "c"]);
    assert_eq!(resp.kvs[0].mod_revision, 2);
    let resp = s
        .range(&RangeRequest {
            revision: 6,
            count_only: true,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!(resp.count, 4);
    let resp = s
        .range(&RangeRequest {
            revision: 1,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!((resp.count, resp.kvs.len()), (0, 0));
    let past = s
        .range(&RangeRequest {
            revision: 7,
            limit: 1,
            ..range("a", FROM)
        })
        .unwrap();
    assert_eq!(
        (value(&past.kvs[0]), past.more, past.count),
        ("z2", true, 4)
    );
    // Single-key reads walk the key's revisions.
    assert_eq!(value(&s.get_at("a", 7).unwrap().unwrap()), "z2");
    assert_eq!(s.get_at("a", 1).unwrap(), None);
}

#[test]
fn future_and_compacted_revisions_fail() {
    let s = versioned_store();
    let err = s
        .range(&RangeRequest {
            revision: 9,
            ..range("a", "")
        })
        .unwrap_err();
    assert_eq!(err, MvccError::FutureRevision);
    assert_eq!(
        err.to_string(),
        "mvcc: required revision is a future revision"
    );
    s.compact(5).unwrap();
    let err = s
        .range(&RangeRequest {
            revision: 4,
            ..range("a", "")
        })
        .unwrap_err();
    assert_eq!(err, MvccError::Compacted);
    assert_eq!(
        err.to_string(),
        "mvcc: required revision has been compacted"
    );
    // Exactly the compact revision is still readable; revision <= 0 means current.
    assert_eq!(s.get_at("c", 5).unwrap().unwrap().mod_revision, 4);
    assert_eq!(s.get_at("a", -1).unwrap().unwrap().mod_revision, 8);
}

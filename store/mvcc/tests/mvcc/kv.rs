//! Put and DeleteRange: revisions, versions, tombstones, prev_kv, ignore_value / ignore_lease.

use cairn_mvcc::{Command, MvccError, INITIAL_REVISION, NEVER_COMPACTED};
use cairn_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

use crate::support::*;

#[test]
fn empty_store_is_at_revision_one_and_never_compacted() {
    let s = store();
    assert_eq!(s.current_revision(), INITIAL_REVISION);
    assert_eq!(s.compact_revision(), NEVER_COMPACTED);
    let resp = s.range(&range("a", FROM)).unwrap();
    assert_eq!(resp.header.unwrap().revision, 1);
    assert_eq!((resp.count, resp.kvs.len(), resp.more), (0, 0, false));
}

#[test]
fn put_takes_the_next_revision_and_counts_versions() {
    let s = store();
    let r = s.put("a", "1");
    assert_eq!(
        r.header.unwrap().revision,
        2,
        "etcd's first write is revision 2"
    );
    assert_eq!(r.prev_kv, None);
    let kv = s.get("a").unwrap();
    assert_eq!(
        (kv.create_revision, kv.mod_revision, kv.version, kv.lease),
        (2, 2, 1, 0)
    );
    assert_eq!(value(&kv), "1");

    // A put always bumps, even with an identical value.
    s.put("a", "1");
    let kv = s.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(s.current_revision(), 3);
}

#[test]
fn delete_writes_a_tombstone_and_the_next_put_recreates_the_key() {
    let s = store();
    s.put("a", "1"); // 2
    s.put("a", "2"); // 3
    let d = s.delete("a", "");
    assert_eq!((d.deleted, d.header.unwrap().revision), (1, 4));
    assert_eq!(s.get("a"), None);
    s.put("a", "3"); // 5
    let kv = s.get("a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    // The old generation is still readable at its revisions.
    assert_eq!(s.get_at("a", 3).unwrap().unwrap().version, 2);
    assert_eq!(s.get_at("a", 4).unwrap(), None);
}

#[test]
fn deleting_nothing_does_not_bump_the_revision() {
    let s = store();
    s.put("a", "1");
    let d = s.delete("zzz", "");
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 2));
    let d = s.delete("b", "c");
    assert_eq!((d.deleted, d.header.unwrap().revision), (0, 2));
    assert_eq!(s.current_revision(), 2);
}

#[test]
fn delete_range_deletes_every_key_in_one_revision_with_prev_kvs() {
    let s = store();
    for k in ["a", "b", "c", "d"] {
        s.put(k, k);
    }
    let resp = s
        .apply(Command::DeleteRange(DeleteRangeRequest {
            key: b"b".to_vec(),
            range_end: b"d".to_vec(),
            prev_kv: true,
        }))
        .unwrap();
    let cairn_mvcc::Response::DeleteRange(d) = resp else {
        panic!()
    };
    assert_eq!(d.deleted, 2);
    assert_eq!(d.header.unwrap().revision, 6);
    let prev: Vec<_> = d
        .prev_kvs
        .iter()
        .map(|kv| (kv.key.clone(), kv.mod_revision))
        .collect();
    assert_eq!(prev, vec![(b"b".to_vec(), 3), (b"c".to_vec(), 4)]);
    assert_eq!(s.keys(&range("a", FROM)), ["a", "d"]);

    // Without prev_kv the list stays empty; "\0" deletes everything from the key on.
    let d = s.delete("a", FROM);
    assert_eq!((d.deleted, d.prev_kvs.len()), (2, 0));
    assert_eq!(s.current_revision(), 7);
}

#[test]
fn put_prev_kv_returns_the_previous_value() {
    let s = store();
    s.put("a", "old");
    let r = s
        .put_req(PutRequest {
            prev_kv: true,
            ..put("a", "new")
        })
        .unwrap();
    assert_eq!(value(&r.prev_kv.unwrap()), "old");
    let r = s
        .put_req(PutRequest {
            prev_kv: true,
            ..put("fresh", "x")
        })
        .unwrap();
    assert_eq!(r.prev_kv, None);
}

#[test]
fn ignore_value_and_ignore_lease_need_an_existing_key() {
    let s = store();
    let err = s
        .put_req(PutRequest {
            ignore_value: true,
            ..put("a", "")
        })
        .unwrap_err();
    assert_eq!(err, MvccError::KeyNotFound);
    assert_eq!(err.to_string(), "etcdserver: key not found");
    let err = s
        .put_req(PutRequest {
            ignore_lease: true,
            ..put("a", "v")
        })
        .unwrap_err();
    assert_eq!(err, MvccError::KeyNotFound);
    assert_eq!(s.current_revision(), 1, "a failed put changes nothing");

    s.apply(Command::LeaseGrant { id: 7, ttl: 60 }).unwrap();
    s.put_req(PutRequest {
        lease: 7,
        ..put("a", "v1")
    })
    .unwrap();
    // ignore_value keeps the value but takes the new lease (0 = detach).
    s.put_req(PutRequest {
        ignore_value: true,
        ..put("a", "")
    })
    .unwrap();
    let kv = s.get("a").unwrap();
    assert_eq!((value(&kv), kv.lease, kv.version), ("v1", 0, 2));
    assert!(s.lease_keys(7).unwrap().is_empty());
    // ignore_lease keeps the lease but takes the new value.
    s.put_req(PutRequest {
        lease: 7,
        ..put("a", "v2")
    })
    .unwrap();
    s.put_req(PutRequest {
        ignore_lease: true,
        ..put("a", "v3")
    })
    .unwrap();
    let kv = s.get("a").unwrap();
    assert_eq!((value(&kv), kv.lease), ("v3", 7));
}

#[test]
fn put_with_unknown_lease_fails_and_changes_nothing() {
    let s = store();
    let err = s
        .put_req(PutRequest {
            lease: 42,
            ..put("a", "v")
        })
        .unwrap_err();
    assert_eq!(err, MvccError::LeaseNotFound);
    assert_eq!(s.current_revision(), 1);
    assert_eq!(s.get("a"), None);
}

#[test]
fn a_failed_command_leaves_the_rest_of_its_batch_intact() {
    let s = store();
    let mut batch = s.begin().unwrap();
    batch.apply(&Command::Put(put("a", "1"))).unwrap();
    assert_eq!(
        batch.apply(&Command::Put(PutRequest {
            lease: 9,
            ..put("b", "1")
        })),
        Err(MvccError::LeaseNotFound)
    );
    batch.apply(&Command::Put(put("c", "1"))).unwrap();
    assert_eq!(batch.current_revision(), 3);
    batch.commit(false).unwrap();
    assert_eq!(s.keys(&range("a", FROM)), ["a", "c"]);
    assert_eq!(s.get("c").unwrap().mod_revision, 3);
}

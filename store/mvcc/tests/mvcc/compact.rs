//! Compaction: error rules, what survives, and that reads at or above the compact revision are
//! unaffected (etcd `keyIndex.compact`).

use cairn_mvcc::{Command, MvccError, Response};
use cairn_proto::etcdserverpb::RangeRequest;

use crate::support::*;

#[test]
fn compaction_error_rules() {
    let s = store();
    // A fresh etcd has compactMainRev = -1, so compacting at 0 (or 1) is allowed once.
    s.compact(0).unwrap();
    assert_eq!(s.compact_revision(), 0);
    assert_eq!(s.compact(0), Err(MvccError::Compacted));
    assert_eq!(s.compact(2), Err(MvccError::FutureRevision));
    s.put("a", "1"); // 2
    let Ok(Response::Compact(c)) = s.compact(2) else {
        panic!()
    };
    assert_eq!(
        c.header.unwrap().revision,
        2,
        "compaction reports the current revision"
    );
    assert_eq!(s.current_revision(), 2, "compaction takes no revision");
    assert_eq!(s.compact(1), Err(MvccError::Compacted));
    assert_eq!(s.compact(2), Err(MvccError::Compacted));
}

#[test]
fn reads_at_or_above_the_compact_revision_are_unaffected() {
    let s = store();
    s.put("a", "1"); // 2
    s.put("b", "1"); // 3
    s.put("a", "2"); // 4
    s.delete("b", ""); // 5
    s.put("c", "1"); // 6
    s.put("a", "3"); // 7
    s.delete("c", ""); // 8
    let before: Vec<_> = (5..=8)
        .map(|rev| {
            s.range(&RangeRequest {
                revision: rev,
                ..range("a", FROM)
            })
            .unwrap()
            .kvs
        })
        .collect();
    s.compact(5).unwrap();
    let after: Vec<_> = (5..=8)
        .map(|rev| {
            s.range(&RangeRequest {
                revision: rev,
                ..range("a", FROM)
            })
            .unwrap()
            .kvs
        })
        .collect();
    assert_eq!(before, after);
    for rev in 1..5 {
        assert_eq!(s.get_at("a", rev), Err(MvccError::Compacted));
    }
    // History kept: a@4 (newest <= 5), everything after 5; b's tombstone at 5 is dropped.
    let batch = s.events(5, b"\0", b"\0", 0).unwrap();
    let revs: Vec<(String, i64)> = batch
        .events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (String::from_utf8(kv.key.clone()).unwrap(), kv.mod_revision)
        })
        .collect();
    assert_eq!(
        revs,
        vec![("c".into(), 6), ("a".into(), 7), ("c".into(), 8)]
    );
    assert_eq!(s.events(4, b"a", b"", 0), Err(MvccError::Compacted));
    // Once the key is compacted away entirely, a later re-create starts a new generation.
    s.compact(8).unwrap();
    s.put("c", "again");
    let c = s.get("c").unwrap();
    assert_eq!((c.version, c.create_revision), (1, 9));
}

#[test]
fn compaction_of_a_large_history_walks_the_index_in_chunks() {
    let s = store();
    let mut batch = s.begin().unwrap();
    for round in 0..3 {
        for i in 0..3000 {
            let key = format!("key/{i:05}");
            batch
                .apply(&Command::Put(put(&key, &format!("{round}"))))
                .unwrap();
        }
    }
    for i in (0..3000).step_by(2) {
        batch
            .apply(&Command::DeleteRange(delete(&format!("key/{i:05}"), "")))
            .unwrap();
    }
    batch.commit(false).unwrap();
    let current = s.current_revision();
    let expect = s.range(&range("key/", FROM)).unwrap().kvs;
    s.compact(current).unwrap();
    assert_eq!(
        s.range(&RangeRequest {
            revision: current,
            ..range("key/", FROM)
        })
        .unwrap()
        .kvs,
        expect
    );
    assert_eq!(expect.len(), 1500);
    // Only the live versions remain in history.
    assert_eq!(s.events(current, b"\0", b"\0", 0).unwrap().events.len(), 0);
    let all = s.snapshot().unwrap();
    let fresh = store();
    fresh.install_snapshot(&all.image).unwrap();
    assert_eq!(
        fresh.events(current, b"\0", b"\0", 0).unwrap().events.len(),
        0
    );
    assert_eq!(fresh.range(&range("key/", FROM)).unwrap().kvs, expect);
}

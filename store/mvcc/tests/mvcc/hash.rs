//! HashKV: equal on members with equal history, sensitive to any divergence, revision-scoped.

use cairn_mvcc::{Command, MvccError};
use cairn_proto::etcdserverpb::PutRequest;

use crate::support::*;

fn workload(s: &TestStore, last_value: &str) {
    s.apply(Command::LeaseGrant { id: 3, ttl: 9 }).unwrap();
    s.put("a", "1");
    s.put_req(PutRequest {
        lease: 3,
        ..put("b", "1")
    })
    .unwrap();
    s.delete("a", "");
    s.put("c", last_value);
}

#[test]
fn equal_histories_hash_equal_and_divergence_shows() {
    let (x, y, z) = (store(), store(), store());
    workload(&x, "same");
    workload(&y, "same");
    workload(&z, "different");
    let hx = x.hash_kv(0).unwrap();
    assert_eq!(hx, y.hash_kv(0).unwrap());
    assert_eq!(
        (hx.hash_revision, hx.current_revision, hx.compact_revision),
        (5, 5, -1)
    );
    assert_ne!(hx.hash, z.hash_kv(0).unwrap().hash);
    // Up to revision 4 the stores agree.
    assert_eq!(x.hash_kv(4).unwrap().hash, z.hash_kv(4).unwrap().hash);
    assert_eq!(x.hash_kv(6), Err(MvccError::FutureRevision));
}

#[test]
fn hash_respects_compaction_like_etcd() {
    let (x, y) = (store(), store());
    workload(&x, "v");
    workload(&y, "v");
    x.compact(4).unwrap();
    y.compact(4).unwrap();
    assert_eq!(x.hash_kv(0).unwrap(), y.hash_kv(0).unwrap());
    assert_eq!(x.hash_kv(3), Err(MvccError::Compacted));
    assert_eq!(x.hash_kv(0).unwrap().compact_revision, 4);
    // Hashing is a pure read.
    assert_eq!(x.hash_kv(5).unwrap(), x.hash_kv(0).unwrap());
}

#[test]
fn empty_store_hash_is_the_crc_of_the_bucket_name() {
    let s = store();
    // CRC-32C("key"), the value a fresh etcd reports.
    let h = s.hash_kv(0).unwrap();
    assert_eq!(h.hash, 1_084_519_789);
}

#[test]
fn hash_equals_real_etcd_for_the_same_history() {
    // Recorded from etcd 3.4.23 (Debian etcd-server) with etcdctl: `compaction 0`, `put a 1`,
    // `put b 1`, `put a 2`, `del a`, `lease grant 600`, `put b 2 --lease=...`, then
    // `endpoint hashkv` before and after `compaction 4`, after `put a 3`, and with `--rev=6`.
    const LEASE: i64 = 4_111_120_285_515_600_139;
    let s = store();
    s.compact(0).unwrap();
    s.put("a", "1");
    s.put("b", "1");
    s.put("a", "2");
    s.delete("a", "");
    s.apply(Command::LeaseGrant {
        id: LEASE,
        ttl: 600,
    })
    .unwrap();
    s.put_req(PutRequest {
        lease: LEASE,
        ..put("b", "2")
    })
    .unwrap();
    assert_eq!(s.hash_kv(0).unwrap().hash, 3_537_025_131);
    s.compact(4).unwrap();
    let h = s.hash_kv(0).unwrap();
    assert_eq!(
        (h.hash, h.compact_revision, h.current_revision),
        (998_197_351, 4, 6)
    );
    s.put("a", "3");
    assert_eq!(s.hash_kv(0).unwrap().hash, 2_419_729_075);
    let h = s.hash_kv(6).unwrap();
    assert_eq!((h.hash, h.current_revision), (998_197_351, 7));
}

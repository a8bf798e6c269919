//! Snapshots: an image installed into a fresh store reproduces everything; a damaged image is
//! refused without touching the store.

use cairn_mvcc::{Command, MvccError, Response};
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest, TxnRequest};

use crate::support::*;

fn populated() -> TestStore {
    let s = store();
    s.apply(Command::LeaseGrant { id: 11, ttl: 30 }).unwrap();
    s.apply(Command::LeaseGrant { id: 12, ttl: 40 }).unwrap();
    for i in 0..20 {
        s.put(&format!("k{:02}", i % 7), &format!("v{i}"));
    }
    s.put_req(PutRequest {
        lease: 11,
        ..put("leased/a", "x")
    })
    .unwrap();
    s.put_req(PutRequest {
        lease: 11,
        ..put("leased/b", "x")
    })
    .unwrap();
    s.delete("k03", "k05");
    s.txn(TxnRequest {
        success: vec![op_put("t1", "1"), op_delete("k00", "")],
        ..TxnRequest::default()
    })
    .unwrap();
    s.compact(10).unwrap();
    s.put("k01", "after-compact");
    let mut batch = s.begin().unwrap();
    batch.set_meta("applied", b"term-2/index-99").unwrap();
    batch.set_meta("membership", b"{voters:[1,2,3]}").unwrap();
    batch.commit(false).unwrap();
    s
}

fn assert_same_state(a: &TestStore, b: &TestStore) {
    assert_eq!(a.current_revision(), b.current_revision());
    assert_eq!(a.compact_revision(), b.compact_revision());
    for rev in a.compact_revision()..=a.current_revision() {
        let req = RangeRequest {
            revision: rev,
            ..range("\0", FROM)
        };
        assert_eq!(
            a.range(&req).unwrap(),
            b.range(&req).unwrap(),
            "range at {rev}"
        );
        assert_eq!(
            a.hash_kv(rev).unwrap(),
            b.hash_kv(rev).unwrap(),
            "hash at {rev}"
        );
    }
    let from = a.compact_revision();
    assert_eq!(
        a.events(from, b"\0", b"\0", 0).unwrap(),
        b.events(from, b"\0", b"\0", 0).unwrap()
    );
    assert_eq!(a.leases().unwrap(), b.leases().unwrap());
    for lease in a.leases().unwrap() {
        assert_eq!(
            a.lease_keys(lease.id).unwrap(),
            b.lease_keys(lease.id).unwrap()
        );
    }
    for name in ["applied", "membership"] {
        assert_eq!(a.read_meta(name).unwrap(), b.read_meta(name).unwrap());
    }
}

#[test]
fn install_into_a_fresh_store_reproduces_everything() {
    let source = populated();
    let snap = source.snapshot().unwrap();
    assert_eq!(snap.info.current_revision, source.current_revision());
    assert_eq!(snap.info.compact_revision, 10);
    assert_eq!(snap.info.meta["applied"], b"term-2/index-99");
    assert_eq!(snap.info.size, snap.image.len() as u64);

    let mut target = store();
    target.put("stale", "data"); // replaced wholesale
    let info = target.install_snapshot(&snap.image).unwrap();
    assert_eq!(info, snap.info);
    assert_same_state(&source, &target);
    assert_eq!(target.get("stale"), None);

    // Both continue identically, including lease revocation of the rebuilt attachments.
    for s in [&source, &target] {
        let Ok(Response::LeaseRevoke(_)) = s.apply(Command::LeaseRevoke { id: 11 }) else {
            panic!()
        };
        s.put("next", "1");
    }
    assert_same_state(&source, &target);
    target.reopen();
    assert_same_state(&source, &target);
}

#[test]
fn damaged_images_are_refused_and_change_nothing() {
    let source = populated();
    let image = source.snapshot().unwrap().image;
    let target = store();
    target.put("keep", "me");
    let before = target.hash_kv(0).unwrap();

    let mut flipped = image.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    assert!(matches!(
        target.install_snapshot(&flipped),
        Err(MvccError::BadSnapshot(_))
    ));
    let truncated = &image[..image.len() - 3];
    assert!(matches!(
        target.install_snapshot(truncated),
        Err(MvccError::BadSnapshot(_))
    ));
    assert!(matches!(
        target.install_snapshot(b"not an image"),
        Err(MvccError::BadSnapshot(_))
    ));

    assert_eq!(target.hash_kv(0).unwrap(), before);
    assert_eq!(target.current_revision(), 2);
    assert_eq!(value(&target.get("keep").unwrap()), "me");
}

//! Leases: grant / revoke, attachment by put, detachment by put and delete, and revocation
//! deleting every attached key in ONE revision.

use cairn_mvcc::{Command, LeaseInfo, MvccError, Response};
use cairn_proto::etcdserverpb::PutRequest;
use cairn_proto::mvccpb::event::EventType;

use crate::support::*;

fn grant(s: &TestStore, id: i64, ttl: i64) -> Result<Response, MvccError> {
    s.apply(Command::LeaseGrant { id, ttl })
}

fn put_with(s: &TestStore, key: &str, lease: i64) {
    s.put_req(PutRequest {
        lease,
        ..put(key, "v")
    })
    .unwrap();
}

#[test]
fn grant_list_and_errors() {
    let s = store();
    let Ok(Response::LeaseGrant(g)) = grant(&s, 7, 30) else {
        panic!()
    };
    assert_eq!((g.id, g.ttl, g.header.unwrap().revision), (7, 30, 1));
    grant(&s, 3, 10).unwrap();
    assert_eq!(grant(&s, 7, 5), Err(MvccError::LeaseExists));
    assert_eq!(grant(&s, 0, 5), Err(MvccError::LeaseNotFound));
    assert_eq!(
        s.leases().unwrap(),
        vec![LeaseInfo { id: 3, ttl: 10 }, LeaseInfo { id: 7, ttl: 30 }]
    );
    assert_eq!(s.lease(7).unwrap(), Some(LeaseInfo { id: 7, ttl: 30 }));
    assert_eq!(s.lease(8).unwrap(), None);
    assert_eq!(s.current_revision(), 1, "leases take no revision");
    assert_eq!(
        s.apply(Command::LeaseRevoke { id: 8 }),
        Err(MvccError::LeaseNotFound)
    );
}

#[test]
fn puts_attach_and_detach_keys() {
    let s = store();
    grant(&s, 1, 60).unwrap();
    grant(&s, 2, 60).unwrap();
    put_with(&s, "a", 1);
    put_with(&s, "b", 1);
    assert_eq!(s.lease_keys(1).unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(s.key_lease(b"a").unwrap(), Some(1));
    put_with(&s, "a", 2); // moves a to lease 2
    assert_eq!(s.lease_keys(1).unwrap(), vec![b"b".to_vec()]);
    assert_eq!(s.lease_keys(2).unwrap(), vec![b"a".to_vec()]);
    put_with(&s, "b", 0); // detaches b
    assert!(s.lease_keys(1).unwrap().is_empty());
    assert_eq!(s.key_lease(b"b").unwrap(), Some(0));
    s.delete("a", ""); // deleting detaches
    assert!(s.lease_keys(2).unwrap().is_empty());
    assert_eq!(s.key_lease(b"a").unwrap(), None);
}

#[test]
fn revoke_deletes_every_attached_key_in_one_revision() {
    let s = store();
    grant(&s, 9, 60).unwrap();
    put_with(&s, "z", 9); // 2
    put_with(&s, "m", 9); // 3
    put_with(&s, "a", 9); // 4
    s.put("other", "x"); // 5
    let mut batch = s.begin().unwrap();
    let Ok(Response::LeaseRevoke(r)) = batch.apply(&Command::LeaseRevoke { id: 9 }) else {
        panic!()
    };
    let events = batch.commit(false).unwrap();
    assert_eq!(r.header.unwrap().revision, 6);
    assert_eq!(s.current_revision(), 6);
    // Sorted by key, one revision, consecutive sub revisions.
    let deleted: Vec<(Vec<u8>, i64, i32)> = events
        .iter()
        .map(|e| {
            let kv = e.kv.as_ref().unwrap();
            (kv.key.clone(), kv.mod_revision, e.r#type)
        })
        .collect();
    let del = EventType::Delete as i32;
    assert_eq!(
        deleted,
        vec![
            (b"a".to_vec(), 6, del),
            (b"m".to_vec(), 6, del),
            (b"z".to_vec(), 6, del)
        ]
    );
    assert_eq!(s.keys(&range("\0", FROM)), ["other"]);
    assert_eq!(s.lease(9).unwrap(), None);
    assert!(s.lease_keys(9).unwrap().is_empty());
}

#[test]
fn revoking_a_keyless_lease_takes_no_revision() {
    let s = store();
    grant(&s, 4, 60).unwrap();
    put_with(&s, "a", 4); // 2
    s.delete("a", ""); // 3
    let Ok(Response::LeaseRevoke(r)) = s.apply(Command::LeaseRevoke { id: 4 }) else {
        panic!()
    };
    assert_eq!(r.header.unwrap().revision, 3);
    assert_eq!(s.current_revision(), 3);
    assert!(s.leases().unwrap().is_empty());
}

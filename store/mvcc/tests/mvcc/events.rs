//! Watch events: produced by commits and replayed from history, identical, with prev_kv.

use cairn_mvcc::{Command, MvccError};
use cairn_proto::etcdserverpb::TxnRequest;
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::{Event, KeyValue};

use crate::support::*;

fn commit(s: &TestStore, cmds: Vec<Command>) -> Vec<Event> {
    let mut batch = s.begin().unwrap();
    for cmd in &cmds {
        batch.apply(cmd).unwrap();
    }
    batch.commit(false).unwrap()
}

#[test]
fn commits_return_put_and_delete_events_with_prev_kv() {
    let s = store();
    let e = commit(
        &s,
        vec![Command::Put(put("a", "1")), Command::Put(put("a", "2"))],
    );
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].r#type, EventType::Put as i32);
    assert_eq!(e[0].prev_kv, None);
    assert_eq!(e[1].prev_kv.as_ref().map(value), Some("1"));
    assert_eq!(e[1].kv.as_ref().unwrap().mod_revision, 3);

    let e = commit(&s, vec![Command::DeleteRange(delete("a", ""))]);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].r#type, EventType::Delete as i32);
    // A delete event carries a tombstone: the key and the delete revision, nothing else.
    assert_eq!(
        e[0].kv,
        Some(KeyValue {
            key: b"a".to_vec(),
            mod_revision: 4,
            ..KeyValue::default()
        })
    );
    assert_eq!(e[0].prev_kv.as_ref().map(|kv| kv.mod_revision), Some(3));

    // A txn's events share its revision; a failed or no-op command produces none.
    let e = commit(
        &s,
        vec![
            Command::Txn(TxnRequest {
                success: vec![op_put("x", "1"), op_put("y", "1")],
                ..TxnRequest::default()
            }),
            Command::DeleteRange(delete("nothing", "")),
        ],
    );
    let revs: Vec<i64> = e
        .iter()
        .map(|e| e.kv.as_ref().unwrap().mod_revision)
        .collect();
    assert_eq!(revs, vec![5, 5]);
}

#[test]
fn history_replay_matches_the_committed_events() {
    let s = store();
    s.apply(Command::LeaseGrant { id: 1, ttl: 60 }).unwrap();
    let mut committed = Vec::new();
    committed.extend(commit(
        &s,
        vec![Command::Put(put("a", "1")), Command::Put(put("b", "1"))],
    ));
    committed.extend(commit(
        &s,
        vec![
            Command::Txn(TxnRequest {
                success: vec![op_put("a", "2"), op_delete("b", ""), op_put("c", "1")],
                ..TxnRequest::default()
            }),
            Command::Put(put("b", "again")),
            Command::DeleteRange(delete("a", "z")),
            Command::Put(put("c", "3")),
        ],
    ));
    let replay = s.events(1, b"\0", b"\0", 0).unwrap();
    assert_eq!(replay.events, committed);
    assert_eq!(replay.next_revision, s.current_revision() + 1);
    assert_eq!(replay.current_revision, s.current_revision());

    // Key filtering uses the etcd key / range_end conventions.
    let only_b = s.events(1, b"b", b"", 0).unwrap();
    let b: Vec<Event> = committed
        .iter()
        .filter(|e| e.kv.as_ref().unwrap().key == b"b")
        .cloned()
        .collect();
    assert_eq!(only_b.events, b);
    let from_c = s.events(1, b"c", b"\0", 0).unwrap().events;
    assert!(from_c
        .iter()
        .all(|e| e.kv.as_ref().unwrap().key.as_slice() >= b"c".as_slice()));
    assert_eq!(from_c.len(), 3);
}

#[test]
fn limited_replay_ends_on_a_revision_boundary() {
    let s = store();
    s.put("a", "1"); // 2
    s.txn(TxnRequest {
        success: vec![op_put("b", "1"), op_put("c", "1")],
        ..TxnRequest::default()
    })
    .unwrap(); // 3
    s.put("d", "1"); // 4
    let first = s.events(2, b"\0", b"\0", 2).unwrap();
    // Two events reached inside revision 3: the rest of revision 3 comes along.
    assert_eq!(first.events.len(), 3);
    assert_eq!(first.next_revision, 4);
    let second = s.events(first.next_revision, b"\0", b"\0", 2).unwrap();
    assert_eq!(second.events.len(), 1);
    assert_eq!(second.next_revision, 5);
    let caught_up = s.events(5, b"\0", b"\0", 2).unwrap();
    assert_eq!((caught_up.events.len(), caught_up.next_revision), (0, 5));
    let future = s.events(9, b"\0", b"\0", 0).unwrap();
    assert_eq!((future.events.len(), future.next_revision), (0, 9));
}

#[test]
fn replay_below_the_compact_revision_fails() {
    let s = store();
    s.put("a", "1"); // 2
    s.put("a", "2"); // 3
    s.put("a", "3"); // 4
    s.compact(3).unwrap();
    assert_eq!(s.events(2, b"a", b"", 0), Err(MvccError::Compacted));
    let at = s.events(3, b"a", b"", 0).unwrap().events;
    assert_eq!(at.len(), 2);
    // prev_kv of the event at the compact revision is itself compacted away: etcd omits it.
    assert_eq!(at[0].prev_kv, None);
    assert_eq!(at[1].prev_kv.as_ref().map(value), Some("2"));
}

//! Durable and non-durable commits across reopen: data, revisions and metadata stay together.

use cairn_mvcc::Command;

use crate::support::*;

#[test]
fn durable_commit_survives_reopen_with_revisions_and_meta() {
    let mut s = store();
    let mut batch = s.begin().unwrap();
    batch.apply(&Command::Put(put("a", "1"))).unwrap();
    batch.apply(&Command::Put(put("b", "1"))).unwrap();
    batch
        .apply(&Command::Compact(
            cairn_proto::etcdserverpb::CompactionRequest {
                revision: 2,
                physical: false,
            },
        ))
        .unwrap();
    batch.set_meta("applied", b"log-3").unwrap();
    batch.commit(true).unwrap();
    s.reopen();
    assert_eq!(s.current_revision(), 3);
    assert_eq!(s.compact_revision(), 2);
    assert_eq!(
        s.read_meta("applied").unwrap().as_deref(),
        Some(b"log-3".as_slice())
    );
    assert_eq!(s.keys(&range("a", FROM)), ["a", "b"]);
    s.put("c", "1");
    assert_eq!(s.get("c").unwrap().mod_revision, 4);
}

#[test]
fn non_durable_commits_are_visible_at_once_and_become_durable_with_the_next_durable_one() {
    let mut s = store();
    for i in 0..5 {
        let mut batch = s.begin().unwrap();
        batch
            .apply(&Command::Put(put(&format!("k{i}"), "v")))
            .unwrap();
        batch
            .set_meta("applied", format!("{i}").as_bytes())
            .unwrap();
        batch.commit(false).unwrap();
        assert_eq!(s.current_revision(), 2 + i);
        assert!(s.get(&format!("k{i}")).is_some());
    }
    let mut batch = s.begin().unwrap();
    batch.set_meta("applied", b"5").unwrap();
    batch.commit(true).unwrap();
    s.reopen();
    assert_eq!(s.current_revision(), 6);
    assert_eq!(s.keys(&range("k", FROM)).len(), 5);
    assert_eq!(
        s.read_meta("applied").unwrap().as_deref(),
        Some(b"5".as_slice())
    );
}

#[test]
fn after_reopen_applied_meta_and_data_agree() {
    // Whatever redb kept of the non-durable tail, "applied" and the data come from the same
    // commit, so replaying the log from "applied" on rebuilds exactly the lost part.
    let mut s = store();
    for i in 0..6 {
        let mut batch = s.begin().unwrap();
        batch
            .apply(&Command::Put(put(&format!("k{i}"), "v")))
            .unwrap();
        batch.set_meta("applied", &[i as u8]).unwrap();
        batch.commit(i == 2).unwrap();
    }
    s.reopen();
    let applied = s
        .read_meta("applied")
        .unwrap()
        .expect("at least the durable commit")[0];
    assert!(applied >= 2);
    assert_eq!(s.keys(&range("k", FROM)).len(), applied as usize + 1);
    assert_eq!(s.current_revision(), 2 + i64::from(applied));
}

#[test]
fn a_dropped_batch_changes_nothing() {
    let s = store();
    s.put("a", "1");
    {
        let mut batch = s.begin().unwrap();
        batch.apply(&Command::Put(put("b", "1"))).unwrap();
        batch.set_meta("applied", b"x").unwrap();
    }
    let batch = s.begin().unwrap();
    batch.abort().unwrap();
    assert_eq!(s.current_revision(), 2);
    assert_eq!(s.get("b"), None);
    assert_eq!(s.read_meta("applied").unwrap(), None);
    s.put("b", "2");
    assert_eq!(s.get("b").unwrap().mod_revision, 3);
}

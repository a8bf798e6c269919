//! Defragmentation: the file shrinks after a large delete and compaction, and nothing else
//! changes — not a byte of the snapshot image, not HashKV; readers are served throughout and
//! writers wait for it; an interrupted one leaves the store as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_mvcc::{Command, Mvcc};
use cairn_proto::etcdserverpb::PutRequest;

use crate::support::*;

/// Where a defragmentation builds the new file (see `docs/mvcc-format.md`).
fn leftover(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap().to_os_string();
    name.push(".defrag");
    path.with_file_name(name)
}

/// A store of `keys` keys with 1 KiB values and a lease, a few updated, then all but a tenth
/// deleted and the history compacted away: most of the file is free pages.
fn mostly_freed(keys: usize) -> TestStore {
    let s = store();
    s.apply(Command::LeaseGrant { id: 5, ttl: 60 }).unwrap();
    let value = "x".repeat(1024);
    for i in 0..keys {
        s.put(&format!("key/{i:05}"), &value);
    }
    for i in (0..keys).step_by(10) {
        s.put_req(PutRequest {
            lease: 5,
            ..put(&format!("key/{i:05}"), "kept")
        })
        .unwrap();
    }
    for i in 0..keys {
        if i % 10 != 0 {
            s.delete(&format!("key/{i:05}"), "");
        }
    }
    s.compact(s.current_revision()).unwrap();
    let mut batch = s.begin().unwrap();
    batch.set_meta("applied", b"term-3/index-1234").unwrap();
    batch.commit(false).unwrap();
    s
}

#[test]
fn defragment_shrinks_the_file_and_changes_nothing_else() {
    let mut s = mostly_freed(3000);
    let image = s.snapshot().unwrap().image;
    let hash = s.hash_kv(0).unwrap();
    let (current, compact) = (s.current_revision(), s.compact_revision());
    let size = s.size_bytes().unwrap();
    let in_use = s.size_in_use(Duration::ZERO).unwrap();
    assert!(
        in_use < size / 2,
        "after the delete most of the file is free: {in_use} of {size}"
    );

    let report = s.defragment().unwrap();
    assert_eq!(report.size_before, size);
    assert_eq!(report.size_after, s.size_bytes().unwrap());
    assert!(
        report.size_after < size / 2,
        "the file shrank: {size} -> {}",
        report.size_after
    );
    assert!(s.size_in_use(Duration::ZERO).unwrap() <= report.size_after);
    assert_eq!(
        s.snapshot().unwrap().image,
        image,
        "same data, byte for byte"
    );
    assert_eq!(s.hash_kv(0).unwrap(), hash);
    assert_eq!(
        (s.current_revision(), s.compact_revision()),
        (current, compact)
    );
    assert_eq!(s.lease_keys(5).unwrap().len(), 300);
    assert_eq!(
        s.read_meta("applied").unwrap().as_deref(),
        Some(b"term-3/index-1234".as_slice())
    );
    assert!(!leftover(&s.path).exists(), "no copy left behind");

    // Writes go to the new file, revisions continue, and it all survives a reopen.
    let r = s.put("after", "defrag");
    assert_eq!(r.header.unwrap().revision, current + 1);
    s.reopen();
    assert_eq!(s.get("after").unwrap().mod_revision, current + 1);
    assert_eq!(
        s.get("key/00010").map(|kv| kv.value),
        Some(b"kept".to_vec())
    );
    assert_eq!(s.hash_kv(current).unwrap().hash, hash.hash);
}

#[test]
fn everything_committed_before_defragment_is_durable_after_it() {
    let s = store();
    let mut batch = s.begin().unwrap();
    batch.apply(&Command::Put(put("a", "1"))).unwrap();
    batch.set_meta("applied", b"7").unwrap();
    batch.commit(false).unwrap();
    s.defragment().unwrap();
    // Read the file as a crash would leave it: a second handle sees only durable commits, and
    // redb refuses a second handle on a file that is open, so copy it first.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.redb");
    std::fs::copy(&s.path, &copy).unwrap();
    let reread = Mvcc::open(&copy).unwrap();
    assert_eq!(reread.current_revision(), 2);
    assert_eq!(
        reread.read_meta("applied").unwrap().as_deref(),
        Some(b"7".as_slice())
    );
}

#[test]
fn an_interrupted_defragmentation_leaves_the_store_as_it_was() {
    let mut s = mostly_freed(200);
    let image = s.snapshot().unwrap().image;
    // What a crash in the middle of the copy leaves: a partial new file beside the store.
    let leftover = leftover(&s.path);
    std::fs::write(&leftover, b"half a redb file").unwrap();
    s.reopen();
    assert!(!leftover.exists(), "the partial copy is removed on open");
    assert_eq!(s.snapshot().unwrap().image, image);
    s.defragment().unwrap();
    assert_eq!(s.snapshot().unwrap().image, image);
}

#[test]
fn readers_are_served_and_writers_wait_while_it_runs() {
    let s = mostly_freed(2000);
    let start = s.current_revision();
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut revisions = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::Relaxed) || i < 50 {
                revisions.push(s.put(&format!("w/{i:05}"), "v").header.unwrap().revision);
                i += 1;
            }
            revisions
        });
        let reader = scope.spawn(|| {
            let mut reads = 0;
            while !done.load(Ordering::Relaxed) {
                assert_eq!(s.get("key/00000").unwrap().value, b"kept");
                reads += 1;
            }
            reads
        });
        for _ in 0..3 {
            s.defragment().unwrap();
        }
        done.store(true, Ordering::Relaxed);
        let revisions = writer.join().unwrap();
        assert!(reader.join().unwrap() > 0);
        // Every write got the next revision and is readable, in order.
        let expected: Vec<i64> = (start + 1..=start + revisions.len() as i64).collect();
        assert_eq!(revisions, expected);
        for (i, rev) in revisions.iter().enumerate() {
            assert_eq!(s.get(&format!("w/{i:05}")).unwrap().mod_revision, *rev);
        }
    });
}

#[test]
fn a_failed_defragmentation_leaves_the_store_in_use_and_unchanged() {
    let s = mostly_freed(200);
    let image = s.snapshot().unwrap().image;
    let size = s.size_bytes().unwrap();
    // A directory where the new file must go: the rewrite cannot even start.
    std::fs::create_dir(leftover(&s.path)).unwrap();
    assert!(s.defragment().is_err());
    assert_eq!(s.size_bytes().unwrap(), size);
    assert_eq!(s.snapshot().unwrap().image, image);
    let r = s.put("still", "writable");
    assert_eq!(r.header.unwrap().revision, s.current_revision());
    std::fs::remove_dir(leftover(&s.path)).unwrap();
    s.defragment().unwrap();
    assert_eq!(s.get("still").unwrap().value, b"writable");
}

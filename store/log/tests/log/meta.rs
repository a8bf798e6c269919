//! Meta blobs (vote, committed) are replaced atomically: after any crash the old or the new
//! value is read, never a mix, and damage is reported rather than read as a value.

use cairn_log::{format, LogError, MemFs};

use crate::{log_dir, open_mem, small_options};

#[test]
fn saved_meta_survives_a_crash_and_a_reopen() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    assert_eq!(log.read_vote().unwrap(), None);
    log.save_vote(b"term=3,voted_for=2").unwrap();
    log.save_committed(b"41").unwrap();
    log.save_meta("purged-log-id", b"3:40").unwrap();
    let crashed = fs.crash();
    drop(log);
    let log = open_mem(&crashed, small_options()).unwrap();
    assert_eq!(
        log.read_vote().unwrap().as_deref(),
        Some(&b"term=3,voted_for=2"[..])
    );
    assert_eq!(log.read_committed().unwrap().as_deref(), Some(&b"41"[..]));
    assert_eq!(
        log.read_meta("purged-log-id").unwrap().as_deref(),
        Some(&b"3:40"[..])
    );
}

#[test]
fn a_crash_before_the_rename_keeps_the_old_value() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    log.save_vote(b"old").unwrap();
    // The tmp file's sync fails: the new value never replaces the old one.
    fs.fail_nth_sync(1);
    assert!(log.save_vote(b"new").is_err());
    let crashed = fs.crash();
    let crashed_with_everything = fs.crash_keeping(usize::MAX, 0);
    drop(log);
    for fs in [crashed, crashed_with_everything] {
        let log = open_mem(&fs, small_options()).unwrap();
        assert_eq!(log.read_vote().unwrap().as_deref(), Some(&b"old"[..]));
        assert!(
            fs.file_bytes(&log_dir().join(format::meta_tmp_file_name("vote")))
                .is_none(),
            "tmp leftovers are removed on open"
        );
    }
}

#[test]
fn a_crash_between_rename_and_directory_sync_reads_old_or_new() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    log.save_vote(b"old").unwrap();
    fs.fail_nth_sync_dir(1);
    assert!(log.save_vote(b"new").is_err());
    let lost_rename = fs.crash();
    let kept_rename = fs.crash_keeping(usize::MAX, 0);
    drop(log);
    let read = |fs: &MemFs| open_mem(fs, small_options()).unwrap().read_vote().unwrap();
    assert_eq!(read(&lost_rename).as_deref(), Some(&b"old"[..]));
    assert_eq!(read(&kept_rename).as_deref(), Some(&b"new"[..]));
}

#[test]
fn a_damaged_meta_file_is_an_error_not_a_value() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    log.save_vote(b"term=9").unwrap();
    fs.corrupt(&log_dir().join(format::meta_file_name("vote")), 22, 0x04)
        .unwrap();
    assert!(matches!(log.read_vote(), Err(LogError::Corrupt { .. })));
}

#[test]
fn meta_names_are_plain_and_not_reserved() {
    let fs = MemFs::new();
    let log = open_mem(&fs, small_options()).unwrap();
    for bad in ["", "_purged", "../vote", "a.b", "x y"] {
        assert!(
            matches!(log.save_meta(bad, b""), Err(LogError::InvalidMetaName(_))),
            "{bad:?} accepted"
        );
    }
    log.save_meta("raft-vote_2", b"").unwrap();
}

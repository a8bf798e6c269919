//! A member whose disk fails stops, as etcd does: an `fdatasync` error is not retryable (the
//! kernel may already have dropped the dirty pages — the "fsyncgate" lesson, etcd-io/etcd#10276
//! and PostgreSQL's fsync retry bug), so no write may be acknowledged after it, nothing may be
//! served as if durable, and the process must exit non-zero for an operator or supervisor to
//! restart it from what reached the disk.

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use std::ops::Bound;

use cairn_log::{FileSystem, LogFile, StdFs};
use cairn_mvcc::backend::{BackendError, FileBackend, StorageBackend};
use cairn_mvcc::BackendLayer;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::RangeRequest;

use crate::harness::{channel, get, kv, put, Solo};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

// What goes wrong under the Raft log once armed (0, the default: nothing).
/// Every file and directory sync fails with EIO (a disk gone bad).
const SYNC_EIO: u8 = 1;
/// Every write and every file growth fails with ENOSPC (the disk is full). A write stores the
/// first half of its buffer before failing, as a short write that ran out of blocks does.
const WRITE_ENOSPC: u8 = 2;
/// Every write and sync of the state machine's redb file fails with EIO.
const DB_EIO: u8 = 3;

/// The real filesystem, except for the fault armed in `fault`.
#[derive(Clone, Default)]
struct FaultyFs {
    fault: Arc<AtomicU8>,
    failures: Arc<AtomicU64>,
}

impl FaultyFs {
    fn check(&self, when: u8, errno: i32) -> io::Result<()> {
        if self.fault.load(Ordering::SeqCst) == when {
            self.failures.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(())
    }

    fn db_layer(&self) -> BackendLayer {
        let fs = self.clone();
        Arc::new(move |inner| faulty_db(&fs, inner))
    }

    fn wrap(&self, inner: Arc<dyn LogFile>) -> Arc<dyn LogFile> {
        Arc::new(FaultyFile {
            inner,
            fs: self.clone(),
        })
    }
}

/// A layer under redb (`cairn_mvcc::backend`) failing writes and syncs once `DB_EIO` is armed.
fn faulty_db(fs: &FaultyFs, inner: FileBackend) -> Box<dyn StorageBackend> {
    Box::new(FaultyDb {
        inner,
        fs: fs.clone(),
    })
}

struct FaultyDb {
    inner: FileBackend,
    fs: FaultyFs,
}

impl std::fmt::Debug for FaultyDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyDb").finish_non_exhaustive()
    }
}

impl StorageBackend for FaultyDb {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.fs.check(DB_EIO, EIO)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check(DB_EIO, EIO)?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.fs.check(DB_EIO, EIO)?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

struct FaultyFile {
    inner: Arc<dyn LogFile>,
    fs: FaultyFs,
}

impl LogFile for FaultyFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.fs.fault.load(Ordering::SeqCst) == WRITE_ENOSPC {
            self.inner.write_all_at(&buf[..buf.len() / 2], offset)?;
        }
        self.fs.check(WRITE_ENOSPC, ENOSPC)?;
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check(SYNC_EIO, EIO)?;
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if len > self.inner.size()? {
            self.fs.check(WRITE_ENOSPC, ENOSPC)?;
        }
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        StdFs.open(path).map(|f| self.wrap(f))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        self.check(WRITE_ENOSPC, ENOSPC)?;
        StdFs.create(path).map(|f| self.wrap(f))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(SYNC_EIO, EIO)?;
        StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        StdFs.lock(path)
    }
}

/// Every fsync of the Raft log fails from some point on: the write in flight and every later
/// one fail (none acknowledged), reads are refused too, the server reports that it stopped
/// and why, `run_until` (the binary's main loop) returns the error that makes the process exit
/// with status 1, and a restart on a healthy disk still holds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_fsync_stops_the_member_and_acknowledges_nothing_more() {
    the_member_stops_on(SYNC_EIO, "os error 5").await;
}

/// The disk fills up under the Raft log: a log write fails with ENOSPC half written. The
/// member stops exactly as on a failed fsync — etcd panics on any WAL write error, because a
/// record half on disk cannot be retried in place — and a restart with space back recovers
/// every acknowledged write, the half-written record cut as a torn tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_the_log_stops_the_member_and_acknowledges_nothing_more() {
    the_member_stops_on(WRITE_ENOSPC, "os error 28").await;
}

/// Every write of the state machine's redb file and every sync of it fails with EIO: the next
/// commit that reaches the disk fails (most commits are non-durable and stay in redb's cache;
/// a durable one follows within a second), `apply` returns the error to Raft, and the member
/// stops the same way. A write acknowledged after the disk went bad but before that commit is
/// legitimate — it was durable in the Raft log — so the restart must hold it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_state_machine_commit_stops_the_member_and_loses_nothing_acknowledged() {
    the_member_stops_on(DB_EIO, "os error 5").await;
}

/// 50 acknowledged writes, then `fault` armed while 8 writers go on until they get an error;
/// checks that the member stops with `cause` and exits with an error, that nothing is
/// acknowledged once a log write or sync failed, and that a restart on a healthy disk holds
/// every acknowledged write.
async fn the_member_stops_on(fault: u8, cause_names: &str) {
    let fs = FaultyFs::default();
    let mut solo = Solo::start_with_storage(&[], Arc::new(fs.clone()), Some(fs.db_layer())).await;

    eprintln!("--- 50 writes, each acknowledged");
    let mut client = kv(&solo.endpoint).await;
    for i in 0..50 {
        client
            .put(put(&format!("key/{i:02}"), &format!("v{i}")))
            .await
            .expect("put before the disk fails");
    }

    eprintln!("--- the disk fails from now on; 8 writers keep writing");
    fs.fault.store(fault, Ordering::SeqCst);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                for i in 0.. {
                    if std::time::Instant::now() > deadline {
                        break;
                    }
                    let key = format!("late/{w}/{i:04}");
                    match client.put(put(&key, "late")).await {
                        Ok(_) => acknowledged.push(key),
                        Err(status) => return (acknowledged, Some(status)),
                    }
                }
                (acknowledged, None)
            })
        })
        .collect();
    let mut late = Vec::new();
    for w in writers {
        let (acknowledged, error) = w.await.expect("writer");
        if fault != DB_EIO {
            // The log fails the very write or sync that would have made them durable.
            assert!(
                acknowledged.is_empty(),
                "acknowledged after the log failed: {acknowledged:?}"
            );
        }
        late.extend(acknowledged);
        let error = error.expect("a writer's puts end in an error");
        // Raft's answer to a request waiting on it ("etcdserver: server stopped") or the
        // connection refused once the listener closed (both Unavailable), or the connection
        // closed under a request in flight as the member exits (Cancelled): each an unknown
        // outcome.
        assert!(
            matches!(
                error.code(),
                tonic::Code::Unavailable | tonic::Code::Cancelled
            ),
            "{error:?}"
        );
    }
    assert!(
        fs.failures.load(Ordering::SeqCst) > 0,
        "the member tried the failing call"
    );

    eprintln!("--- the server reports that it stopped, with the cause");
    let server = solo.server.take().expect("running");
    let cause = tokio::time::timeout(Duration::from_secs(5), server.failed())
        .await
        .expect("the server reports its failure");
    assert!(
        cause.contains(cause_names),
        "cause names the {cause_names}: {cause}"
    );

    eprintln!("--- nothing is served any more, not even a serializable read");
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let served = match channel(&solo.endpoint).await {
                None => false,
                Some(ch) => KvClient::new(ch)
                    .range(RangeRequest {
                        serializable: true,
                        ..get("key/00")
                    })
                    .await
                    .is_ok(),
            };
            if !served {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "the client port still serves reads");

    eprintln!("--- the binary's main loop ends with an error (exit status 1)");
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        server.run_until(std::future::pending()),
    )
    .await
    .expect("run_until returns once the member stopped");
    let err = outcome.expect_err("a member stopped by a storage error is a failure");
    assert!(
        err.to_string().contains("storage error"),
        "exit message: {err}"
    );

    eprintln!("--- restarted on a healthy disk: every acknowledged write is there");
    solo.restart().await;
    let all = kv(&solo.endpoint)
        .await
        .range(RangeRequest {
            key: "key/".into(),
            range_end: "key0".into(),
            ..Default::default()
        })
        .await
        .expect("range after restart")
        .into_inner();
    assert_eq!(all.count, 50);
    assert_eq!(all.kvs[49].value, b"v49");
    for key in &late {
        let found = kv(&solo.endpoint)
            .await
            .range(get(key))
            .await
            .expect("range after restart")
            .into_inner();
        assert_eq!(found.count, 1, "{key} was acknowledged, then lost");
    }
    eprintln!(
        "{} writes acknowledged after arming the fault, all kept",
        late.len()
    );
    solo.stop().await;
}

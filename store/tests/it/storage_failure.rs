//! A member whose disk fails stops, as etcd does: an `fdatasync` error is not retryable (the
//! kernel may already have dropped the dirty pages — the "fsyncgate" lesson, etcd-io/etcd#10276
//! and PostgreSQL's fsync retry bug), so no write may be acknowledged after it, nothing may be
//! served as if durable, and the process must exit non-zero for an operator or supervisor to
//! restart it from what reached the disk.

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_log::{FileSystem, LogFile, StdFs};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::RangeRequest;

use crate::harness::{channel, get, kv, put, Solo};

const EIO: i32 = 5;

/// The real filesystem, except that once `fail` is set every file and directory sync fails
/// with EIO (a disk gone bad under the Raft log).
#[derive(Clone, Default)]
struct FailingSyncFs {
    fail: Arc<AtomicBool>,
    failed_syncs: Arc<AtomicU64>,
}

impl FailingSyncFs {
    fn check(&self) -> io::Result<()> {
        if self.fail.load(Ordering::SeqCst) {
            self.failed_syncs.fetch_add(1, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(EIO));
        }
        Ok(())
    }

    fn wrap(&self, inner: Arc<dyn LogFile>) -> Arc<dyn LogFile> {
        Arc::new(FailingSyncFile {
            inner,
            fs: self.clone(),
        })
    }
}

struct FailingSyncFile {
    inner: Arc<dyn LogFile>,
    fs: FailingSyncFs,
}

impl LogFile for FailingSyncFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.fs.check()?;
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for FailingSyncFs {
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
        StdFs.create(path).map(|f| self.wrap(f))
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check()?;
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
    let fs = FailingSyncFs::default();
    let mut solo = Solo::start_on(&[], Arc::new(fs.clone())).await;

    eprintln!("--- 50 writes, each acknowledged");
    let mut client = kv(&solo.endpoint).await;
    for i in 0..50 {
        client
            .put(put(&format!("key/{i:02}"), &format!("v{i}")))
            .await
            .expect("put before the disk fails");
    }

    eprintln!("--- every fsync fails from now on; 8 writers keep writing");
    fs.fail.store(true, Ordering::SeqCst);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let mut client = client.clone();
            tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for i in 0..5 {
                    let key = format!("late/{w}/{i}");
                    match client.put(put(&key, "never durable")).await {
                        Ok(_) => acknowledged.push(key),
                        Err(status) => return (acknowledged, Some(status)),
                    }
                }
                (acknowledged, None)
            })
        })
        .collect();
    for w in writers {
        let (acknowledged, error) = w.await.expect("writer");
        assert!(
            acknowledged.is_empty(),
            "acknowledged after the fsync failure: {acknowledged:?}"
        );
        let error = error.expect("a writer's puts all failed");
        // Raft's answer to a request waiting on it ("etcdserver: server stopped"), or the
        // connection refused once the listener closed: both Unavailable, an unknown outcome.
        assert_eq!(error.code(), tonic::Code::Unavailable, "{error:?}");
    }
    assert!(
        fs.failed_syncs.load(Ordering::SeqCst) > 0,
        "an fsync was tried and failed"
    );

    eprintln!("--- the server reports that it stopped, with the cause");
    let server = solo.server.take().expect("running");
    let cause = tokio::time::timeout(Duration::from_secs(5), server.failed())
        .await
        .expect("the server reports its failure");
    assert!(cause.contains("os error 5"), "cause names the EIO: {cause}");

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
    solo.stop().await;
}

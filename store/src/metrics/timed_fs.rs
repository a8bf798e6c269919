//! A [`FileSystem`] wrapper that times every `fdatasync` of the Raft log's files, feeding
//! `etcd_disk_wal_fsync_duration_seconds` without the log crate knowing about metrics.
//!
//! The log's group commit issues one `sync_data` per batch (per segment touched), so each
//! observation is one group-commit sync, which is what etcd's WAL fsync histogram measures.
//! Everything else is passed through untouched, so the durability contract of the wrapped
//! filesystem is exactly the wrapper's.

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use cairn_log::{FileSystem, LogFile};

use super::histogram::Histogram;

pub struct TimedFs {
    inner: Arc<dyn FileSystem>,
    fsync: Arc<Histogram>,
}

impl TimedFs {
    pub fn new(inner: Arc<dyn FileSystem>, fsync: Arc<Histogram>) -> Self {
        Self { inner, fsync }
    }

    fn wrap(&self, file: Arc<dyn LogFile>) -> Arc<dyn LogFile> {
        Arc::new(TimedFile {
            inner: file,
            fsync: self.fsync.clone(),
        })
    }
}

struct TimedFile {
    inner: Arc<dyn LogFile>,
    fsync: Arc<Histogram>,
}

impl LogFile for TimedFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        let start = Instant::now();
        let r = self.inner.sync_data();
        self.fsync.observe(start.elapsed());
        r
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for TimedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        self.inner.open(path).map(|f| self.wrap(f))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        self.inner.create(path).map(|f| self.wrap(f))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::DISK_BUCKETS;

    #[test]
    fn every_log_sync_is_timed() {
        let h = Arc::new(Histogram::new(DISK_BUCKETS));
        let fs = Arc::new(TimedFs::new(Arc::new(cairn_log::MemFs::new()), h.clone()));
        let log =
            cairn_log::Log::open_with(fs, "/log", cairn_log::LogOptions::default()).expect("open");
        let before = h.count();
        let (tx, rx) = std::sync::mpsc::channel();
        log.append(vec![(1, bytes::Bytes::from_static(b"x"))], move |r| {
            let _ = tx.send(r.is_ok());
        })
        .expect("append");
        assert_eq!(rx.recv().ok(), Some(true));
        assert!(h.count() > before, "the append's fdatasync was observed");
    }
}

//! Helpers shared by the criterion benchmarks in `benches/` (run them with
//! `cargo bench -p cairn-microbench`; docs/benchmarks.md, "Micro-benchmarks").

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use cairn_log::fs::{FileSystem, LogFile, StdFs};

/// The real file system, counting the `fdatasync`s of the files it opens: how many entries
/// one group commit covered is `entries / syncs`.
#[derive(Default, Clone)]
pub struct CountingFs {
    syncs: Arc<AtomicU64>,
}

impl CountingFs {
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    fn wrap(&self, inner: Arc<dyn LogFile>) -> Arc<dyn LogFile> {
        Arc::new(CountingFile {
            inner,
            syncs: self.syncs.clone(),
        })
    }
}

struct CountingFile {
    inner: Arc<dyn LogFile>,
    syncs: Arc<AtomicU64>,
}

impl LogFile for CountingFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}

impl FileSystem for CountingFs {
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
        StdFs.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        StdFs.lock(path)
    }
}

/// A size from the environment (`name`), or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

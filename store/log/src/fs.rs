//! The filesystem boundary: every byte the log reads or writes goes through [`FileSystem`] and
//! [`LogFile`], so tests can substitute [`crate::MemFs`] to inject crashes, torn writes and I/O
//! errors. [`StdFs`] is the real implementation.
//!
//! The contract below is what the log relies on for durability; an implementation that promises
//! less makes the log lose acknowledged data.

use std::any::Any;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// An open file, shared between the writer thread and readers (all methods take `&self`).
pub trait LogFile: Send + Sync {
    /// Fills `buf` from `offset`. Sees every `write_all_at` that has returned, synced or not.
    /// Fails with [`io::ErrorKind::UnexpectedEof`] if the file ends first.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes all of `buf` at `offset`, growing the file if needed.
    ///
    /// Not durable until [`LogFile::sync_data`] returns `Ok`. A crash before that may persist
    /// none of it, all of it, or any prefix (a torn write).
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// `fdatasync`: when it returns `Ok`, every write and length change made to this file before
    /// the call is durable.
    ///
    /// An error is final: the kernel may already have dropped the dirty pages, so the state of
    /// every unsynced write is unknown and a retry that succeeds proves nothing. Callers must stop
    /// trusting the file.
    fn sync_data(&self) -> io::Result<()>;

    /// Truncates or extends the file; extension reads back as zeros. Durable with the next
    /// successful `sync_data`.
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Current length in bytes (including unsynced growth).
    fn size(&self) -> io::Result<u64>;
}

/// Directory-level operations. Paths are absolute or relative to the process; the log only ever
/// uses files directly inside its own directory.
pub trait FileSystem: Send + Sync {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;

    /// Names of the entries directly inside `dir` (no order promised). Names that are not UTF-8
    /// are skipped: the log never creates them.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;

    /// Opens an existing file for reading and writing. [`io::ErrorKind::NotFound`] if missing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;

    /// Creates `path` empty for reading and writing, truncating an existing file. The new name is
    /// durable only after [`FileSystem::sync_dir`] on its directory.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>>;

    /// Unlinks `path`. Open handles stay readable. Durable after `sync_dir`.
    fn remove(&self, path: &Path) -> io::Result<()>;

    /// Atomically replaces `to` with `from`: after a crash the directory holds either the old or
    /// the new `to`, never a mix. Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;

    /// `fsync` on the directory: makes every create, remove and rename in it durable. Errors are
    /// final, as for [`LogFile::sync_data`].
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;

    /// Takes an exclusive advisory lock on `path` (created if missing), held until the returned
    /// guard is dropped. [`io::ErrorKind::WouldBlock`] if someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>>;
}

/// The real filesystem, through `std::fs` (`pwrite`, `pread`, `fdatasync`, `rename`, `flock`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

struct StdFile(File);

impl LogFile for StdFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn LogFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Arc::new(StdFile(file)))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.try_lock()?;
        // The lock lives as long as the descriptor.
        Ok(Box::new(file))
    }
}

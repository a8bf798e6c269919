//! The file under the store, and the one seam between redb and it: a [`BackendLayer`] may wrap
//! every file the store opens (the store's own and a defragmentation's new one) in another
//! [`StorageBackend`]. Members run without one; tests put fault injection there — failed
//! commits, and crashes that lose whatever redb wrote after its last `sync_data`.
//!
//! Contract of a layer (redb's, restated): `sync_data` returning `Ok` makes every earlier write
//! durable; until then a write may be lost by a crash, in any part; an error from any call
//! fails the transaction that made it, and redb refuses further writes after a failed commit.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

/// What a layer wraps and implements, re-exported so a layer needs no redb dependency.
pub use redb::backends::FileBackend;
pub use redb::{BackendError, StorageBackend};
use redb::{Builder, Database};

use crate::MvccError;

/// Wraps the backend of each file the store opens.
pub type BackendLayer = Arc<dyn Fn(FileBackend) -> Box<dyn StorageBackend> + Send + Sync>;

/// Opens (creating if missing) the database at `path` through `layer`, or directly.
pub(crate) fn open(
    builder: &Builder,
    path: &Path,
    layer: Option<&BackendLayer>,
) -> Result<Database, MvccError> {
    let Some(layer) = layer else {
        return Ok(builder.create(path)?);
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let backend = FileBackend::new(file)?;
    Ok(builder.create_with_backend(Layered(layer(backend)))?)
}

/// A boxed backend as a sized one, every call delegated (locks included, so redb's
/// concurrency checks see the file's own locking).
struct Layered(Box<dyn StorageBackend>);

impl fmt::Debug for Layered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl StorageBackend for Layered {
    fn len(&self) -> Result<u64, io::Error> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.read(offset, out)
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.write(offset, data)
    }
    fn close(&self) -> Result<(), io::Error> {
        self.0.close()
    }
    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.0.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.0.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.0.query_lock_range(start, end)
    }
}

//! The crate's error type.
//!
//! `LogError` is `Clone` because one failed group commit must be reported to every request in the
//! batch; I/O errors are therefore held in an `Arc`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Every failure the log reports.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    /// An operating-system I/O call failed. `context` names the call (e.g. `"fdatasync"`).
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<io::Error>,
    },

    /// A file's content is not what this crate wrote. Recovery never guesses past this: it refuses
    /// to open rather than silently drop data.
    #[error("corrupt log file {} at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: String,
    },

    /// An earlier write or sync failed. The durability of everything not yet acknowledged is
    /// unknown (an `fsync` error is not retryable), so the log accepts no further mutation.
    #[error("log is poisoned by an earlier I/O failure: {cause}")]
    Poisoned {
        #[source]
        cause: Box<LogError>,
    },

    /// The writer thread is gone (the log was closed, or the thread died).
    #[error("log writer has stopped")]
    Closed,

    /// Appended indexes must continue the log without a gap.
    #[error("non-contiguous append: expected index {expected}, got {got}")]
    NonContiguous { expected: u64, got: u64 },

    /// An index above [`crate::format::MAX_INDEX`], appended or purged to: the log could not
    /// name the index after it.
    #[error(
        "index {index} is beyond the largest log index {}",
        crate::format::MAX_INDEX
    )]
    IndexTooLarge { index: u64 },

    /// An entry whose record length does not fit the 32-bit length field.
    #[error("entry {index} is {len} bytes, larger than the maximum record payload")]
    EntryTooLarge { index: u64, len: usize },

    /// Meta names become file names: `[A-Za-z0-9-]` then `[A-Za-z0-9_-]*`, at most 64 bytes.
    #[error("invalid meta name {0:?}")]
    InvalidMetaName(String),

    /// `LogOptions` outside the supported range.
    #[error("invalid log options: {0}")]
    InvalidOptions(&'static str),

    /// Another `Log` (in this or another process) holds the directory's lock file.
    #[error("log directory {} is locked by another log instance", dir.display())]
    Locked { dir: PathBuf },
}

impl LogError {
    pub(crate) fn io(context: &'static str, path: &Path, source: io::Error) -> Self {
        LogError::Io {
            context,
            path: path.to_path_buf(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> Self {
        LogError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

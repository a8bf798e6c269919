//! The one error type of the crate.
//!
//! The first group are etcd's request errors: deterministic outcomes of a command, identical on
//! every member, which leave the store unchanged. Their `Display` strings are etcd's internal ones
//! (`mvcc.ErrCompacted`, `lease.ErrLeaseNotFound`, ...); the gRPC layer maps them to etcd's wire
//! strings in its own table. The second group are local failures (I/O, corruption): they are not
//! part of the replicated outcome, and a write batch that hit one must not be committed.

/// Errors of reads and of applied commands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MvccError {
    /// The requested revision is below the compacted revision (or, for `compact`, at or below it).
    #[error("mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision is above the current revision.
    #[error("mvcc: required revision is a future revision")]
    FutureRevision,
    /// A put named a lease that does not exist, or a revoke / grant named an invalid one.
    #[error("lease not found")]
    LeaseNotFound,
    /// A grant named a lease id that already exists.
    #[error("lease already exists")]
    LeaseExists,
    /// A put with `ignore_value` or `ignore_lease` named a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,

    /// redb reported an error; the batch in progress, if any, is poisoned.
    #[error("mvcc storage error: {0}")]
    Storage(String),
    /// Stored bytes did not decode; the database is damaged.
    #[error("mvcc data corrupted: {0}")]
    Corrupted(String),
    /// A snapshot image was malformed or failed its checksum; nothing was changed.
    #[error("bad mvcc snapshot image: {0}")]
    BadSnapshot(String),
    /// The database file was written with a layout this build does not read.
    #[error("unsupported mvcc format version {found} (this build reads {supported})")]
    UnsupportedFormat {
        /// Version found in the file or image.
        found: i64,
        /// Version this build reads and writes.
        supported: u32,
    },
    /// A command failed after it had started changing the store, which validation is meant to
    /// rule out; treated as a local failure so the partial change is never committed.
    #[error("mvcc internal error: {0}")]
    Internal(String),
    /// An earlier command of this write batch hit a local failure; the batch must be dropped.
    #[error("mvcc write batch poisoned by an earlier failure: {0}")]
    Poisoned(String),
}

impl MvccError {
    /// True for local failures (storage, corruption, poisoning), after which a write batch must
    /// be dropped rather than committed; false for etcd request errors, which are part of the
    /// replicated outcome.
    pub fn is_local_failure(&self) -> bool {
        !matches!(
            self,
            MvccError::Compacted
                | MvccError::FutureRevision
                | MvccError::LeaseNotFound
                | MvccError::LeaseExists
                | MvccError::KeyNotFound
        )
    }
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for MvccError {
            fn from(e: $t) -> Self {
                MvccError::Storage(e.to_string())
            }
        }
    )*};
}

storage_error_from!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError,
    redb::DatabaseError,
    redb::SetDurabilityError,
    redb::CompactionError,
    std::io::Error
);

//! The store-wide revision counters and the rules for which revision a read observes.
//!
//! etcd semantics: an empty store is at revision 1 and has never been compacted (compact
//! revision -1, as etcd's `compactMainRev` starts); every write that changes something takes the
//! next main revision. A read asks for revision `r`: `r <= 0` means the current revision, `r`
//! above the current revision is `FutureRevision`, and `r` below the compact revision is
//! `Compacted` (reading exactly at the compact revision is allowed).
//!
//! The counters here are a cache for cheap queries, published after each successful commit; the
//! authoritative copy lives in the `STATE` table of the same redb transaction as the data, and
//! reads use the copy inside their own read transaction so they are self-consistent.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::MvccError;

/// Revision of an empty store.
pub const INITIAL_REVISION: i64 = 1;
/// Compact revision of a store that was never compacted.
pub const NEVER_COMPACTED: i64 = -1;

/// Published current / compact revisions of a store.
#[derive(Debug)]
pub(crate) struct Revisions {
    current: AtomicI64,
    compact: AtomicI64,
}

impl Revisions {
    pub(crate) fn new(current: i64, compact: i64) -> Self {
        Revisions {
            current: AtomicI64::new(current),
            compact: AtomicI64::new(compact),
        }
    }

    pub(crate) fn current(&self) -> i64 {
        self.current.load(Ordering::Acquire)
    }

    pub(crate) fn compact(&self) -> i64 {
        self.compact.load(Ordering::Acquire)
    }

    /// Publishes the counters of a just-committed transaction.
    pub(crate) fn publish(&self, current: i64, compact: i64) {
        self.compact.store(compact, Ordering::Release);
        self.current.store(current, Ordering::Release);
    }
}

/// The revision a read of `requested` observes on a store at `current` compacted at `compact`.
pub(crate) fn resolve_read(requested: i64, current: i64, compact: i64) -> Result<i64, MvccError> {
    if requested > current {
        return Err(MvccError::FutureRevision);
    }
    let rev = if requested <= 0 { current } else { requested };
    if rev < compact {
        return Err(MvccError::Compacted);
    }
    Ok(rev)
}

/// Converts a revision known to be positive into the unsigned form used in table keys.
pub(crate) fn to_key(rev: i64) -> u64 {
    u64::try_from(rev).unwrap_or(0)
}

/// Converts a table-key revision back; table keys never exceed `i64::MAX`.
pub(crate) fn from_key(rev: u64) -> i64 {
    i64::try_from(rev).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_revision_rules() {
        assert_eq!(resolve_read(0, 10, 4), Ok(10));
        assert_eq!(resolve_read(-3, 10, 4), Ok(10));
        assert_eq!(resolve_read(4, 10, 4), Ok(4));
        assert_eq!(resolve_read(3, 10, 4), Err(MvccError::Compacted));
        assert_eq!(resolve_read(11, 10, 4), Err(MvccError::FutureRevision));
        assert_eq!(resolve_read(1, 1, NEVER_COMPACTED), Ok(1));
    }
}

//! cairn-mvcc: the MVCC key-value state machine of cairn-store, on redb, with etcd 3.5 semantics.
//!
//! It knows nothing of gRPC or Raft: the Raft glue applies committed entries as [`Command`]s in
//! a [`WriteBatch`] (one redb write transaction per batch, with the applied log id written by
//! [`WriteBatch::set_meta`] in the same transaction), feeds the returned events to the watch hub,
//! and serves reads with [`Mvcc::range`]. The on-disk layout is in `docs/mvcc-format.md`.
//!
//! Module map:
//! - [`backend`] — the file under redb, and the [`BackendLayer`] hook for storage faults.
//! - [`database`] — [`Mvcc`]: open, reads, write batches, snapshots, hashes, lease queries,
//!   defragmentation.
//! - [`batch`] — [`WriteBatch`], [`Command`], [`Response`]: atomic application of commands.
//! - [`format`](mod@format) — redb tables, record encodings, snapshot framing: every byte on disk.
//! - [`revision`] — current / compact revision rules and their lock-free cache.
//! - [`key_range`] — etcd's `key` / `range_end` convention.
//! - `view` — reads of the key space at any retained revision (current: `LIVE`; older: `INDEX`).
//! - `writer` — put / delete primitives with main / sub revisions, lease attachment, events.
//! - `range`, `put`, `delete_range`, `txn`, `compact`, `lease` — one etcd request each.
//! - `history` — watch replay of retained history ([`EventBatch`]).
//! - `hash` — etcd-compatible HashKV ([`KvHash`]).
//! - `snapshot` — whole-store images ([`Snapshot`], [`SnapshotInfo`]).
//! - `defrag` — rewriting the store into a packed file and swapping it in ([`DefragReport`]).
//! - [`error`] — [`MvccError`].

pub mod backend;
pub mod batch;
mod compact;
pub mod database;
mod defrag;
mod delete_range;
pub mod error;
pub mod format;
mod hash;
mod history;
pub mod key_range;
mod lease;
mod put;
mod range;
pub mod revision;
mod snapshot;
mod txn;
mod view;
mod writer;

pub use backend::BackendLayer;
pub use batch::{Command, CommandResult, Response, WriteBatch};
pub use database::Mvcc;
pub use defrag::DefragReport;
pub use error::MvccError;
pub use hash::KvHash;
pub use history::EventBatch;
pub use key_range::KeyRange;
pub use lease::LeaseInfo;
pub use revision::{INITIAL_REVISION, NEVER_COMPACTED};
pub use snapshot::{Snapshot, SnapshotInfo};

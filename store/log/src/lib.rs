//! `cairn-log`: a segmented, group-committed write-ahead log for Raft entries.
//!
//! It stores opaque entry payloads keyed by consecutive `u64` indexes, plus small named meta
//! blobs (vote, committed index, ...), and knows nothing about Raft, gRPC or the state machine.
//! The on-disk format is described byte by byte in `docs/log-format.md`.
//!
//! Guarantees of [`Log`]:
//! * **Visibility**: an append, truncate or purge is visible to readers when the call returns.
//! * **Durability**: an append's completion callback reports `Ok` only after an `fdatasync`
//!   covering it and every earlier operation has returned; truncations and purges are durable
//!   no later than the next append or flush that reports `Ok`. Meta saves are durable on return.
//! * **Order**: the disk sees operations in call order. After a crash the log holds the effect
//!   of every acknowledged operation and is otherwise a state the call sequence passed through,
//!   or one with the next append or truncation only partly applied (a prefix of its entries, or a
//!   log cut somewhere between the old end and the truncation point).
//! * **Failure**: the first failed write or sync poisons the log; every later mutation fails.
//! * **Recovery**: a torn tail of the last segment is cut off with a warning; any other damage
//!   refuses to open with [`LogError::Corrupt`], naming the file and byte offset.
//!
//! Modules:
//! * [`format`] — magic numbers, version, record framing, file names; encode/decode only.
//! * `segment` — layout planning: which segment and offset each record goes to (no I/O).
//! * `index` — in-memory index (index → location) and the cache of recent entries.
//! * `group_commit` — the writer thread: ordered execution, batching, one sync per batch.
//! * `recovery` — scanning and verifying segments on open, cutting a torn tail.
//! * `meta` — atomically replaced small files.
//! * `log` — the public [`Log`] type tying these together.
//! * [`fs`] — the [`FileSystem`]/[`LogFile`] I/O boundary and the real [`StdFs`].
//! * [`mem_fs`] — [`MemFs`], an in-memory filesystem that simulates crashes and I/O errors.
//! * `error` — [`LogError`].

mod error;
pub mod format;
pub mod fs;
mod group_commit;
mod index;
mod log;
pub mod mem_fs;
mod meta;
mod recovery;
mod segment;

pub use error::LogError;
pub use fs::{FileSystem, LogFile, StdFs};
pub use log::{Completion, Log, LogOptions};
pub use mem_fs::MemFs;

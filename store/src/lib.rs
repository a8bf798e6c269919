//! cairn-store: an etcd-v3-compatible key-value server replicated by Raft.
//!
//! - [`backup`]: backup files (the Snapshot RPC's stream) and restoring a data dir from one;
//! - [`config`]: etcd's command-line flags;
//! - [`raft`]: openraft type configuration, our log and state-machine adapters, the peer
//!   transport and the entry/command encodings;
//! - [`node`]: a running member — proposing writes (forwarded to the leader from a follower)
//!   and linearizable read barriers;
//! - [`server`]: startup and the client-facing gRPC services (KV, Maintenance, Cluster), with
//!   request validation and the single table of etcd error codes and messages.
//!
//! The Raft log lives in the `cairn-log` crate and the MVCC state machine in `cairn-mvcc`;
//! neither knows about Raft messages or gRPC.

pub mod backup;
pub mod config;
pub mod node;
pub mod raft;
pub mod server;

pub use config::Config;
pub use server::{start, Server};

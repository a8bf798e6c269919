//! Raft glue: the adapters that plug our own storage and transport into openraft.
//!
//! - [`codec`], [`command`]: the type configuration's byte encodings (entries, votes, log ids,
//!   membership, peer messages, commands and their results), from `cairn-wire`, which the
//!   fuzz targets link without the rest of the server;
//! - [`log_store`]: openraft's log storage over the segmented log of `cairn-log`;
//! - [`state_machine`]: openraft's state machine over the redb MVCC of `cairn-mvcc`;
//! - [`network`]: the client side of the peer transport (gRPC `RaftPeer`);
//! - [`peer_service`]: the server side of the peer transport;
//! - [`snapshot`]: a snapshot's data, in files rather than memory.

pub mod log_store;
pub mod network;
pub mod peer_service;
pub mod snapshot;
pub mod state_machine;

pub use cairn_wire::raft::{codec, command};
pub use cairn_wire::raft::{
    Command, CommandResult, Entry, EntryPayload, LeaderId, LogId, Member, MemberId, Membership,
    SnapshotMeta, StoredMembership, TypeConfig, Vote,
};

pub type Raft = openraft::Raft<TypeConfig, state_machine::StateMachine>;
pub type SnapshotImage = openraft::Snapshot<LeaderId, MemberId, Member, snapshot::SnapshotData>;

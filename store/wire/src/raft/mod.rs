//! The Raft side of the wire: openraft's type configuration for Cairn and the byte encodings
//! of what goes into the log and between members.
//!
//! - [`codec`]: the byte encoding of entries, votes, log ids, membership and peer messages;
//! - [`command`]: what a normal entry carries ([`Command`]), what applying it returns
//!   ([`CommandResult`]), and the kinds of request a follower forwards to the leader.
//!
//! The adapters that plug storage and transport into openraft live in `cairn-store`
//! (`raft::{log_store, state_machine, network, peer_service}`).

pub mod codec;
pub mod command;

use std::fmt;

pub use command::{Command, CommandResult};

/// A member's 64-bit id, as etcd's member ids.
pub type MemberId = u64;

/// What the Raft membership records about a member: its name and peer URLs.
///
/// Client URLs are not part of the membership: every member publishes them through the log
/// once it serves clients (as etcd's members publish their attributes).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
    /// Added as a voter but still a learner until it catches up (see cairn-store's
    /// `server::membership`); listed as a voter meanwhile.
    pub voter_pending: bool,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

openraft::declare_raft_types!(
    /// cairn-store's openraft type configuration.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = MemberId,
        Node = Member,
        Term = u64,
);

pub type LogId = openraft::LogId<openraft::impls::leader_id_adv::LeaderId<u64, MemberId>>;
pub type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, MemberId>;
pub type Vote = openraft::impls::Vote<LeaderId>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type EntryPayload = openraft::EntryPayload<Command, MemberId, Member>;
pub type Membership = openraft::Membership<MemberId, Member>;
pub type StoredMembership = openraft::StoredMembership<LeaderId, MemberId, Member>;
pub type SnapshotMeta = openraft::SnapshotMeta<LeaderId, MemberId, Member>;

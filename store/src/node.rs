//! A running member: its identity, its Raft node and its MVCC store, and the two paths every
//! client request takes — [`Node::propose`] for writes and [`Node::read_barrier`] for
//! linearizable reads.
//!
//! Writes received by a follower are forwarded to the leader over the peer transport, and a
//! follower serves a linearizable read after asking the leader for a read index and waiting
//! until it has applied that far (etcd's ReadIndex), so any member answers any request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_mvcc::Mvcc;
use cairn_proto::cairnraftpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnraftpb::ForwardRequest;
use cairn_proto::etcdserverpb::ResponseHeader;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::watch;
use tonic::transport::Channel;

use crate::raft::codec::Reader;
use crate::raft::command::encode_error;
use crate::raft::network::peer_channel;
use crate::raft::{Command, CommandResult, Member, MemberId, Raft};
use crate::server::errors::EtcdError;

/// Forwarded request kinds (first byte of `ForwardRequest.data`).
pub const FORWARD_PROPOSE: u8 = 1;
pub const FORWARD_READ_INDEX: u8 = 2;

/// Request limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// How long a request may wait for a leader / commit before "request timed out".
    pub request_timeout: Duration,
}

pub struct Node {
    pub id: MemberId,
    pub cluster_id: u64,
    pub name: String,
    pub raft: Raft,
    pub mvcc: Arc<Mvcc>,
    /// Index of the last applied log entry, published by the state machine after each
    /// committed batch.
    pub applied: watch::Receiver<u64>,
    pub limits: Limits,
    pub client_urls: Vec<String>,
    peers: Mutex<HashMap<MemberId, RaftPeerClient<Channel>>>,
}

impl Node {
    pub fn new(
        id: MemberId,
        cluster_id: u64,
        name: String,
        raft: Raft,
        mvcc: Arc<Mvcc>,
        applied: watch::Receiver<u64>,
        limits: Limits,
        client_urls: Vec<String>,
    ) -> Self {
        Self {
            id,
            cluster_id,
            name,
            raft,
            mvcc,
            applied,
            limits,
            client_urls,
            peers: Mutex::new(HashMap::new()),
        }
    }

    /// Runs `f` on the current Raft metrics without copying them.
    pub fn with_metrics<R>(
        &self,
        f: impl FnOnce(&openraft::RaftMetrics<crate::raft::TypeConfig>) -> R,
    ) -> R {
        use openraft::async_runtime::WatchReceiver;
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        f(&m)
    }

    /// A response header with this member's identity, the given revision and the current term.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.with_metrics(|m| m.current_term),
        }
    }

    /// Replicates a command and returns the result of applying it.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, EtcdError> {
        let bytes = cmd.encode();
        if bytes.len() > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        match tokio::time::timeout(self.limits.request_timeout, self.propose_loop(cmd, bytes)).await
        {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    async fn propose_loop(&self, cmd: Command, bytes: Vec<u8>) -> Result<CommandResult, EtcdError> {
        let mut cmd = Some(cmd);
        loop {
            let c = match cmd.take() {
                Some(c) => c,
                None => Command::decode(&bytes).map_err(|e| EtcdError::Internal(e.to_string()))?,
            };
            let forward = match self.raft.client_write(c).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(EtcdError::LeaderChanged)
                }
                Err(RaftError::APIError(e)) => return Err(EtcdError::Internal(e.to_string())),
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            };
            match (forward.leader_id, forward.leader_node) {
                (Some(leader), Some(node)) if leader != self.id => {
                    let mut req = Vec::with_capacity(bytes.len() + 1);
                    req.push(FORWARD_PROPOSE);
                    req.extend_from_slice(&bytes);
                    match self.forward(leader, &node, req).await {
                        Ok(resp) => {
                            return CommandResult::decode(&resp)
                                .map_err(|e| EtcdError::Internal(e.to_string()))
                        }
                        Err(e) => tracing::debug!(leader, "forwarding a write failed: {e}"),
                    }
                }
                _ => {}
            }
            // No usable leader yet: an election is under way.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this member's state reflects every write committed before the call
    /// (linearizable read). Serializable reads skip this.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        match tokio::time::timeout(self.limits.request_timeout, self.read_barrier_loop()).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    async fn read_barrier_loop(&self) -> Result<(), EtcdError> {
        loop {
            let forward = match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            };
            if let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node) {
                if leader != self.id {
                    match self.forward(leader, &node, vec![FORWARD_READ_INDEX]).await {
                        Ok(resp) => {
                            let index = decode_read_index(&resp)?;
                            return self.wait_applied(index).await;
                        }
                        Err(e) => tracing::debug!(leader, "read index from leader failed: {e}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader's half of a follower's linearizable read: confirm leadership with a quorum
    /// and return the index the follower must have applied before it reads.
    pub async fn read_index(&self) -> Result<u64, EtcdError> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(EtcdError::NoLeader)
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), EtcdError> {
        let mut rx = self.applied.clone();
        rx.wait_for(|applied| *applied >= index)
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::Stopped)
    }

    /// Sends `data` (a `FORWARD_*` request) to the leader's `Forward` RPC. `Ok(None)`: this
    /// member leads and must answer itself; `Err`: no leader is known or reachable right now.
    pub async fn forward_to_leader(&self, data: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let f = match self.raft.as_leader() {
            Ok(_) => return Ok(None),
            Err(f) => f,
        };
        match (f.leader_id, f.leader_node) {
            (Some(leader), Some(node)) if leader != self.id => {
                self.forward(leader, &node, data).await.map(Some)
            }
            _ => Err("no leader".into()),
        }
    }

    async fn forward(
        &self,
        leader: MemberId,
        node: &Member,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut client = self.peer_client(leader, node)?;
        client
            .forward(ForwardRequest { data })
            .await
            .map(|r| r.into_inner().data)
            .map_err(|s| s.message().to_string())
    }

    fn peer_client(&self, id: MemberId, node: &Member) -> Result<RaftPeerClient<Channel>, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(&id) {
            return Ok(c.clone());
        }
        let max = self.limits.max_request_bytes + 1024 * 1024;
        let client = RaftPeerClient::new(peer_channel(node)?)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        peers.insert(id, client.clone());
        Ok(client)
    }
}

/// Encodes the leader's answer to a read-index request.
pub fn encode_read_index(r: Result<u64, EtcdError>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9);
    match r {
        Ok(index) => {
            buf.push(0);
            buf.extend_from_slice(&index.to_le_bytes());
        }
        Err(e) => encode_error(&mut buf, &e),
    }
    buf
}

fn decode_read_index(buf: &[u8]) -> Result<u64, EtcdError> {
    match CommandResult::decode(buf) {
        Ok(CommandResult::Err(e)) => Err(e),
        _ => {
            let mut r = Reader::new(buf);
            match (r.u8(), r.u64()) {
                (Ok(0), Ok(index)) => Ok(index),
                _ => Err(EtcdError::Internal("malformed read index answer".into())),
            }
        }
    }
}

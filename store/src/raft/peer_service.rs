//! The server side of the peer transport: the `RaftPeer` gRPC service, which hands
//! consensus messages to openraft and serves writes, read-index requests and lease
//! keep-alive / time-to-live requests forwarded by followers.

use std::sync::Arc;

use cairn_proto::cairnraftpb::raft_peer_server::RaftPeer;
use cairn_proto::cairnraftpb::{ForwardRequest, ForwardResponse, RaftMessage, SnapshotChunk};
use openraft::raft::TransferLeaderRequest;
use openraft::Snapshot;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::codec::{self, Reader};
use super::command::{Command, CommandResult};
use super::network::cluster_id_of;
use super::snapshot::{ImageFile, SnapshotData};
use crate::lessor::{leader, Lessor};
use crate::node::{
    encode_read_index, Node, FORWARD_LEASE_KEEPALIVE, FORWARD_LEASE_TIME_TO_LIVE, FORWARD_PROPOSE,
    FORWARD_READ_INDEX,
};
use crate::server::errors::EtcdError;
use crate::server::membership;

pub struct PeerService {
    pub node: Arc<Node>,
    pub lessor: Arc<Lessor>,
}

impl PeerService {
    /// Refuses a request from a member of another cluster, or one that does not say which
    /// cluster it is from (etcd's peer handler answers "cluster ID mismatch").
    fn same_cluster<T>(&self, request: &Request<T>) -> Result<(), Status> {
        match cluster_id_of(request.metadata()) {
            Some(id) if id == self.node.cluster_id => Ok(()),
            Some(id) => {
                tracing::warn!(
                    ours = %format!("{:x}", self.node.cluster_id),
                    theirs = %format!("{id:x}"),
                    "refused a peer request from another cluster"
                );
                Err(Status::failed_precondition(format!(
                    "cluster ID mismatch: this member is in cluster {:x}, the request came from \
                     cluster {id:x}",
                    self.node.cluster_id
                )))
            }
            None => Err(Status::failed_precondition(
                "cluster ID mismatch: the request names no cluster",
            )),
        }
    }
}

fn bad_request(e: std::io::Error) -> Status {
    Status::invalid_argument(format!("malformed peer message: {e}"))
}

/// A local failure (the receiving member's own disk).
fn local_io(e: std::io::Error) -> Status {
    Status::internal(format!("storing the snapshot failed: {e}"))
}

fn stopped<E: std::fmt::Display>(e: E) -> Status {
    Status::unavailable(format!("raft stopped: {e}"))
}

#[tonic::async_trait]
impl RaftPeer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.same_cluster(&request)?;
        let req = codec::decode_append_request(&request.into_inner().data).map_err(bad_request)?;
        let resp = self.node.raft.append_entries(req).await.map_err(stopped)?;
        if !matches!(resp, openraft::raft::AppendEntriesResponse::HigherVote(_)) {
            self.node.leader_contact();
        }
        Ok(Response::new(RaftMessage {
            data: codec::encode_append_response(&resp),
        }))
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.same_cluster(&request)?;
        let req = codec::decode_vote_request(&request.into_inner().data).map_err(bad_request)?;
        let resp = self.node.raft.vote(req).await.map_err(stopped)?;
        Ok(Response::new(RaftMessage {
            data: codec::encode_vote_response(&resp),
        }))
    }

    async fn pre_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.same_cluster(&request)?;
        let req = codec::decode_vote_request(&request.into_inner().data).map_err(bad_request)?;
        let resp = self.node.raft.pre_vote(req).await.map_err(stopped)?;
        Ok(Response::new(RaftMessage {
            data: codec::encode_vote_response(&resp),
        }))
    }

    async fn install_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.same_cluster(&request)?;
        let mut stream = request.into_inner();
        let mut header = None;
        // The image goes to a temporary file beside the store, never whole into memory.
        let dir = self.node.mvcc.path().parent().map(ToOwned::to_owned);
        let dir = dir.unwrap_or_else(|| ".".into());
        let mut image = ImageFile::receive(&dir).map_err(local_io)?;
        let mut done = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            if header.is_none() {
                let mut r = Reader::new(&chunk.meta);
                let vote = r.vote().map_err(bad_request)?;
                let meta = r.snapshot_meta().map_err(bad_request)?;
                header = Some((vote, meta));
            }
            image.append(&chunk.data).map_err(local_io)?;
            if chunk.done {
                done = true;
                break;
            }
        }
        let (vote, meta) =
            header.ok_or_else(|| Status::invalid_argument("empty snapshot stream"))?;
        if !done {
            return Err(Status::invalid_argument(
                "snapshot stream ended before its last chunk",
            ));
        }
        let resp = self
            .node
            .raft
            .install_full_snapshot(
                vote,
                Snapshot {
                    meta,
                    snapshot: SnapshotData::Image(image),
                },
            )
            .await
            .map_err(stopped)?;
        Ok(Response::new(RaftMessage {
            data: codec::encode_vote(&resp.vote),
        }))
    }

    async fn transfer_leader(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.same_cluster(&request)?;
        let data = request.into_inner().data;
        let mut r = Reader::new(&data);
        let from = r.vote().map_err(bad_request)?;
        let to = r.u64().map_err(bad_request)?;
        let last = r.opt_log_id().map_err(bad_request)?;
        let req = TransferLeaderRequest::new(from, to, last);
        let resp = self
            .node
            .raft
            .handle_transfer_leader(req)
            .await
            .map_err(stopped)?;
        let answer = match resp {
            Ok(()) => 0,
            Err(e) => {
                tracing::info!("refused a leadership transfer: {e}");
                1
            }
        };
        Ok(Response::new(RaftMessage { data: vec![answer] }))
    }

    async fn forward(
        &self,
        request: Request<ForwardRequest>,
    ) -> Result<Response<ForwardResponse>, Status> {
        // The member list is what a member joining with `--initial-cluster-state existing`
        // asks for before it knows its cluster; everything else needs the cluster id.
        if request.get_ref().data.first() != Some(&membership::FORWARD_MEMBERS) {
            self.same_cluster(&request)?;
        }
        let data = request.into_inner().data;
        let data = match data.split_first() {
            Some((&FORWARD_PROPOSE, body)) => {
                let cmd = Command::decode(body).map_err(bad_request)?;
                match self.node.propose(cmd).await {
                    Ok(r) => r.encode(),
                    Err(e) => CommandResult::Err(e).encode(),
                }
            }
            Some((&FORWARD_READ_INDEX, _)) => encode_read_index(self.node.read_index().await),
            Some((&membership::FORWARD_MEMBERSHIP, body)) => {
                membership::handle_forwarded(&self.node, body).await
            }
            Some((&membership::FORWARD_MEMBERS, _)) => membership::encode_members(&self.node),
            Some((&kind @ (FORWARD_LEASE_KEEPALIVE | FORWARD_LEASE_TIME_TO_LIVE), body)) => {
                leader::serve_forwarded(&self.lessor, &self.node, kind, body).await
            }
            _ => {
                CommandResult::Err(EtcdError::Internal("unknown forwarded request".into())).encode()
            }
        };
        Ok(Response::new(ForwardResponse { data }))
    }
}

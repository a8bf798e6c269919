//! The Cluster service. MemberList is served from the Raft membership plus the attributes
//! each member published; membership changes arrive with the membership work and answer
//! `Unimplemented` until then (listed in docs/compatibility.md).

use std::sync::Arc;

use cairn_proto::etcdserverpb::cluster_server::Cluster;
use cairn_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use crate::node::Node;
use crate::raft::state_machine::published_member;

pub struct ClusterService {
    pub node: Arc<Node>,
}

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Cluster.{rpc} is not implemented by cairn-store yet"
    ))
}

impl ClusterService {
    /// Every member of the current configuration, voters and learners, in id order.
    pub fn members(&self) -> Vec<Member> {
        let membership = self.node.with_metrics(|m| m.membership_config.clone());
        let learners: Vec<u64> = membership.membership().learner_ids().collect();
        membership
            .nodes()
            .map(|(id, m)| {
                // A member that has not published yet shows the name it was configured
                // with and no client URLs, as etcd lists unstarted members.
                let (name, client_urls) = published_member(&self.node.mvcc, *id)
                    .unwrap_or_else(|| (m.name.clone(), vec![]));
                Member {
                    id: *id,
                    name,
                    peer_ur_ls: m.peer_urls.clone(),
                    client_ur_ls: client_urls,
                    is_learner: learners.contains(id),
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("MemberUpdate"))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.read_barrier().await?;
        }
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.header(self.node.mvcc.current_revision())),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("MemberPromote"))
    }
}

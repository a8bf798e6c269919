//! The Cluster service: MemberList from the Raft membership plus the attributes each member
//! published; the changes are run by the leader (see [`membership`]) and, while auth is
//! enabled, only for users with the root role (etcd's `checkMembershipOperationPermission`).

use std::sync::Arc;

use cairn_proto::etcdserverpb::cluster_server::Cluster;
use cairn_proto::etcdserverpb::{
    MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::membership;
use crate::node::Node;

pub struct ClusterService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        self.node.require_admin(&request).await?;
        let mut resp = membership::member_add(&self.node, request.into_inner()).await?;
        resp.header = Some(self.node.header(self.node.mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.node.require_admin(&request).await?;
        let mut resp = membership::member_remove(&self.node, request.into_inner()).await?;
        resp.header = Some(self.node.header(self.node.mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.node.require_admin(&request).await?;
        let mut resp = membership::member_update(&self.node, request.into_inner()).await?;
        resp.header = Some(self.node.header(self.node.mvcc.current_revision()));
        Ok(Response::new(resp))
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
            members: membership::members(&self.node),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.node.require_admin(&request).await?;
        let mut resp = membership::member_promote(&self.node, request.into_inner()).await?;
        resp.header = Some(self.node.header(self.node.mvcc.current_revision()));
        Ok(Response::new(resp))
    }
}

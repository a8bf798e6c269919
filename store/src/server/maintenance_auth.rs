//! The Maintenance service as clients reach it: etcd's `authMaintenanceServer`, which lets
//! only users with the root role run the calls that read or reshape a whole member —
//! Defragment, Hash, HashKV, Snapshot, MoveLeader, Downgrade — while auth is enabled, and
//! hands everything to [`MaintenanceService`]. Status and Alarm stay open, as in etcd 3.4 and
//! 3.5.
//!
//! Refusals use etcd's current errors ("etcdserver: permission denied" and friends, with
//! their gRPC codes); etcd 3.4 sent the auth store's raw "auth: permission denied" with code
//! Unknown here.

use cairn_proto::etcdserverpb::maintenance_server::Maintenance;
use cairn_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest,
    MoveLeaderResponse, SnapshotRequest, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::maintenance::MaintenanceService;

pub struct AuthMaintenance {
    pub inner: MaintenanceService,
}

impl AuthMaintenance {
    async fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        Ok(self.inner.node.require_admin(request).await?)
    }
}

#[tonic::async_trait]
impl Maintenance for AuthMaintenance {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        self.inner.alarm(request).await
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        self.inner.status(request).await
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        self.admin(&request).await?;
        self.inner.defragment(request).await
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.admin(&request).await?;
        self.inner.hash(request).await
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        self.admin(&request).await?;
        self.inner.hash_kv(request).await
    }

    type SnapshotStream = <MaintenanceService as Maintenance>::SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&request).await?;
        self.inner.snapshot(request).await
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        self.admin(&request).await?;
        self.inner.move_leader(request).await
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        self.admin(&request).await?;
        self.inner.downgrade(request).await
    }
}

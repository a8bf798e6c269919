//! The Lock service (etcd's `v3lock`): Lock and Unlock, served by running
//! [`crate::concurrency::mutex`] inside this member.

use cairn_proto::v3lockpb::lock_server::Lock;
use cairn_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tonic::{Request, Response, Status};

use super::errors::through_v3client;
use crate::concurrency::client::Client;
use crate::concurrency::mutex;

pub struct LockService {
    pub client: Client,
}

#[tonic::async_trait]
impl Lock for LockService {
    /// Blocks until the lock is held. If the client cancels first, its waiter key is removed.
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let req = request.into_inner();
        let (header, key) = mutex::lock(&client, &req.name, req.lease)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(LockResponse { header, key }))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let header = mutex::unlock(&client, &request.into_inner().key)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(UnlockResponse { header }))
    }
}

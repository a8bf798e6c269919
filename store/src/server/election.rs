//! The Election service (etcd's `v3election`): Campaign, Proclaim, Leader, Observe, Resign,
//! served by running [`crate::concurrency::election`] inside this member.

use std::pin::Pin;

use cairn_proto::v3electionpb::election_server::Election;
use cairn_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::errors::{through_v3client, EtcdError};
use crate::concurrency::client::Client;
use crate::concurrency::election;

pub struct ElectionService {
    pub client: Client,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Election for ElectionService {
    /// Blocks until elected. If the client cancels first, the candidacy is withdrawn.
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let req = request.into_inner();
        let (header, leader) = election::campaign(&client, &req.name, req.lease, &req.value)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(CampaignResponse {
            header,
            leader: Some(leader),
        }))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let req = request.into_inner();
        let leader = req.leader.ok_or(EtcdError::MissingLeaderKey)?;
        let header = election::proclaim(&client, &leader, &req.value)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let (header, kv) = election::leader(&client, &request.into_inner().name)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(LeaderResponse {
            header,
            kv: Some(kv),
        }))
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let client = self.client.for_caller(request.metadata());
        let name = request.into_inner().name;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            if let Err(e) = election::observe(&client, &name, &tx).await {
                let _ = tx.send(Err(through_v3client(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let client = self.client.for_caller(request.metadata());
        let leader = request
            .into_inner()
            .leader
            .ok_or(EtcdError::MissingLeaderKey)?;
        let header = election::resign(&client, &leader)
            .await
            .map_err(through_v3client)?;
        Ok(Response::new(ResignResponse { header }))
    }
}

//! The Lease service: LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseLeases.
//!
//! Grants and revokes go through Raft like any write (TTL validated and raised to the minimum
//! here, at the edge). Keep-alives and time-to-live questions are answered by the leader's
//! lessor ([`crate::lessor::leader`]), since only the leader knows when leases expire.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_proto::etcdserverpb::lease_server::Lease;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::errors::EtcdError;
use super::kv::fill_header;
use super::validate;
use crate::lessor::{leader, Lessor};
use crate::node::Node;
use crate::raft::{Command, CommandResult};

pub struct LeaseService {
    pub node: Arc<Node>,
    pub lessor: Arc<Lessor>,
    ids: LeaseIds,
    /// Turns true when the member stops: keep-alive streams end then, or they would hold the
    /// server's graceful shutdown open for as long as their clients keep them.
    stop: watch::Receiver<bool>,
}

impl LeaseService {
    pub fn new(node: Arc<Node>, lessor: Arc<Lessor>, stop: watch::Receiver<bool>) -> Self {
        let ids = LeaseIds::new(node.id);
        Self {
            node,
            lessor,
            ids,
            stop,
        }
    }
}

/// Server-chosen lease ids, unique across members and restarts as etcd's request-id generator
/// makes them: the member id's low 16 bits, then the start time in milliseconds (40 bits) and
/// an 8-bit counter that carries into the time bits; the top bit cleared (ids are positive).
struct LeaseIds {
    prefix: u64,
    suffix: AtomicU64,
}

impl LeaseIds {
    const SUFFIX_BITS: u32 = 48;
    const COUNTER_BITS: u32 = 8;

    fn new(member_id: u64) -> Self {
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let time_bits = millis & ((1 << (Self::SUFFIX_BITS - Self::COUNTER_BITS)) - 1);
        Self {
            prefix: (member_id & 0xffff) << Self::SUFFIX_BITS,
            suffix: AtomicU64::new(time_bits << Self::COUNTER_BITS),
        }
    }

    fn next(&self) -> i64 {
        let suffix = self.suffix.fetch_add(1, Ordering::Relaxed) + 1;
        let id = self.prefix | (suffix & ((1 << Self::SUFFIX_BITS) - 1));
        (id & (i64::MAX as u64)) as i64
    }
}

fn unexpected(r: CommandResult) -> Status {
    match r {
        CommandResult::Err(e) => e.into(),
        other => Status::internal(format!("unexpected result {other:?}")),
    }
}

type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let caller = self.node.caller(&metadata).await?;
        let ttl = validate::check_lease_grant(&req, self.lessor.min_ttl)?;
        // A lease is data: refused while the backend is over its quota, as on etcd.
        self.node.check_quota().await?;
        loop {
            let chosen = req.id == 0;
            let id = if chosen { self.ids.next() } else { req.id };
            let cmd = Command::Kv(cairn_mvcc::Command::LeaseGrant { id, ttl }).by(caller.clone());
            match self.node.propose(cmd).await? {
                CommandResult::LeaseGrant(mut resp) => {
                    fill_header(&self.node, &mut resp.header);
                    return Ok(Response::new(resp));
                }
                // A server-chosen id that happens to be taken: choose again.
                CommandResult::Err(EtcdError::LeaseExist) if chosen => continue,
                other => return Err(unexpected(other)),
            }
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let caller = self.node.caller(request.metadata()).await?;
        let id = request.into_inner().id;
        // Checked when applied: write permission on every key attached to the lease.
        let cmd = Command::Kv(cairn_mvcc::Command::LeaseRevoke { id }).by(caller);
        match self.node.propose(cmd).await? {
            CommandResult::LeaseRevoke(mut resp) => {
                fill_header(&self.node, &mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    /// One response per request, in order. An unknown or expired lease is answered with TTL 0
    /// (the stream goes on); any other failure ends the stream with that error, as etcd.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let node = self.node.clone();
        let lessor = self.lessor.clone();
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                let req = tokio::select! {
                    r = requests.next() => r,
                    _ = stop.wait_for(|s| *s) => None,
                };
                if *stop.borrow() {
                    let _ = tx.send(Err(EtcdError::Stopped.into())).await;
                    return;
                }
                let id = match req {
                    Some(Ok(r)) => r.id,
                    // The client closed or broke the stream: nothing to answer.
                    None | Some(Err(_)) => return,
                };
                // The header is taken before renewing, so its revision is never past the
                // revision at which the lease might have been revoked (etcd does the same).
                let header = node.header(node.mvcc.current_revision());
                let answer = match leader::keep_alive(&lessor, &node, id).await {
                    Ok(ttl) => Ok(ttl),
                    Err(EtcdError::LeaseNotFound) => Ok(0),
                    Err(e) => Err(Status::from(e)),
                };
                let last = answer.is_err();
                let resp = answer.map(|ttl| LeaseKeepAliveResponse {
                    header: Some(header),
                    id,
                    ttl,
                });
                if tx.send(resp).await.is_err() || last {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let mut resp = match leader::time_to_live(&self.lessor, &self.node, &req).await {
            Ok(resp) => resp,
            // etcd answers an unknown lease with TTL -1 rather than an error.
            Err(EtcdError::LeaseNotFound) => LeaseTimeToLiveResponse {
                header: None,
                id: req.id,
                ttl: -1,
                granted_ttl: 0,
                keys: Vec::new(),
            },
            Err(e) => return Err(e.into()),
        };
        resp.header = Some(self.node.header(self.node.mvcc.current_revision()));
        Ok(Response::new(resp))
    }

    async fn lease_leases(
        &self,
        _request: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        // Linearizable, so a lease granted through another member is listed.
        self.node.read_barrier().await?;
        let leases = self
            .lessor
            .ids()
            .into_iter()
            .map(|id| LeaseStatus { id })
            .collect();
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(self.node.mvcc.current_revision())),
            leases,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_ids_are_positive_distinct_and_carry_the_member() {
        let ids = LeaseIds::new(0xabcd_1234_5678_9abc);
        let a = ids.next();
        let b = ids.next();
        assert!(a > 0 && b > 0);
        assert_ne!(a, b);
        assert_eq!((a as u64) >> 48, 0x9abc & 0x7fff);
        let other = LeaseIds::new(0x1);
        assert_ne!((other.next() as u64) >> 48, (a as u64) >> 48);
    }
}

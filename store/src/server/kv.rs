//! The KV service: Range, Put, DeleteRange, Txn, Compact.
//!
//! Requests are validated here, before anything reaches Raft. Reads are linearizable unless
//! the client asks for a serializable read; writes go through [`Node::propose`]. While auth
//! is enabled, a Range needs read permission on its range (checked here); writes carry the
//! caller through the log and are checked when applied (see `crate::auth::access`).

use std::sync::Arc;

use cairn_proto::etcdserverpb::kv_server::Kv;
use cairn_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use tonic::{Request, Response, Status};

use super::errors::EtcdError;
use super::validate;
use crate::auth::{Access, Caller};
use crate::node::Node;
use crate::raft::{Command, CommandResult};

pub struct KvService {
    pub node: Arc<Node>,
}

/// Completes a header produced by the store (which knows only the revision).
pub fn fill_header(node: &Node, header: &mut Option<ResponseHeader>) {
    let revision = header.as_ref().map_or(0, |h| h.revision);
    *header = Some(node.header(revision));
}

fn unexpected(r: CommandResult) -> Status {
    match r {
        CommandResult::Err(e) => e.into(),
        other => Status::internal(format!("unexpected result {other:?}")),
    }
}

impl KvService {
    /// Proposes a write sent by `caller`, whose permissions are checked when it is applied.
    async fn propose(
        &self,
        cmd: cairn_mvcc::Command,
        caller: Option<Caller>,
    ) -> Result<CommandResult, Status> {
        Ok(self.node.propose(Command::Kv(cmd).by(caller)).await?)
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        validate::check_range(&req)?;
        if let Some(caller) = self.node.caller(&metadata).await? {
            let auth = &self.node.auth;
            auth.check_op(&caller, Access::Read, &req.key, &req.range_end)?;
        }
        if !req.serializable {
            self.node.read_barrier().await?;
        }
        let mut resp = self.node.mvcc.range(&req).map_err(EtcdError::from)?;
        fill_header(&self.node, &mut resp.header);
        Ok(Response::new(resp))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        validate::check_put(&req)?;
        let caller = self.node.caller(&metadata).await?;
        self.node.check_quota().await?;
        match self.propose(cairn_mvcc::Command::Put(req), caller).await? {
            CommandResult::Put(mut resp) => {
                fill_header(&self.node, &mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        validate::check_delete(&req)?;
        let caller = self.node.caller(&metadata).await?;
        match self
            .propose(cairn_mvcc::Command::DeleteRange(req), caller)
            .await?
        {
            CommandResult::DeleteRange(mut resp) => {
                fill_header(&self.node, &mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        validate::check_txn(&req, self.node.limits.max_txn_ops)?;
        let caller = self.node.caller(&metadata).await?;
        if crate::alarms::txn_puts(&req) {
            self.node.check_quota().await?;
        }
        match self.propose(cairn_mvcc::Command::Txn(req), caller).await? {
            CommandResult::Txn(mut resp) => {
                fill_txn_headers(&self.node, &mut resp);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let (metadata, _, req) = request.into_parts();
        let caller = self.node.caller(&metadata).await?;
        match self
            .propose(cairn_mvcc::Command::Compact(req), caller)
            .await?
        {
            CommandResult::Compact(mut resp) => {
                fill_header(&self.node, &mut resp.header);
                Ok(Response::new(resp))
            }
            other => Err(unexpected(other)),
        }
    }
}

/// Only the outer header of a txn names the member and term; the headers of the inner
/// responses carry just the revision, as etcd's do.
fn fill_txn_headers(node: &Node, resp: &mut TxnResponse) {
    fill_header(node, &mut resp.header);
}

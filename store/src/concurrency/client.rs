//! What the recipes ask of the store: KV requests through the KV service (exactly what an etcd
//! client of this member would get: validation, errors, headers), and waiting for deletions.
//!
//! Every wait also ends when the member stops, so a blocked Campaign or Lock never holds the
//! server's graceful shutdown open.

use std::sync::Arc;

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_server::Kv;
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::event::EventType;
use tokio::sync::watch;
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::{Request, Status};

use super::key_events::KeyEvents;
use super::prefix_end;
use crate::node::Node;
use crate::server::errors::EtcdError;
use crate::server::kv::KvService;

#[derive(Clone)]
pub struct Client {
    node: Arc<Node>,
    stop: watch::Receiver<bool>,
    /// The auth token of the client the recipe runs for, passed on with every KV request so
    /// that they are checked as that client's own (etcd's in-process client forwards the
    /// caller's context the same way).
    token: Option<MetadataValue<Ascii>>,
}

impl Client {
    pub fn new(node: Arc<Node>, stop: watch::Receiver<bool>) -> Self {
        Self {
            node,
            stop,
            token: None,
        }
    }

    /// This client acting for the sender of a request with `metadata`.
    pub fn for_caller(&self, metadata: &MetadataMap) -> Self {
        let token = crate::auth::TOKEN_METADATA
            .iter()
            .find_map(|k| metadata.get(*k))
            .cloned();
        Self {
            token,
            ..self.clone()
        }
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        if let Some(t) = &self.token {
            req.metadata_mut().insert("token", t.clone());
        }
        req
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    fn kv(&self) -> KvService {
        KvService {
            node: self.node.clone(),
        }
    }

    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Status> {
        Ok(self.kv().txn(self.request(req)).await?.into_inner())
    }

    /// A linearizable read.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse, Status> {
        Ok(self.kv().range(self.request(req)).await?.into_inner())
    }

    pub async fn delete(&self, key: &[u8]) -> Result<DeleteRangeResponse, Status> {
        let req = DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        };
        Ok(self
            .kv()
            .delete_range(self.request(req))
            .await?
            .into_inner())
    }

    /// Runs `wait` unless the member stops first (then: "server stopped").
    pub async fn unless_stopped<T>(
        &self,
        wait: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let mut stop = self.stop.clone();
        tokio::select! {
            r = wait => r,
            _ = stop.wait_for(|s| *s) => Err(EtcdError::Stopped.into()),
        }
    }

    /// The events of `key` / `range_end` from revision `from` on.
    pub fn events(&self, key: &[u8], range_end: &[u8], from: i64) -> KeyEvents {
        KeyEvents::new(&self.node, key, range_end, from)
    }

    /// Waits until `key` is deleted at revision `from` or later (etcd's `waitDelete`).
    pub async fn wait_delete(&self, key: &[u8], from: i64) -> Result<(), Status> {
        let mut events = self.events(key, &[], from);
        self.unless_stopped(async {
            loop {
                let ev = events.next().await?;
                if ev.r#type == EventType::Delete as i32 {
                    return Ok(());
                }
            }
        })
        .await
    }

    /// Waits until no key under `prefix` has a create revision `<= max_create_rev`, deletion
    /// by deletion from the newest such key down (etcd's `waitDeletes`). Returns the header of
    /// the read that found none left.
    pub async fn wait_deletes(
        &self,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<Option<ResponseHeader>, Status> {
        loop {
            let resp = self
                .range(RangeRequest {
                    key: prefix.to_vec(),
                    range_end: prefix_end(prefix),
                    sort_order: SortOrder::Descend as i32,
                    sort_target: SortTarget::Create as i32,
                    limit: 1,
                    max_create_revision: max_create_rev,
                    ..Default::default()
                })
                .await?;
            let Some(last) = resp.kvs.first() else {
                return Ok(resp.header);
            };
            let from = resp.header.as_ref().map_or(0, |h| h.revision);
            self.wait_delete(&last.key, from).await?;
        }
    }

    /// The key under `prefix` with the lowest create revision (etcd's `WithFirstCreate`).
    pub fn first_created(prefix: &[u8]) -> RangeRequest {
        RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_end(prefix),
            sort_order: SortOrder::Ascend as i32,
            sort_target: SortTarget::Create as i32,
            limit: 1,
            ..Default::default()
        }
    }
}

/// `create_revision(key) == rev`
pub fn created_at(key: &[u8], rev: i64) -> Compare {
    Compare {
        key: key.to_vec(),
        range_end: Vec::new(),
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        target_union: Some(TargetUnion::CreateRevision(rev)),
    }
}

pub fn op_put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

pub fn op_get(req: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestRange(req)),
    }
}

pub fn op_delete(key: &[u8]) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })),
    }
}

/// A single-key get.
pub fn get(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..Default::default()
    }
}

//! The apiserver's only door to etcd: typed wrappers over the etcd v3 KV and Watch RPCs (the
//! generated `cairn-proto` clients), doing what kube-apiserver's etcd3 storage does.
//!
//! Invariants:
//! - Every write is a Txn that compares before it writes: creates on `create_revision == 0`,
//!   updates and deletes on `mod_revision == <the revision the caller read>`. A lost race is
//!   reported, never overwritten, so optimistic concurrency is the store's, not ours.
//! - A value's resourceVersion is its key's `mod_revision`; a list's is the Range header's revision.
//! - Nothing here knows about JSON or Kubernetes objects; keys and values are bytes.

use std::time::Duration;

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::response_op::Response as OpResp;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest, WatchRequest, WatchResponse,
};
use cairn_proto::mvccpb::KeyValue;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Streaming};

/// Why a storage call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("key not found")]
    NotFound,
    #[error("key already exists")]
    AlreadyExists,
    #[error("key was modified since it was read")]
    Conflict,
    #[error("the parent key (namespace) does not exist")]
    ParentMissing,
    #[error("revision {0} has been compacted")]
    Compacted(i64),
    #[error("etcd: {0}")]
    Etcd(String),
}

impl From<tonic::Status> for StorageError {
    fn from(s: tonic::Status) -> Self {
        StorageError::Etcd(format!("{:?}: {}", s.code(), s.message()))
    }
}

/// A key's current value and the revisions that version it.
#[derive(Debug, Clone)]
pub struct Versioned {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl From<KeyValue> for Versioned {
    fn from(kv: KeyValue) -> Self {
        Versioned {
            key: kv.key,
            value: kv.value,
            mod_revision: kv.mod_revision,
        }
    }
}

/// One page of a range read.
#[derive(Debug)]
pub struct Page {
    pub kvs: Vec<Versioned>,
    /// Revision the page was read at (the store's revision when `revision` was 0).
    pub revision: i64,
    /// Keys remain after the last one returned.
    pub more: bool,
    /// Keys in the whole requested range, ignoring the limit.
    pub count: i64,
}

/// The end of the range holding every key that starts with `prefix` (etcd's `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// An etcd v3 client for objects.
#[derive(Clone)]
pub struct Store {
    kv: KvClient<Channel>,
    watch: WatchClient<Channel>,
}

fn channel(endpoints: &[String], timeout: Option<Duration>) -> Result<Channel, StorageError> {
    let mut eps = Vec::new();
    for e in endpoints {
        let e = if e.contains("://") {
            e.clone()
        } else {
            format!("http://{e}")
        };
        let mut ep = Endpoint::from_shared(e.clone())
            .map_err(|err| StorageError::Etcd(format!("bad endpoint {e:?}: {err}")))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true);
        if let Some(t) = timeout {
            ep = ep.timeout(t);
        }
        eps.push(ep);
    }
    Ok(match eps.len() {
        1 => eps.remove(0).connect_lazy(),
        _ => Channel::balance_list(eps.into_iter()),
    })
}

fn compacted_or(s: tonic::Status, revision: i64) -> StorageError {
    if s.code() == Code::OutOfRange && s.message().contains("compacted") {
        StorageError::Compacted(revision)
    } else {
        s.into()
    }
}

impl Store {
    /// A lazily connecting client; the first call fails if no endpoint answers.
    pub fn new(endpoints: &[String]) -> Result<Store, StorageError> {
        Ok(Store {
            // Unary calls are bounded so a dead store cannot hang a request forever.
            kv: KvClient::new(channel(endpoints, Some(Duration::from_secs(30)))?),
            // Watches are long-lived streams: no per-call deadline.
            watch: WatchClient::new(channel(endpoints, None)?),
        })
    }

    /// The current value of `key`.
    pub async fn get(&self, key: &[u8]) -> Result<Option<Versioned>, StorageError> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(resp.kvs.into_iter().next().map(Versioned::from))
    }

    /// Keys in `[start, end)` at `revision` (0: latest), at most `limit` (0: all), by key.
    pub async fn range(
        &self,
        start: &[u8],
        end: &[u8],
        limit: i64,
        revision: i64,
    ) -> Result<Page, StorageError> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                limit,
                revision,
                ..Default::default()
            })
            .await
            .map_err(|s| compacted_or(s, revision))?
            .into_inner();
        Ok(Page {
            revision: resp.header.map(|h| h.revision).unwrap_or(0),
            more: resp.more,
            count: resp.count,
            kvs: resp.kvs.into_iter().map(Versioned::from).collect(),
        })
    }

    async fn txn(
        &self,
        compare: Vec<Compare>,
        success: Vec<Op>,
        failure: Vec<Op>,
    ) -> Result<(bool, i64, Vec<OpResp>), StorageError> {
        let wrap = |ops: Vec<Op>| {
            ops.into_iter()
                .map(|r| RequestOp { request: Some(r) })
                .collect()
        };
        let resp = self
            .kv
            .clone()
            .txn(TxnRequest {
                compare,
                success: wrap(success),
                failure: wrap(failure),
            })
            .await?
            .into_inner();
        let rev = resp.header.map(|h| h.revision).unwrap_or(0);
        Ok((
            resp.succeeded,
            rev,
            resp.responses
                .into_iter()
                .filter_map(|r| r.response)
                .collect(),
        ))
    }

    /// Writes `value` at `key` only if the key does not exist and, when given, `parent` does.
    /// Returns the revision of the write (the new object's resourceVersion).
    pub async fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        parent: Option<&[u8]>,
    ) -> Result<i64, StorageError> {
        let mut compare = vec![create_rev(key, CompareResult::Equal, 0)];
        let mut failure = vec![get_op(key)];
        if let Some(p) = parent {
            compare.push(create_rev(p, CompareResult::Greater, 0));
            failure.push(get_op(p));
        }
        let put = Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        });
        let (ok, rev, resps) = self.txn(compare, vec![put], failure).await?;
        if ok {
            return Ok(rev);
        }
        if found(resps.first()) {
            Err(StorageError::AlreadyExists)
        } else {
            Err(StorageError::ParentMissing)
        }
    }

    /// Replaces `key` only if it is still at `expected` mod_revision. Returns the new revision.
    pub async fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, StorageError> {
        let put = Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value,
            ..Default::default()
        });
        let (ok, rev, resps) = self
            .txn(vec![mod_rev(key, expected)], vec![put], vec![get_op(key)])
            .await?;
        match (ok, found(resps.first())) {
            (true, _) => Ok(rev),
            (false, true) => Err(StorageError::Conflict),
            (false, false) => Err(StorageError::NotFound),
        }
    }

    /// Deletes `key` (and every key under each of `children`, in the same revision) only if
    /// `key` is still at `expected` mod_revision. Returns the deletion's revision.
    pub async fn delete(
        &self,
        key: &[u8],
        expected: i64,
        children: &[Vec<u8>],
    ) -> Result<i64, StorageError> {
        let mut ops = vec![Op::RequestDeleteRange(DeleteRangeRequest {
            key: key.to_vec(),
            ..Default::default()
        })];
        for prefix in children {
            ops.push(Op::RequestDeleteRange(DeleteRangeRequest {
                key: prefix.clone(),
                range_end: prefix_end(prefix),
                ..Default::default()
            }));
        }
        let (ok, rev, resps) = self
            .txn(vec![mod_rev(key, expected)], ops, vec![get_op(key)])
            .await?;
        match (ok, found(resps.first())) {
            (true, _) => Ok(rev),
            (false, true) => Err(StorageError::Conflict),
            (false, false) => Err(StorageError::NotFound),
        }
    }

    /// Watches every key under `prefix`, delivering events from `start_revision` (inclusive; 0 =
    /// from now) with each event's previous value.
    pub async fn watch(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, StorageError> {
        let (tx, rx) = mpsc::channel(1);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                start_revision,
                prev_kv: true,
                ..Default::default()
            })),
        })
        .await
        .map_err(|_| StorageError::Etcd("watch request channel closed".into()))?;
        let responses = self
            .watch
            .clone()
            .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(WatchStream {
            _requests: tx,
            responses,
        })
    }
}

/// An open etcd watch. Dropping it ends the gRPC stream (and the watch on the server).
pub struct WatchStream {
    // etcd ends the whole watch stream when the client half-closes, so the request side is held
    // open for as long as the watch is wanted.
    _requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl WatchStream {
    /// The next response; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, StorageError> {
        Ok(self.responses.message().await?)
    }
}

fn create_rev(key: &[u8], result: CompareResult, rev: i64) -> Compare {
    Compare {
        result: result as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(rev)),
        ..Default::default()
    }
}

fn mod_rev(key: &[u8], rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::ModRevision(rev)),
        ..Default::default()
    }
}

fn get_op(key: &[u8]) -> Op {
    Op::RequestRange(RangeRequest {
        key: key.to_vec(),
        keys_only: true,
        ..Default::default()
    })
}

fn found(resp: Option<&OpResp>) -> bool {
    matches!(resp, Some(OpResp::ResponseRange(r)) if !r.kvs.is_empty())
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_every_extension() {
        assert_eq!(prefix_end(b"/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }
}

//! The apiserver's only door to etcd: typed wrappers over the etcd v3 KV and Watch RPCs (the
//! generated `cairn-proto` clients), doing what kube-apiserver's etcd3 storage does.
//!
//! Invariants:
//! - Every write is a Txn that compares before it writes: creates on `create_revision == 0`,
//!   updates and deletes on `mod_revision == <the revision the caller read>`, plus guards on
//!   related keys (the namespace, a reserved cluster IP). A lost race is reported, never
//!   overwritten, so optimistic concurrency is the store's, not ours.
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
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
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
    #[error("guard {0} of the write did not hold")]
    GuardFailed(usize),
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

/// What a write expects of its key before it is applied.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// The key must not exist (create).
    Absent,
    /// The key must be at this mod_revision (update, delete).
    ModRevision(i64),
}

/// What a write does to its key.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Put(Vec<u8>),
    Delete,
}

/// A further condition on another key, checked in the same Txn.
#[derive(Debug, Clone)]
pub enum Guard {
    /// The key must not exist (a reservation about to be taken).
    Absent(Vec<u8>),
    /// The key must exist (a namespace).
    Present(Vec<u8>),
    /// The key must be at this mod_revision (a namespace read and found usable).
    ModRevision(Vec<u8>, i64),
}

impl Guard {
    fn key(&self) -> &[u8] {
        match self {
            Guard::Absent(k) | Guard::Present(k) | Guard::ModRevision(k, _) => k,
        }
    }
}

/// A further write applied in the same revision as the main one.
#[derive(Debug, Clone)]
pub enum SideOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    DeletePrefix(Vec<u8>),
}

/// A compare-and-swap write: see [`Store::write`].
#[derive(Debug, Clone)]
pub struct Write {
    pub key: Vec<u8>,
    pub expect: Expect,
    pub op: WriteOp,
    pub guards: Vec<Guard>,
    pub side: Vec<SideOp>,
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

    /// One compare-and-swap write: `w.op` on `w.key` (and `w.side` alongside, in the same
    /// revision) only if the key is as `w.expect` says and every guard holds. Returns the
    /// revision of the write. A failed compare is reported as NotFound / AlreadyExists / Conflict
    /// for the key itself, else `GuardFailed(i)` for the first guard that did not hold.
    pub async fn write(&self, w: Write) -> Result<i64, StorageError> {
        let mut compare = vec![match w.expect {
            Expect::Absent => create_rev(&w.key, CompareResult::Equal, 0),
            Expect::ModRevision(rev) => mod_rev(&w.key, rev),
        }];
        let mut failure = vec![get_op(&w.key)];
        for g in &w.guards {
            compare.push(match g {
                Guard::Absent(k) => create_rev(k, CompareResult::Equal, 0),
                Guard::Present(k) => create_rev(k, CompareResult::Greater, 0),
                Guard::ModRevision(k, rev) => mod_rev(k, *rev),
            });
            failure.push(get_op(g.key()));
        }
        let mut ops = vec![match w.op {
            WriteOp::Put(value) => put_op(&w.key, value),
            WriteOp::Delete => delete_op(&w.key, None),
        }];
        for s in w.side {
            ops.push(match s {
                SideOp::Put(k, v) => put_op(&k, v),
                SideOp::Delete(k) => delete_op(&k, None),
                SideOp::DeletePrefix(p) => {
                    let end = prefix_end(&p);
                    delete_op(&p, Some(end))
                }
            });
        }
        let (ok, rev, resps) = self.txn(compare, ops, failure).await?;
        if ok {
            return Ok(rev);
        }
        let mod_revision = |i: usize| match resps.get(i) {
            Some(OpResp::ResponseRange(r)) => r.kvs.first().map(|kv| kv.mod_revision),
            _ => None,
        };
        match (w.expect, mod_revision(0)) {
            (Expect::Absent, Some(_)) => return Err(StorageError::AlreadyExists),
            (Expect::ModRevision(_), None) => return Err(StorageError::NotFound),
            (Expect::ModRevision(rev), Some(have)) if rev != have => {
                return Err(StorageError::Conflict)
            }
            _ => {}
        }
        for (i, g) in w.guards.iter().enumerate() {
            let holds = match (g, mod_revision(i + 1)) {
                (Guard::Absent(_), have) => have.is_none(),
                (Guard::Present(_), have) => have.is_some(),
                (Guard::ModRevision(_, rev), have) => have == Some(*rev),
            };
            if !holds {
                return Err(StorageError::GuardFailed(i));
            }
        }
        // Every compare held when re-read: the key moved between the Txn and its failure reads.
        Err(StorageError::Conflict)
    }

    /// Writes `value` at `key` only if the key does not exist and, when given, `parent` does.
    /// Returns the revision of the write (the new object's resourceVersion).
    pub async fn create(
        &self,
        key: &[u8],
        value: Vec<u8>,
        parent: Option<&[u8]>,
    ) -> Result<i64, StorageError> {
        let guards = parent
            .map(|p| vec![Guard::Present(p.to_vec())])
            .unwrap_or_default();
        self.write(Write {
            key: key.to_vec(),
            expect: Expect::Absent,
            op: WriteOp::Put(value),
            guards,
            side: Vec::new(),
        })
        .await
        .map_err(|e| match e {
            StorageError::GuardFailed(_) => StorageError::ParentMissing,
            other => other,
        })
    }

    /// Replaces `key` only if it is still at `expected` mod_revision. Returns the new revision.
    pub async fn update(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expected: i64,
    ) -> Result<i64, StorageError> {
        self.write(Write {
            key: key.to_vec(),
            expect: Expect::ModRevision(expected),
            op: WriteOp::Put(value),
            guards: Vec::new(),
            side: Vec::new(),
        })
        .await
    }

    /// Deletes `key` (and every key under each of `children`, in the same revision) only if
    /// `key` is still at `expected` mod_revision. Returns the deletion's revision.
    pub async fn delete(
        &self,
        key: &[u8],
        expected: i64,
        children: &[Vec<u8>],
    ) -> Result<i64, StorageError> {
        self.write(Write {
            key: key.to_vec(),
            expect: Expect::ModRevision(expected),
            op: WriteOp::Delete,
            guards: Vec::new(),
            side: children.iter().cloned().map(SideOp::DeletePrefix).collect(),
        })
        .await
    }

    /// The keys (no values) in `[start, end)` at the latest revision.
    pub async fn keys(&self, start: &[u8], end: &[u8]) -> Result<Vec<Vec<u8>>, StorageError> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                keys_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(resp.kvs.into_iter().map(|kv| kv.key).collect())
    }

    /// The highest `mod_revision` among the keys in `[start, end)` as of `revision`, 0 when
    /// there are none (one key returned, without its value).
    pub async fn last_modified(
        &self,
        start: &[u8],
        end: &[u8],
        revision: i64,
    ) -> Result<i64, StorageError> {
        use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: start.to_vec(),
                range_end: end.to_vec(),
                revision,
                limit: 1,
                keys_only: true,
                sort_target: SortTarget::Mod as i32,
                sort_order: SortOrder::Descend as i32,
                ..Default::default()
            })
            .await
            .map_err(|s| compacted_or(s, revision))?
            .into_inner();
        Ok(resp.kvs.first().map(|kv| kv.mod_revision).unwrap_or(0))
    }

    /// The store's current revision (a one-key count-only read).
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let resp = self
            .kv
            .clone()
            .range(RangeRequest {
                key: b"\0".to_vec(),
                count_only: true,
                ..Default::default()
            })
            .await?
            .into_inner();
        Ok(resp.header.map(|h| h.revision).unwrap_or(0))
    }

    /// Watches every key under `prefix`, delivering events from `start_revision` (inclusive; 0 =
    /// from now) with each event's previous value. The stream can be asked for progress
    /// notifications ([`WatchStream::request_progress`]).
    pub async fn watch(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<WatchStream, StorageError> {
        // Room for the create request and one pending progress request; further progress
        // requests while one is queued are redundant and dropped.
        let (tx, rx) = mpsc::channel(2);
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.to_vec(),
                range_end: prefix_end(prefix),
                start_revision,
                prev_kv: true,
                progress_notify: true,
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
            requests: tx,
            responses,
        })
    }
}

/// An open etcd watch. Dropping it ends the gRPC stream (and the watch on the server).
pub struct WatchStream {
    // etcd ends the whole watch stream when the client half-closes, so the request side is held
    // open for as long as the watch is wanted.
    requests: mpsc::Sender<WatchRequest>,
    responses: Streaming<WatchResponse>,
}

impl WatchStream {
    /// The next response; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, StorageError> {
        Ok(self.responses.message().await?)
    }

    /// Asks the server for a progress notification: a response without events whose header
    /// revision tells that every event up to it has been sent. Never waits; a request already
    /// queued makes this one redundant.
    pub fn request_progress(&self) {
        let _ = self.requests.try_send(WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        });
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

fn put_op(key: &[u8], value: Vec<u8>) -> Op {
    Op::RequestPut(PutRequest {
        key: key.to_vec(),
        value,
        ..Default::default()
    })
}

fn delete_op(key: &[u8], range_end: Option<Vec<u8>>) -> Op {
    Op::RequestDeleteRange(DeleteRangeRequest {
        key: key.to_vec(),
        range_end: range_end.unwrap_or_default(),
        ..Default::default()
    })
}

fn get_op(key: &[u8]) -> Op {
    Op::RequestRange(RangeRequest {
        key: key.to_vec(),
        keys_only: true,
        ..Default::default()
    })
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

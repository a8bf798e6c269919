//! Shared helpers: a store in a temporary directory and terse request builders.

use std::ops::Deref;
use std::path::PathBuf;

use cairn_mvcc::{Command, CommandResult, Mvcc, MvccError, Response};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, RequestOp, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;

/// A store in its own temporary directory; dereferences to [`Mvcc`].
pub struct TestStore {
    pub mvcc: Option<Mvcc>,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Deref for TestStore {
    type Target = Mvcc;
    fn deref(&self) -> &Mvcc {
        self.mvcc.as_ref().expect("store is open")
    }
}

pub fn store() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mvcc.redb");
    let mvcc = Mvcc::open(&path).expect("open");
    TestStore {
        mvcc: Some(mvcc),
        path,
        _dir: dir,
    }
}

impl TestStore {
    /// Closes and reopens the database file.
    pub fn reopen(&mut self) {
        self.mvcc = None;
        self.mvcc = Some(Mvcc::open(&self.path).expect("reopen"));
    }

    /// Applies one command in its own batch (non-durable commit).
    pub fn apply(&self, cmd: Command) -> CommandResult {
        let mut batch = self.begin().expect("begin");
        let result = batch.apply(&cmd);
        batch.commit(false).expect("commit");
        result
    }

    pub fn put(&self, key: &str, value: &str) -> PutResponse {
        match self.apply(Command::Put(put(key, value))) {
            Ok(Response::Put(r)) => r,
            other => panic!("put {key}: {other:?}"),
        }
    }

    pub fn put_req(&self, req: PutRequest) -> Result<PutResponse, MvccError> {
        self.apply(Command::Put(req)).map(|r| match r {
            Response::Put(r) => r,
            other => panic!("unexpected {other:?}"),
        })
    }

    pub fn delete(&self, key: &str, range_end: &str) -> DeleteRangeResponse {
        match self.apply(Command::DeleteRange(delete(key, range_end))) {
            Ok(Response::DeleteRange(r)) => r,
            other => panic!("delete {key}: {other:?}"),
        }
    }

    pub fn txn(&self, req: TxnRequest) -> Result<TxnResponse, MvccError> {
        self.apply(Command::Txn(req)).map(|r| match r {
            Response::Txn(r) => r,
            other => panic!("unexpected {other:?}"),
        })
    }

    pub fn compact(&self, revision: i64) -> CommandResult {
        self.apply(Command::Compact(CompactionRequest {
            revision,
            physical: false,
        }))
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.range(&range(key, ""))
            .expect("range")
            .kvs
            .into_iter()
            .next()
    }

    pub fn get_at(&self, key: &str, revision: i64) -> Result<Option<KeyValue>, MvccError> {
        let req = RangeRequest {
            revision,
            ..range(key, "")
        };
        Ok(self.range(&req)?.kvs.into_iter().next())
    }

    pub fn keys(&self, req: &RangeRequest) -> Vec<String> {
        keys_of(&self.range(req).expect("range"))
    }
}

pub fn keys_of(resp: &RangeResponse) -> Vec<String> {
    resp.kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

pub fn put(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

pub fn delete(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: false,
    }
}

pub fn range(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        ..RangeRequest::default()
    }
}

/// The range_end meaning "every key >= key".
pub const FROM: &str = "\0";

pub fn op_put(key: &str, value: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(key, value))),
    }
}

pub fn op_delete(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(delete(key, range_end))),
    }
}

pub fn op_range(key: &str, range_end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(range(key, range_end))),
    }
}

pub fn op_txn(txn: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(txn)),
    }
}

pub fn cmp(key: &str, target: CompareTarget, result: CompareResult, union: TargetUnion) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        range_end: Vec::new(),
        target_union: Some(union),
    }
}

pub fn value(kv: &KeyValue) -> &str {
    std::str::from_utf8(&kv.value).expect("utf8 value")
}

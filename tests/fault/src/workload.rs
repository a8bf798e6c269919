//! Concurrent clients that record every operation: its invocation time, its completion time
//! and its result — or an unknown outcome when the call timed out or failed (a write that
//! errored may still commit later, so it is never counted as "did not happen").
//!
//! - [`register`]: reads, blind writes and compare-and-swap (a Txn comparing mod_revision or
//!   value) on a few keys; every written value is unique (`client << 32 | seq`);
//! - [`append`]: read one or two lists in one Txn, then append one unique element to each in a
//!   Txn guarded by their mod_revisions.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    Compare, PutRequest, RangeRequest, RequestOp, ResponseOp, TxnRequest,
};
use cairn_proto::mvccpb::KeyValue;
use tonic::transport::Channel;

use crate::append_check::{AppendTxn, ListRead, TxnOutcome};
use crate::cluster::lazy_channel;
use crate::linearizability::{Input, Operation, Output, Value};
use crate::rng::Rng;

/// A call that has not answered within this is abandoned with an unknown outcome.
pub const OP_TIMEOUT: Duration = Duration::from_secs(2);

pub fn register_key(k: usize) -> Vec<u8> {
    format!("reg/{k}").into_bytes()
}

pub fn list_key(k: usize) -> Vec<u8> {
    format!("list/{k}").into_bytes()
}

/// A revision the store reported for a value: as `mod_revision` of a read, or as the header
/// revision acknowledging the write of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionFact {
    pub key: usize,
    pub value: u64,
    pub revision: i64,
    pub acknowledged_write: bool,
}

#[derive(Debug, Default)]
pub struct RegisterLog {
    pub ops: Vec<Operation>,
    pub facts: Vec<RevisionFact>,
}

#[derive(Debug, Default)]
pub struct AppendLog {
    pub txns: Vec<AppendTxn>,
    pub reads: Vec<ListRead>,
}

struct Client {
    id: usize,
    kv: KvClient<Channel>,
    rng: Rng,
    seq: u64,
    start: Instant,
}

impl Client {
    fn new(id: usize, endpoint: &str, seed: u64, start: Instant) -> Self {
        Self {
            id,
            kv: KvClient::new(lazy_channel(endpoint)),
            rng: Rng::fork(seed, id as u64),
            seq: 0,
            start,
        }
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn next_value(&mut self) -> u64 {
        self.seq += 1;
        ((self.id as u64) << 32) | self.seq
    }

    async fn range(&mut self, key: Vec<u8>) -> Option<Option<KeyValue>> {
        let req = RangeRequest {
            key,
            ..Default::default()
        };
        match tokio::time::timeout(OP_TIMEOUT, self.kv.range(req)).await {
            Ok(Ok(r)) => Some(r.into_inner().kvs.into_iter().next()),
            _ => None,
        }
    }

    async fn txn(&mut self, req: TxnRequest) -> Option<(bool, i64, Vec<ResponseOp>)> {
        match tokio::time::timeout(OP_TIMEOUT, self.kv.txn(req)).await {
            Ok(Ok(r)) => {
                let r = r.into_inner();
                let rev = r.header.map_or(0, |h| h.revision);
                Some((r.succeeded, rev, r.responses))
            }
            _ => None,
        }
    }

    async fn pause_after_failure(&self) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn decode_value(kv: &KeyValue) -> u64 {
    std::str::from_utf8(&kv.value)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("garbage in {:?}: {:?}", kv.key, kv.value))
}

fn decode_list(kv: Option<&KeyValue>) -> (Vec<u64>, i64) {
    let Some(kv) = kv else {
        return (Vec::new(), 0);
    };
    let text = std::str::from_utf8(&kv.value).expect("list is utf-8");
    let list = text
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("list element"))
        .collect();
    (list, kv.mod_revision)
}

fn encode_list(list: &[u64]) -> Vec<u8> {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

fn range_op(key: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key,
            ..Default::default()
        })),
    }
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(PutRequest {
            key,
            value,
            ..Default::default()
        })),
    }
}

fn mod_revision_is(key: Vec<u8>, rev: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Mod as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(TargetUnion::ModRevision(rev)),
    }
}

fn value_is(key: Vec<u8>, value: u64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(TargetUnion::Value(value.to_string().into_bytes())),
    }
}

fn first_kv(resp: Option<&ResponseOp>) -> Option<&KeyValue> {
    match resp.and_then(|r| r.response.as_ref()) {
        Some(Response::ResponseRange(r)) => r.kvs.first(),
        _ => None,
    }
}

/// Runs one register client against `endpoint` until `stop`.
pub async fn register(
    id: usize,
    endpoint: String,
    keys: usize,
    seed: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> RegisterLog {
    let mut c = Client::new(id, &endpoint, seed, start);
    let mut log = RegisterLog::default();
    while !stop.load(Ordering::Relaxed) {
        let key = c.rng.below(keys as u64) as usize;
        match c.rng.below(10) {
            0..=2 => {
                if register_read(&mut c, &mut log, key).await.is_none() {
                    c.pause_after_failure().await;
                }
            }
            3 => register_write(&mut c, &mut log, key).await,
            // Read, then CAS from what was read.
            _ => match register_read(&mut c, &mut log, key).await {
                Some((value, rev)) => register_cas(&mut c, &mut log, key, value, rev).await,
                None => c.pause_after_failure().await,
            },
        }
        let think = c.rng.between(2, 15);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    log
}

async fn register_read(c: &mut Client, log: &mut RegisterLog, key: usize) -> Option<(Value, i64)> {
    let call = c.now();
    let got = c.range(register_key(key)).await;
    let ret = c.now();
    let Some(kv) = got else {
        // An unknown read constrains nothing; it is not recorded.
        return None;
    };
    let value = kv.as_ref().map(decode_value);
    let rev = kv.as_ref().map_or(0, |kv| kv.mod_revision);
    if let Some(v) = value {
        log.facts.push(RevisionFact {
            key,
            value: v,
            revision: rev,
            acknowledged_write: false,
        });
    }
    log.ops.push(Operation {
        client: c.id,
        key,
        input: Input::Read,
        output: Output::Read(value),
        call,
        ret: Some(ret),
    });
    Some((value, rev))
}

async fn register_write(c: &mut Client, log: &mut RegisterLog, key: usize) {
    let v = c.next_value();
    let call = c.now();
    let req = PutRequest {
        key: register_key(key),
        value: v.to_string().into_bytes(),
        ..Default::default()
    };
    let got = tokio::time::timeout(OP_TIMEOUT, c.kv.put(req)).await;
    let ret = c.now();
    let (output, ret) = match got {
        Ok(Ok(r)) => {
            let revision = r.into_inner().header.map_or(0, |h| h.revision);
            log.facts.push(RevisionFact {
                key,
                value: v,
                revision,
                acknowledged_write: true,
            });
            (Output::Written, Some(ret))
        }
        _ => (Output::Unknown, None),
    };
    log.ops.push(Operation {
        client: c.id,
        key,
        input: Input::Write(v),
        output,
        call,
        ret,
    });
    if ret.is_none() {
        c.pause_after_failure().await;
    }
}

/// CAS from what was just read: half the time on mod_revision (which, values being unique,
/// names exactly one value), otherwise on the value itself (only when the key exists: etcd
/// fails every value compare on a missing key).
async fn register_cas(c: &mut Client, log: &mut RegisterLog, key: usize, seen: Value, rev: i64) {
    let new = c.next_value();
    let compare = match seen {
        Some(v) if c.rng.percent(50) => value_is(register_key(key), v),
        _ => mod_revision_is(register_key(key), rev),
    };
    let req = TxnRequest {
        compare: vec![compare],
        success: vec![put_op(register_key(key), new.to_string().into_bytes())],
        failure: vec![range_op(register_key(key))],
    };
    let call = c.now();
    let got = c.txn(req).await;
    let ret = c.now();
    let (output, ret) = match got {
        Some((true, revision, _)) => {
            log.facts.push(RevisionFact {
                key,
                value: new,
                revision,
                acknowledged_write: true,
            });
            (Output::Swapped, Some(ret))
        }
        Some((false, _, responses)) => {
            let kv = first_kv(responses.first());
            if let Some(kv) = kv {
                log.facts.push(RevisionFact {
                    key,
                    value: decode_value(kv),
                    revision: kv.mod_revision,
                    acknowledged_write: false,
                });
            }
            (Output::NotSwapped(Some(kv.map(decode_value))), Some(ret))
        }
        None => (Output::Unknown, None),
    };
    log.ops.push(Operation {
        client: c.id,
        key,
        input: Input::Cas { expect: seen, new },
        output,
        call,
        ret,
    });
    if ret.is_none() {
        c.pause_after_failure().await;
    }
}

/// Runs one list-append client against `endpoint` until `stop`.
pub async fn append(
    id: usize,
    endpoint: String,
    keys: usize,
    seed: u64,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> AppendLog {
    let mut c = Client::new(id, &endpoint, seed, start);
    let mut log = AppendLog::default();
    while !stop.load(Ordering::Relaxed) {
        let first = c.rng.below(keys as u64) as usize;
        let mut chosen = vec![first];
        if c.rng.percent(40) {
            let second = c.rng.below(keys as u64) as usize;
            if second != first {
                chosen.push(second);
            }
        }
        if !append_once(&mut c, &mut log, &chosen).await {
            c.pause_after_failure().await;
        }
        let think = c.rng.between(2, 15);
        tokio::time::sleep(Duration::from_millis(think)).await;
    }
    log
}

/// One read-then-append round; false when a call failed.
async fn append_once(c: &mut Client, log: &mut AppendLog, keys: &[usize]) -> bool {
    let snapshot = TxnRequest {
        compare: Vec::new(),
        success: keys.iter().map(|k| range_op(list_key(*k))).collect(),
        failure: Vec::new(),
    };
    let call = c.now();
    let Some((_, _, responses)) = c.txn(snapshot).await else {
        return false;
    };
    let ret = c.now();
    let mut current = Vec::new();
    for (k, resp) in keys.iter().zip(&responses) {
        let (list, rev) = decode_list(first_kv(Some(resp)));
        log.reads.push(ListRead {
            client: c.id,
            key: *k,
            list: list.clone(),
            call,
            ret,
        });
        current.push((list, rev));
    }

    let element = c.next_value();
    let req = TxnRequest {
        compare: keys
            .iter()
            .zip(&current)
            .map(|(k, (_, rev))| mod_revision_is(list_key(*k), *rev))
            .collect(),
        success: keys
            .iter()
            .zip(&current)
            .map(|(k, (list, _))| {
                let mut next = list.clone();
                next.push(element);
                put_op(list_key(*k), encode_list(&next))
            })
            .collect(),
        failure: keys.iter().map(|k| range_op(list_key(*k))).collect(),
    };
    let call = c.now();
    let got = c.txn(req).await;
    let ret = c.now();
    let (outcome, ret) = match got {
        Some((true, revision, _)) => (TxnOutcome::Committed { revision }, Some(ret)),
        Some((false, _, responses)) => {
            for (k, resp) in keys.iter().zip(&responses) {
                let (list, _) = decode_list(first_kv(Some(resp)));
                log.reads.push(ListRead {
                    client: c.id,
                    key: *k,
                    list,
                    call,
                    ret,
                });
            }
            (TxnOutcome::Rejected, Some(ret))
        }
        None => (TxnOutcome::Unknown, None),
    };
    log.txns.push(AppendTxn {
        client: c.id,
        element,
        keys: keys.to_vec(),
        call,
        ret,
        outcome,
    });
    ret.is_some()
}

/// After the cluster healed: one linearizable read of every register key, retried until it
/// answers (up to `within`), recorded like any other read.
pub async fn final_register_reads(
    endpoint: &str,
    keys: usize,
    start: Instant,
    within: Duration,
) -> RegisterLog {
    let mut c = Client::new(FINAL_CLIENT, endpoint, 0, start);
    let mut log = RegisterLog::default();
    let deadline = Instant::now() + within;
    for key in 0..keys {
        while register_read(&mut c, &mut log, key).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "final read of reg/{key} never answered"
            );
            c.pause_after_failure().await;
        }
    }
    log
}

/// After the cluster healed: every list, read in one Txn, retried until it answers.
pub async fn final_lists(
    endpoint: &str,
    keys: usize,
    start: Instant,
    within: Duration,
) -> (BTreeMap<usize, Vec<u64>>, i64) {
    let mut c = Client::new(FINAL_CLIENT, endpoint, 0, start);
    let deadline = Instant::now() + within;
    let req = TxnRequest {
        compare: Vec::new(),
        success: (0..keys).map(|k| range_op(list_key(k))).collect(),
        failure: Vec::new(),
    };
    loop {
        if let Some((_, revision, responses)) = c.txn(req.clone()).await {
            let lists = responses
                .iter()
                .enumerate()
                .map(|(k, r)| (k, decode_list(first_kv(Some(r))).0))
                .collect();
            return (lists, revision);
        }
        assert!(
            Instant::now() < deadline,
            "final read of the lists never answered"
        );
        c.pause_after_failure().await;
    }
}

/// The client id of the final reads.
pub const FINAL_CLIENT: usize = 999;

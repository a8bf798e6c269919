//! Model test: random puts, deletes, txns, leases, compactions, reads at random revisions, history
//! replays, reopens and snapshot round trips, checked step by step against a plain
//! `BTreeMap`-of-history model of etcd's MVCC. Seeded, so a failure replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use cairn_mvcc::{Command, MvccError, Response};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response as OpResponse;
use cairn_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::{Event, KeyValue};

use crate::support::*;

/// splitmix64: tiny, seedable, good enough to drive a test.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn key(&mut self) -> Vec<u8> {
        format!("k{}", self.below(8)).into_bytes()
    }
}

/// One change of a key: a put (`Some`) or a tombstone (`None`) at (main, sub).
#[derive(Clone, Debug)]
struct Change {
    main: i64,
    sub: i64,
    kv: Option<KeyValue>,
}

#[derive(Clone, Debug)]
struct Model {
    keys: BTreeMap<Vec<u8>, Vec<Change>>,
    leases: BTreeMap<i64, i64>,
    current: i64,
    compact: i64,
}

impl Model {
    fn new() -> Self {
        Model {
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            current: 1,
            compact: -1,
        }
    }

    fn at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        self.keys
            .get(key)?
            .iter()
            .rev()
            .find(|c| c.main <= rev)?
            .kv
            .clone()
    }

    fn range(&self, keys: cairn_mvcc::KeyRange<'_>, rev: i64) -> Vec<KeyValue> {
        self.keys
            .keys()
            .filter(|k| keys.contains(k))
            .filter_map(|k| self.at(k, rev))
            .collect()
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64, main: i64, sub: i64) {
        let prev = self.at(key, main);
        let (create_revision, version) =
            prev.map_or((main, 1), |p| (p.create_revision, p.version + 1));
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision,
            mod_revision: main,
            version,
            value,
            lease,
        };
        self.keys.entry(key.to_vec()).or_default().push(Change {
            main,
            sub,
            kv: Some(kv),
        });
    }

    fn delete(&mut self, key: &[u8], main: i64, sub: i64) {
        self.keys.entry(key.to_vec()).or_default().push(Change {
            main,
            sub,
            kv: None,
        });
    }

    fn compact(&mut self, rev: i64) -> Result<(), MvccError> {
        if rev <= self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.current {
            return Err(MvccError::FutureRevision);
        }
        for changes in self.keys.values_mut() {
            if let Some(newest) = changes.iter().rposition(|c| c.main <= rev) {
                let keep_newest = changes[newest].kv.is_some();
                let drop_to = if keep_newest { newest } else { newest + 1 };
                changes.drain(..drop_to);
            }
        }
        self.keys.retain(|_, changes| !changes.is_empty());
        self.compact = rev;
        Ok(())
    }

    fn events(&self, from: i64) -> Vec<Event> {
        let mut all: Vec<(i64, i64, Event)> = Vec::new();
        for (key, changes) in &self.keys {
            for c in changes.iter().filter(|c| c.main >= from) {
                let (event_type, kv) = match &c.kv {
                    Some(kv) => (EventType::Put, kv.clone()),
                    None => (
                        EventType::Delete,
                        KeyValue {
                            key: key.clone(),
                            mod_revision: c.main,
                            ..KeyValue::default()
                        },
                    ),
                };
                let prev_kv = if event_type == EventType::Put && kv.version == 1
                    || c.main - 1 < self.compact
                {
                    None
                } else {
                    self.at(key, c.main - 1)
                };
                all.push((
                    c.main,
                    c.sub,
                    Event {
                        r#type: event_type as i32,
                        kv: Some(kv),
                        prev_kv,
                    },
                ));
            }
        }
        all.sort_by_key(|(main, sub, _)| (*main, *sub));
        all.into_iter().map(|(_, _, e)| e).collect()
    }
}

/// A write the model txn understands: distinct keys per txn, as etcd's edge validation demands.
enum TxnWrite {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

fn random_compare(rng: &mut Rng, model: &Model) -> (Compare, bool) {
    let key = rng.key();
    let current = model.at(&key, model.current);
    let target = match rng.below(3) {
        0 => CompareTarget::Version,
        1 => CompareTarget::Mod,
        _ => CompareTarget::Value,
    };
    let (union, actual) = match target {
        CompareTarget::Version => {
            let v = current.as_ref().map_or(0, |kv| kv.version);
            let want = (v + rng.below(3) as i64 - 1).max(0);
            (TargetUnion::Version(want), v.cmp(&want))
        }
        CompareTarget::Mod => {
            let m = current.as_ref().map_or(0, |kv| kv.mod_revision);
            let want = if rng.chance(50) {
                m
            } else {
                rng.below(model.current as u64 + 1) as i64
            };
            (TargetUnion::ModRevision(want), m.cmp(&want))
        }
        _ => {
            let want = format!("v{}", rng.below(4)).into_bytes();
            let ord = current
                .as_ref()
                .map_or(std::cmp::Ordering::Equal, |kv| kv.value.cmp(&want));
            (TargetUnion::Value(want), ord)
        }
    };
    let result = match rng.below(4) {
        0 => CompareResult::Equal,
        1 => CompareResult::NotEqual,
        2 => CompareResult::Greater,
        _ => CompareResult::Less,
    };
    let holds = if target == CompareTarget::Value && current.is_none() {
        false
    } else {
        match result {
            CompareResult::Equal => actual.is_eq(),
            CompareResult::NotEqual => actual.is_ne(),
            CompareResult::Greater => actual.is_gt(),
            CompareResult::Less => actual.is_lt(),
        }
    };
    let compare = Compare {
        result: result as i32,
        target: target as i32,
        key,
        range_end: Vec::new(),
        target_union: Some(union),
    };
    (compare, holds)
}

fn random_writes(rng: &mut Rng) -> Vec<TxnWrite> {
    let mut used = BTreeSet::new();
    let mut writes = Vec::new();
    for _ in 0..rng.below(4) {
        let key = rng.key();
        if !used.insert(key.clone()) {
            continue;
        }
        if rng.chance(70) {
            writes.push(TxnWrite::Put(
                key,
                format!("v{}", rng.below(4)).into_bytes(),
            ));
        } else {
            writes.push(TxnWrite::Delete(key));
        }
    }
    writes
}

fn to_ops(writes: &[TxnWrite], read: &[u8]) -> Vec<RequestOp> {
    let mut ops: Vec<RequestOp> = writes
        .iter()
        .map(|w| match w {
            TxnWrite::Put(k, v) => RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    key: k.clone(),
                    value: v.clone(),
                    ..PutRequest::default()
                })),
            },
            TxnWrite::Delete(k) => RequestOp {
                request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                    key: k.clone(),
                    ..DeleteRangeRequest::default()
                })),
            },
        })
        .collect();
    // A trailing read of everything sees the txn's own writes.
    ops.push(RequestOp {
        request: Some(Request::RequestRange(RangeRequest {
            key: read.to_vec(),
            range_end: vec![0],
            ..RangeRequest::default()
        })),
    });
    ops
}

/// Applies `cmd` to the model, returning what the store must answer (checked field by field
/// for the fields the model knows).
/// `txn_plan` carries, for a Txn, the branch the generator expects and that branch's writes.
fn model_apply(
    model: &mut Model,
    cmd: &Command,
    txn_plan: Option<&(bool, Vec<TxnWrite>)>,
) -> Result<Response, MvccError> {
    let main = model.current + 1;
    match cmd {
        Command::Put(p) => {
            if p.lease != 0 && !model.leases.contains_key(&p.lease) {
                return Err(MvccError::LeaseNotFound);
            }
            let prev = model.at(&p.key, model.current);
            model.put(&p.key, p.value.clone(), p.lease, main, 0);
            model.current = main;
            Ok(Response::Put(cairn_proto::etcdserverpb::PutResponse {
                header: Some(header(main)),
                prev_kv: if p.prev_kv { prev } else { None },
            }))
        }
        Command::DeleteRange(d) => {
            let keys = cairn_mvcc::KeyRange::new(&d.key, &d.range_end);
            let doomed = model.range(keys, model.current);
            for (sub, kv) in doomed.iter().enumerate() {
                model.delete(&kv.key, main, sub as i64);
            }
            if !doomed.is_empty() {
                model.current = main;
            }
            Ok(Response::DeleteRange(
                cairn_proto::etcdserverpb::DeleteRangeResponse {
                    header: Some(header(model.current)),
                    deleted: doomed.len() as i64,
                    prev_kvs: if d.prev_kv { doomed } else { Vec::new() },
                },
            ))
        }
        Command::Txn(t) => {
            let (succeeded, writes) = txn_plan.expect("model txns carry their plan");
            let succeeded = *succeeded;
            let ops = if succeeded { &t.success } else { &t.failure };
            let mut sub = 0;
            let mut responses = Vec::new();
            if succeeded {
                for w in writes {
                    match w {
                        TxnWrite::Put(k, v) => {
                            model.put(k, v.clone(), 0, main, sub);
                            sub += 1;
                        }
                        TxnWrite::Delete(k) => {
                            if model.at(k, main).is_some() {
                                model.delete(k, main, sub);
                                sub += 1;
                            }
                        }
                    }
                }
            }
            if sub > 0 {
                model.current = main;
            }
            // Only the final range response is compared: it must show the txn's writes.
            if let Some(RequestOp {
                request: Some(Request::RequestRange(r)),
            }) = ops.last()
            {
                let kvs = model.range(cairn_mvcc::KeyRange::new(&r.key, &r.range_end), i64::MAX);
                responses.push(kvs);
            }
            Ok(Response::Txn(cairn_proto::etcdserverpb::TxnResponse {
                header: Some(header(model.current)),
                succeeded,
                responses: responses
                    .into_iter()
                    .map(|kvs| cairn_proto::etcdserverpb::ResponseOp {
                        response: Some(OpResponse::ResponseRange(
                            cairn_proto::etcdserverpb::RangeResponse {
                                count: kvs.len() as i64,
                                kvs,
                                ..Default::default()
                            },
                        )),
                    })
                    .collect(),
            }))
        }
        Command::Compact(c) => {
            model.compact(c.revision)?;
            Ok(Response::Compact(
                cairn_proto::etcdserverpb::CompactionResponse {
                    header: Some(header(model.current)),
                },
            ))
        }
        Command::LeaseGrant { id, ttl } => {
            if model.leases.contains_key(id) {
                return Err(MvccError::LeaseExists);
            }
            model.leases.insert(*id, *ttl);
            Ok(Response::LeaseGrant(
                cairn_proto::etcdserverpb::LeaseGrantResponse {
                    header: Some(header(model.current)),
                    id: *id,
                    ttl: *ttl,
                    error: String::new(),
                },
            ))
        }
        Command::LeaseRevoke { id } => {
            if model.leases.remove(id).is_none() {
                return Err(MvccError::LeaseNotFound);
            }
            let attached: Vec<Vec<u8>> = model
                .keys
                .keys()
                .filter(|k| model.at(k, model.current).is_some_and(|kv| kv.lease == *id))
                .cloned()
                .collect();
            for (sub, key) in attached.iter().enumerate() {
                model.delete(key, main, sub as i64);
            }
            if !attached.is_empty() {
                model.current = main;
            }
            Ok(Response::LeaseRevoke(
                cairn_proto::etcdserverpb::LeaseRevokeResponse {
                    header: Some(header(model.current)),
                },
            ))
        }
    }
}

fn header(revision: i64) -> cairn_proto::etcdserverpb::ResponseHeader {
    cairn_proto::etcdserverpb::ResponseHeader {
        revision,
        ..Default::default()
    }
}

/// Compares a store response with the model's, on the fields the model tracks.
fn check_response(
    step: usize,
    got: &Result<Response, MvccError>,
    want: &Result<Response, MvccError>,
) {
    match (got, want) {
        (Ok(Response::Txn(g)), Ok(Response::Txn(w))) => {
            assert_eq!(g.header, w.header, "step {step}: txn header");
            assert_eq!(g.succeeded, w.succeeded, "step {step}: txn branch");
            let last = g.responses.last().and_then(|r| match r.response.as_ref()? {
                OpResponse::ResponseRange(rr) => Some(rr.kvs.clone()),
                _ => None,
            });
            let want_last = w.responses.last().and_then(|r| match r.response.as_ref()? {
                OpResponse::ResponseRange(rr) => Some(rr.kvs.clone()),
                _ => None,
            });
            assert_eq!(last, want_last, "step {step}: txn range");
        }
        _ => assert_eq!(got, want, "step {step}"),
    }
}

fn check_reads(step: usize, rng: &mut Rng, s: &TestStore, model: &Model) {
    assert_eq!(
        s.current_revision(),
        model.current,
        "step {step}: current revision"
    );
    assert_eq!(
        s.compact_revision(),
        model.compact,
        "step {step}: compact revision"
    );
    for _ in 0..3 {
        let rev = rng.below(model.current as u64 + 3) as i64 - 1;
        let (key, range_end) = match rng.below(3) {
            0 => (rng.key(), Vec::new()),
            1 => (rng.key(), vec![0]),
            _ => (rng.key(), rng.key()),
        };
        let limit = rng.below(4) as i64;
        let req = RangeRequest {
            key: key.clone(),
            range_end: range_end.clone(),
            revision: rev,
            limit,
            ..Default::default()
        };
        let got = s.range(&req);
        let resolved = if rev <= 0 { model.current } else { rev };
        if rev > model.current {
            assert_eq!(
                got,
                Err(MvccError::FutureRevision),
                "step {step}: future read {rev}"
            );
            continue;
        }
        if resolved < model.compact {
            assert_eq!(
                got,
                Err(MvccError::Compacted),
                "step {step}: compacted read {rev}"
            );
            continue;
        }
        let all = model.range(cairn_mvcc::KeyRange::new(&key, &range_end), resolved);
        let got = got.unwrap_or_else(|e| panic!("step {step}: read at {rev}: {e}"));
        let mut want = all.clone();
        let mut more = false;
        if limit > 0 && want.len() > limit as usize {
            want.truncate(limit as usize);
            more = true;
        }
        assert_eq!(got.kvs, want, "step {step}: range {req:?}");
        assert_eq!(
            (got.count, got.more),
            (all.len() as i64, more),
            "step {step}: count/more"
        );
        assert_eq!(
            got.header.unwrap().revision,
            model.current,
            "step {step}: header"
        );
    }
    if rng.chance(20) {
        let first = model.compact.max(1);
        let from = first + rng.below((model.current + 2 - first) as u64) as i64;
        let replay = s.events(from, b"\0", b"\0", 0).unwrap();
        assert_eq!(
            replay.events,
            model.events(from),
            "step {step}: history replay from {from}"
        );
    }
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let mut s = store();
    let mut model = Model::new();
    let mut next_lease = 1;
    let mut step = 0;
    while step < steps {
        let mut batch = s.begin().unwrap();
        let mut expected_events = Vec::new();
        for _ in 0..1 + rng.below(4) {
            step += 1;
            let mut txn_plan = None;
            let cmd = match rng.below(100) {
                0..=39 => {
                    let lease = match rng.below(10) {
                        0..=5 => 0,
                        6..=8 => model.leases.keys().next().copied().unwrap_or(0),
                        _ => 999, // never granted
                    };
                    Command::Put(PutRequest {
                        key: rng.key(),
                        value: format!("v{}", rng.below(4)).into_bytes(),
                        lease,
                        prev_kv: rng.chance(50),
                        ..PutRequest::default()
                    })
                }
                40..=54 => {
                    let key = rng.key();
                    let range_end = match rng.below(3) {
                        0 => Vec::new(),
                        1 => vec![0],
                        _ => rng.key(),
                    };
                    Command::DeleteRange(DeleteRangeRequest {
                        key,
                        range_end,
                        prev_kv: rng.chance(50),
                    })
                }
                55..=79 => {
                    let (compare, holds) = random_compare(&mut rng, &model);
                    let writes = random_writes(&mut rng);
                    let read = rng.key();
                    let ops = to_ops(&writes, &read);
                    let failure = to_ops(&[], &read);
                    txn_plan = Some((holds, if holds { writes } else { Vec::new() }));
                    Command::Txn(TxnRequest {
                        compare: vec![compare],
                        success: ops,
                        failure,
                    })
                }
                80..=81 => {
                    let revision = model.compact.max(0) - 1
                        + rng.below((model.current - model.compact.max(0)) as u64 + 3) as i64;
                    Command::Compact(CompactionRequest {
                        revision,
                        physical: false,
                    })
                }
                82..=90 => {
                    let id = if rng.chance(80) { next_lease } else { 1 };
                    next_lease += 1;
                    Command::LeaseGrant {
                        id,
                        ttl: rng.below(100) as i64,
                    }
                }
                _ => {
                    let id = if rng.chance(70) {
                        model.leases.keys().next().copied().unwrap_or(12345)
                    } else {
                        12345
                    };
                    Command::LeaseRevoke { id }
                }
            };
            let start = model.current;
            let want = model_apply(&mut model, &cmd, txn_plan.as_ref());
            if model.current > start {
                // This command's events: nothing newer exists yet and nothing compacted them.
                expected_events.extend(model.events(start + 1));
            }
            let got = batch.apply(&cmd);
            check_response(step, &got, &want);
        }
        let durable = rng.chance(10);
        let events = batch.commit(durable).unwrap();
        // Live events carry the state before each change as prev_kv; with distinct keys per txn
        // that is the key at revision - 1, as the model (and etcd's watch server) computes it.
        assert_eq!(events, expected_events, "step {step}: committed events");

        check_reads(step, &mut rng, &s, &model);
        if durable && rng.chance(30) {
            s.reopen();
            check_reads(step, &mut rng, &s, &model);
        }
        if rng.chance(2) {
            let image = s.snapshot().unwrap().image;
            let copy = store();
            copy.install_snapshot(&image).unwrap();
            assert_eq!(
                copy.hash_kv(0).unwrap(),
                s.hash_kv(0).unwrap(),
                "step {step}: snapshot hash"
            );
            let all = range("\0", FROM);
            assert_eq!(
                copy.range(&all).unwrap(),
                s.range(&all).unwrap(),
                "step {step}: snapshot data"
            );
            assert_eq!(copy.leases().unwrap(), s.leases().unwrap());
        }
    }
}

#[test]
fn store_matches_the_model_seed_1() {
    run(1, 2500);
}

#[test]
fn store_matches_the_model_seed_2() {
    run(0xDEAD_BEEF, 2500);
}

#[test]
fn store_matches_the_model_seed_3() {
    run(42, 2500);
}

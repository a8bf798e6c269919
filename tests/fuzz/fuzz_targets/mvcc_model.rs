//! Fuzz target `mvcc_model`: `cairn-mvcc` against a plain model of etcd's MVCC.
//!
//! The input is a list of write batches. Each batch applies commands — Put, DeleteRange, Txn
//! (compares of every target, nested Txns, Ranges that see the Txn's own writes), Compact,
//! LeaseGrant, LeaseRevoke — interleaved with reads of the last commit (Range at any revision
//! with limits, sorts and filters; history replays), and ends with a commit (durable or not), an
//! abort, a commit then a close and reopen of the database, or a commit then a snapshot installed
//! into a second store. The model is a `BTreeMap` from key to its list of changes.
//!
//! Checked: every command's full response or etcd error; the watch events each commit returns;
//! every read; after an abort nothing changed; after a reopen or snapshot install every retained
//! revision reads the same, leases and their keys included; and after every batch, HashKV at
//! the revisions around the compact and current ones (and the errors outside them) equals a
//! hash the model computes from its own history by etcd's definition.
//!
//! Txns are generated to pass the edge validation that precedes the store in production (no
//! key put twice, no key put inside a range the same Txn deletes): the store relies on it.

#![no_main]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use arbitrary::Arbitrary;
use cairn_mvcc::{Command, Mvcc, MvccError, Response};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response as OpResponse;
use cairn_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse,
    LeaseGrantResponse, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::{Event, KeyValue};
use libfuzzer_sys::fuzz_target;
use prost::Message;

// ---------------------------------------------------------------------------------------------
// Input.

#[derive(Arbitrary, Debug)]
struct Input {
    batches: Vec<Batch>,
}

#[derive(Arbitrary, Debug)]
struct Batch {
    steps: Vec<Step>,
    end: BatchEnd,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Apply(Cmd),
    Range(RangeSpec),
    Events {
        from: Rev,
        key: Key,
        end: End,
        limit: u8,
    },
}

#[derive(Arbitrary, Debug)]
enum BatchEnd {
    Commit,
    CommitDurably,
    Abort,
    Reopen,
    Snapshot,
}

#[derive(Arbitrary, Debug)]
enum Cmd {
    Put(PutSpec),
    Delete { key: Key, end: End, prev_kv: bool },
    Txn(TxnSpec),
    Compact(Rev),
    Grant { id: LeaseId, ttl: i8 },
    Revoke(LeaseId),
}

/// Keys from a small set, so that commands collide; a few raw ones too.
#[derive(Arbitrary, Debug, Clone)]
enum Key {
    Known(u8),
    Raw(u8, u8),
}

const KEYS: [&[u8]; 7] = [b"a", b"ab", b"abc", b"b", b"c", b"\x00", b"\xff\xff"];

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Known(k) => KEYS[usize::from(*k) % KEYS.len()].to_vec(),
            Key::Raw(a, b) => vec![*a, *b],
        }
    }
}

/// etcd's `range_end`: none (one key), `"\0"` (every key from `key` on), or a bound.
#[derive(Arbitrary, Debug, Clone)]
enum End {
    Single,
    FromKey,
    Prefix,
    To(Key),
}

impl End {
    fn bytes(&self, key: &[u8]) -> Vec<u8> {
        match self {
            End::Single => Vec::new(),
            End::FromKey => vec![0],
            End::Prefix => {
                let mut end = key.to_vec();
                while let Some(last) = end.pop() {
                    if last < 0xff {
                        end.push(last + 1);
                        return end;
                    }
                }
                vec![0]
            }
            End::To(k) => k.bytes(),
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum LeaseId {
    None,
    Small(u8),
    Raw(i64),
}

impl LeaseId {
    fn get(self) -> i64 {
        match self {
            LeaseId::None => 0,
            LeaseId::Small(k) => 1 + i64::from(k % 3),
            LeaseId::Raw(id) => id,
        }
    }
}

/// A revision relative to the store's, so that the interesting ones are easy to hit.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Rev {
    Zero,
    Back(u8),
    AboveCompact(u8),
    Future(u8),
    Raw(i8),
}

impl Rev {
    fn get(self, current: i64, compact: i64) -> i64 {
        match self {
            Rev::Zero => 0,
            Rev::Back(k) => current - i64::from(k % 8),
            Rev::AboveCompact(k) => compact + i64::from(k % 4) - 1,
            Rev::Future(k) => current + 1 + i64::from(k % 4),
            Rev::Raw(r) => i64::from(r),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct PutSpec {
    key: Key,
    value: Vec<u8>,
    lease: LeaseId,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl PutSpec {
    fn request(&self) -> PutRequest {
        // As the edge requires: no value with ignore_value, no lease with ignore_lease.
        PutRequest {
            key: self.key.bytes(),
            value: if self.ignore_value {
                Vec::new()
            } else {
                self.value.iter().copied().take(8).collect()
            },
            lease: if self.ignore_lease {
                0
            } else {
                self.lease.get()
            },
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct RangeSpec {
    key: Key,
    end: End,
    rev: Rev,
    limit: Limit,
    sort_order: u8,
    sort_target: u8,
    count_only: bool,
    keys_only: bool,
    filters: Option<[Rev; 4]>,
}

impl RangeSpec {
    fn request(&self, current: i64, compact: i64) -> RangeRequest {
        let key = self.key.bytes();
        let (min_mod, max_mod, min_create, max_create) = match self.filters {
            Some([a, b, c, d]) => (
                a.get(current, compact).max(0),
                b.get(current, compact).max(0),
                c.get(current, compact).max(0),
                d.get(current, compact).max(0),
            ),
            None => (0, 0, 0, 0),
        };
        RangeRequest {
            range_end: self.end.bytes(&key),
            key,
            limit: self.limit.get(),
            revision: self.rev.get(current, compact),
            // Only valid enum values get past the edge.
            sort_order: i32::from(self.sort_order % 3),
            sort_target: i32::from(self.sort_target % 5),
            serializable: false,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: min_mod,
            max_mod_revision: max_mod,
            min_create_revision: min_create,
            max_create_revision: max_create,
        }
    }
}

/// Range limits: mostly none or just around the number of keys in range.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Limit {
    None,
    Small(u8),
    Raw(i8),
}

impl Limit {
    fn get(self) -> i64 {
        match self {
            Limit::None => 0,
            Limit::Small(k) => 1 + i64::from(k % 4),
            Limit::Raw(n) => i64::from(n),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct TxnSpec {
    compare: Vec<CompareSpec>,
    success: Vec<OpSpec>,
    failure: Vec<OpSpec>,
}

#[derive(Arbitrary, Debug, Clone)]
struct CompareSpec {
    key: Key,
    end: Option<End>,
    target: i8,
    result: i8,
    union: UnionSpec,
}

#[derive(Arbitrary, Debug, Clone)]
enum UnionSpec {
    None,
    Version(Rev),
    Create(Rev),
    Mod(Rev),
    Value(Vec<u8>),
    Lease(LeaseId),
}

#[derive(Arbitrary, Debug, Clone)]
enum OpSpec {
    Range(RangeSpec),
    Put(PutSpec),
    Delete { key: Key, end: End, prev_kv: bool },
    Txn(Box<TxnSpec>),
}

impl TxnSpec {
    fn request(&self, current: i64, compact: i64, depth: usize) -> TxnRequest {
        let compare = self
            .compare
            .iter()
            .take(4)
            .map(|c| {
                let key = c.key.bytes();
                Compare {
                    range_end: c.end.as_ref().map_or(Vec::new(), |e| e.bytes(&key)),
                    key,
                    // Mostly the five targets and four results; sometimes a value no enum has.
                    target: if c.target >= 0 {
                        i32::from(c.target % 5)
                    } else {
                        i32::from(c.target)
                    },
                    result: if c.result >= 0 {
                        i32::from(c.result % 4)
                    } else {
                        i32::from(c.result)
                    },
                    target_union: match &c.union {
                        UnionSpec::None => None,
                        UnionSpec::Version(r) => {
                            Some(TargetUnion::Version(r.get(current, compact).max(0) % 4))
                        }
                        UnionSpec::Create(r) => {
                            Some(TargetUnion::CreateRevision(r.get(current, compact)))
                        }
                        UnionSpec::Mod(r) => {
                            Some(TargetUnion::ModRevision(r.get(current, compact)))
                        }
                        UnionSpec::Value(v) => {
                            Some(TargetUnion::Value(v.iter().copied().take(4).collect()))
                        }
                        UnionSpec::Lease(l) => Some(TargetUnion::Lease(l.get())),
                    },
                }
            })
            .collect();
        let ops = |specs: &[OpSpec]| -> Vec<RequestOp> {
            specs
                .iter()
                .take(4)
                .filter_map(|op| {
                    let request = match op {
                        OpSpec::Range(r) => Request::RequestRange(r.request(current, compact)),
                        OpSpec::Put(p) => Request::RequestPut(p.request()),
                        OpSpec::Delete { key, end, prev_kv } => {
                            let key = key.bytes();
                            Request::RequestDeleteRange(DeleteRangeRequest {
                                range_end: end.bytes(&key),
                                key,
                                prev_kv: *prev_kv,
                            })
                        }
                        OpSpec::Txn(t) if depth < 2 => {
                            Request::RequestTxn(t.request(current, compact, depth + 1))
                        }
                        OpSpec::Txn(_) => return None,
                    };
                    Some(RequestOp {
                        request: Some(request),
                    })
                })
                .collect()
        };
        TxnRequest {
            compare,
            success: ops(&self.success),
            failure: ops(&self.failure),
        }
    }
}

/// Makes a Txn pass etcd's duplicate-key rule, more strictly than the rule itself: no key is put
/// twice anywhere in the request, and no put falls in any range it deletes anywhere.
fn make_valid(txn: &mut TxnRequest) {
    fn deletes(ops: &[RequestOp], out: &mut Vec<(Vec<u8>, Vec<u8>)>) {
        for op in ops {
            match &op.request {
                Some(Request::RequestDeleteRange(d)) => {
                    out.push((d.key.clone(), d.range_end.clone()))
                }
                Some(Request::RequestTxn(t)) => {
                    deletes(&t.success, out);
                    deletes(&t.failure, out);
                }
                _ => {}
            }
        }
    }
    fn prune(ops: &mut Vec<RequestOp>, dels: &[(Vec<u8>, Vec<u8>)], seen: &mut BTreeSet<Vec<u8>>) {
        ops.retain_mut(|op| match &mut op.request {
            Some(Request::RequestPut(p)) => {
                !dels.iter().any(|(k, e)| in_range(&p.key, k, e)) && seen.insert(p.key.clone())
            }
            Some(Request::RequestTxn(t)) => {
                prune(&mut t.success, dels, seen);
                prune(&mut t.failure, dels, seen);
                true
            }
            _ => true,
        });
    }
    let mut dels = Vec::new();
    deletes(&txn.success, &mut dels);
    deletes(&txn.failure, &mut dels);
    let mut seen = BTreeSet::new();
    prune(&mut txn.success, &dels, &mut seen);
    prune(&mut txn.failure, &dels, &mut seen);
}

/// etcd's `key` / `range_end` rule, written out here independently of `cairn_mvcc::KeyRange`.
fn in_range(k: &[u8], key: &[u8], range_end: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

// ---------------------------------------------------------------------------------------------
// The model.

#[derive(Debug, Clone)]
struct Change {
    main: i64,
    /// Position among the changes of revision `main` (a Txn's ops, a revoke's keys).
    sub: i64,
    kv: Option<KeyValue>,
}

#[derive(Debug, Clone)]
struct Model {
    keys: BTreeMap<Vec<u8>, Vec<Change>>,
    leases: BTreeMap<i64, i64>,
    current: i64,
    compact: i64,
}

fn header(revision: i64) -> Option<ResponseHeader> {
    Some(ResponseHeader {
        revision,
        ..ResponseHeader::default()
    })
}

impl Model {
    fn at(&self, key: &[u8], rev: i64) -> Option<KeyValue> {
        self.keys
            .get(key)?
            .iter()
            .rev()
            .find(|c| c.main <= rev)?
            .kv
            .clone()
    }

    fn live(&self, key: &[u8]) -> Option<KeyValue> {
        self.keys.get(key)?.last()?.kv.clone()
    }

    fn in_range_at(&self, key: &[u8], end: &[u8], rev: i64) -> Vec<KeyValue> {
        self.keys
            .keys()
            .filter(|k| in_range(k, key, end))
            .filter_map(|k| self.at(k, rev))
            .collect()
    }

    fn live_in_range(&self, key: &[u8], end: &[u8]) -> Vec<KeyValue> {
        self.keys
            .keys()
            .filter(|k| in_range(k, key, end))
            .filter_map(|k| self.live(k))
            .collect()
    }

    /// etcd's read revision rule, for a view at `current`.
    fn resolve(&self, requested: i64, current: i64) -> Result<i64, MvccError> {
        if requested > current {
            return Err(MvccError::FutureRevision);
        }
        let rev = if requested <= 0 { current } else { requested };
        if rev < self.compact {
            return Err(MvccError::Compacted);
        }
        Ok(rev)
    }

    /// A Range as etcd 3.5 answers it, from a view at revision `current`.
    fn range(&self, r: &RangeRequest, current: i64) -> Result<RangeResponse, MvccError> {
        let rev = self.resolve(r.revision, current)?;
        let all = self.in_range_at(&r.key, &r.range_end, rev);
        let count = all.len() as i64;
        if r.count_only {
            return Ok(RangeResponse {
                header: header(current),
                kvs: Vec::new(),
                more: false,
                count,
            });
        }
        let mut kvs: Vec<KeyValue> = all
            .into_iter()
            .filter(|kv| {
                (r.min_mod_revision == 0 || kv.mod_revision >= r.min_mod_revision)
                    && (r.max_mod_revision == 0 || kv.mod_revision <= r.max_mod_revision)
                    && (r.min_create_revision == 0 || kv.create_revision >= r.min_create_revision)
                    && (r.max_create_revision == 0 || kv.create_revision <= r.max_create_revision)
            })
            .collect();
        let target = SortTarget::try_from(r.sort_target).unwrap();
        let mut order = SortOrder::try_from(r.sort_order).unwrap();
        if order == SortOrder::None && target != SortTarget::Key {
            order = SortOrder::Ascend;
        }
        let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
            match target {
                SortTarget::Key => a.key.cmp(&b.key),
                SortTarget::Version => a.version.cmp(&b.version),
                SortTarget::Create => a.create_revision.cmp(&b.create_revision),
                SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
                SortTarget::Value => a.value.cmp(&b.value),
            }
        };
        match order {
            SortOrder::None => {}
            SortOrder::Ascend => kvs.sort_by(by),
            SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        }
        let mut more = false;
        if r.limit > 0 && kvs.len() as i64 > r.limit {
            kvs.truncate(r.limit as usize);
            more = true;
        }
        if r.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        Ok(RangeResponse {
            header: header(current),
            kvs,
            more,
            count,
        })
    }

    fn compact(&mut self, rev: i64) {
        for changes in self.keys.values_mut() {
            if let Some(newest) = changes.iter().rposition(|c| c.main <= rev) {
                let drop_to = if changes[newest].kv.is_some() {
                    newest
                } else {
                    newest + 1
                };
                changes.drain(..drop_to);
            }
        }
        self.keys.retain(|_, changes| !changes.is_empty());
        self.compact = rev;
    }

    /// HashKV at `rev`, computed from the model's history by etcd 3.5's definition
    /// (`unsafeHashByRev`): CRC-32C over `key`, then each change up to `rev` in (main, sub)
    /// order as its backend key (main BE, `_`, sub BE, `t` for a tombstone) and its marshalled
    /// `KeyValue` (the key alone for a tombstone). Changes at or below the compact revision
    /// count only when they are their key's newest at `rev` and a put — unless no key at all
    /// has a put as its newest change at `rev` (etcd's empty-keep quirk).
    fn hash_kv(&self, rev: i64) -> Result<cairn_mvcc::KvHash, MvccError> {
        if rev > 0 && rev < self.compact {
            return Err(MvccError::Compacted);
        }
        if rev > self.current {
            return Err(MvccError::FutureRevision);
        }
        let rev = if rev == 0 { self.current } else { rev };
        let mut crc = Crc32c::default();
        crc.update(b"key");
        if rev >= 1 {
            let mut keep = BTreeSet::new();
            let mut any_put = false;
            for changes in self.keys.values() {
                if let Some(newest) = changes.iter().rev().find(|c| c.main <= rev) {
                    if newest.kv.is_some() {
                        any_put = true;
                        keep.insert((newest.main, newest.sub));
                    }
                }
            }
            let mut history: Vec<(i64, i64, Vec<u8>)> = Vec::new();
            for (key, changes) in &self.keys {
                for c in changes.iter().filter(|c| c.main <= rev) {
                    if c.main <= self.compact && any_put && !keep.contains(&(c.main, c.sub)) {
                        continue;
                    }
                    let mut record = Vec::with_capacity(18);
                    record.extend_from_slice(&(c.main as u64).to_be_bytes());
                    record.push(b'_');
                    record.extend_from_slice(&(c.sub as u64).to_be_bytes());
                    let kv = match &c.kv {
                        Some(kv) => kv.encode_to_vec(),
                        None => {
                            record.push(b't');
                            KeyValue {
                                key: key.clone(),
                                ..KeyValue::default()
                            }
                            .encode_to_vec()
                        }
                    };
                    record.extend_from_slice(&kv);
                    history.push((c.main, c.sub, record));
                }
            }
            history.sort();
            for (_, _, record) in &history {
                crc.update(record);
            }
        }
        Ok(cairn_mvcc::KvHash {
            hash: !crc.0,
            compact_revision: self.compact,
            hash_revision: rev,
            current_revision: self.current,
        })
    }

    /// History replay from `from`, as a watcher catching up sees it.
    fn events(
        &self,
        from: i64,
        key: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<(Vec<Event>, i64), MvccError> {
        let from = from.max(1);
        if from < self.compact {
            return Err(MvccError::Compacted);
        }
        if from > self.current {
            return Ok((Vec::new(), from));
        }
        let mut by_rev: BTreeMap<i64, Vec<Event>> = BTreeMap::new();
        for (k, changes) in self.keys.iter().filter(|(k, _)| in_range(k, key, end)) {
            for c in changes.iter().filter(|c| c.main >= from) {
                let (event_type, kv) = match &c.kv {
                    Some(kv) => (EventType::Put, kv.clone()),
                    None => (
                        EventType::Delete,
                        KeyValue {
                            key: k.clone(),
                            mod_revision: c.main,
                            ..KeyValue::default()
                        },
                    ),
                };
                let before = c.main - 1;
                let prev_kv = if event_type == EventType::Put && kv.version == 1
                    || before < self.compact
                    || before < 1
                {
                    None
                } else {
                    self.at(k, before)
                };
                by_rev.entry(c.main).or_default().push(Event {
                    r#type: event_type as i32,
                    kv: Some(kv),
                    prev_kv,
                });
            }
        }
        // Changes of one revision are in key order here: each key changes once per revision,
        // and a revision's changes are made in key order or, in a Txn, in op order — which the
        // store replays by sub revision. Only the set per revision is compared.
        let mut events = Vec::new();
        for (rev, group) in by_rev {
            if limit > 0 && events.len() >= limit {
                return Ok((events, rev));
            }
            events.extend(group);
        }
        Ok((events, self.current + 1))
    }
}

/// One command being applied to the model: writes take `main`, in order.
struct Apply<'m> {
    model: &'m mut Model,
    begin: i64,
    /// Sub revision of the next change.
    sub: i64,
    changed: bool,
    events: Vec<Event>,
}

impl Apply<'_> {
    fn main(&self) -> i64 {
        self.begin + 1
    }

    fn rev(&self) -> i64 {
        if self.changed {
            self.main()
        } else {
            self.begin
        }
    }

    fn put(&mut self, p: &PutRequest) -> PutResponse {
        let prev = self.model.live(&p.key);
        let main = self.main();
        let value = match &prev {
            Some(prev) if p.ignore_value => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match &prev {
            Some(prev) if p.ignore_lease => prev.lease,
            _ => p.lease,
        };
        let (create_revision, version) = prev
            .as_ref()
            .map_or((main, 1), |prev| (prev.create_revision, prev.version + 1));
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision,
            mod_revision: main,
            version,
            value,
            lease,
        };
        self.model
            .keys
            .entry(p.key.clone())
            .or_default()
            .push(Change {
                main,
                sub: self.sub,
                kv: Some(kv.clone()),
            });
        self.sub += 1;
        self.changed = true;
        self.events.push(Event {
            r#type: EventType::Put as i32,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        PutResponse {
            header: header(main),
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn delete_keys(&mut self, doomed: &[KeyValue]) {
        let main = self.main();
        for prev in doomed {
            self.model
                .keys
                .entry(prev.key.clone())
                .or_default()
                .push(Change {
                    main,
                    sub: self.sub,
                    kv: None,
                });
            self.sub += 1;
            self.changed = true;
            self.events.push(Event {
                r#type: EventType::Delete as i32,
                kv: Some(KeyValue {
                    key: prev.key.clone(),
                    mod_revision: main,
                    ..KeyValue::default()
                }),
                prev_kv: Some(prev.clone()),
            });
        }
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let doomed = self.model.live_in_range(&d.key, &d.range_end);
        self.delete_keys(&doomed);
        DeleteRangeResponse {
            header: header(self.rev()),
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv { doomed } else { Vec::new() },
        }
    }

    /// etcd's `compareKV` / `applyCompare`, against the state before the Txn.
    fn compare_holds(&self, c: &Compare) -> bool {
        let kvs = self.model.live_in_range(&c.key, &c.range_end);
        if kvs.is_empty() {
            return c.target != CompareTarget::Value as i32 && compare_kv(c, &KeyValue::default());
        }
        kvs.iter().all(|kv| compare_kv(c, kv))
    }

    /// The chosen branch of `t` and, recursively, of the Txns on it.
    fn path(&self, t: &TxnRequest) -> Path {
        let succeeded = t.compare.iter().all(|c| self.compare_holds(c));
        let ops = if succeeded { &t.success } else { &t.failure };
        let nested = ops
            .iter()
            .filter_map(|op| match &op.request {
                Some(Request::RequestTxn(n)) => Some(self.path(n)),
                _ => None,
            })
            .collect();
        Path { succeeded, nested }
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, MvccError> {
        let path = self.path(t);
        // etcd's checkRequests: puts first (key, then lease), then explicit range revisions.
        let mut puts = Vec::new();
        let mut ranges = Vec::new();
        path_ops(t, &path, &mut |op| match &op.request {
            Some(Request::RequestPut(p)) => puts.push(p.clone()),
            Some(Request::RequestRange(r)) => ranges.push(r.clone()),
            _ => {}
        });
        for p in &puts {
            if (p.ignore_value || p.ignore_lease) && self.model.live(&p.key).is_none() {
                return Err(MvccError::KeyNotFound);
            }
            if p.lease != 0 && !self.model.leases.contains_key(&p.lease) {
                return Err(MvccError::LeaseNotFound);
            }
        }
        for r in &ranges {
            if r.revision != 0 && r.revision > self.begin {
                return Err(MvccError::FutureRevision);
            }
            if r.revision != 0 && r.revision < self.model.compact {
                return Err(MvccError::Compacted);
            }
        }
        let mut resp = self.execute(t, &path)?;
        resp.header = header(self.rev());
        Ok(resp)
    }

    fn execute(&mut self, t: &TxnRequest, path: &Path) -> Result<TxnResponse, MvccError> {
        let ops = if path.succeeded {
            &t.success
        } else {
            &t.failure
        };
        let mut nested = path.nested.iter();
        let mut responses = Vec::new();
        for op in ops {
            let response = match &op.request {
                Some(Request::RequestRange(r)) => {
                    let current = self.rev();
                    OpResponse::ResponseRange(self.model.range(r, current)?)
                }
                Some(Request::RequestPut(p)) => OpResponse::ResponsePut(self.put(p)),
                Some(Request::RequestDeleteRange(d)) => {
                    OpResponse::ResponseDeleteRange(self.delete(d))
                }
                Some(Request::RequestTxn(n)) => {
                    let sub = nested.next().unwrap();
                    let mut resp = self.execute(n, sub)?;
                    resp.header = Some(ResponseHeader::default());
                    OpResponse::ResponseTxn(resp)
                }
                None => unreachable!("generated ops always carry a request"),
            };
            responses.push(ResponseOp {
                response: Some(response),
            });
        }
        Ok(TxnResponse {
            header: None,
            succeeded: path.succeeded,
            responses,
        })
    }
}

struct Path {
    succeeded: bool,
    nested: Vec<Path>,
}

fn path_ops(t: &TxnRequest, path: &Path, visit: &mut dyn FnMut(&RequestOp)) {
    let ops = if path.succeeded {
        &t.success
    } else {
        &t.failure
    };
    let mut nested = path.nested.iter();
    for op in ops {
        match &op.request {
            Some(Request::RequestTxn(n)) => path_ops(n, nested.next().unwrap(), visit),
            _ => visit(op),
        }
    }
}

/// etcd's `compareKV`: a union of another kind compares as zero / empty; an unknown target
/// compares equal; an unknown result holds.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let union = c.target_union.as_ref();
    let number = |pick: fn(&TargetUnion) -> Option<i64>| union.and_then(pick).unwrap_or(0);
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let want: &[u8] = match union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(want)
        }
        Ok(CompareTarget::Version) => kv.version.cmp(&number(|u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&number(|u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&number(|u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&number(|u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord.is_eq(),
        Ok(CompareResult::NotEqual) => ord.is_ne(),
        Ok(CompareResult::Greater) => ord.is_gt(),
        Ok(CompareResult::Less) => ord.is_lt(),
        Err(_) => true,
    }
}

/// Applies `cmd` to `model`: the answer the store must give and the events it must emit. On an
/// error the model is unchanged.
fn model_apply(model: &mut Model, cmd: &Command) -> (Result<Response, MvccError>, Vec<Event>) {
    let saved = model.clone();
    let begin = model.current;
    let mut a = Apply {
        model,
        begin,
        sub: 0,
        changed: false,
        events: Vec::new(),
    };
    let result = match cmd {
        Command::Put(p) => {
            if p.lease != 0 && !a.model.leases.contains_key(&p.lease) {
                Err(MvccError::LeaseNotFound)
            } else if (p.ignore_value || p.ignore_lease) && a.model.live(&p.key).is_none() {
                Err(MvccError::KeyNotFound)
            } else {
                Ok(Response::Put(a.put(p)))
            }
        }
        Command::DeleteRange(d) => Ok(Response::DeleteRange(a.delete(d))),
        Command::Txn(t) => a.txn(t).map(Response::Txn),
        Command::Compact(c) => {
            if c.revision <= a.model.compact {
                Err(MvccError::Compacted)
            } else if c.revision > a.model.current {
                Err(MvccError::FutureRevision)
            } else {
                a.model.compact(c.revision);
                Ok(Response::Compact(CompactionResponse {
                    header: header(a.model.current),
                }))
            }
        }
        Command::LeaseGrant { id, ttl } => {
            if *id == 0 {
                Err(MvccError::LeaseNotFound)
            } else if a.model.leases.contains_key(id) {
                Err(MvccError::LeaseExists)
            } else {
                a.model.leases.insert(*id, *ttl);
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    header: header(a.model.current),
                    id: *id,
                    ttl: *ttl,
                    error: String::new(),
                }))
            }
        }
        Command::LeaseRevoke { id } => {
            if a.model.leases.remove(id).is_none() {
                Err(MvccError::LeaseNotFound)
            } else {
                let attached: Vec<KeyValue> = a
                    .model
                    .keys
                    .keys()
                    .filter_map(|k| a.model.live(k))
                    .filter(|kv| kv.lease == *id)
                    .collect();
                a.delete_keys(&attached);
                Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                    header: header(a.rev()),
                }))
            }
        }
    };
    let (changed, main, events) = (a.changed, a.main(), a.events);
    match result {
        Ok(response) => {
            if changed {
                model.current = main;
            }
            (Ok(response), events)
        }
        Err(e) => {
            *model = saved;
            (Err(e), Vec::new())
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Running an input.

fn scratch_dir() -> tempfile::TempDir {
    // redb fsyncs durable commits: on tmpfs that costs nothing.
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("cairn-fuzz-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("temporary directory")
}

fn command(cmd: &Cmd, model: &Model) -> Command {
    match cmd {
        Cmd::Put(p) => Command::Put(p.request()),
        Cmd::Delete { key, end, prev_kv } => {
            let key = key.bytes();
            Command::DeleteRange(DeleteRangeRequest {
                range_end: end.bytes(&key),
                key,
                prev_kv: *prev_kv,
            })
        }
        Cmd::Txn(t) => {
            let mut req = t.request(model.current, model.compact, 0);
            make_valid(&mut req);
            Command::Txn(req)
        }
        Cmd::Compact(rev) => Command::Compact(CompactionRequest {
            revision: rev.get(model.current, model.compact),
            physical: false,
        }),
        Cmd::Grant { id, ttl } => Command::LeaseGrant {
            id: id.get(),
            ttl: i64::from(*ttl),
        },
        Cmd::Revoke(id) => Command::LeaseRevoke { id: id.get() },
    }
}

/// Sorts each revision's events by key, the order the model produces them in.
fn by_revision_and_key(events: &[Event]) -> Vec<Event> {
    let mut sorted = events.to_vec();
    sorted.sort_by(|a, b| {
        let (ka, kb) = (a.kv.as_ref().unwrap(), b.kv.as_ref().unwrap());
        (ka.mod_revision, &ka.key).cmp(&(kb.mod_revision, &kb.key))
    });
    sorted
}

/// CRC-32C (Castagnoli), bit by bit: a second statement of the checksum, independent of the
/// store's table-driven one.
struct Crc32c(u32);

impl Default for Crc32c {
    fn default() -> Self {
        Crc32c(!0)
    }
}

impl Crc32c {
    fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u32::from(b);
            for _ in 0..8 {
                self.0 = if self.0 & 1 != 0 {
                    (self.0 >> 1) ^ 0x82F6_3B78
                } else {
                    self.0 >> 1
                };
            }
        }
    }
}

/// Everything a reader of `mvcc` can see must be what `model` holds.
fn check_store(mvcc: &Mvcc, model: &Model, what: &str) {
    let (c, now) = (model.compact, model.current);
    let mut revs = vec![
        -1,
        0,
        1,
        c - 1,
        c,
        c + 1,
        (c + now) / 2,
        now - 1,
        now,
        now + 1,
    ];
    revs.sort_unstable();
    revs.dedup();
    for rev in revs {
        assert_eq!(
            mvcc.hash_kv(rev),
            model.hash_kv(rev),
            "{what}: HashKV at revision {rev}"
        );
    }
    assert_eq!(
        (mvcc.current_revision(), mvcc.compact_revision()),
        (model.current, model.compact),
        "{what}: current and compact revisions"
    );
    let everything = |revision| RangeRequest {
        key: vec![0],
        range_end: vec![0],
        revision,
        ..RangeRequest::default()
    };
    for rev in model.compact.max(1)..=model.current {
        let got = mvcc.range(&everything(rev)).map(|r| r.kvs);
        assert_eq!(
            got,
            Ok(model.in_range_at(&[0], &[0], rev)),
            "{what}: every key at revision {rev}"
        );
    }
    let leases: Vec<(i64, i64)> = mvcc
        .leases()
        .unwrap()
        .into_iter()
        .map(|l| (l.id, l.ttl))
        .collect();
    assert_eq!(
        leases,
        model.leases.clone().into_iter().collect::<Vec<_>>(),
        "{what}: leases"
    );
    for &id in model.leases.keys() {
        let attached: Vec<Vec<u8>> = model
            .keys
            .keys()
            .filter(|k| model.live(k).is_some_and(|kv| kv.lease == id))
            .cloned()
            .collect();
        assert_eq!(
            mvcc.lease_keys(id).unwrap(),
            attached,
            "{what}: keys of lease {id}"
        );
    }
    let from = model.compact.max(1);
    let replay = mvcc.events(from, &[0], &[0], 0).unwrap();
    let (want, next) = model.events(from, &[0], &[0], 0).unwrap();
    assert_eq!(
        (by_revision_and_key(&replay.events), replay.next_revision),
        (want, next),
        "{what}: history from {from}"
    );
}

fn run(input: &Input) {
    let dir = scratch_dir();
    let path = dir.path().join("mvcc.redb");
    let mut mvcc = Mvcc::open(&path).expect("open a new store");
    let mut committed = Model {
        keys: BTreeMap::new(),
        leases: BTreeMap::new(),
        current: 1,
        compact: -1,
    };
    let mut copy: Option<(tempfile::TempDir, Mvcc)> = None;

    for (b, batch) in input.batches.iter().take(12).enumerate() {
        let mut model = committed.clone();
        let mut expected_events = Vec::new();
        let mut wb = mvcc.begin().expect("begin a batch");
        for (s, step) in batch.steps.iter().take(12).enumerate() {
            let at = format!("batch {b} step {s}: {step:?}");
            match step {
                Step::Apply(cmd) => {
                    let cmd = command(cmd, &model);
                    let (want, events) = model_apply(&mut model, &cmd);
                    let got = wb.apply(&cmd);
                    assert_eq!(got, want, "{at}\ncommand {cmd:?}");
                    expected_events.extend(events);
                    assert_eq!(
                        (wb.current_revision(), wb.compact_revision()),
                        (model.current, model.compact),
                        "{at}: revisions inside the batch"
                    );
                }
                // Reads see the last commit, not the open batch.
                Step::Range(spec) => {
                    let req = spec.request(committed.current, committed.compact);
                    let want = committed.range(&req, committed.current);
                    assert_eq!(mvcc.range(&req), want, "{at}\nrequest {req:?}");
                }
                Step::Events {
                    from,
                    key,
                    end,
                    limit,
                } => {
                    let key = key.bytes();
                    let end = end.bytes(&key);
                    let from = from.get(committed.current, committed.compact);
                    let limit = usize::from(limit % 4);
                    let got = mvcc
                        .events(from, &key, &end, limit)
                        .map(|batch| (by_revision_and_key(&batch.events), batch.next_revision));
                    assert_eq!(got, committed.events(from, &key, &end, limit), "{at}");
                }
            }
        }
        let durable = !matches!(batch.end, BatchEnd::Commit);
        if let BatchEnd::Abort = batch.end {
            wb.abort().expect("abort");
            check_store(&mvcc, &committed, &format!("batch {b} aborted"));
            continue;
        }
        let events = wb.commit(durable).expect("commit");
        assert_eq!(events, expected_events, "batch {b}: events of the commit");
        committed = model;
        assert_eq!(
            (mvcc.current_revision(), mvcc.compact_revision()),
            (committed.current, committed.compact),
            "batch {b}: revisions after commit"
        );
        match batch.end {
            BatchEnd::Reopen => {
                drop(mvcc);
                mvcc = Mvcc::open(&path).expect("reopen");
                check_store(&mvcc, &committed, &format!("batch {b} after reopen"));
            }
            BatchEnd::Snapshot => {
                let image = mvcc.snapshot().expect("snapshot").image;
                let (_, target) = copy.get_or_insert_with(|| {
                    let dir = scratch_dir();
                    let store = Mvcc::open(&dir.path().join("copy.redb")).expect("open the copy");
                    (dir, store)
                });
                target
                    .install_snapshot(&image)
                    .expect("install the snapshot");
                check_store(target, &committed, &format!("batch {b} snapshot copy"));
                assert_eq!(
                    target.hash_kv(0).unwrap(),
                    mvcc.hash_kv(0).unwrap(),
                    "batch {b}: hash of the copy"
                );
            }
            _ => {}
        }
    }
    check_store(&mvcc, &committed, "end");
}

fuzz_target!(|input: Input| run(&input));

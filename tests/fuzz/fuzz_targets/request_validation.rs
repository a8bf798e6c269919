//! Fuzz target `request_validation`: the server's edge checks (`cairn-wire`) on hostile requests.
//!
//! Bytes off the wire are decoded (prost) as one of etcd's KV, Watch or Lease requests and passed
//! through the checks the gRPC services run before anything reaches Raft
//! (`validate::{check_range, check_put, check_delete, check_txn, check_lease_grant}`,
//! `watch_request::decode`). A second kind of input builds a Txn from structure, to reach deep
//! into the duplicate-key rule, and sends it through the same encode / decode.
//!
//! Never a panic. Range, Put, DeleteRange, LeaseGrant and Watch requests are checked against an
//! exact statement of etcd's rules. A Txn that is accepted must respect the documented limits at
//! every nesting level (`--max-txn-ops` compares and ops per branch, keys given, sort options
//! valid, `ignore_*` without a value / lease) and, on every path through its branches, put no
//! key twice and no key inside a range deleted earlier on that path. A refused Txn must be
//! refused for a reason it has. A Txn with none of the faults at all must be accepted.
//! Every decoded message also re-encodes to itself.

#![no_main]

use std::collections::HashSet;

use arbitrary::Arbitrary;
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchRequest,
};
use cairn_wire::errors::EtcdError;
use cairn_wire::validate::{
    check_delete, check_lease_grant, check_put, check_range, check_txn, MAX_LEASE_TTL,
};
use cairn_wire::watch_request::{decode as decode_watch, Refusal, Request as WatchCommand};
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[derive(Arbitrary, Debug)]
enum Input {
    Wire {
        kind: u8,
        max_txn_ops: u8,
        bytes: Vec<u8>,
    },
    Txn {
        max_txn_ops: u8,
        txn: TxnShape,
    },
}

fuzz_target!(|input: Input| match input {
    Input::Wire {
        kind,
        max_txn_ops,
        bytes,
    } => wire(kind, limit(max_txn_ops), &bytes),
    Input::Txn { max_txn_ops, txn } => {
        let req = txn.build(0);
        let decoded = round_trip(&req);
        assert_eq!(decoded, req, "a Txn must survive encode / decode");
        txn_invariants(&decoded, limit(max_txn_ops));
    }
});

/// Small limits make `--max-txn-ops` reachable; 128 is the default.
fn limit(raw: u8) -> usize {
    if raw >= 250 {
        128
    } else {
        usize::from(raw % 6)
    }
}

/// Decodes, then checks that the message re-encodes to one that decodes equal.
fn decode<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) -> Option<M> {
    let msg = M::decode(bytes).ok()?;
    assert_eq!(msg.encoded_len(), msg.encode_to_vec().len());
    assert_eq!(round_trip(&msg), msg, "re-encoding changed the message");
    Some(msg)
}

fn round_trip<M: Message + Default>(msg: &M) -> M {
    M::decode(msg.encode_to_vec().as_slice()).expect("our own encoding decodes")
}

fn wire(kind: u8, max_txn_ops: usize, bytes: &[u8]) {
    match kind % 6 {
        0 => {
            if let Some(r) = decode::<RangeRequest>(bytes) {
                assert_eq!(check_range(&r), range_rule(&r), "{r:?}");
            }
        }
        1 => {
            if let Some(r) = decode::<PutRequest>(bytes) {
                assert_eq!(check_put(&r), put_rule(&r), "{r:?}");
            }
        }
        2 => {
            if let Some(r) = decode::<DeleteRangeRequest>(bytes) {
                assert_eq!(check_delete(&r), delete_rule(&r), "{r:?}");
            }
        }
        3 => {
            if let Some(t) = decode::<TxnRequest>(bytes) {
                txn_invariants(&t, max_txn_ops);
            }
        }
        4 => {
            if let Some(w) = decode::<WatchRequest>(bytes) {
                watch_invariants(w);
            }
        }
        _ => {
            if let Some(g) = decode::<LeaseGrantRequest>(bytes) {
                let min_ttl = 5;
                match check_lease_grant(&g, min_ttl) {
                    Ok(ttl) => {
                        assert!(g.ttl <= MAX_LEASE_TTL, "TTL {} accepted", g.ttl);
                        assert!(
                            (min_ttl..=MAX_LEASE_TTL).contains(&ttl),
                            "granted TTL {ttl}"
                        );
                        assert_eq!(ttl, g.ttl.max(min_ttl));
                    }
                    Err(e) => {
                        assert_eq!(e, EtcdError::LeaseTtlTooLarge);
                        assert!(g.ttl > MAX_LEASE_TTL, "TTL {} refused", g.ttl);
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// etcd's rules for single requests, stated directly (etcd `v3rpc/key.go`).

fn range_rule(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        Err(EtcdError::EmptyKey)
    } else if SortOrder::try_from(r.sort_order).is_err()
        || SortTarget::try_from(r.sort_target).is_err()
    {
        Err(EtcdError::InvalidSortOption)
    } else {
        Ok(())
    }
}

fn put_rule(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        Err(EtcdError::EmptyKey)
    } else if r.ignore_value && !r.value.is_empty() {
        Err(EtcdError::ValueProvided)
    } else if r.ignore_lease && r.lease != 0 {
        Err(EtcdError::LeaseProvided)
    } else {
        Ok(())
    }
}

fn delete_rule(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        Err(EtcdError::EmptyKey)
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Txn.

/// The faults a Txn tree has, each looked for everywhere in it.
#[derive(Debug, Default)]
struct Faults {
    top_level_too_many: bool,
    too_many: bool,
    empty_key: bool,
    missing_op: bool,
    value_provided: bool,
    lease_provided: bool,
    bad_sort: bool,
    /// Two puts of one key, or a put inside a deleted range, anywhere in the tree (branches
    /// that exclude each other included).
    maybe_duplicate: bool,
}

fn faults(t: &TxnRequest, max: usize) -> Faults {
    let mut f = Faults {
        top_level_too_many: too_many(t, max),
        ..Faults::default()
    };
    let mut puts = Vec::new();
    let mut dels = Vec::new();
    walk(t, max, &mut f, &mut puts, &mut dels);
    let mut seen = HashSet::new();
    f.maybe_duplicate = puts.iter().any(|k| !seen.insert(k.clone()))
        || puts
            .iter()
            .any(|k| dels.iter().any(|(start, end)| deleted(k, start, end)));
    f
}

fn too_many(t: &TxnRequest, max: usize) -> bool {
    t.compare.len() > max || t.success.len() > max || t.failure.len() > max
}

fn walk(
    t: &TxnRequest,
    max: usize,
    f: &mut Faults,
    puts: &mut Vec<Vec<u8>>,
    dels: &mut Vec<(Vec<u8>, Vec<u8>)>,
) {
    f.too_many |= too_many(t, max);
    f.empty_key |= t.compare.iter().any(|c: &Compare| c.key.is_empty());
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            None => f.missing_op = true,
            Some(Request::RequestRange(r)) => {
                f.empty_key |= r.key.is_empty();
                f.bad_sort |= range_rule(r) == Err(EtcdError::InvalidSortOption);
            }
            Some(Request::RequestPut(p)) => {
                f.empty_key |= p.key.is_empty();
                f.value_provided |= p.ignore_value && !p.value.is_empty();
                f.lease_provided |= p.ignore_lease && p.lease != 0;
                puts.push(p.key.clone());
            }
            Some(Request::RequestDeleteRange(d)) => {
                f.empty_key |= d.key.is_empty();
                dels.push((d.key.clone(), d.range_end.clone()));
            }
            Some(Request::RequestTxn(n)) => walk(n, max, f, puts, dels),
        }
    }
}

/// Whether a DeleteRange of `start` / `end` removes `key` (etcd's `range_end` convention).
fn deleted(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    match end {
        [] => key == start,
        [0] => key >= start,
        end => key >= start && key < end,
    }
}

/// One way through a Txn: each nested Txn met (in execution order) takes the branch given by
/// the next bit of `choice`. Returns the writes in execution order.
fn path_writes<'t>(t: &'t TxnRequest, succeeded: bool, choice: &mut u64, out: &mut Vec<Write<'t>>) {
    let ops = if succeeded { &t.success } else { &t.failure };
    for op in ops {
        match &op.request {
            Some(Request::RequestPut(p)) => out.push(Write::Put(&p.key)),
            Some(Request::RequestDeleteRange(d)) => out.push(Write::Delete(&d.key, &d.range_end)),
            Some(Request::RequestTxn(n)) => {
                let branch = *choice & 1 == 1;
                *choice = choice.rotate_right(1);
                path_writes(n, branch, choice, out);
            }
            _ => {}
        }
    }
}

enum Write<'t> {
    Put(&'t [u8]),
    Delete(&'t [u8], &'t [u8]),
}

/// etcd's duplicate-key rule as a property of paths: no key put twice, no key put after a
/// DeleteRange covering it. (etcd refuses more: a put before a covering delete of the same
/// level, and puts in two branches of different nested Txns.)
fn path_conflict(writes: &[Write<'_>]) -> Option<String> {
    let mut put = HashSet::new();
    for (i, w) in writes.iter().enumerate() {
        let Write::Put(key) = w else { continue };
        if !put.insert(*key) {
            return Some(format!("key {key:?} put twice"));
        }
        for earlier in &writes[..i] {
            if let Write::Delete(start, end) = earlier {
                if deleted(key, start, end) {
                    return Some(format!(
                        "key {key:?} put after a delete of {start:?}..{end:?}"
                    ));
                }
            }
        }
    }
    None
}

fn txn_invariants(t: &TxnRequest, max: usize) {
    let result = check_txn(t, max);
    let f = faults(t, max);
    match &result {
        Ok(()) => {
            assert!(
                !(f.too_many
                    || f.empty_key
                    || f.missing_op
                    || f.value_provided
                    || f.lease_provided
                    || f.bad_sort),
                "accepted a Txn with {f:?}: {t:?}"
            );
            // Every way through the Txn (a bounded sample of them when there are many).
            for top in [true, false] {
                for seed in 0..16u64 {
                    let mut choice = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed;
                    let mut writes = Vec::new();
                    path_writes(t, top, &mut choice, &mut writes);
                    if let Some(conflict) = path_conflict(&writes) {
                        panic!("accepted a Txn where {conflict}: {t:?}");
                    }
                }
            }
        }
        Err(e) => {
            let reason = match e {
                EtcdError::TooManyOps => f.too_many,
                EtcdError::EmptyKey => f.empty_key,
                EtcdError::KeyNotFound => f.missing_op,
                EtcdError::ValueProvided => f.value_provided,
                EtcdError::LeaseProvided => f.lease_provided,
                EtcdError::InvalidSortOption => f.bad_sort,
                EtcdError::DuplicateKey => f.maybe_duplicate,
                _ => false,
            };
            assert!(reason, "refused with {e:?} but the Txn has {f:?}: {t:?}");
        }
    }
    if f.top_level_too_many {
        assert_eq!(
            result,
            Err(EtcdError::TooManyOps),
            "op count is checked first"
        );
    }
    let clean = !(f.too_many
        || f.empty_key
        || f.missing_op
        || f.value_provided
        || f.lease_provided
        || f.bad_sort
        || f.maybe_duplicate);
    if clean {
        assert_eq!(result, Ok(()), "refused a Txn without any fault: {t:?}");
    }
}

/// A Txn described by structure: keys from a small set so that duplicates are common.
#[derive(Arbitrary, Debug)]
struct TxnShape {
    compares: Vec<u8>,
    success: Vec<OpShape>,
    failure: Vec<OpShape>,
}

#[derive(Arbitrary, Debug)]
enum OpShape {
    Range {
        key: u8,
        sort: u8,
    },
    Put {
        key: u8,
        ignore_value: bool,
        value: bool,
    },
    Delete {
        key: u8,
        end: u8,
    },
    Txn(Box<TxnShape>),
    Missing,
}

fn shape_key(k: u8) -> Vec<u8> {
    match k % 6 {
        0 => Vec::new(),
        1 => b"a".to_vec(),
        2 => b"ab".to_vec(),
        3 => b"b".to_vec(),
        4 => b"c".to_vec(),
        _ => vec![0],
    }
}

impl TxnShape {
    fn build(&self, depth: usize) -> TxnRequest {
        let ops = |shapes: &[OpShape]| -> Vec<RequestOp> {
            shapes
                .iter()
                .take(8)
                .filter(|op| depth < 6 || !matches!(op, OpShape::Txn(_)))
                .map(|op| RequestOp {
                    request: match op {
                        OpShape::Range { key, sort } => Some(Request::RequestRange(RangeRequest {
                            key: shape_key(*key),
                            sort_order: i32::from(sort % 4),
                            ..RangeRequest::default()
                        })),
                        OpShape::Put {
                            key,
                            ignore_value,
                            value,
                        } => Some(Request::RequestPut(PutRequest {
                            key: shape_key(*key),
                            value: if *value { b"v".to_vec() } else { Vec::new() },
                            ignore_value: *ignore_value,
                            ..PutRequest::default()
                        })),
                        OpShape::Delete { key, end } => {
                            Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key: shape_key(*key),
                                range_end: if end % 3 == 0 {
                                    Vec::new()
                                } else {
                                    shape_key(*end)
                                },
                                prev_kv: false,
                            }))
                        }
                        OpShape::Txn(t) => Some(Request::RequestTxn(t.build(depth + 1))),
                        OpShape::Missing => None,
                    },
                })
                .collect()
        };
        TxnRequest {
            compare: self
                .compares
                .iter()
                .take(8)
                .map(|&k| Compare {
                    key: shape_key(k | 1),
                    ..Compare::default()
                })
                .collect(),
            success: ops(&self.success),
            failure: ops(&self.failure),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Watch.

fn watch_invariants(w: WatchRequest) {
    let expected_cancel = match &w.request_union {
        Some(RequestUnion::CancelRequest(c)) => Some(c.watch_id),
        _ => None,
    };
    let create = match &w.request_union {
        Some(RequestUnion::CreateRequest(c)) => Some(c.clone()),
        _ => None,
    };
    let none = w.request_union.is_none();
    let progress = matches!(w.request_union, Some(RequestUnion::ProgressRequest(_)));
    // Auth disabled: every range is permitted.
    let decoded = decode_watch(w, &|_: &[u8], _: &[u8]| Ok::<(), EtcdError>(()));
    match decoded {
        None => assert!(none, "a request was dropped"),
        Some(WatchCommand::Progress) => assert!(progress),
        Some(WatchCommand::Cancel(id)) => assert_eq!(Some(id), expected_cancel),
        Some(WatchCommand::Refuse(refusal)) => {
            let c = create.expect("only a create request is refused");
            assert_eq!(refusal, Refusal::EmptyRange);
            let key = if c.key.is_empty() {
                vec![0]
            } else {
                c.key.clone()
            };
            // Empty only when an explicit end lies at or before the key.
            assert!(
                !c.range_end.is_empty() && c.range_end != [0] && c.range_end <= key,
                "refused a watch of a non-empty range: {c:?}"
            );
        }
        Some(WatchCommand::Create(made)) => {
            let c = create.expect("a create from a create request");
            let key = if c.key.is_empty() {
                vec![0]
            } else {
                c.key.clone()
            };
            assert_eq!(made.key, key, "the watched key (empty means \\0)");
            assert!(!made.key.is_empty());
            assert_eq!(made.range_end, c.range_end);
            assert!(
                made.range_end.is_empty() || made.range_end == [0] || made.range_end > made.key,
                "accepted an empty range: {c:?}"
            );
            assert_eq!(made.watch_id, c.watch_id);
            assert_eq!(made.start_revision, c.start_revision);
            assert_eq!(
                (made.prev_kv, made.progress_notify, made.fragment),
                (c.prev_kv, c.progress_notify, c.fragment)
            );
            assert_eq!(made.no_put, c.filters.contains(&(FilterType::Noput as i32)));
            assert_eq!(
                made.no_delete,
                c.filters.contains(&(FilterType::Nodelete as i32))
            );
        }
    }
}

//! Request validation at the edge, before anything is proposed to Raft.
//!
//! Mirrors etcd's checks in the same order, so the same bad request gets the same error:
//! a Txn first has its op count checked, then every op (recursively), then the duplicate-key
//! rule (no key written twice, no put inside a deleted range, on any path through the txn).
//! A LeaseGrant's TTL is bounded above and raised to the lessor's minimum. Watch create
//! requests are normalized in [`crate::watch_request::decode`].

use std::collections::HashSet;

use cairn_proto::etcdserverpb::{
    range_request, request_op, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest,
    RequestOp, TxnRequest,
};

use crate::errors::EtcdError;

/// etcd's `MaxLeaseTTL`: 9,000,000,000 seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

pub fn check_range(r: &RangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if range_request::SortOrder::try_from(r.sort_order).is_err()
        || range_request::SortTarget::try_from(r.sort_target).is_err()
    {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

pub fn check_put(r: &PutRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn check_delete(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    if r.key.is_empty() {
        return Err(EtcdError::EmptyKey);
    }
    Ok(())
}

/// etcd's LeaseGrant rule: a TTL above [`MAX_LEASE_TTL`] is refused, one below `min_ttl` (zero
/// and negative included) is raised to it. Returns the TTL to grant.
pub fn check_lease_grant(r: &LeaseGrantRequest, min_ttl: i64) -> Result<i64, EtcdError> {
    if r.ttl > MAX_LEASE_TTL {
        return Err(EtcdError::LeaseTtlTooLarge);
    }
    Ok(r.ttl.max(min_ttl))
}

/// Validates a whole Txn request: sizes, every op, then the duplicate-key rule.
pub fn check_txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn_ops(r, max_txn_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_ops(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len());
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    if r.compare.iter().any(|c| c.key.is_empty()) {
        return Err(EtcdError::EmptyKey);
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_txn_ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: usize) -> Result<(), EtcdError> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => check_range(r),
        Some(request_op::Request::RequestPut(r)) => check_put(r),
        Some(request_op::Request::RequestDeleteRange(r)) => check_delete(r),
        Some(request_op::Request::RequestTxn(r)) => check_txn_ops(r, max_txn_ops),
        // An empty op is what etcd answers with "key not found".
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted key range `[start, end)`; `end == None` means unbounded.
#[derive(Debug, Clone)]
struct Interval {
    start: Vec<u8>,
    end: Option<Vec<u8>>,
}

impl Interval {
    fn of_delete(d: &DeleteRangeRequest) -> Self {
        let end = match d.range_end.as_slice() {
            [] => {
                let mut e = d.key.clone();
                e.push(0);
                Some(e)
            }
            [0] => None,
            e => Some(e.to_vec()),
        };
        Self {
            start: d.key.clone(),
            end,
        }
    }

    fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }
}

#[derive(Default)]
struct Writes {
    puts: HashSet<Vec<u8>>,
    dels: Vec<Interval>,
}

impl Writes {
    fn deleted(&self, key: &[u8]) -> bool {
        self.dels.iter().any(|d| d.contains(key))
    }
}

/// etcd's duplicate-key rule for one branch of a txn, nested txns included. The two branches
/// of a nested txn exclude each other, so a key put in both of them is not a duplicate.
fn check_intervals(ops: &[RequestOp]) -> Result<Writes, EtcdError> {
    let mut w = Writes::default();
    for op in ops {
        if let Some(request_op::Request::RequestDeleteRange(d)) = &op.request {
            w.dels.push(Interval::of_delete(d));
        }
    }
    for op in ops {
        let Some(request_op::Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let then = check_intervals(&t.success)?;
        let otherwise = check_intervals(&t.failure)?;
        for k in &then.puts {
            if w.puts.contains(k) || w.deleted(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        for k in &otherwise.puts {
            if (w.puts.contains(k) && !then.puts.contains(k)) || w.deleted(k) {
                return Err(EtcdError::DuplicateKey);
            }
        }
        w.puts.extend(then.puts);
        w.puts.extend(otherwise.puts);
        w.dels.extend(then.dels);
        w.dels.extend(otherwise.dels);
    }
    for op in ops {
        let Some(request_op::Request::RequestPut(p)) = &op.request else {
            continue;
        };
        if w.puts.contains(&p.key) || w.deleted(&p.key) {
            return Err(EtcdError::DuplicateKey);
        }
        w.puts.insert(p.key.clone());
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }
    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: k.into(),
                    range_end: end.into(),
                    ..Default::default()
                },
            )),
        }
    }
    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_puts_and_put_in_deleted_range_are_rejected() {
        assert_eq!(
            check_txn(&txn(vec![put("a"), put("a")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![del("a", "c"), put("b")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
        assert_eq!(
            check_txn(&txn(vec![put("c"), del("a", "c")], vec![]), 128),
            Ok(())
        );
        // Deleting twice is fine, and each branch is checked on its own.
        assert_eq!(
            check_txn(&txn(vec![del("a", ""), del("a", "")], vec![put("a")]), 128),
            Ok(())
        );
    }

    #[test]
    fn nested_branches_exclude_each_other() {
        let nested = RequestOp {
            request: Some(request_op::Request::RequestTxn(txn(
                vec![put("k")],
                vec![put("k")],
            ))),
        };
        assert_eq!(check_txn(&txn(vec![nested.clone()], vec![]), 128), Ok(()));
        assert_eq!(
            check_txn(&txn(vec![nested, put("k")], vec![]), 128),
            Err(EtcdError::DuplicateKey)
        );
    }

    #[test]
    fn too_many_ops_comes_before_other_checks() {
        let ops: Vec<_> = (0..3).map(|_| put("a")).collect();
        assert_eq!(check_txn(&txn(ops, vec![]), 2), Err(EtcdError::TooManyOps));
        assert_eq!(
            check_txn(&txn(vec![RequestOp { request: None }], vec![]), 2),
            Err(EtcdError::KeyNotFound)
        );
    }
}

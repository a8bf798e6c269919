//! The Txn request (etcd 3.5 `applierV3backend.Txn`).
//!
//! Phases, all before the first change, so a failing Txn changes nothing:
//! 1. Evaluate the compares of the Txn and, recursively, of every nested Txn on the chosen
//!    branches, all against the state before the Txn (etcd's `compareToPath`).
//! 2. etcd's `checkRequests`: first every Put on the chosen path (`ignore_*` keys must exist
//!    before the Txn, leases must exist), then every Range (explicit revision neither future nor
//!    compacted).
//! 3. Where etcd would panic mid-Txn — a put with `ignore_*` on a key that an earlier op of the
//!    same Txn deleted — reject the Txn with `KeyNotFound` instead.
//!
//! Then the chosen ops run in order under one main revision; ranges see earlier writes of the
//! Txn. Headers as etcd sets them: the top-level header carries the revision after the Txn (not
//! bumped if nothing changed), nested TxnResponses carry an all-zero header, and each op's own
//! response carries the revision as that op saw it.

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    Compare, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;
use std::cmp::Ordering;

use crate::error::MvccError;
use crate::key_range::KeyRange;
use crate::view::KvRead;
use crate::writer::KvWriter;
use crate::{delete_range, put, range};

/// The outcome of the compares of one Txn and of the nested Txns on its chosen branch.
#[derive(Debug)]
struct Path {
    succeeded: bool,
    /// One entry per `RequestTxn` op of the chosen branch, in op order.
    nested: Vec<Path>,
}

impl Path {
    fn ops<'r>(&self, req: &'r TxnRequest) -> &'r [RequestOp] {
        if self.succeeded {
            &req.success
        } else {
            &req.failure
        }
    }
}

/// Applies a top-level Txn.
pub(crate) fn apply(w: &mut KvWriter<'_>, req: &TxnRequest) -> Result<TxnResponse, MvccError> {
    let path = compare_path(&w.view(), req)?;
    check_ops(req, &path, &mut |op| match &op.request {
        Some(Request::RequestPut(p)) => put::check_in_txn(w, p),
        _ => Ok(()),
    })?;
    let (current, compact) = (w.rev(), w.compact);
    check_ops(req, &path, &mut |op| match &op.request {
        Some(Request::RequestRange(r)) if r.revision != 0 => {
            if r.revision > current {
                Err(MvccError::FutureRevision)
            } else if r.revision < compact {
                Err(MvccError::Compacted)
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    })?;
    check_ignored_keys_survive(req, &path, &mut Vec::new())?;

    // Everything that can fail was checked above; an etcd error from here on would leave the
    // Txn half applied, so it is escalated to a local failure that poisons the batch.
    let mut resp = execute(w, req, &path).map_err(|e| {
        if e.is_local_failure() {
            e
        } else {
            MvccError::Internal(format!("txn failed after validation: {e}"))
        }
    })?;
    resp.header = Some(ResponseHeader {
        revision: w.rev(),
        ..ResponseHeader::default()
    });
    Ok(resp)
}

fn compare_path(view: &dyn KvRead, req: &TxnRequest) -> Result<Path, MvccError> {
    let mut succeeded = true;
    for c in &req.compare {
        if !compare_holds(view, c)? {
            succeeded = false;
            break;
        }
    }
    let mut path = Path {
        succeeded,
        nested: Vec::new(),
    };
    for op in path.ops(req) {
        if let Some(Request::RequestTxn(t)) = &op.request {
            let nested = compare_path(view, t)?;
            path.nested.push(nested);
        }
    }
    Ok(path)
}

/// etcd's `applyCompare`: every key in range must satisfy the compare; with no key in range, a
/// VALUE compare fails and the others compare against an all-zero `KeyValue`.
fn compare_holds(view: &dyn KvRead, c: &Compare) -> Result<bool, MvccError> {
    let keys = KeyRange::new(&c.key, &c.range_end);
    let mut any = false;
    let mut all = true;
    view.scan(keys, view.current(), &mut |_, loc| {
        any = true;
        if compare_kv(c, &view.load(loc)?) {
            Ok(true)
        } else {
            all = false;
            Ok(false)
        }
    })?;
    if any {
        Ok(all)
    } else if c.target == CompareTarget::Value as i32 {
        Ok(false)
    } else {
        Ok(compare_kv(c, &KeyValue::default()))
    }
}

/// etcd's `compareKV`: a target union of the wrong kind compares against zero / empty; an
/// unknown result holds.
fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let union = c.target_union.as_ref();
    let ord = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Value) => {
            let v: &[u8] = match union {
                Some(TargetUnion::Value(v)) => v,
                _ => &[],
            };
            kv.value.as_slice().cmp(v)
        }
        Ok(CompareTarget::Create) => kv.create_revision.cmp(&match union {
            Some(TargetUnion::CreateRevision(r)) => *r,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => kv.mod_revision.cmp(&match union {
            Some(TargetUnion::ModRevision(r)) => *r,
            _ => 0,
        }),
        Ok(CompareTarget::Version) => kv.version.cmp(&match union {
            Some(TargetUnion::Version(r)) => *r,
            _ => 0,
        }),
        Ok(CompareTarget::Lease) => kv.lease.cmp(&match union {
            Some(TargetUnion::Lease(r)) => *r,
            _ => 0,
        }),
        Err(_) => Ordering::Equal,
    };
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ord == Ordering::Equal,
        Ok(CompareResult::NotEqual) => ord != Ordering::Equal,
        Ok(CompareResult::Greater) => ord == Ordering::Greater,
        Ok(CompareResult::Less) => ord == Ordering::Less,
        Err(_) => true,
    }
}

/// Runs `check` on every non-Txn op of the chosen path, depth first, in op order.
fn check_ops(
    req: &TxnRequest,
    path: &Path,
    check: &mut dyn FnMut(&RequestOp) -> Result<(), MvccError>,
) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in path.ops(req) {
        match (&op.request, nested.as_slice().first()) {
            (Some(Request::RequestTxn(t)), Some(sub)) => {
                nested.next();
                check_ops(t, sub, check)?;
            }
            _ => check(op)?,
        }
    }
    Ok(())
}

/// A write of the chosen path, in execution order, as far as key existence is concerned.
enum PendingWrite<'r> {
    Put(&'r [u8]),
    Delete(KeyRange<'r>),
}

/// Rejects a put with `ignore_value` / `ignore_lease` whose key an earlier op of the Txn deleted
/// (and no later op re-created): etcd panics there; we fail the whole Txn before any change.
fn check_ignored_keys_survive<'r>(
    req: &'r TxnRequest,
    path: &Path,
    pending: &mut Vec<PendingWrite<'r>>,
) -> Result<(), MvccError> {
    let mut nested = path.nested.iter();
    for op in path.ops(req) {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                if (p.ignore_value || p.ignore_lease) && deleted_by(pending, &p.key) {
                    return Err(MvccError::KeyNotFound);
                }
                pending.push(PendingWrite::Put(&p.key));
            }
            Some(Request::RequestDeleteRange(d)) => {
                pending.push(PendingWrite::Delete(KeyRange::new(&d.key, &d.range_end)));
            }
            Some(Request::RequestTxn(t)) => {
                if let Some(sub) = nested.next() {
                    check_ignored_keys_survive(t, sub, pending)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn deleted_by(pending: &[PendingWrite<'_>], key: &[u8]) -> bool {
    for write in pending.iter().rev() {
        match write {
            PendingWrite::Put(k) if *k == key => return false,
            PendingWrite::Delete(range) if range.contains(key) => return true,
            _ => {}
        }
    }
    false
}

fn execute(w: &mut KvWriter<'_>, req: &TxnRequest, path: &Path) -> Result<TxnResponse, MvccError> {
    let ops = path.ops(req);
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        let response = match &op.request {
            Some(Request::RequestRange(r)) => {
                Some(Response::ResponseRange(range::range(&w.view(), r)?))
            }
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(put::execute(w, p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(Response::ResponseDeleteRange(delete_range::apply(w, d)?))
            }
            Some(Request::RequestTxn(t)) => match nested.next() {
                Some(sub) => {
                    let mut resp = execute(w, t, sub)?;
                    resp.header = Some(ResponseHeader::default());
                    Some(Response::ResponseTxn(resp))
                }
                None => None,
            },
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    })
}

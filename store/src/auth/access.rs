//! Which permission each replicated request needs, checked when the entry is applied
//! (etcd's `authApplierV3`), against the auth store as of that point in the log and with the
//! identity the receiving member attached ([`Caller`]):
//!
//! - Put: write on the key; read on it too when `prev_kv` is asked; with a lease, write on
//!   every key already attached to that lease (a user who could not revoke the lease must not
//!   attach to it) — skipped for root, as etcd 3.5 does;
//! - DeleteRange: write on the range, and read on it with `prev_kv`;
//! - Txn: read on every compare's range, and every op of both branches as above, nested txns
//!   included;
//! - LeaseRevoke: write on every key attached to the lease (skipped for root);
//! - LeaseGrant: nothing;
//! - Compact and Alarm activate/deactivate: nothing (etcd leaves both open: kube-apiserver
//!   compacts with whatever user it runs as);
//! - every auth management command but Authenticate: root.

use std::io;

use cairn_proto::etcdserverpb::{request_op, PutRequest, RequestOp, TxnRequest};

use super::command::Caller;
use super::perms::Access;
use super::state::AuthState;
use crate::raft::Command;
use crate::server::errors::EtcdError;

/// Reads the keys attached to a lease as of the entries applied so far.
pub type LeaseKeys<'a> = dyn FnMut(i64) -> io::Result<Vec<Vec<u8>>> + 'a;

/// `Ok(Err(e))`: refused with `e`; `Err`: reading the store failed.
pub fn permit(
    state: &AuthState,
    caller: &Caller,
    cmd: &Command,
    lease_keys: &mut LeaseKeys<'_>,
) -> io::Result<Result<(), EtcdError>> {
    use cairn_mvcc::Command as C;
    if !state.enabled() {
        return Ok(Ok(()));
    }
    match cmd {
        Command::Kv(C::Put(p)) => check_put(state, caller, p, lease_keys),
        Command::Kv(C::DeleteRange(d)) => {
            Ok(check_delete(state, caller, &d.key, &d.range_end, d.prev_kv))
        }
        Command::Kv(C::Txn(t)) => check_txn(state, caller, t, lease_keys),
        Command::Kv(C::LeaseRevoke { id }) => check_lease_keys(state, caller, *id, lease_keys),
        Command::Kv(C::LeaseGrant { .. }) => Ok(Ok(())),
        Command::Auth(a) if !matches!(a, super::AuthCommand::Authenticate { .. }) => {
            Ok(state.check_admin(caller))
        }
        Command::Kv(C::Compact(_))
        | Command::Alarm(_)
        | Command::Auth(_)
        | Command::Publish { .. } => Ok(Ok(())),
        // A caller is attached once, by the member that received the request.
        Command::As { .. } => Ok(Err(EtcdError::Internal(
            "nested caller in a command".into(),
        ))),
    }
}

fn check_put(
    state: &AuthState,
    caller: &Caller,
    p: &PutRequest,
    lease_keys: &mut LeaseKeys<'_>,
) -> io::Result<Result<(), EtcdError>> {
    if let Err(e) = state.check_op(caller, Access::Write, &p.key, &[]) {
        return Ok(Err(e));
    }
    if p.lease != 0 {
        if let Err(e) = check_lease_keys(state, caller, p.lease, lease_keys)? {
            return Ok(Err(e));
        }
    }
    if p.prev_kv {
        return Ok(state.check_op(caller, Access::Read, &p.key, &[]));
    }
    Ok(Ok(()))
}

fn check_delete(
    state: &AuthState,
    caller: &Caller,
    key: &[u8],
    range_end: &[u8],
    prev_kv: bool,
) -> Result<(), EtcdError> {
    state.check_op(caller, Access::Write, key, range_end)?;
    if prev_kv {
        state.check_op(caller, Access::Read, key, range_end)?;
    }
    Ok(())
}

fn check_txn(
    state: &AuthState,
    caller: &Caller,
    t: &TxnRequest,
    lease_keys: &mut LeaseKeys<'_>,
) -> io::Result<Result<(), EtcdError>> {
    for c in &t.compare {
        if let Err(e) = state.check_op(caller, Access::Read, &c.key, &c.range_end) {
            return Ok(Err(e));
        }
    }
    for op in t.success.iter().chain(&t.failure) {
        if let Err(e) = check_op(state, caller, op, lease_keys)? {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

fn check_op(
    state: &AuthState,
    caller: &Caller,
    op: &RequestOp,
    lease_keys: &mut LeaseKeys<'_>,
) -> io::Result<Result<(), EtcdError>> {
    match &op.request {
        Some(request_op::Request::RequestRange(r)) => {
            Ok(state.check_op(caller, Access::Read, &r.key, &r.range_end))
        }
        Some(request_op::Request::RequestPut(p)) => check_put(state, caller, p, lease_keys),
        Some(request_op::Request::RequestDeleteRange(d)) => {
            Ok(check_delete(state, caller, &d.key, &d.range_end, d.prev_kv))
        }
        Some(request_op::Request::RequestTxn(t)) => check_txn(state, caller, t, lease_keys),
        None => Ok(Ok(())),
    }
}

/// Write on every key attached to lease `id`; root may revoke or attach to any lease.
fn check_lease_keys(
    state: &AuthState,
    caller: &Caller,
    id: i64,
    lease_keys: &mut LeaseKeys<'_>,
) -> io::Result<Result<(), EtcdError>> {
    if state.check_admin(caller).is_ok() {
        return Ok(Ok(()));
    }
    for key in lease_keys(id)? {
        if let Err(e) = state.check_op(caller, Access::Write, &key, &[]) {
            return Ok(Err(e));
        }
    }
    Ok(Ok(()))
}

//! The Put request (etcd `applierV3backend.Put` + `storeTxnWrite.put`).
//!
//! A put always takes a new revision, even when nothing observable changes. `ignore_value` /
//! `ignore_lease` reuse the current value / lease and require the key to exist (`KeyNotFound`);
//! a non-zero lease must exist (`LeaseNotFound`). At top level etcd checks the lease first; inside
//! a Txn it checks the key first (see [`check_in_txn`]).

use cairn_proto::etcdserverpb::{PutRequest, PutResponse, ResponseHeader};

use crate::error::MvccError;
use crate::view::KvRead;
use crate::writer::KvWriter;

/// Applies a top-level Put.
pub(crate) fn apply(w: &mut KvWriter<'_>, req: &PutRequest) -> Result<PutResponse, MvccError> {
    if req.lease != 0 && !w.lease_exists(req.lease)? {
        return Err(MvccError::LeaseNotFound);
    }
    if (req.ignore_value || req.ignore_lease) && !key_exists(w, &req.key)? {
        return Err(MvccError::KeyNotFound);
    }
    execute(w, req)
}

/// etcd's `checkPut` for a Put inside a Txn, against the state before the Txn: key first, then
/// lease.
pub(crate) fn check_in_txn(w: &KvWriter<'_>, req: &PutRequest) -> Result<(), MvccError> {
    if (req.ignore_value || req.ignore_lease) && !key_exists(w, &req.key)? {
        return Err(MvccError::KeyNotFound);
    }
    if req.lease != 0 && !w.lease_exists(req.lease)? {
        return Err(MvccError::LeaseNotFound);
    }
    Ok(())
}

fn key_exists(w: &KvWriter<'_>, key: &[u8]) -> Result<bool, MvccError> {
    let view = w.view();
    Ok(view.get(key, view.current())?.is_some())
}

/// Writes the put; the caller has validated it, so only storage failures remain.
pub(crate) fn execute(w: &mut KvWriter<'_>, req: &PutRequest) -> Result<PutResponse, MvccError> {
    let prev = {
        let view = w.view();
        view.get(&req.key, view.current())?
    };
    if (req.ignore_value || req.ignore_lease) && prev.is_none() {
        return Err(MvccError::KeyNotFound);
    }
    let value = match &prev {
        Some(p) if req.ignore_value => p.value.clone(),
        _ => req.value.clone(),
    };
    let lease = match &prev {
        Some(p) if req.ignore_lease => p.lease,
        _ => req.lease,
    };
    let prev_kv = if req.prev_kv { prev.clone() } else { None };
    let revision = w.write_rev();
    w.put(&req.key, value, lease, prev)?;
    Ok(PutResponse {
        header: Some(ResponseHeader {
            revision,
            ..ResponseHeader::default()
        }),
        prev_kv,
    })
}

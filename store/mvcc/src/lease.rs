//! The lease table: grant, revoke, and the key <-> lease attachment kept by puts and deletes.
//!
//! Only the replicated part of etcd's lessor lives here: which leases exist, their granted TTL,
//! and which keys are attached. Expiry timing, keep-alives and TTL clamping are the server's job;
//! it proposes the revokes. A revoke deletes every attached key, in ascending key order (as
//! etcd sorts them so every member computes the same history), under ONE main revision — no
//! revision at all if no key is attached. Grants and revokes of keyless leases take no revision.

use cairn_proto::etcdserverpb::{LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader};
use redb::ReadableTable;

use crate::error::MvccError;
use crate::format::LeaseKey;
use crate::view::KvRead;
use crate::writer::KvWriter;

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseInfo {
    /// Lease id, never 0.
    pub id: i64,
    /// TTL in seconds, as granted.
    pub ttl: i64,
}

/// Grants lease `id`; id 0 is `LeaseNotFound` (as etcd's lessor answers), an existing id is
/// `LeaseExists`.
pub(crate) fn grant(
    w: &mut KvWriter<'_>,
    id: i64,
    ttl: i64,
) -> Result<LeaseGrantResponse, MvccError> {
    if id == 0 {
        return Err(MvccError::LeaseNotFound);
    }
    if w.lease_exists(id)? {
        return Err(MvccError::LeaseExists);
    }
    w.leases.insert(id, ttl)?;
    Ok(LeaseGrantResponse {
        header: Some(ResponseHeader {
            revision: w.rev(),
            ..ResponseHeader::default()
        }),
        id,
        ttl,
        error: String::new(),
    })
}

/// Revokes lease `id`, deleting its keys.
pub(crate) fn revoke(w: &mut KvWriter<'_>, id: i64) -> Result<LeaseRevokeResponse, MvccError> {
    if !w.lease_exists(id)? {
        return Err(MvccError::LeaseNotFound);
    }
    let keys = attached_keys(&w.lease_keys, id)?;
    for key in keys {
        let prev = {
            let view = w.view();
            view.get(&key, view.current())?
        };
        if let Some(prev) = prev {
            w.delete(prev)?;
        }
        // A leftover attachment of a key whose kv is gone (never expected) must not outlive the
        // lease.
        w.lease_keys.remove((id, key.as_slice()))?;
    }
    w.leases.remove(id)?;
    Ok(LeaseRevokeResponse {
        header: Some(ResponseHeader {
            revision: w.rev(),
            ..ResponseHeader::default()
        }),
    })
}

/// Keys attached to lease `id`, ascending.
pub(crate) fn attached_keys<T>(lease_keys: &T, id: i64) -> Result<Vec<Vec<u8>>, MvccError>
where
    T: ReadableTable<LeaseKey, ()>,
{
    let mut keys = Vec::new();
    let empty: &[u8] = &[];
    for entry in lease_keys.range::<(i64, &[u8])>((id, empty)..)? {
        let (k, _) = entry?;
        let (lease, key) = k.value();
        if lease != id {
            break;
        }
        keys.push(key.to_vec());
    }
    Ok(keys)
}

//! The DeleteRange request (etcd `applierV3backend.DeleteRange` + `storeTxnWrite.deleteRange`).
//!
//! Deletes every key of the range that exists now, in key order, each with its own sub revision
//! of one main revision. Deleting nothing takes no revision: the header then carries the
//! unchanged revision, unless an earlier op of the same Txn already changed something.

use cairn_proto::etcdserverpb::{DeleteRangeRequest, DeleteRangeResponse, ResponseHeader};

use crate::error::MvccError;
use crate::key_range::KeyRange;
use crate::view::KvRead;
use crate::writer::KvWriter;

/// Applies a DeleteRange, top level or inside a Txn; it cannot fail but for storage.
pub(crate) fn apply(
    w: &mut KvWriter<'_>,
    req: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, MvccError> {
    let keys = KeyRange::new(&req.key, &req.range_end);
    let (doomed, _) = {
        let view = w.view();
        view.collect(keys, view.current(), usize::MAX)?
    };
    let deleted = i64::try_from(doomed.len()).unwrap_or(i64::MAX);
    let prev_kvs = if req.prev_kv {
        doomed.clone()
    } else {
        Vec::new()
    };
    for kv in doomed {
        w.delete(kv)?;
    }
    Ok(DeleteRangeResponse {
        header: Some(ResponseHeader {
            revision: w.rev(),
            ..ResponseHeader::default()
        }),
        deleted,
        prev_kvs,
    })
}

//! A Watch stream's requests as the stream task takes them: create requests normalized and
//! checked as etcd's `v3rpc/watch.go` does before they reach its watch stream.
//!
//! An empty key means `"\0"`, a `range_end` of `"\0"` means every key from `key` on, and an
//! empty interval is refused; unknown filter values are ignored. The caller's read permission
//! is checked by a function the service passes in (auth lives in cairn-store).

use cairn_mvcc::KeyRange;
use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

use crate::errors::EtcdError;

/// A request of the client, validated at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateWatch),
    /// A create request refused before it reached the stream (answered in order).
    Refuse(Refusal),
    Cancel(i64),
    Progress,
}

/// A validated create request (etcd's `WatchCreateRequest` after the server's edge rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateWatch {
    /// Requested id; 0 lets the stream choose (etcd's `AutoWatchID`).
    pub watch_id: i64,
    /// Never empty: etcd watches `"\0"` when the client sends no key.
    pub key: Vec<u8>,
    /// etcd convention: empty = `key` alone, `[0]` = every key `>= key`, else `[key, end)`;
    /// never an empty interval.
    pub range_end: Vec<u8>,
    /// 0 = from the next revision on; negative revisions count as compacted, as in etcd.
    pub start_revision: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
}

/// Why a create request was refused; the text is etcd's (`mvcc/watcher.go`, and for auth
/// its `v3rpc/watch.go`, which sends the gRPC error's Go rendering).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("mvcc: watcher range is empty")]
    EmptyRange,
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    DuplicateId,
    /// The stream's caller may not read the range (auth enabled).
    #[error("rpc error: code = {code:?} desc = {0}", code = .0.code())]
    Denied(EtcdError),
}

/// Checks a create request's range against the caller's permissions.
pub type Permitted<'a> = dyn Fn(&[u8], &[u8]) -> Result<(), EtcdError> + 'a;

/// A request as the stream task takes it; `None` for a message without a request, which
/// etcd ignores.
pub fn decode(req: WatchRequest, permitted: &Permitted<'_>) -> Option<Request> {
    Some(match req.request_union? {
        RequestUnion::CreateRequest(c) => create(c, permitted),
        RequestUnion::CancelRequest(c) => Request::Cancel(c.watch_id),
        RequestUnion::ProgressRequest(_) => Request::Progress,
    })
}

fn create(c: WatchCreateRequest, permitted: &Permitted<'_>) -> Request {
    let key = if c.key.is_empty() { vec![0] } else { c.key };
    // etcd checks the range after its normalization, where a `range_end` of "\0" becomes
    // empty and only `key` itself is checked; here "\0" stays open-ended, so watching every
    // key from `key` on needs read permission on all of them.
    if let Err(e) = permitted(&key, &c.range_end) {
        return Request::Refuse(Refusal::Denied(e));
    }
    if KeyRange::new(&key, &c.range_end) == KeyRange::Empty {
        return Request::Refuse(Refusal::EmptyRange);
    }
    // Unknown filter values are ignored, as etcd's FiltersFromRequest does.
    let has = |f: FilterType| c.filters.contains(&(f as i32));
    Request::Create(CreateWatch {
        watch_id: c.watch_id,
        no_put: has(FilterType::Noput),
        no_delete: has(FilterType::Nodelete),
        key,
        range_end: c.range_end,
        start_revision: c.start_revision,
        prev_kv: c.prev_kv,
        progress_notify: c.progress_notify,
        fragment: c.fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, end: &[u8]) -> WatchCreateRequest {
        WatchCreateRequest {
            key: key.into(),
            range_end: end.to_vec(),
            ..Default::default()
        }
    }

    fn anyone(_: &[u8], _: &[u8]) -> Result<(), EtcdError> {
        Ok(())
    }

    fn create(c: WatchCreateRequest) -> Request {
        super::create(c, &anyone)
    }

    fn decode(r: WatchRequest) -> Option<Request> {
        super::decode(r, &anyone)
    }

    #[test]
    fn creates_the_caller_may_not_read_are_refused_with_etcds_text() {
        let deny = |_: &[u8], _: &[u8]| Err(EtcdError::PermissionDenied);
        let refused = super::create(req("a", b""), &deny);
        assert_eq!(
            refused,
            Request::Refuse(Refusal::Denied(EtcdError::PermissionDenied))
        );
        let Request::Refuse(why) = refused else {
            unreachable!()
        };
        assert_eq!(
            why.to_string(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
    }

    #[test]
    fn create_requests_follow_etcds_edge_rules() {
        let Request::Create(c) = create(req("", b"")) else {
            panic!("accepted")
        };
        assert_eq!((c.key, c.range_end), (vec![0], vec![]), "empty key is \\0");
        let Request::Create(c) = create(req("", b"\0")) else {
            panic!("accepted")
        };
        assert_eq!((c.key, c.range_end), (vec![0], vec![0]), "every key");
        assert_eq!(create(req("b", b"a")), Request::Refuse(Refusal::EmptyRange));
        assert_eq!(create(req("a", b"a")), Request::Refuse(Refusal::EmptyRange));
        let Request::Create(c) = create(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32, 7],
            ..req("a", b"")
        }) else {
            panic!("accepted")
        };
        assert!(c.no_delete && !c.no_put);
        assert_eq!(decode(WatchRequest::default()), None);
    }
}

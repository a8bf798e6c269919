//! The Watch service: one bidirectional stream per call, served by a `watch::stream` task.
//!
//! Create requests are normalized and checked here, as etcd's `v3rpc/watch.go` does before
//! they reach its watch stream: an empty key means `"\0"`, a `range_end` of `"\0"` means every
//! key from `key` on, and an empty interval is refused. A stream opened with etcd's
//! `hasleader` metadata (clientv3's `WithRequireLeader`, used by etcdctl) is refused while
//! this member knows no leader, and ends with "no leader" if the member loses its leader for
//! two election timeouts in a row while it runs — the client then reconnects elsewhere.

use std::sync::Arc;

use cairn_mvcc::KeyRange;
use cairn_proto::etcdserverpb::watch_create_request::FilterType;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::watch_server::Watch;
use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::errors::EtcdError;
use crate::auth::Access;
use crate::node::Node;
use crate::watch::response::Refusal;
use crate::watch::{self as hub, CreateWatch, StreamOptions};

/// Responses queued per stream ahead of the transport. Small: each may hold a full chunk,
/// and a client that stops reading should stop its stream's work soon.
const RESPONSE_QUEUE: usize = 8;

/// etcd's metadata key and value for "fail unless there is a leader" (`rpctypes`).
const REQUIRE_LEADER_KEY: &str = "hasleader";
const REQUIRE_LEADER_VALUE: &str = "true";

pub struct WatchService {
    pub node: Arc<Node>,
    pub options: StreamOptions,
    /// Turns true when the member stops: streams end with "server stopped".
    pub stop: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let require_leader = request
            .metadata()
            .get(REQUIRE_LEADER_KEY)
            .is_some_and(|v| v == REQUIRE_LEADER_VALUE);
        if require_leader && !self.node.has_leader() {
            return Err(EtcdError::NoLeader.into());
        }
        // The token is looked at again for every create, as etcd does: auth may be enabled,
        // or the token expire, while the stream lives.
        let token = crate::auth::token_of(request.metadata()).map(str::to_string);
        let tls_user = crate::auth::tls_user_of(request.metadata()).map(str::to_string);
        if let (true, Some(t)) = (self.node.auth.is_enabled(), &token) {
            // On a member that has not applied the entry that issued it yet, wait for it
            // once; a token it still does not know refuses every create below.
            let _ = self.node.caller_for_token(t).await;
        }
        let node = self.node.clone();
        let permitted = move |key: &[u8], range_end: &[u8]| {
            read_permitted(&node, &token, tls_user.as_deref(), key, range_end)
        };
        let requests = request.into_inner().filter_map(move |r| match r {
            Ok(req) => decode(req, &permitted).map(Ok),
            Err(status) => Some(Err(status)),
        });
        let (tx, rx) = mpsc::channel(RESPONSE_QUEUE);
        if require_leader {
            tokio::spawn(close_on_leader_loss(
                self.node.clone(),
                tx.clone(),
                self.stop.clone(),
            ));
        }
        tokio::spawn(hub::stream::serve(
            self.node.clone(),
            self.options,
            Box::pin(requests),
            tx,
            self.stop.clone(),
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Ends a `hasleader` stream with etcd's "no leader" once this member has seen no leader at
/// two checks one election timeout apart. Gives up quietly when the stream or member ends.
async fn close_on_leader_loss(
    node: Arc<Node>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    mut stop: watch::Receiver<bool>,
) {
    let period = std::time::Duration::from_millis(node.raft.config().election_timeout_max);
    let mut misses = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = out.closed() => return,
            _ = stop.wait_for(|s| *s) => return,
        }
        if !node.has_leader() {
            misses += 1;
        } else {
            misses = 0;
        }
        if misses >= 2 {
            // A client that is not reading will not see it; the stream ends either way when
            // it goes away.
            let _ = out.try_send(Err(EtcdError::NoLeader.into()));
            return;
        }
    }
}

/// Whether the stream's caller may watch the range (etcd's `isWatchPermitted`).
fn read_permitted(
    node: &Node,
    token: &Option<String>,
    tls_user: Option<&str>,
    key: &[u8],
    range_end: &[u8],
) -> Result<(), EtcdError> {
    if !node.auth.is_enabled() {
        return Ok(());
    }
    let caller = node.auth.caller_of(token.as_deref(), tls_user)?;
    node.auth.check_op(&caller, Access::Read, key, range_end)
}

/// Checks a create request's range against the caller's permissions.
pub type Permitted<'a> = dyn Fn(&[u8], &[u8]) -> Result<(), EtcdError> + 'a;

/// A request as the stream task takes it; `None` for a message without a request, which
/// etcd ignores. Public for the request-validation fuzz target.
pub fn decode(req: WatchRequest, permitted: &Permitted<'_>) -> Option<hub::Request> {
    Some(match req.request_union? {
        RequestUnion::CreateRequest(c) => create(c, permitted),
        RequestUnion::CancelRequest(c) => hub::Request::Cancel(c.watch_id),
        RequestUnion::ProgressRequest(_) => hub::Request::Progress,
    })
}

fn create(c: WatchCreateRequest, permitted: &Permitted<'_>) -> hub::Request {
    let key = if c.key.is_empty() { vec![0] } else { c.key };
    // etcd checks the range after its normalization, where a `range_end` of "\0" becomes
    // empty and only `key` itself is checked; here "\0" stays open-ended, so watching every
    // key from `key` on needs read permission on all of them.
    if let Err(e) = permitted(&key, &c.range_end) {
        return hub::Request::Refuse(Refusal::Denied(e));
    }
    if KeyRange::new(&key, &c.range_end) == KeyRange::Empty {
        return hub::Request::Refuse(Refusal::EmptyRange);
    }
    // Unknown filter values are ignored, as etcd's FiltersFromRequest does.
    let has = |f: FilterType| c.filters.contains(&(f as i32));
    hub::Request::Create(CreateWatch {
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

    fn create(c: WatchCreateRequest) -> hub::Request {
        super::create(c, &anyone)
    }

    fn decode(r: WatchRequest) -> Option<hub::Request> {
        super::decode(r, &anyone)
    }

    #[test]
    fn creates_the_caller_may_not_read_are_refused_with_etcds_text() {
        let deny = |_: &[u8], _: &[u8]| Err(EtcdError::PermissionDenied);
        let refused = super::create(req("a", b""), &deny);
        assert_eq!(
            refused,
            hub::Request::Refuse(Refusal::Denied(EtcdError::PermissionDenied))
        );
        let hub::Request::Refuse(why) = refused else {
            unreachable!()
        };
        assert_eq!(
            why.to_string(),
            "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
        );
    }

    #[test]
    fn create_requests_follow_etcds_edge_rules() {
        let hub::Request::Create(c) = create(req("", b"")) else {
            panic!("accepted")
        };
        assert_eq!((c.key, c.range_end), (vec![0], vec![]), "empty key is \\0");
        let hub::Request::Create(c) = create(req("", b"\0")) else {
            panic!("accepted")
        };
        assert_eq!((c.key, c.range_end), (vec![0], vec![0]), "every key");
        assert_eq!(
            create(req("b", b"a")),
            hub::Request::Refuse(Refusal::EmptyRange)
        );
        assert_eq!(
            create(req("a", b"a")),
            hub::Request::Refuse(Refusal::EmptyRange)
        );
        let hub::Request::Create(c) = create(WatchCreateRequest {
            filters: vec![FilterType::Nodelete as i32, 7],
            ..req("a", b"")
        }) else {
            panic!("accepted")
        };
        assert!(c.no_delete && !c.no_put);
        assert_eq!(decode(WatchRequest::default()), None);
    }
}

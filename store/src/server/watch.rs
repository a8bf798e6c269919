//! The Watch service: one bidirectional stream per call, served by a `watch::stream` task.
//!
//! Create requests are normalized and checked by `cairn_wire::watch_request::decode`, as
//! etcd's `v3rpc/watch.go` does before they reach its watch stream; the caller's read
//! permission is checked here. A stream opened with etcd's `hasleader` metadata (clientv3's
//! `WithRequireLeader`, used by etcdctl) is refused while this member knows no leader, and
//! ends with "no leader" if the member loses its leader for two election timeouts in a row
//! while it runs — the client then reconnects elsewhere.

use std::sync::Arc;

use cairn_proto::etcdserverpb::watch_server::Watch;
use cairn_proto::etcdserverpb::{WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::errors::EtcdError;
use crate::auth::Access;
use crate::node::Node;
use crate::watch::{self as hub, StreamOptions};

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

/// Create requests are normalized and checked in `cairn_wire::watch_request`.
pub use cairn_wire::watch_request::{decode, Permitted};

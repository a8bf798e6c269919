//! The Watch service: one bidirectional stream per call, served by a `watch::stream` task.
//!
//! The service is written out here rather than generated, for its codec: responses leave as
//! [`Outgoing`] values whose events were encoded once for every watcher (see
//! `crate::watch::event`), and [`WatchCodec`] writes them as the `etcdserverpb.WatchResponse`
//! bytes prost would write. Requests decode as generated.
//!
//! Create requests are normalized and checked by `cairn_wire::watch_request::decode`, as
//! etcd's `v3rpc/watch.go` does before they reach its watch stream; the caller's read
//! permission is checked here. A stream opened with etcd's `hasleader` metadata (clientv3's
//! `WithRequireLeader`, used by etcdctl) is refused while this member knows no leader, and
//! ends with "no leader" if the member loses its leader for two election timeouts in a row
//! while it runs — the client then reconnects elsewhere.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cairn_proto::etcdserverpb::WatchRequest;
use futures::future::BoxFuture;
use futures::Stream;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tonic::body::Body;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};

use super::errors::EtcdError;
use crate::auth::Access;
use crate::node::Node;
use crate::watch::response::Outgoing;
use crate::watch::stream::Batch;
use crate::watch::{self as hub, StreamOptions};

/// Batches of responses queued per stream ahead of the transport. Small: each may refer to a
/// full chunk, and a client that stops reading should stop its stream's work soon. Small also
/// for throughput: while the transport is behind, the stream's task waits here instead of
/// routing revision after revision, and its next read then takes every revision published
/// meanwhile as one chunk, so each watcher gets one response with many events rather than
/// many responses with one each (etcd's watchers, too, batch under load).
const RESPONSE_QUEUE: usize = 1;

/// etcd's metadata key and value for "fail unless there is a leader" (`rpctypes`).
const REQUIRE_LEADER_KEY: &str = "hasleader";
const REQUIRE_LEADER_VALUE: &str = "true";

pub struct WatchService {
    pub node: Arc<Node>,
    pub options: StreamOptions,
    /// Turns true when the member stops: streams end with "server stopped".
    pub stop: watch::Receiver<bool>,
}

impl WatchService {
    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Responses>, Status> {
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
        Ok(Response::new(Responses {
            batches: rx,
            current: Vec::new().into_iter(),
        }))
    }
}

/// Ends a `hasleader` stream with etcd's "no leader" once this member has seen no leader at
/// two checks one election timeout apart. Gives up quietly when the stream or member ends.
async fn close_on_leader_loss(
    node: Arc<Node>,
    out: mpsc::Sender<Batch>,
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
            let last = out.send(vec![Err(EtcdError::NoLeader.into())]);
            let _ = tokio::time::timeout(hub::stream::LAST_WORDS, last).await;
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

/// The responses of one stream, as the transport takes them: batch after batch, in order.
pub struct Responses {
    batches: mpsc::Receiver<Batch>,
    current: std::vec::IntoIter<Result<Outgoing, Status>>,
}

impl Stream for Responses {
    type Item = Result<Outgoing, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(resp) = self.current.next() {
                return Poll::Ready(Some(resp));
            }
            match self.batches.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.current = batch.into_iter(),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// `etcdserverpb.WatchRequest` in, [`Outgoing`] out, both as protobuf.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchCodec;

impl Codec for WatchCodec {
    type Encode = Outgoing;
    type Decode = WatchRequest;
    type Encoder = WatchCodec;
    type Decoder = WatchCodec;

    fn encoder(&mut self) -> Self::Encoder {
        WatchCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        WatchCodec
    }
}

impl Encoder for WatchCodec {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(buf);
        Ok(())
    }
}

impl Decoder for WatchCodec {
    type Item = WatchRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<WatchRequest>, Status> {
        // As generated services answer a request they cannot parse.
        WatchRequest::decode(buf)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// The `etcdserverpb.Watch` gRPC service, routed by the server like a generated one.
#[derive(Clone)]
pub struct WatchServer {
    service: Arc<WatchService>,
    max_decoding_message_size: usize,
}

impl WatchServer {
    pub fn new(service: WatchService, max_decoding_message_size: usize) -> Self {
        WatchServer {
            service: Arc::new(service),
            max_decoding_message_size,
        }
    }
}

impl NamedService for WatchServer {
    const NAME: &'static str = "etcdserverpb.Watch";
}

/// The one method, `Watch`.
struct WatchMethod(Arc<WatchService>);

impl StreamingService<WatchRequest> for WatchMethod {
    type Response = Outgoing;
    type ResponseStream = Responses;
    type Future = BoxFuture<'static, Result<Response<Responses>, Status>>;

    fn call(&mut self, request: Request<Streaming<WatchRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.watch(request).await })
    }
}

impl<B> tower_service::Service<http::Request<B>> for WatchServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let service = self.service.clone();
        let max_decoding = self.max_decoding_message_size;
        Box::pin(async move {
            if req.uri().path() != "/etcdserverpb.Watch/Watch" {
                return Ok(Status::unimplemented("").into_http());
            }
            let mut grpc =
                Grpc::new(WatchCodec).apply_max_message_size_config(Some(max_decoding), None);
            Ok(grpc.streaming(WatchMethod(service), req).await)
        })
    }
}

/// Create requests are normalized and checked in `cairn_wire::watch_request`.
pub use cairn_wire::watch_request::{decode, Permitted};

//! The client side of the peer transport: openraft's network traits over the gRPC
//! `RaftPeer` service of the other members.
//!
//! One lazily connected HTTP/2 channel per peer carries every RPC to it; tonic reconnects by
//! itself after a failure. Messages are encoded by [`super::codec`].
//!
//! Every connection to a peer — Raft messages here, forwarded requests
//! ([`crate::node::Node`]), identity discovery ([`crate::server::membership`]) — is made by a
//! [`PeerDialer`], which alone decides between plain HTTP/2 and TLS from the URL's scheme.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnraftpb::raft_peer_client::RaftPeerClient;
use cairn_proto::cairnraftpb::{RaftMessage, SnapshotChunk};
use openraft::error::{
    NetworkError, RPCError, ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{RaftNetworkFactory, RaftNetworkV2};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use super::codec::{self, Writer};
use super::snapshot::{read_full, ImageFile, SnapshotData};
use super::{Member, MemberId, TypeConfig, Vote};
use crate::tls::connector::TlsConnector;

/// Snapshot stream chunk size.
const SNAPSHOT_CHUNK: usize = 1024 * 1024;

/// Builds peer clients for openraft from the peer URLs recorded in the membership.
#[derive(Clone, Default)]
pub struct PeerNetwork {
    /// Upper bound on a peer message, which carries a batch of log entries.
    pub max_message_bytes: usize,
    pub dialer: PeerDialer,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: MemberId, node: &Member) -> PeerClient {
        PeerClient::new(target, node, &self.dialer, self.max_message_bytes)
    }
}

/// Metadata every peer request carries: the sender's cluster id (hex), which the receiver
/// compares with its own — a member of another cluster (another `--initial-cluster-token`)
/// pointed at this one's peer URLs is refused before it can disturb its Raft state, as
/// etcd's peer handler refuses a foreign `X-Etcd-Cluster-ID`.
pub const CLUSTER_ID_METADATA: &str = "cairn-cluster-id";

/// The cluster id a peer request says it comes from, if any.
pub fn cluster_id_of(meta: &MetadataMap) -> Option<u64> {
    let v = meta.get(CLUSTER_ID_METADATA)?.to_str().ok()?;
    u64::from_str_radix(v, 16).ok()
}

/// Stamps every request of a peer client with this member's cluster id.
#[derive(Clone)]
pub struct ClusterStamp(Option<AsciiMetadataValue>);

impl Interceptor for ClusterStamp {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(id) = &self.0 {
            req.metadata_mut().insert(CLUSTER_ID_METADATA, id.clone());
        }
        Ok(req)
    }
}

/// A gRPC client of one peer's `RaftPeer` service.
pub type PeerRpc = RaftPeerClient<InterceptedService<Channel, ClusterStamp>>;

/// Makes the channels to other members: `http` peer URLs get plain HTTP/2, `https` ones
/// TLS with this member's peer config (`--peer-*` flags).
#[derive(Clone, Default)]
pub struct PeerDialer {
    tls: Option<Arc<rustls::ClientConfig>>,
    cluster_id: Option<u64>,
}

impl PeerDialer {
    /// A dialer for `https` peers with `tls`; without it only `http` peers can be dialed.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Self {
        Self {
            tls,
            cluster_id: None,
        }
    }

    /// The same dialer, stamping requests with `cluster_id` (a member that does not know its
    /// cluster yet — one joining with `--initial-cluster-state existing` — may only ask for
    /// the member list).
    pub fn with_cluster(mut self, cluster_id: u64) -> Self {
        self.cluster_id = Some(cluster_id);
        self
    }

    /// A client of the member's `RaftPeer` service (see [`PeerDialer::channel`]).
    pub fn client(&self, node: &Member) -> Result<PeerRpc, String> {
        let stamp = self
            .cluster_id
            .map(|id| AsciiMetadataValue::try_from(format!("{id:x}")).expect("hex is ascii"));
        Ok(RaftPeerClient::with_interceptor(
            self.channel(node)?,
            ClusterStamp(stamp),
        ))
    }

    /// Connects (lazily) to the first peer URL of a member.
    pub fn channel(&self, node: &Member) -> Result<Channel, String> {
        let url = node
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {} has no peer URL", node.name))?;
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| format!("bad peer URL {url}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_while_idle(true);
        if !url.starts_with("https://") {
            return Ok(endpoint.connect_lazy());
        }
        let tls = self.tls.clone().ok_or_else(|| {
            format!(
                "peer URL {url} is https but no peer TLS is configured (--peer-trusted-ca-file, \
                 --peer-cert-file and --peer-key-file, or --peer-auto-tls)"
            )
        })?;
        Ok(endpoint.connect_with_connector_lazy(TlsConnector::new(tls)))
    }
}

pub struct PeerClient {
    target: MemberId,
    client: Result<PeerRpc, String>,
}

impl PeerClient {
    fn new(target: MemberId, node: &Member, dialer: &PeerDialer, max_message_bytes: usize) -> Self {
        let client = dialer.client(node).map(|c| {
            c.max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(max_message_bytes)
        });
        Self { target, client }
    }

    fn client<E: std::error::Error>(&self) -> Result<PeerRpc, RPCError<TypeConfig, E>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))
    }

    /// Runs one unary call with openraft's deadline, mapping transport failures.
    async fn call<F, Fut, E>(&self, ttl: Duration, f: F) -> Result<Vec<u8>, RPCError<TypeConfig, E>>
    where
        E: std::error::Error,
        F: FnOnce(PeerRpc) -> Fut,
        Fut: Future<Output = Result<tonic::Response<RaftMessage>, tonic::Status>>,
    {
        let client = self.client()?;
        match tokio::time::timeout(ttl, f(client)).await {
            Err(_) => Err(RPCError::Timeout(Timeout {
                action: openraft::RPCTypes::AppendEntries,
                id: 0,
                target: self.target,
                timeout: ttl,
            })),
            Ok(Err(status)) => Err(status_error(status)),
            Ok(Ok(resp)) => Ok(resp.into_inner().data),
        }
    }
}

fn status_error<E: std::error::Error>(status: tonic::Status) -> RPCError<TypeConfig, E> {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::from_string(status.message()))
        }
        _ => RPCError::Network(NetworkError::from_string(format!(
            "{:?}: {}",
            status.code(),
            status.message()
        ))),
    }
}

/// The chunks of an install-snapshot stream, read from the image file as they are sent (so a
/// transfer holds one chunk in memory, not the image). The first chunk carries `meta`; the last
/// one is marked `done`, so a stream cut short (the file unreadable) is refused by the receiver.
fn image_chunks(
    image: ImageFile,
    meta: Vec<u8>,
) -> std::io::Result<impl futures::Stream<Item = SnapshotChunk> + Send + 'static> {
    let len = image.len();
    let reader = image.into_async_reader()?;
    Ok(futures::stream::unfold(
        Some((reader, Some(meta), 0u64)),
        move |state| async move {
            let (mut reader, mut meta, sent) = state?;
            let want = (len - sent).min(SNAPSHOT_CHUNK as u64) as usize;
            let mut data = vec![0; want];
            match read_full(&mut reader, &mut data).await {
                Ok(n) if n == want => {}
                Ok(n) => {
                    tracing::warn!(len, read = sent + n as u64, "snapshot image ended early");
                    return None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading a snapshot image failed");
                    return None;
                }
            }
            let sent = sent + want as u64;
            let done = sent == len;
            let chunk = SnapshotChunk {
                meta: meta.take().unwrap_or_default(),
                data,
                done,
            };
            Some((chunk, (!done).then_some((reader, meta, sent))))
        },
    ))
}

fn decode_error<E: std::error::Error>(e: std::io::Error) -> RPCError<TypeConfig, E> {
    RPCError::Network(NetworkError::new(&e))
}

impl RaftNetworkV2<TypeConfig> for PeerClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        let data = codec::encode_append_request(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.append_entries(RaftMessage { data }).await
            })
            .await?;
        codec::decode_append_response(&resp).map_err(decode_error)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let data = codec::encode_vote_request(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.vote(RaftMessage { data }).await
            })
            .await?;
        codec::decode_vote_response(&resp).map_err(decode_error)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let data = codec::encode_vote_request(&rpc);
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.pre_vote(RaftMessage { data }).await
            })
            .await?;
        codec::decode_vote_response(&resp).map_err(decode_error)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: super::SnapshotImage,
        cancel: impl Future<Output = ReplicationClosed> + Send + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let mut client = self
            .client
            .clone()
            .map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))?;
        let mut meta = Writer::default();
        meta.vote(&vote);
        meta.snapshot_meta(&snapshot.meta);
        let SnapshotData::Image(image) = snapshot.snapshot else {
            let e = std::io::Error::other("a snapshot without an image cannot be sent");
            return Err(StreamingError::Network(NetworkError::new(&e)));
        };
        let chunks = image_chunks(image, meta.buf)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        let ttl = option.hard_ttl().max(Duration::from_secs(60));
        let send = client.install_snapshot(chunks);
        let resp = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = tokio::time::timeout(ttl, send) => r,
        };
        let resp = match resp {
            Err(_) => {
                return Err(StreamingError::Unreachable(Unreachable::from_string(
                    "snapshot transfer timed out",
                )))
            }
            Ok(Err(status)) => {
                return Err(StreamingError::Unreachable(Unreachable::from_string(
                    status.message(),
                )))
            }
            Ok(Ok(r)) => r.into_inner().data,
        };
        let vote = codec::decode_vote(&resp)
            .map_err(|e| StreamingError::Network(NetworkError::new(&e)))?;
        Ok(SnapshotResponse::new(vote))
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        let mut w = Writer::default();
        w.vote(req.from_leader());
        w.u64(*req.to_node_id());
        w.opt_log_id(req.last_log_id());
        let data = w.buf;
        let resp = self
            .call(option.hard_ttl(), |mut c| async move {
                c.transfer_leader(RaftMessage { data }).await
            })
            .await?;
        // The receiver answers with one byte: 0 accepted, 1 refused (it logs why).
        match resp.first() {
            Some(0) => Ok(Ok(())),
            _ => Err(RPCError::Network(NetworkError::from_string(
                "leadership transfer refused by the target",
            ))),
        }
    }
}

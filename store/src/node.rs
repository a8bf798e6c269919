//! A running member: its identity, its Raft node and its MVCC store, and the two paths every
//! client request takes — [`Node::propose`] for writes and [`Node::read_barrier`] for
//! linearizable reads.
//!
//! Writes received by a follower are forwarded to the leader over the peer transport, and a
//! follower serves a linearizable read after asking the leader for a read index and waiting
//! until it has applied that far (etcd's ReadIndex), so any member answers any request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_mvcc::Mvcc;
use cairn_proto::cairnraftpb::ForwardRequest;
use cairn_proto::etcdserverpb::ResponseHeader;
use openraft::error::{ClientWriteError, LinearizableReadError, RaftError};
use openraft::ReadPolicy;
use tokio::sync::watch;

use crate::alarms::Alarms;
use crate::auth::{Auth, Caller};
use crate::defrag::ApplyGate;
use crate::metrics::Metrics;
use crate::raft::codec::Reader;
use crate::raft::command::encode_error;
use crate::raft::network::{PeerDialer, PeerRpc};
use crate::raft::{Command, CommandResult, Member, MemberId, Raft};
use crate::server::errors::EtcdError;
use crate::watch::WatchHub;

/// How old a reading of the backend file's size the space quota check may use: writes that
/// grow the file within this window can overshoot `--quota-backend-bytes` a little, as with
/// etcd's estimate, instead of every write paying a `stat`.
const QUOTA_SIZE_MAX_AGE: Duration = Duration::from_millis(100);

/// Forwarded request kinds (first byte of `ForwardRequest.data`).
pub use crate::raft::command::{
    FORWARD_LEASE_KEEPALIVE, FORWARD_LEASE_TIME_TO_LIVE, FORWARD_PROPOSE, FORWARD_READ_INDEX,
};

/// Request limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// --quota-backend-bytes (etcd's 2 GiB default when unset).
    pub quota_bytes: u64,
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// How long a request may wait for a leader / commit before "request timed out".
    pub request_timeout: Duration,
}

pub struct Node {
    pub id: MemberId,
    pub cluster_id: u64,
    pub name: String,
    pub raft: Raft,
    pub mvcc: Arc<Mvcc>,
    /// Index of the last applied log entry, published by the state machine after each
    /// committed batch.
    pub applied: watch::Receiver<u64>,
    pub limits: Limits,
    pub client_urls: Vec<String>,
    /// This member's watch hub, fed by its state machine (see [`Node::with_watch_hub`]).
    pub watch_hub: Arc<WatchHub>,
    /// The raised alarms, kept equal to the replicated set by the state machine.
    pub alarms: Arc<Alarms>,
    /// Shared with the state machine: a defragmentation pauses its writes through it.
    pub apply_gate: ApplyGate,
    /// Users, roles and tokens, kept equal to the replicated auth store by the state machine.
    pub auth: Arc<Auth>,
    /// When this member last heard from a leader (append entries or heartbeat), as
    /// milliseconds since `started`; a follower's evidence that it still has a leader.
    last_leader_contact: AtomicU64,
    /// The term in which this member, as leader, last confirmed its leadership with a quorum
    /// and applied every entry committed before it (0: none). See [`Node::leads_within_lease`].
    confirmed_term: AtomicU64,
    started: Instant,
    /// Counters for `/metrics` (proposals pending and failed here; see [`Metrics`]).
    pub metrics: Arc<Metrics>,
    peers: Mutex<HashMap<MemberId, PeerRpc>>,
    /// Makes the connections to the leader for forwarded requests.
    dialer: PeerDialer,
}

impl Node {
    // The member's parts, each built separately by `server::start`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: MemberId,
        cluster_id: u64,
        name: String,
        raft: Raft,
        mvcc: Arc<Mvcc>,
        applied: watch::Receiver<u64>,
        limits: Limits,
        client_urls: Vec<String>,
    ) -> Self {
        Self {
            id,
            cluster_id,
            name,
            raft,
            applied,
            limits,
            client_urls,
            watch_hub: Arc::new(WatchHub::new(mvcc.current_revision())),
            mvcc,
            alarms: Arc::new(Alarms::default()),
            apply_gate: ApplyGate::default(),
            auth: Arc::new(Auth::new(
                Duration::from_secs(300),
                crate::auth::password::DEFAULT_COST,
            )),
            last_leader_contact: AtomicU64::new(0),
            confirmed_term: AtomicU64::new(0),
            started: Instant::now(),
            metrics: Arc::new(Metrics::default()),
            peers: Mutex::new(HashMap::new()),
            dialer: PeerDialer::default(),
        }
    }

    /// Dials peers with `dialer` (which holds the peer TLS config).
    pub fn with_dialer(mut self, dialer: PeerDialer) -> Self {
        self.dialer = dialer;
        self
    }

    /// Checks writes against `alarms`, which the state machine keeps up to date.
    pub fn with_alarms(mut self, alarms: Arc<Alarms>) -> Self {
        self.alarms = alarms;
        self
    }

    /// Authenticates requests against `auth`, which the state machine keeps up to date.
    pub fn with_auth(mut self, auth: Arc<Auth>) -> Self {
        self.auth = auth;
        self
    }

    /// Who sent `request`: `None` while auth is disabled (one atomic load, nothing else);
    /// otherwise the user its `token` metadata names, else the common name of its verified
    /// client certificate, else the anonymous caller. A token this member does not know (or that expired) is etcd's "invalid auth
    /// token"; one issued by an entry this member has not applied yet is waited for.
    pub async fn caller(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<Option<Caller>, EtcdError> {
        if !self.auth.is_enabled() {
            return Ok(None);
        }
        let token = crate::auth::token_of(metadata);
        if let Some(token) = token {
            self.wait_for_token(token).await?;
        }
        self.auth
            .caller_of(token, crate::auth::tls_user_of(metadata))
            .map(Some)
    }

    /// The caller a token stands for on this member (see [`Node::caller`]).
    pub async fn caller_for_token(&self, token: &str) -> Result<Caller, EtcdError> {
        self.wait_for_token(token).await?;
        self.auth.caller_for_token(token)
    }

    /// Waits (up to the request timeout) until this member has applied the entry that issued
    /// `token`; a token that names no entry, or one never applied in time, is invalid.
    async fn wait_for_token(&self, token: &str) -> Result<(), EtcdError> {
        let index = crate::auth::tokens::token_index(token).ok_or(EtcdError::InvalidAuthToken)?;
        if *self.applied.borrow() < index {
            let waited =
                tokio::time::timeout(self.limits.request_timeout, self.wait_applied(index)).await;
            if !matches!(waited, Ok(Ok(()))) {
                return Err(EtcdError::InvalidAuthToken);
            }
        }
        Ok(())
    }

    /// Refuses `request` unless auth is disabled or it comes from a user with the root role
    /// (etcd's admin-only maintenance and membership calls).
    pub async fn require_admin<T>(&self, request: &tonic::Request<T>) -> Result<(), EtcdError> {
        match self.caller(request.metadata()).await? {
            None => Ok(()),
            Some(caller) => self.auth.check_admin(&caller),
        }
    }

    /// etcd's quota check for a write that adds data: refused while NOSPACE is raised, and
    /// raises NOSPACE (through the log) when the backend has outgrown `quota_bytes`.
    pub async fn check_quota(&self) -> Result<(), EtcdError> {
        use cairn_proto::etcdserverpb::{alarm_request::AlarmAction, AlarmRequest, AlarmType};
        if self.alarms.is_raised(AlarmType::Nospace) {
            return Err(EtcdError::NoSpace);
        }
        let size = self.mvcc.size_bytes_recent(QUOTA_SIZE_MAX_AGE).unwrap_or(0);
        if size > self.limits.quota_bytes {
            tracing::warn!(
                size,
                quota = self.limits.quota_bytes,
                "backend quota exceeded, raising NOSPACE"
            );
            let raise = Command::Alarm(AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: self.id,
                alarm: AlarmType::Nospace as i32,
            });
            self.propose(raise).await?;
            return Err(EtcdError::NoSpace);
        }
        Ok(())
    }

    /// Defragments under `gate`, which must be the one the state machine writes under.
    pub fn with_apply_gate(mut self, gate: ApplyGate) -> Self {
        self.apply_gate = gate;
        self
    }

    /// Counts into `metrics`, the registry the member's `/metrics` renders.
    pub fn with_server_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves watches from `hub`, which must be the one the state machine publishes to.
    pub fn with_watch_hub(mut self, hub: Arc<WatchHub>) -> Self {
        self.watch_hub = hub;
        self
    }

    /// Runs `f` on the current Raft metrics without copying them.
    pub fn with_metrics<R>(
        &self,
        f: impl FnOnce(&openraft::RaftMetrics<crate::raft::TypeConfig>) -> R,
    ) -> R {
        use openraft::async_runtime::WatchReceiver;
        let rx = self.raft.metrics();
        let m = rx.borrow_watched();
        f(&m)
    }

    /// Records that a leader's append entries (or heartbeat) just arrived.
    pub fn leader_contact(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.last_leader_contact.store(ms, Ordering::Relaxed);
    }

    /// Whether this member has a working leader, as etcd's `Leader() != None`: a leader
    /// must have heard from a quorum, a follower from its leader, within two election
    /// timeouts (etcd's leader steps down after losing its quorum; openraft's keeps its role,
    /// so the quorum acknowledgement is checked here).
    pub fn has_leader(&self) -> bool {
        use openraft::Instant as _;
        let limit = Duration::from_millis(2 * self.raft.config().election_timeout_max);
        self.with_metrics(|m| match m.current_leader {
            None => false,
            // A sole voter is its own quorum: nothing acknowledges it while it is idle.
            Some(leader)
                if leader == self.id
                    && m.membership_config.membership().voter_ids().eq([self.id]) =>
            {
                true
            }
            Some(leader) if leader == self.id => m
                .last_quorum_acked
                .as_ref()
                .is_some_and(|at| at.elapsed() <= limit),
            Some(_) => {
                let last = self.last_leader_contact.load(Ordering::Relaxed);
                let now = self.started.elapsed().as_millis() as u64;
                now.saturating_sub(last) <= limit.as_millis() as u64
            }
        })
    }

    /// True if this member leads, has already confirmed that in the current term (and applied
    /// what was committed before it), and a quorum acknowledged it less than one minimum
    /// election timeout ago (or it is the only voter): the test Raft's core makes for a lease
    /// read, made on Raft's published metrics, so the leader's keep-alives and time-to-live
    /// answers need no round trip to the core.
    ///
    /// The window is the minimum election timeout, shorter than Raft's own leader lease (the
    /// maximum), because a leadership transfer lets the target be elected inside that lease.
    /// A renewal made within one minimum election timeout of the last quorum acknowledgement
    /// is still covered by the next leader: it promotes its lessor after that acknowledgement
    /// and extends every lease by the same timeout (see `Lessor::promote`).
    pub fn leads_within_lease(&self) -> bool {
        use openraft::Instant as _;
        let lease = Duration::from_millis(self.raft.config().election_timeout_min);
        let confirmed = self.confirmed_term.load(Ordering::Acquire);
        self.with_metrics(|m| {
            m.current_leader == Some(self.id)
                && m.state.is_leader()
                && m.current_term == confirmed
                && (m.membership_config.membership().voter_ids().eq([self.id])
                    || m.last_quorum_acked
                        .as_ref()
                        .is_some_and(|at| at.elapsed() < lease))
        })
    }

    /// The current term, as Raft last published it.
    pub fn term(&self) -> u64 {
        self.with_metrics(|m| m.current_term)
    }

    /// Records that this member, leading in `term`, confirmed its leadership with a quorum and
    /// applied every entry committed before. Callers read `term` before asking Raft, and call
    /// this only if it is still the term after, so a leadership lost and regained in between
    /// is not taken for confirmed.
    pub fn leadership_confirmed(&self, term: u64) {
        if self.term() == term {
            self.confirmed_term.fetch_max(term, Ordering::AcqRel);
        }
    }

    /// A response header with this member's identity, the given revision and the current term.
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.term(),
        }
    }

    /// Replicates a command and returns the result of applying it.
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, EtcdError> {
        let bytes = cmd.encode();
        if bytes.len() > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let pending = self.metrics.proposal();
        let proposed = self.propose_loop(cmd, bytes);
        let r = match tokio::time::timeout(self.limits.request_timeout, proposed).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout),
        };
        if r.is_err() {
            pending.failed();
        }
        r
    }

    async fn propose_loop(&self, cmd: Command, bytes: Vec<u8>) -> Result<CommandResult, EtcdError> {
        let mut cmd = Some(cmd);
        loop {
            let c = match cmd.take() {
                Some(c) => c,
                None => Command::decode(&bytes).map_err(|e| EtcdError::Internal(e.to_string()))?,
            };
            let forward = match self.raft.client_write(c).await {
                Ok(resp) => return Ok(resp.data),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => {
                    return Err(EtcdError::LeaderChanged)
                }
                Err(RaftError::APIError(e)) => return Err(EtcdError::Internal(e.to_string())),
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            };
            match (forward.leader_id, forward.leader_node) {
                (Some(leader), Some(node)) if leader != self.id => {
                    let mut req = Vec::with_capacity(bytes.len() + 1);
                    req.push(FORWARD_PROPOSE);
                    req.extend_from_slice(&bytes);
                    match self.forward_write(leader, &node, req).await {
                        Ok(resp) => {
                            return CommandResult::decode(&resp)
                                .map_err(|e| EtcdError::Internal(e.to_string()))
                        }
                        // Never reached the leader: safe to try again.
                        Err(Forwarded::NotSent(e)) => {
                            tracing::debug!(leader, "forwarding a write failed: {e}")
                        }
                        // The leader may have appended it and it may still commit: sending it
                        // again could apply it twice, so the outcome is unknown to the client,
                        // as on etcd when the leader fails during a proposal.
                        Err(Forwarded::Unknown(e)) => {
                            tracing::debug!(leader, "forwarded write lost its leader: {e}");
                            return Err(EtcdError::LeaderChanged);
                        }
                    }
                }
                _ => {}
            }
            // No usable leader yet: an election is under way.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until this member's state reflects every write committed before the call
    /// (linearizable read). Serializable reads skip this.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        match tokio::time::timeout(self.limits.request_timeout, self.read_barrier_loop()).await {
            Ok(r) => r,
            Err(_) => Err(EtcdError::Timeout),
        }
    }

    async fn read_barrier_loop(&self) -> Result<(), EtcdError> {
        loop {
            let forward = match self.raft.ensure_linearizable(ReadPolicy::ReadIndex).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(f))) => f,
                Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                Err(RaftError::Fatal(_)) => return Err(EtcdError::Stopped),
            };
            if let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node) {
                if leader != self.id {
                    match self.forward(leader, &node, vec![FORWARD_READ_INDEX]).await {
                        Ok(resp) => {
                            let index = decode_read_index(&resp)?;
                            return self.wait_applied(index).await;
                        }
                        Err(e) => tracing::debug!(leader, "read index from leader failed: {e}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The leader's half of a follower's linearizable read: confirm leadership with a quorum
    /// and return the index the follower must have applied before it reads.
    pub async fn read_index(&self) -> Result<u64, EtcdError> {
        match self.raft.get_read_linearizer(ReadPolicy::ReadIndex).await {
            Ok(lin) => Ok(lin.read_log_id().index()),
            Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_))) => {
                Err(EtcdError::NotLeader)
            }
            Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(_))) => {
                Err(EtcdError::NoLeader)
            }
            Err(RaftError::Fatal(_)) => Err(EtcdError::Stopped),
        }
    }

    async fn wait_applied(&self, index: u64) -> Result<(), EtcdError> {
        let mut rx = self.applied.clone();
        rx.wait_for(|applied| *applied >= index)
            .await
            .map(|_| ())
            .map_err(|_| EtcdError::Stopped)
    }

    /// Sends `data` (a `FORWARD_*` request) to the leader's `Forward` RPC. `Ok(None)`: this
    /// member leads and must answer itself; `Err`: no leader is known or reachable right now.
    pub async fn forward_to_leader(&self, data: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        let f = match self.raft.as_leader() {
            Ok(_) => return Ok(None),
            Err(f) => f,
        };
        match (f.leader_id, f.leader_node) {
            (Some(leader), Some(node)) if leader != self.id => {
                self.forward(leader, &node, data).await.map(Some)
            }
            _ => Err("no leader".into()),
        }
    }

    /// Forwards a write, telling apart failures where the leader never received it.
    async fn forward_write(
        &self,
        leader: MemberId,
        node: &Member,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, Forwarded> {
        let mut client = self.peer_client(leader, node).map_err(Forwarded::NotSent)?;
        match client.forward(ForwardRequest { data }).await {
            Ok(r) => Ok(r.into_inner().data),
            Err(status) if never_sent(&status) => Err(Forwarded::NotSent(status.message().into())),
            Err(status) => Err(Forwarded::Unknown(status.message().into())),
        }
    }

    async fn forward(
        &self,
        leader: MemberId,
        node: &Member,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, String> {
        let mut client = self.peer_client(leader, node)?;
        client
            .forward(ForwardRequest { data })
            .await
            .map(|r| r.into_inner().data)
            .map_err(|s| s.message().to_string())
    }

    fn peer_client(&self, id: MemberId, node: &Member) -> Result<PeerRpc, String> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = peers.get(&id) {
            return Ok(c.clone());
        }
        let max = self.limits.max_request_bytes + 1024 * 1024;
        let client = self
            .dialer
            .client(node)?
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        peers.insert(id, client.clone());
        Ok(client)
    }
}

/// Encodes the leader's answer to a read-index request.
pub fn encode_read_index(r: Result<u64, EtcdError>) -> Vec<u8> {
    let mut buf = Vec::with_capacity(9);
    match r {
        Ok(index) => {
            buf.push(0);
            buf.extend_from_slice(&index.to_le_bytes());
        }
        Err(e) => encode_error(&mut buf, &e),
    }
    buf
}

fn decode_read_index(buf: &[u8]) -> Result<u64, EtcdError> {
    match CommandResult::decode(buf) {
        Ok(CommandResult::Err(e)) => Err(e),
        _ => {
            let mut r = Reader::new(buf);
            match (r.u8(), r.u64()) {
                (Ok(0), Ok(index)) => Ok(index),
                _ => Err(EtcdError::Internal("malformed read index answer".into())),
            }
        }
    }
}

/// How a forwarded write failed.
enum Forwarded {
    /// The request cannot have reached the leader (no connection was made).
    NotSent(String),
    /// It may have reached the leader.
    Unknown(String),
}

/// Whether a failed RPC never left this member: the connection to the peer could not be
/// established, so no byte of the request was sent.
fn never_sent(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("Connection refused") {
            return true;
        }
        source = e.source();
    }
    false
}

//! The member process: opens storage, starts Raft, serves peers and clients.
//!
//! [`start`] returns once every listener is bound, so tests can start a member in-process
//! and use it at once; [`Server::shutdown`] stops it cleanly (the same path SIGTERM takes).
//!
//! A storage error is not retryable (a failed `fdatasync` may have dropped dirty pages, a failed
//! redb commit leaves the state machine unknown): Raft stops on it, and then so does the member —
//! it logs the cause at error level, closes its client and peer listeners, and
//! [`Server::run_until`] returns the cause, which the binary turns into a non-zero exit, as
//! etcd's panic does. Restarting recovers from what reached the disk.

pub mod auth;
pub mod cluster;
pub mod election;
pub use cairn_wire::errors;
pub mod identity;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod maintenance_auth;
pub mod membership;
pub use cairn_wire::validate;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cairn_proto::cairnraftpb::raft_peer_server::RaftPeerServer;
use cairn_proto::etcdserverpb::auth_server::AuthServer;
use cairn_proto::etcdserverpb::cluster_server::ClusterServer;
use cairn_proto::etcdserverpb::kv_server::KvServer;
use cairn_proto::etcdserverpb::lease_server::LeaseServer;
use cairn_proto::etcdserverpb::maintenance_server::MaintenanceServer;
use cairn_proto::v3electionpb::election_server::ElectionServer;
use cairn_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch as sync_watch;
use tokio::task::JoinHandle;

use crate::config::{ClusterState, Config};
use crate::http::{self, ClientLayer, HttpState};
use crate::lessor::{self, Lessor};
use crate::metrics::timed_fs::TimedFs;
use crate::metrics::Metrics;
use crate::node::{Limits, Node};
use crate::raft::log_store::LogStore;
use crate::raft::network::{PeerDialer, PeerNetwork};
use crate::raft::peer_service::PeerService;
use crate::raft::state_machine::StateMachine;
use crate::raft::{Command, Member, Raft};
use crate::tls::Tls;
use crate::watch::{StreamOptions, WatchHub};

/// gRPC framing overhead allowed on top of --max-request-bytes (as etcd allows).
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// A running member.
pub struct Server {
    pub node: Arc<Node>,
    pub client_addrs: Vec<SocketAddr>,
    pub peer_addrs: Vec<SocketAddr>,
    stop: Arc<sync_watch::Sender<bool>>,
    /// Why Raft stopped on its own (a storage error), once it has.
    failure: sync_watch::Receiver<Option<String>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Serves until `shutdown` completes (then stops cleanly, `Ok`) or Raft stops on a storage
    /// error (then stops serving and returns that error): the binary's exit status.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let failure = tokio::select! {
            _ = shutdown => None,
            cause = self.failed() => Some(cause),
        };
        self.shutdown().await;
        match failure {
            None => Ok(()),
            Some(cause) => Err(anyhow::anyhow!("raft stopped on a storage error: {cause}")),
        }
    }

    /// Resolves once Raft has stopped on a storage error, with its cause; by then the member
    /// has closed its listeners and refuses every request. Pending forever otherwise.
    pub async fn failed(&self) -> String {
        let mut failure = self.failure.clone();
        let cause = failure
            .wait_for(Option::is_some)
            .await
            .map(|cause| cause.clone().unwrap_or_default());
        match cause {
            Ok(cause) => cause,
            // The watcher ended without a failure: a clean shutdown is under way.
            Err(_) => std::future::pending().await,
        }
    }

    /// Stops serving, stops Raft and makes the state machine durable — unless Raft stopped on
    /// a storage error: then nothing more is written, restart recovers from the disk.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        if self.failure.borrow().is_some() {
            return;
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!("raft shutdown: {e}");
        }
        if let Err(e) = self.node.mvcc.begin().and_then(|b| b.commit(true)) {
            tracing::warn!("final checkpoint of the state machine failed: {e}");
        }
    }
}

/// Starts a member as configured and returns once it is listening.
pub async fn start(cfg: Config) -> anyhow::Result<Server> {
    start_with_log_fs(cfg, Arc::new(cairn_log::StdFs)).await
}

/// [`start`], with the Raft log's files going through `log_fs` instead of the real filesystem:
/// the hook where tests inject I/O errors. Not a configuration users have.
#[doc(hidden)]
pub async fn start_with_log_fs(
    cfg: Config,
    log_fs: Arc<dyn cairn_log::FileSystem>,
) -> anyhow::Result<Server> {
    start_with_storage(cfg, log_fs, None).await
}

/// [`start_with_log_fs`], with the state machine's redb files also going through `db_layer`
/// (see `cairn_mvcc::backend`): the hook where tests fail or crash the state machine's commits.
/// Not a configuration users have.
#[doc(hidden)]
pub async fn start_with_storage(
    cfg: Config,
    log_fs: Arc<dyn cairn_log::FileSystem>,
    db_layer: Option<cairn_mvcc::BackendLayer>,
) -> anyhow::Result<Server> {
    cfg.validate()?;
    let data_dir = cfg.data_dir();
    let member_dir = data_dir.join("member");
    std::fs::create_dir_all(&member_dir)
        .with_context(|| format!("creating data dir {}", member_dir.display()))?;

    let initial = cfg.initial_members()?;
    let tls = Tls::load(&cfg)?;
    let dialer = PeerDialer::new(tls.peer_client.clone());
    let ident = match identity::load(&member_dir)? {
        Some(ident) => ident,
        // Joining a running cluster: it already knows our id (from `member add`).
        None if cfg.initial_cluster_state == ClusterState::Existing => {
            let mine: Vec<String> = crate::config::split_urls(&cfg.initial_advertise_peer_urls);
            let others: Vec<String> = initial
                .iter()
                .flat_map(|m| m.peer_urls.iter().cloned())
                .filter(|u| !mine.contains(u))
                .collect();
            let ident = membership::discover_identity(&dialer, &others, &mine).await?;
            identity::store(&member_dir, ident)?;
            ident
        }
        None => identity::load_or_create(&member_dir, &cfg, &initial)?,
    };
    // From here on every peer request says which cluster it belongs to.
    let dialer = dialer.with_cluster(ident.cluster_id);
    tracing::info!(
        name = %cfg.name,
        member_id = %format!("{:x}", ident.member_id),
        cluster_id = %format!("{:x}", ident.cluster_id),
        data_dir = %data_dir.display(),
        "starting member"
    );

    let metrics = Arc::new(Metrics::default());
    // The log's files go through a wrapper that times each group-commit fdatasync.
    let log_fs = TimedFs::new(log_fs, metrics.wal_fsync.clone());
    let log = cairn_log::Log::open_with(
        Arc::new(log_fs),
        member_dir.join("log"),
        cairn_log::LogOptions::default(),
    )
    .context("opening the raft log")?;
    let log_store = LogStore::new(Arc::new(log));
    let mvcc = Arc::new(
        cairn_mvcc::Mvcc::open_with(&member_dir.join("db"), db_layer)
            .context("opening the state machine")?,
    );
    let (applied_tx, applied_rx) = sync_watch::channel(0u64);
    let lessor = Arc::new(Lessor::new(
        mvcc.clone(),
        lessor::min_lease_ttl(cfg.heartbeat_interval, cfg.election_timeout),
        Duration::from_millis(cfg.election_timeout),
    )?);
    let sm = StateMachine::new(mvcc.clone(), applied_tx)?.with_lessor(lessor.clone());
    let watch_hub = Arc::new(WatchHub::new(mvcc.current_revision()));
    let sm = sm.with_watch_hub(watch_hub.clone());
    let alarms = Arc::new(crate::alarms::Alarms::default());
    let apply_gate = crate::defrag::ApplyGate::default();
    let auth = Arc::new(crate::auth::Auth::new(
        Duration::from_secs(cfg.auth_token_ttl),
        cfg.bcrypt_cost,
    ));
    let sm = sm
        .with_alarms(alarms.clone())?
        .with_auth(auth.clone())?
        .with_metrics(metrics.clone())
        .with_apply_gate(apply_gate.clone());

    let raft_config = openraft::Config {
        cluster_name: cfg.initial_cluster_token.clone(),
        heartbeat_interval: cfg.heartbeat_interval,
        election_timeout_min: cfg.election_timeout,
        election_timeout_max: cfg.election_timeout * 2,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(cfg.snapshot_count),
        max_in_snapshot_log_to_keep: cfg.experimental_snapshot_catchup_entries,
        max_payload_entries: 1024,
        enable_pre_vote: Some(true),
        // A restarted leader must win an election like any member (etcd's behaviour): its
        // state machine may be behind what it acknowledged (non-durable redb commits, committed
        // id not persisted), and restoring leadership without a vote would serve stale reads —
        // found by the fault suite (seed 1: a read after kill -9 of the leader saw an older
        // value than an acknowledged write).
        enable_leader_restore: Some(false),
        // A follower whose log lost entries it had acknowledged (a disk losing synced data: its
        // recovery cuts what looks like a torn tail) is sent them again. Without this openraft's
        // leader treats the shorter log as a bug (a panic in debug builds, which stops the
        // leader's member) — found by `processes::a_follower_restarts_from_a_torn_log_tail`.
        // The leader's commit index never moves back; the lost copies were redundant.
        allow_log_reversion: Some(true),
        ..Default::default()
    }
    .validate()
    .context("raft configuration")?;
    let max_message = cfg.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let network = PeerNetwork {
        max_message_bytes: max_message * 64,
        dialer: dialer.clone(),
    };
    let raft: Raft = openraft::Raft::new(
        ident.member_id,
        Arc::new(raft_config),
        network,
        log_store,
        sm,
    )
    .await
    .context("starting raft")?;

    let limits = Limits {
        quota_bytes: cfg.quota_bytes() as u64,
        max_request_bytes: cfg.max_request_bytes as usize,
        max_txn_ops: cfg.max_txn_ops as usize,
        request_timeout: Duration::from_secs(5) + 2 * Duration::from_millis(cfg.election_timeout),
    };
    let node = Arc::new(
        Node::new(
            ident.member_id,
            ident.cluster_id,
            cfg.name.clone(),
            raft.clone(),
            mvcc,
            applied_rx,
            limits,
            cfg.advertise_client_urls(),
        )
        .with_watch_hub(watch_hub)
        .with_alarms(alarms)
        .with_apply_gate(apply_gate)
        .with_auth(auth)
        .with_server_metrics(metrics.clone())
        .with_dialer(dialer),
    );
    let http_state = Arc::new(HttpState {
        node: node.clone(),
        metrics: metrics.clone(),
        quota_bytes: cfg.quota_bytes(),
        max_body_bytes: max_message,
    });

    let (stop, stop_rx) = sync_watch::channel(false);
    let stop = Arc::new(stop);
    let (failure_tx, failure) = sync_watch::channel(None);
    let mut tasks = vec![tokio::spawn(stop_on_storage_error(
        raft.clone(),
        stop.clone(),
        failure_tx,
        stop_rx.clone(),
    ))];
    // Before this member can be elected, so the lessor sees its first promotion.
    tasks.push(lessor::expiry::spawn(
        lessor.clone(),
        raft.clone(),
        limits.request_timeout,
        stop_rx.clone(),
    ));

    // Peers first: other members may already be waiting for us.
    let mut peer_addrs = Vec::new();
    for url in cfg.peer_listen_urls()? {
        let addr = url.addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for peers on {addr}"))?;
        peer_addrs.push(listener.local_addr()?);
        let svc = RaftPeerServer::new(PeerService {
            node: node.clone(),
            lessor: lessor.clone(),
        })
        .max_decoding_message_size(max_message * 64)
        .max_encoding_message_size(max_message * 64);
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(svc);
        let tls = tls.peer.clone().filter(|_| url.secure);
        tasks.push(serve(router, listener, tls, stop_rx.clone(), "peer"));
    }

    if cfg.initial_cluster_state == ClusterState::New && !raft.is_initialized().await? {
        let members: BTreeMap<u64, Member> = initial
            .iter()
            .map(|m| {
                (
                    identity::member_id(&m.peer_urls, &cfg.initial_cluster_token),
                    Member {
                        name: m.name.clone(),
                        peer_urls: m.peer_urls.clone(),
                        voter_pending: false,
                    },
                )
            })
            .collect();
        // Every member of a new cluster proposes the same initial membership; openraft
        // accepts that (the entry is identical everywhere) and one of them gets elected.
        if let Err(e) = raft.initialize(members).await {
            tracing::info!("cluster already initialized: {e}");
        }
    }

    let mut client_addrs = Vec::new();
    for url in cfg.client_listen_urls()? {
        let addr = url.addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for clients on {addr}"))?;
        client_addrs.push(listener.local_addr()?);
        let kv = KvServer::new(kv::KvService { node: node.clone() })
            .max_decoding_message_size(max_message);
        let maintenance = MaintenanceServer::new(maintenance_auth::AuthMaintenance {
            inner: maintenance::MaintenanceService {
                node: node.clone(),
                quota_bytes: cfg.quota_bytes(),
            },
        })
        .max_decoding_message_size(max_message);
        let cluster = ClusterServer::new(cluster::ClusterService { node: node.clone() });
        let auth = AuthServer::new(auth::AuthService { node: node.clone() });
        let recipes = crate::concurrency::client::Client::new(node.clone(), stop_rx.clone());
        let election = ElectionServer::new(election::ElectionService {
            client: recipes.clone(),
        });
        let lock = LockServer::new(lock::LockService { client: recipes });
        let lease = LeaseServer::new(lease::LeaseService::new(
            node.clone(),
            lessor.clone(),
            stop_rx.clone(),
        ));
        let watch = watch::WatchServer::new(
            watch::WatchService {
                node: node.clone(),
                options: StreamOptions {
                    progress_interval: cfg.watch_progress_notify_interval(),
                    fragment_bytes: max_message,
                },
                stop: stop_rx.clone(),
            },
            max_message,
        );
        // HTTP/1.1 is accepted for the HTTP side; ClientLayer routes each request.
        let router = tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .accept_http1(true)
            .layer(ClientLayer::new(http_state.clone()))
            .add_service(kv)
            .add_service(maintenance)
            .add_service(cluster)
            .add_service(auth)
            .add_service(lease)
            .add_service(election)
            .add_service(lock)
            .add_service(watch);
        let tls = tls.client.clone().filter(|_| url.secure);
        tasks.push(http::serve_client(router, listener, tls, stop_rx.clone()));
    }
    for url in cfg.metrics_listen_urls()? {
        let addr = url.addr;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        tracing::info!(%addr, "serving /metrics and /health");
        tasks.push(http::serve_metrics(
            listener,
            tls.client.clone().filter(|_| url.secure),
            http_state.clone(),
            stop_rx.clone(),
        ));
    }
    tasks.push(tokio::spawn(http::scrape::count_leader_changes(
        node.clone(),
        metrics.clone(),
        stop_rx.clone(),
    )));

    tasks.push(tokio::spawn(publish(node.clone(), stop_rx.clone())));
    if let Ok(Some(policy)) =
        crate::compactor::policy(&cfg.auto_compaction_mode, &cfg.auto_compaction_retention)
    {
        tasks.push(crate::compactor::spawn(
            node.clone(),
            policy,
            stop_rx.clone(),
        ));
    }
    tasks.push(tokio::spawn(membership::promote_caught_up(
        node.clone(),
        stop_rx.clone(),
    )));
    tracing::info!(?client_addrs, ?peer_addrs, "ready to serve");
    Ok(Server {
        node,
        client_addrs,
        peer_addrs,
        stop,
        failure,
        tasks,
    })
}

/// Watches Raft; when it stops on its own (openraft's `Fatal`: a storage error of the log or
/// the state machine, or a panic of its core) records the cause in `failure` and stops every
/// listener, so nothing is served from a member whose durability is unknown. Requests already
/// waiting on Raft get `etcdserver: server stopped` from it.
async fn stop_on_storage_error(
    raft: Raft,
    stop: Arc<sync_watch::Sender<bool>>,
    failure: sync_watch::Sender<Option<String>>,
    mut stopping: sync_watch::Receiver<bool>,
) {
    use openraft::async_runtime::WatchReceiver;
    let mut metrics = raft.metrics();
    let cause = loop {
        if let Err(fatal) = &metrics.borrow_watched().running_state {
            break fatal.to_string();
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() {
                break "the raft core ended".to_string();
            },
            // A clean shutdown: Server::shutdown stops Raft only after this task returned.
            _ = stopping.wait_for(|s| *s) => return,
        }
    };
    tracing::error!(
        cause = %cause,
        "raft stopped on a storage error; this member stops serving and must be restarted"
    );
    failure.send_replace(Some(cause));
    stop.send_replace(true);
}

fn serve(
    router: tonic::transport::server::Router,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: sync_watch::Receiver<bool>,
    what: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        let served = match tls {
            Some(tls) => {
                let incoming = crate::tls::acceptor::incoming(listener, tls);
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
            None => {
                // Nagle's algorithm would hold small responses back ~40 ms; the builder's
                // tcp_nodelay does not reach sockets accepted here, so set it per connection.
                let incoming =
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
        };
        if let Err(e) = served {
            tracing::error!("{what} server stopped: {e}");
        }
    })
}

/// Announces this member's name and client URLs through the log, retrying until it lands.
async fn publish(node: Arc<Node>, mut stop: sync_watch::Receiver<bool>) {
    let cmd = Command::Publish {
        member_id: node.id,
        name: node.name.clone(),
        client_urls: node.client_urls.clone(),
    };
    loop {
        tokio::select! {
            r = node.propose(cmd.clone()) => match r {
                Ok(_) => {
                    tracing::info!("published member attributes");
                    return;
                }
                Err(e) => tracing::debug!("publishing member attributes: {e}"),
            },
            _ = stop.wait_for(|s| *s) => return,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

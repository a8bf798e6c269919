//! `lease-keepalive`: each client grants one lease (TTL `--ttl`, etcd's tool uses 100 s) and
//! then sends keep-alives on ONE long-lived LeaseKeepAlive stream, waiting for each answer
//! before the next — a round trip per request, as a real client's keep-alive loop behaves.
//! (etcd's tool calls `KeepAliveOnce`, which opens a new stream per request; measuring
//! stream setup is not what the keep-alive path is about.) Leases are revoked afterwards.

use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseRevokeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::progress::{Progress, ProgressLine};
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Total number of lease keepalive requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// TTL in seconds of each client's lease.
    #[arg(long, default_value_t = 100)]
    pub ttl: i64,
    /// Maximum keep-alives per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
}

struct KeepAliveWorker {
    lease: LeaseClient<Channel>,
    id: i64,
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAliveWorker {
    async fn open(channel: Channel, ttl: i64) -> Result<Self, Status> {
        let mut lease = LeaseClient::new(channel);
        let id = lease
            .lease_grant(LeaseGrantRequest { ttl, id: 0 })
            .await?
            .into_inner()
            .id;
        // Queue the first keep-alive before opening the stream: a Go gRPC server sends the
        // response headers only with its first message, so the call returns only after it.
        let (tx, requests) = mpsc::channel(1);
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .map_err(|_| Status::internal("keep-alive queue closed"))?;
        let mut rx = lease
            .lease_keep_alive(ReceiverStream::new(requests))
            .await?
            .into_inner();
        rx.message().await?;
        Ok(Self { lease, id, tx, rx })
    }
}

impl Worker for KeepAliveWorker {
    async fn call(&mut self, _seq: u64) -> Result<(), crate::driver::CallError> {
        self.tx
            .send(LeaseKeepAliveRequest { id: self.id })
            .await
            .map_err(|_| Status::unavailable("keep-alive stream closed"))?;
        let resp = self
            .rx
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("keep-alive stream ended"))?;
        if resp.ttl <= 0 {
            return Err(Status::not_found("lease not found or expired").into());
        }
        Ok(())
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    let mut opening = tokio::task::JoinSet::new();
    for i in 0..opts.clients {
        let channel = conns.channel(i);
        let ttl = args.ttl;
        opening.spawn(async move { KeepAliveWorker::open(channel, ttl).await });
    }
    let mut workers = Vec::with_capacity(opts.clients);
    while let Some(w) = opening.join_next().await {
        workers.push(w?.map_err(|s| anyhow::anyhow!("granting a lease: {s}"))?);
    }
    let progress = Progress::default();
    let line = ProgressLine::start(
        "lease-keepalive".into(),
        args.total,
        progress.clone(),
        opts.progress,
    );
    let out = driver::run(workers, args.total, args.rate, &progress).await;
    drop(line);
    let mut revoking = tokio::task::JoinSet::new();
    for mut w in out.workers {
        revoking.spawn(async move {
            drop(w.tx);
            w.lease
                .lease_revoke(LeaseRevokeRequest { id: w.id })
                .await
                .map(drop)
        });
    }
    let mut revoke_errors = 0u64;
    while let Some(r) = revoking.join_next().await {
        revoke_errors += u64::from(!matches!(r, Ok(Ok(()))));
    }
    Ok(
        Report::new("lease-keepalive", "requests", out.ok, out.elapsed, out.rec)
            .with("leases", opts.clients as u64)
            .with("revoke_errors", revoke_errors),
    )
}

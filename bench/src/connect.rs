//! The gRPC connections a run uses: `--conns` HTTP/2 channels, spread round-robin over
//! `--endpoints` (or only the leader's with `--target-leader`). Client `i` uses channel
//! `i % conns`, as etcd's tool assigns clients to connections.

use std::time::Duration;

use anyhow::Context as _;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::StatusRequest;
use tonic::transport::{Channel, Endpoint};

#[derive(Debug, Clone)]
pub struct ConnectOpts {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub target_leader: bool,
    pub dial_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct Conns {
    channels: Vec<Channel>,
    /// The endpoints actually used (the leader's only, with `--target-leader`).
    pub endpoints: Vec<String>,
}

/// `host:port` as etcd's tool accepts it, or a full `http://` URL.
pub fn normalize_endpoint(e: &str) -> String {
    let e = e.trim();
    if e.contains("://") {
        e.to_string()
    } else {
        format!("http://{e}")
    }
}

async fn dial(url: &str, timeout: Duration) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_string())
        .with_context(|| format!("bad endpoint {url:?}"))?
        .connect_timeout(timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// The endpoint whose member is the leader, by asking each for its status.
pub async fn find_leader(endpoints: &[String], timeout: Duration) -> anyhow::Result<String> {
    for url in endpoints {
        let Ok(ch) = dial(url, timeout).await else {
            continue;
        };
        let Ok(status) = MaintenanceClient::new(ch).status(StatusRequest {}).await else {
            continue;
        };
        let status = status.into_inner();
        let member = status.header.as_ref().map_or(0, |h| h.member_id);
        if status.leader != 0 && status.leader == member {
            return Ok(url.clone());
        }
    }
    anyhow::bail!("no leader found among {endpoints:?}")
}

impl Conns {
    pub async fn connect(opts: &ConnectOpts) -> anyhow::Result<Self> {
        anyhow::ensure!(!opts.endpoints.is_empty(), "no --endpoints");
        anyhow::ensure!(opts.conns > 0, "--conns must be positive");
        let mut endpoints: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect();
        if opts.target_leader {
            endpoints = vec![find_leader(&endpoints, opts.dial_timeout).await?];
        }
        let mut channels = Vec::with_capacity(opts.conns);
        for i in 0..opts.conns {
            channels.push(dial(&endpoints[i % endpoints.len()], opts.dial_timeout).await?);
        }
        Ok(Self {
            channels,
            endpoints,
        })
    }

    /// The channel client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }
}

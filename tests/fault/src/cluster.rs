//! A cluster of real `cairn-store` processes on loopback whose peer traffic flows through the
//! harness's [`Network`], with the faults the nemesis applies: kill -9 and restart,
//! SIGSTOP/SIGCONT, link cuts, delays.
//!
//! Each member listens for peers on its own port but advertises its proxy's port in
//! `--initial-cluster`, so every peer connection to it passes the proxy. Clients talk to the
//! members' client ports directly. Each member's stderr goes to `m<i>.log` in the cluster's
//! directory, kept when a run finds anomalies.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::cluster_client::ClusterClient;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberRemoveRequest, RangeRequest, StatusRequest,
};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::binary;
use crate::proxy::Network;

/// Raft timing for every member: fast elections keep fault runs short.
pub const HEARTBEAT_MS: u64 = 50;
pub const ELECTION_MS: u64 = 500;

pub struct Member {
    pub name: String,
    pub client_url: String,
    /// The member's own peer listener.
    peer_url: String,
    /// Its proxy, as every other member knows it.
    proxy_url: String,
    data_dir: PathBuf,
    /// The id the member reports in response headers (known once it has started).
    pub id: u64,
    child: Option<Child>,
    paused: bool,
    /// Joins a running cluster (`--initial-cluster-state existing`): set once the member was
    /// replaced by a fresh one.
    joins_existing: bool,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
    pub fn is_paused(&self) -> bool {
        self.paused
    }
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub net: Arc<Network>,
    spec: String,
    proxies: Vec<JoinHandle<()>>,
    /// Data dirs and member logs (`m<i>.log`); deleted on drop unless [`Cluster::keep_dir`].
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
}

/// A lazily connected channel to `url`; requests fail fast while the member is down.
pub fn lazy_channel(url: &str) -> Channel {
    Endpoint::from_shared(url.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .tcp_nodelay(true)
        .connect_lazy()
}

impl Cluster {
    /// Starts `n` members and waits until every one answers a linearizable read.
    pub async fn start(n: usize) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = Network::new(n);
        let mut members = Vec::new();
        let mut proxies = Vec::new();
        for i in 0..n {
            let proxy = StdListener::bind("127.0.0.1:0").expect("bind proxy");
            proxy.set_nonblocking(true).expect("nonblocking");
            let proxy_addr = proxy.local_addr().expect("addr");
            let peer_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let listener = tokio::net::TcpListener::from_std(proxy).expect("tokio listener");
            proxies.push(net.serve(listener, i, peer_addr));
            members.push(Member {
                name: format!("m{i}"),
                client_url: format!("http://127.0.0.1:{}", free_port()),
                peer_url: format!("http://{peer_addr}"),
                proxy_url: format!("http://{proxy_addr}"),
                data_dir: dir.path().join(format!("m{i}.cairn")),
                id: 0,
                child: None,
                paused: false,
                joins_existing: false,
            });
        }
        let spec = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.proxy_url))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            members,
            net,
            spec,
            proxies,
            dir_path: dir.path().to_path_buf(),
            dir: Some(dir),
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        for i in 0..n {
            cluster.wait_ready(i, Duration::from_secs(60)).await;
            let ch = lazy_channel(&cluster.members[i].client_url);
            let status = MaintenanceClient::new(ch)
                .status(StatusRequest {})
                .await
                .expect("status");
            cluster.members[i].id = status.into_inner().header.expect("header").member_id;
        }
        cluster
    }

    /// Keeps the data dirs and member logs after the cluster is gone; returns where they are.
    pub fn keep_dir(&mut self) -> PathBuf {
        if let Some(d) = self.dir.take() {
            let _ = d.keep();
        }
        self.dir_path.clone()
    }

    fn spawn(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir_path.join(format!("m{i}.log")))
            .expect("member log");
        let m = &mut self.members[i];
        assert!(m.child.is_none(), "{} already running", m.name);
        let child = Command::new(binary::cairn_store())
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args([
                "--listen-client-urls",
                &m.client_url,
                "--advertise-client-urls",
                &m.client_url,
                "--listen-peer-urls",
                &m.peer_url,
                "--initial-advertise-peer-urls",
                &m.proxy_url,
                "--initial-cluster",
                &self.spec,
                "--initial-cluster-token",
                "fault-cluster",
                "--initial-cluster-state",
                if m.joins_existing { "existing" } else { "new" },
                "--heartbeat-interval",
                &HEARTBEAT_MS.to_string(),
                "--election-timeout",
                &ELECTION_MS.to_string(),
                "--log-level",
            ])
            .arg(std::env::var("CAIRN_TEST_LOG_LEVEL").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn cairn-store");
        self.net.set_pid(i, Some(child.id()));
        m.child = Some(child);
        m.paused = false;
    }

    /// Waits until member `i` answers a linearizable read.
    pub async fn wait_ready(&self, i: usize, within: Duration) {
        let deadline = Instant::now() + within;
        let mut kv = KvClient::new(lazy_channel(&self.members[i].client_url));
        loop {
            let probe = RangeRequest {
                key: b"probe".to_vec(),
                ..Default::default()
            };
            let r = tokio::time::timeout(Duration::from_secs(2), kv.range(probe)).await;
            if matches!(r, Ok(Ok(_))) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not serve a linearizable read within {within:?}",
                self.members[i].name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: nothing gets flushed.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
        self.members[i].paused = false;
        self.net.set_pid(i, None);
    }

    /// Starts a killed member again on its data dir.
    pub fn restart(&mut self, i: usize) {
        if self.members[i].child.is_none() {
            self.spawn(i);
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`).
    pub fn pause(&mut self, i: usize, paused: bool) {
        let Some(c) = &self.members[i].child else {
            return;
        };
        let sig = if paused { "-STOP" } else { "-CONT" };
        let ok = Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {}", self.members[i].name);
        self.members[i].paused = paused;
    }

    /// Replaces member `i` by a fresh one, as an operator replaces a dead member: remove it
    /// (through another member), kill it and wipe its data, add it back under a new id, start
    /// it with `--initial-cluster-state existing`. Membership calls are retried through the
    /// other members until `within`; returns what happened, for the fault log.
    pub async fn replace(&mut self, i: usize, within: Duration) -> Result<String, String> {
        let deadline = Instant::now() + within;
        let others: Vec<String> = (0..self.members.len())
            .filter(|o| *o != i)
            .map(|o| self.members[o].client_url.clone())
            .collect();
        let old_id = self.members[i].id;
        let mut attempt = 0;
        loop {
            let url = &others[attempt % others.len()];
            attempt += 1;
            let mut c = ClusterClient::new(lazy_channel(url));
            let r = tokio::time::timeout(
                Duration::from_secs(3),
                c.member_remove(MemberRemoveRequest { id: old_id }),
            )
            .await;
            match r {
                Ok(Ok(_)) => break,
                // An earlier attempt whose answer was lost did it.
                Ok(Err(e)) if e.message().contains("member not found") => break,
                _ if Instant::now() >= deadline => {
                    return Err(format!("removing m{i} ({old_id:x}) never succeeded"))
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        self.kill(i);
        let _ = std::fs::remove_dir_all(&self.members[i].data_dir);
        let peer_urls = vec![self.members[i].proxy_url.clone()];
        let new_id = loop {
            let url = &others[attempt % others.len()];
            attempt += 1;
            let mut c = ClusterClient::new(lazy_channel(url));
            let add = MemberAddRequest {
                peer_ur_ls: peer_urls.clone(),
                is_learner: false,
            };
            let r = tokio::time::timeout(Duration::from_secs(3), c.member_add(add)).await;
            match r {
                Ok(Ok(resp)) => break resp.into_inner().member.map_or(0, |m| m.id),
                Ok(Err(e)) if e.message().contains("Peer URLs already exists") => {
                    let list = c
                        .member_list(MemberListRequest { linearizable: true })
                        .await;
                    if let Ok(list) = list {
                        if let Some(m) = list
                            .into_inner()
                            .members
                            .into_iter()
                            .find(|m| m.peer_ur_ls == peer_urls)
                        {
                            break m.id;
                        }
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(format!("adding m{i} back never succeeded"));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        self.members[i].id = new_id;
        self.members[i].joins_existing = true;
        self.spawn(i);
        Ok(format!(
            "m{i} removed as {old_id:x}, wiped, added back as {new_id:x}"
        ))
    }

    /// Every member running and unpaused, every link restored.
    pub fn heal_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].paused {
                self.pause(i, false);
            }
            self.restart(i);
        }
        self.net.heal();
    }

    /// The leader as the running, unpaused members report it (majority of their answers).
    pub async fn leader(&self) -> Option<usize> {
        let mut votes: Vec<u64> = Vec::new();
        for m in self.members.iter().filter(|m| m.is_running() && !m.paused) {
            let mut c = MaintenanceClient::new(lazy_channel(&m.client_url));
            let r = tokio::time::timeout(Duration::from_millis(500), c.status(StatusRequest {}));
            if let Ok(Ok(s)) = r.await {
                let leader = s.into_inner().leader;
                if leader != 0 {
                    votes.push(leader);
                }
            }
        }
        votes.sort_unstable();
        let best = votes
            .chunk_by(|a, b| a == b)
            .max_by_key(|c| c.len())?
            .first()
            .copied()?;
        self.members.iter().position(|m| m.id == best)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            if let Some(mut c) = self.members[i].child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for p in &self.proxies {
            p.abort();
        }
    }
}

/// A free TCP port below the kernel's ephemeral range (32768 and up), so that no outgoing
/// connection of a test running alongside can be handed it between this check and the
/// member's bind (ports from `bind(0)` come from that range and did collide).
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        // Never the same port twice in one process: a port handed out earlier may not be
        // bound yet (a member still starting), so the bind check alone would not see it.
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

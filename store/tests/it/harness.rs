//! Starting members for tests: in-process, or as real `cairn-store` processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest, StatusRequest};
use tonic::transport::Channel;

/// A free TCP port below the kernel's ephemeral range (32768 and up), so that no outgoing
/// connection of a test running alongside can be handed it between this check and the
/// member's bind (ports from `bind(0)` come from that range and did collide).
pub fn free_port() -> u16 {
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

pub async fn channel(endpoint: &str) -> Option<Channel> {
    Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_secs(15))
        .connect()
        .await
        .ok()
}

pub async fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(channel(endpoint).await.expect("connect"))
}

pub fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

pub fn get(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

/// Waits until the member answers a linearizable read.
pub async fn wait_ready(endpoint: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(ch) = channel(endpoint).await {
            if KvClient::new(ch).range(get("probe")).await.is_ok() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{endpoint} not ready within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The leader's member id as `endpoint` sees it (0: none).
pub async fn leader_of(endpoint: &str) -> u64 {
    let Some(ch) = channel(endpoint).await else {
        return 0;
    };
    MaintenanceClient::new(ch)
        .status(StatusRequest {})
        .await
        .map(|r| r.into_inner().leader)
        .unwrap_or(0)
}

pub async fn member_id_of(endpoint: &str) -> u64 {
    let ch = channel(endpoint).await.expect("connect");
    MaintenanceClient::new(ch)
        .status(StatusRequest {})
        .await
        .expect("status")
        .into_inner()
        .header
        .expect("header")
        .member_id
}

/// One member of a test cluster, run as a real process.
pub struct Member {
    pub name: String,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub cluster: String,
    /// Extra flags, appended after the standard ones.
    pub extra: Vec<String>,
    /// Extra environment variables (etcd's `ETCD_*` settings).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Member {
    pub fn new(name: &str, dir: &Path) -> Self {
        Self {
            name: name.to_string(),
            client_url: format!("http://127.0.0.1:{}", free_port()),
            peer_url: format!("http://127.0.0.1:{}", free_port()),
            data_dir: dir.join(format!("{name}.cairn")),
            cluster: String::new(),
            extra: Vec::new(),
            env: Vec::new(),
            child: None,
        }
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already running", self.name);
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-store"))
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args([
                "--listen-client-urls",
                &self.client_url,
                "--advertise-client-urls",
                &self.client_url,
                "--listen-peer-urls",
                &self.peer_url,
                "--initial-advertise-peer-urls",
                &self.peer_url,
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-token",
                "test-cluster",
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .arg("--log-level")
            .arg(std::env::var("CAIRN_TEST_LOG_LEVEL").unwrap_or_else(|_| "warn".into()))
            .args(&self.extra)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cairn-store");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("reap");
        }
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): the process freezes with its connections open,
    /// as a member that is partitioned away and later comes back.
    pub fn freeze(&self, frozen: bool) {
        let c = self.child.as_ref().expect("running");
        let sig = if frozen { "-STOP" } else { "-CONT" };
        Command::new("kill")
            .args([sig, &c.id().to_string()])
            .status()
            .expect("kill -STOP/-CONT");
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id().to_string();
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .expect("kill -TERM");
            let status = c.wait().expect("reap");
            assert!(
                status.success(),
                "{} exited with {status} after SIGTERM",
                self.name
            );
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Members that know each other through --initial-cluster.
pub fn cluster(names: &[&str], dir: &Path) -> Vec<Member> {
    let mut members: Vec<Member> = names.iter().map(|n| Member::new(n, dir)).collect();
    let spec = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    for m in &mut members {
        m.cluster = spec.clone();
    }
    members
}

/// One member in this process, started with etcd's flags on free loopback ports, short Raft
/// timeouts (50 ms heartbeat, 500 ms election; minimum lease TTL 1 s) and `extra` flags.
pub struct Solo {
    pub server: Option<cairn_store::Server>,
    /// Client URL, `http://127.0.0.1:port`.
    pub endpoint: String,
    /// Client address without the scheme, for plain HTTP requests.
    pub http: String,
    /// The flags it was started with, for a restart on the same data dir and ports.
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Solo {
    pub async fn start(extra: &[&str]) -> Self {
        Self::start_on(extra, std::sync::Arc::new(cairn_log::StdFs)).await
    }

    /// [`Solo::start`] with the Raft log's files going through `log_fs`.
    pub async fn start_on(
        extra: &[&str],
        log_fs: std::sync::Arc<dyn cairn_log::FileSystem>,
    ) -> Self {
        Self::start_with_storage(extra, log_fs, None).await
    }

    /// [`Solo::start_on`], with the state machine's redb files also going through `db_layer`.
    pub async fn start_with_storage(
        extra: &[&str],
        log_fs: std::sync::Arc<dyn cairn_log::FileSystem>,
        db_layer: Option<cairn_mvcc::BackendLayer>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut args: Vec<String> = [
            "cairn-store",
            "--name",
            "solo",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("solo={peer}"),
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let cfg = cairn_store::Config::parse_args(args.clone()).expect("flags");
        let server = cairn_store::start_with_storage(cfg, log_fs, db_layer)
            .await
            .expect("start");
        wait_ready(&client, Duration::from_secs(10)).await;
        Solo {
            server: Some(server),
            http: client.trim_start_matches("http://").to_string(),
            endpoint: client,
            args,
            _dir: dir,
        }
    }

    /// Starts the member again on the same data dir and ports, on the real filesystem
    /// (after [`Solo::stop`]-like shutdown of a running server, or after it failed).
    pub async fn restart(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
        let cfg = cairn_store::Config::parse_args(self.args.clone()).expect("flags");
        self.server = Some(cairn_store::start(cfg).await.expect("restart"));
        wait_ready(&self.endpoint, Duration::from_secs(10)).await;
    }

    /// The running member's node.
    pub fn node(&self) -> &std::sync::Arc<cairn_store::node::Node> {
        &self.server.as_ref().expect("running").node
    }

    /// Shuts the member down cleanly.
    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

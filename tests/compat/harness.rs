//! Starting the servers under test: cairn-store in-process, etcd as a real process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::RangeRequest;
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

/// Whether a tool is on PATH; logs a loud skip (or fails under CAIRN_REQUIRE_ETCD=1) if not.
pub fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("CAIRN_REQUIRE_ETCD").is_ok_and(|v| v == "1") {
            panic!("{tool} is required (CAIRN_REQUIRE_ETCD=1) but not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed (apt-get install etcd-server etcd-client)");
    }
    found
}

/// A single cairn-store member running in this process.
pub struct Cairn {
    pub server: Option<cairn_store::Server>,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Cairn {
    pub async fn start() -> Cairn {
        Self::start_with(&[]).await
    }

    /// A member started with `extra` flags after the usual ones.
    pub async fn start_with(extra: &[&str]) -> Cairn {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = free_port();
        let peer = free_port();
        let peer_url = format!("http://127.0.0.1:{peer}");
        let client_url = format!("http://127.0.0.1:{client}");
        let args = [
            "cairn-store",
            "--name",
            "c1",
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--listen-client-urls",
            &client_url,
            "--advertise-client-urls",
            &client_url,
            "--listen-peer-urls",
            &peer_url,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--initial-cluster",
            &format!("c1={peer_url}"),
        ];
        let args = args.iter().chain(extra).map(|s| s.to_string());
        let cfg = cairn_store::Config::parse_args(args).expect("valid flags");
        let server = cairn_store::start(cfg).await.expect("start cairn-store");
        wait_ready(&client_url).await;
        Cairn {
            server: Some(server),
            endpoint: client_url,
            _dir: dir,
        }
    }
}

impl Drop for Cairn {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            // Stop serving in the background; the runtime may already be going away.
            if let Ok(h) = tokio::runtime::Handle::try_current() {
                h.spawn(s.shutdown());
            }
        }
    }
}

/// A real etcd process with its own data dir.
pub struct Etcd {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    pub async fn start() -> Etcd {
        Self::start_with(&[]).await
    }

    /// etcd started with `extra` flags after the usual ones.
    pub async fn start_with(extra: &[&str]) -> Etcd {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = free_port();
        let peer = free_port();
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let child = Command::new("etcd")
            .args(["--name", "e1", "--data-dir"])
            .arg(dir.path())
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
                "--initial-cluster",
                &format!("e1={peer_url}"),
                "--log-level",
                "error",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd");
        wait_ready(&client_url).await;
        Etcd {
            child,
            endpoint: client_url,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn kv_client(endpoint: &str) -> KvClient<Channel> {
    let ch = Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    KvClient::new(ch)
}

/// Waits until a linearizable read succeeds (a leader is elected and has applied).
pub async fn wait_ready(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = Channel::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
        {
            let mut kv = KvClient::new(ch);
            if kv
                .range(RangeRequest {
                    key: b"ready-probe".to_vec(),
                    ..Default::default()
                })
                .await
                .is_ok()
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{endpoint} did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

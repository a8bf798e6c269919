//! Starting what the tests talk to: a store (cairn-store in-process, or a real etcd process), an
//! apiserver in-process on a free port in front of it, a small HTTP client, and kubectl.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::{CompactionRequest, RangeRequest, WatchRequest};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
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

/// Whether `tool` runs; otherwise a loud skip (or a failure when `require_var`=1).
pub fn have(tool: &str, require_var: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(tool)
            .args(["version", "--client"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !ok {
        if std::env::var(require_var).is_ok_and(|v| v == "1") {
            panic!("{tool} is required ({require_var}=1) but is not installed");
        }
        eprintln!("SKIPPED: {tool} is not installed; this test did not run");
    }
    ok
}

/// The store an apiserver runs on.
pub enum Backend {
    Cairn {
        server: Option<cairn_store::Server>,
        endpoint: String,
        /// The member's flags, for a restart on the same data and ports.
        args: Vec<String>,
        _dir: tempfile::TempDir,
    },
    Etcd {
        child: Child,
        endpoint: String,
        args: Vec<String>,
        _dir: tempfile::TempDir,
    },
    /// A store another backend owns (for a second apiserver on it).
    External { endpoint: String },
}

impl Backend {
    pub async fn cairn() -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let args = [
            "cairn-store",
            "--name",
            "c1",
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
            &format!("c1={peer}"),
        ];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let server = start_cairn_store(&args).await;
        wait_ready(&client).await;
        Backend::Cairn {
            server: Some(server),
            endpoint: client,
            args,
            _dir: dir,
        }
    }

    /// The store at `endpoint`, owned elsewhere.
    pub fn external(endpoint: &str) -> Backend {
        Backend::External {
            endpoint: endpoint.to_string(),
        }
    }

    /// A real etcd, or None (after a loud skip) when it is not installed.
    pub async fn etcd() -> Option<Backend> {
        if !have("etcd", "CAIRN_REQUIRE_ETCD") {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let args: Vec<String> = [
            "--name",
            "e1",
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
            &format!("e1={peer}"),
            "--log-level",
            "error",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = spawn_etcd(&args);
        wait_ready(&client).await;
        Some(Backend::Etcd {
            child,
            endpoint: client,
            args,
            _dir: dir,
        })
    }

    /// Stops the store and starts it again on the same data and ports (what a store restart or
    /// a lost leader looks like to its clients: every stream breaks, then the store is back).
    pub async fn restart(&mut self) {
        match self {
            Backend::Cairn {
                server,
                args,
                endpoint,
                ..
            } => {
                if let Some(s) = server.take() {
                    s.shutdown().await;
                }
                *server = Some(start_cairn_store(args).await);
                wait_ready(endpoint).await;
            }
            Backend::Etcd {
                child,
                args,
                endpoint,
                ..
            } => {
                let _ = child.kill();
                let _ = child.wait();
                *child = spawn_etcd(args);
                wait_ready(endpoint).await;
            }
            Backend::External { .. } => panic!("a store owned elsewhere is restarted by its owner"),
        }
    }

    pub fn endpoint(&self) -> &str {
        match self {
            Backend::Cairn { endpoint, .. }
            | Backend::Etcd { endpoint, .. }
            | Backend::External { endpoint } => endpoint,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Backend::Cairn { .. } => "cairn-store",
            Backend::Etcd { .. } => "etcd",
            Backend::External { .. } => "the same store",
        }
    }

    /// Whether the store serves the etcd Watch API (cairn-store's is being built); logs a loud
    /// skip when it does not.
    pub async fn supports_watch(&self) -> bool {
        use cairn_proto::etcdserverpb::watch_request::RequestUnion;
        use cairn_proto::etcdserverpb::WatchCreateRequest;
        let ch = Channel::from_shared(self.endpoint().to_string())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
        // A real watch on a probe key: gRPC servers send response headers only once the stream
        // has something to say.
        let create = WatchCreateRequest {
            key: b"watch-probe".to_vec(),
            ..Default::default()
        };
        tx.send(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        })
        .await
        .expect("queue probe");
        let mut client = WatchClient::new(ch);
        let call = client.watch(tokio_stream::wrappers::ReceiverStream::new(rx));
        let result = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("the Watch RPC answers");
        let supported = match result {
            Err(s) if s.code() == tonic::Code::Unimplemented => false,
            Err(s) => panic!("Watch probe failed: {s}"),
            Ok(mut stream) => {
                !matches!(stream.get_mut().message().await, Err(s) if s.code() == tonic::Code::Unimplemented)
            }
        };
        drop(tx);
        if !supported {
            eprintln!(
                "SKIPPED on {}: the store does not serve the etcd Watch API yet",
                self.name()
            );
        }
        supported
    }

    /// The store's own count of open watchers (etcd's `etcd_debugging_mvcc_watcher_total`
    /// gauge on the client port's /metrics, which cairn-store serves too).
    pub async fn watchers(&self) -> i64 {
        let addr = self.endpoint().trim_start_matches("http://").to_string();
        let page = Api::plain(addr).get("/metrics").await;
        let text = page.body.as_str().expect("/metrics is text").to_string();
        text.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as i64)
            .expect("etcd_debugging_mvcc_watcher_total in /metrics")
    }

    /// Compacts the store's history up to `revision`.
    pub async fn compact(&self, revision: i64) {
        let ch = Channel::from_shared(self.endpoint().to_string())
            .expect("endpoint")
            .connect()
            .await
            .expect("connect");
        KvClient::new(ch)
            .compact(CompactionRequest {
                revision,
                physical: true,
            })
            .await
            .expect("compact");
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        match self {
            Backend::Cairn { server, .. } => {
                if let (Some(s), Ok(h)) = (server.take(), tokio::runtime::Handle::try_current()) {
                    h.spawn(s.shutdown());
                }
            }
            Backend::Etcd { child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Backend::External { .. } => {}
        }
    }
}

async fn start_cairn_store(args: &[String]) -> cairn_store::Server {
    let cfg = cairn_store::Config::parse_args(args.iter().cloned()).expect("flags");
    cairn_store::start(cfg).await.expect("start cairn-store")
}

fn spawn_etcd(args: &[String]) -> Child {
    Command::new("etcd")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn etcd")
}

async fn wait_ready(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(ch) = Channel::from_shared(endpoint.to_string())
            .expect("endpoint")
            .connect()
            .await
        {
            if KvClient::new(ch)
                .range(RangeRequest {
                    key: b"probe".to_vec(),
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

/// An apiserver in front of a backend.
pub struct Cluster {
    /// The insecure port (no authentication, every request privileged).
    pub api: Api,
    /// The secure port's address and the serving certificate file, when it is on.
    pub secure: Option<(String, PathBuf)>,
    handle: Option<cairn::apiserver::Handle>,
    pub backend: Backend,
    /// The apiserver's flags, for a restart on the same port.
    args: Vec<String>,
}

impl Cluster {
    /// An apiserver with `flags` (e.g. a short `--watch-bookmark-interval`, or a secure port)
    /// besides `--etcd-servers` and `--insecure-port` (a free port, kept across restarts). The
    /// secure port is off unless `flags` name one.
    pub async fn start_with(backend: Backend, flags: &[&str]) -> Cluster {
        eprintln!("== apiserver on {} {flags:?}", backend.name());
        let port = free_port().to_string();
        let mut args: Vec<String> = [
            "cairn",
            "--etcd-servers",
            backend.endpoint(),
            "--insecure-port",
            &port,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if !flags.iter().any(|f| f.starts_with("--secure-port")) {
            args.extend(["--secure-port".to_string(), "0".to_string()]);
        }
        args.extend(flags.iter().map(|s| s.to_string()));
        let handle = start_apiserver(&args).await;
        Cluster {
            api: Api::plain(handle.addr().to_string()),
            secure: handle.secure_addr().map(|a| {
                let cert = handle.serving_cert_file().expect("serving certificate");
                (a.to_string(), cert.to_path_buf())
            }),
            handle: Some(handle),
            backend,
            args,
        }
    }

    /// The running apiserver.
    pub fn handle(&self) -> &cairn::apiserver::Handle {
        self.handle.as_ref().expect("the apiserver is running")
    }

    /// Stops the apiserver (every watch stream ends) and starts a new one on the same port,
    /// with an empty watch cache; `meanwhile` runs while it is down.
    pub async fn restart_apiserver<F: std::future::Future<Output = ()>>(&mut self, meanwhile: F) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        meanwhile.await;
        self.handle = Some(start_apiserver(&self.args).await);
    }

    /// Stops this apiserver and starts another on the same backend with `flags`.
    pub async fn restart_with(mut self, flags: &[&str]) -> Cluster {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        Cluster::start_with(self.backend, flags).await
    }

    pub async fn stop(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

async fn start_apiserver(args: &[String]) -> cairn::apiserver::Handle {
    let cfg = cairn::apiserver::Config::parse_args(args.iter().cloned()).expect("flags");
    cairn::apiserver::start(cfg).await.expect("start apiserver")
}

/// A minimal HTTP/1.1 client for the API: plain, or over TLS (optionally with a client
/// certificate), optionally sending a bearer token.
#[derive(Clone)]
pub struct Api {
    pub addr: String,
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    pub token: Option<String>,
}

pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub headers: hyper::HeaderMap,
}

impl Reply {
    /// Every value of one response header, in order.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Api {
    pub fn plain(addr: String) -> Api {
        Api {
            addr,
            tls: None,
            token: None,
        }
    }

    /// A client of a secure port trusting `tls`'s roots.
    pub fn secure(addr: String, tls: std::sync::Arc<rustls::ClientConfig>) -> Api {
        Api {
            addr,
            tls: Some(tls),
            token: None,
        }
    }

    /// The same client, sending `Authorization: Bearer <token>`.
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> hyper::Response<hyper::body::Incoming> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("connect to apiserver");
        let mut sender = match &self.tls {
            None => {
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                sender
            }
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from("localhost").expect("name");
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, stream)
                    .await
                    .expect("TLS handshake with the apiserver");
                let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                    .await
                    .expect("handshake");
                tokio::spawn(conn);
                sender
            }
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.addr);
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        sender
            .send_request(req.body(Full::new(body)).expect("request"))
            .await
            .expect("send")
    }

    /// One request; the body (JSON, or a string for non-JSON replies).
    pub async fn call(&self, method: &str, path: &str, content_type: &str, body: &str) -> Reply {
        self.call_with(method, path, &[("content-type", content_type)], body)
            .await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        self.call_bytes(method, path, headers, Bytes::from(body.to_string()))
            .await
    }

    /// One request with a binary body (protobuf).
    pub async fn call_bytes(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Reply {
        let resp = self.send(method, path, headers, body).await;
        let code = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        Reply {
            code,
            body,
            headers,
        }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, "", "").await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, "application/json", &body.to_string())
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.call("PUT", path, "application/json", &body.to_string())
            .await
    }

    pub async fn patch(&self, path: &str, content_type: &str, body: &Value) -> Reply {
        self.call("PATCH", path, content_type, &body.to_string())
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, "", "").await
    }

    /// Opens a watch; events are read with [`Watch::next`].
    pub async fn watch(&self, path: &str) -> Watch {
        self.watch_with(path, &[]).await
    }

    pub async fn watch_with(&self, path: &str, headers: &[(&str, &str)]) -> Watch {
        let resp = self.send("GET", path, headers, Bytes::new()).await;
        assert_eq!(resp.status().as_u16(), 200, "watch {path}");
        Watch {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }
}

/// A watch stream, one JSON event per line.
pub struct Watch {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl Watch {
    /// The next event, or None when the stream ended or nothing came within `within`.
    pub async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).expect("watch event is JSON"));
            }
            let frame = tokio::time::timeout_at(deadline, self.body.frame())
                .await
                .ok()??
                .ok()?;
            if let Ok(data) = frame.into_data() {
                self.buf.extend_from_slice(&data);
            }
        }
    }

    pub async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(10))
            .await
            .expect("a watch event within 10s")
    }
}

/// kubectl pointed at an apiserver through a generated kubeconfig, with its own HOME (so the
/// discovery cache of one test never leaks into another).
pub struct Kubectl {
    home: tempfile::TempDir,
}

pub struct Output {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    pub fn new(server: &str) -> Kubectl {
        let home = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cairn\n  cluster:\n    server: {server}\ncontexts:\n- name: cairn\n  context:\n    cluster: cairn\n    user: dev\ncurrent-context: cairn\nusers:\n- name: dev\n  user: {{}}\n"
        );
        std::fs::write(home.path().join("kubeconfig"), config).expect("write kubeconfig");
        Kubectl { home }
    }

    /// kubectl for a secure port: the server's CA from `ca_file`, and a bearer token.
    pub fn with_token(server: &str, ca_file: &std::path::Path, token: &str) -> Kubectl {
        let home = tempfile::tempdir().expect("tempdir");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cairn\n  cluster:\n    server: {server}\n    certificate-authority: {}\ncontexts:\n- name: cairn\n  context:\n    cluster: cairn\n    user: dev\ncurrent-context: cairn\nusers:\n- name: dev\n  user:\n    token: {token}\n",
            ca_file.display()
        );
        std::fs::write(home.path().join("kubeconfig"), config).expect("write kubeconfig");
        Kubectl { home }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.home.path().join(file)
    }

    /// Runs kubectl with `args` (and `stdin`), off the async runtime.
    pub async fn run(&self, args: &[&str]) -> Output {
        let home = self.home.path().to_path_buf();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let out = Command::new("kubectl")
                .args(&args)
                .env("KUBECONFIG", home.join("kubeconfig"))
                .env("HOME", &home)
                .stdin(Stdio::null())
                .output()
                .expect("run kubectl");
            let o = Output {
                ok: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
            eprintln!("$ kubectl {}\n{}{}", args.join(" "), o.stdout, o.stderr);
            o
        })
        .await
        .expect("kubectl task")
    }

    /// Runs kubectl and requires success; returns stdout.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(o.ok, "kubectl {args:?} failed: {}", o.stderr);
        o.stdout
    }

    /// Starts a long-running kubectl (e.g. `get -w`) in the background.
    pub fn spawn(&self, args: &[&str]) -> Child {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.home.path().join("kubeconfig"))
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl")
    }
}

/// A TCP forwarder between a client and a store that a test can cut (every connection through
/// it is dropped and new ones are refused) and restore: a network partition between the
/// apiserver and its store while the store itself stays up.
pub struct Proxy {
    pub endpoint: String,
    cut: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: &str) -> Proxy {
        let target = target.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
            .await
            .expect("bind proxy");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let (cut, cut_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                if *cut_rx.borrow() {
                    continue;
                }
                let target = target.clone();
                let mut cut_rx = cut_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut_rx.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy {
            endpoint,
            cut,
            task,
        }
    }

    /// Drops every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    pub fn restore(&self) {
        self.cut.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

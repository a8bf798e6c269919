//! Transport security, set up the way an etcd operator's "turn on TLS" runbook does: a CA,
//! a server certificate for 127.0.0.1, client certificates, and etcd's flags. Covers gRPC
//! and `/health` over an `https` client URL, plaintext and untrusted clients being refused,
//! `--client-cert-auth` refusing clients without a certificate at the handshake, an `https`
//! metrics URL, and 3-member clusters whose peers talk TLS (given certificates with
//! `--peer-client-cert-auth`, a fourth member joining through `member add`, a member with a
//! foreign certificate kept out, and `--peer-auto-tls` from `ETCD_*` variables).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::cluster_client::ClusterClient;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::{MemberAddRequest, RangeRequest};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Channel, Endpoint};

use crate::harness::{cluster, free_port, get, put, Member};

fn phase(what: &str) {
    eprintln!("--- {what}");
}

/// A throwaway CA with a server certificate (127.0.0.1, localhost; also usable as a peer's
/// client certificate) and a client certificate, written as PEM files into a temp dir.
struct Pki {
    dir: tempfile::TempDir,
    ca_der: CertificateDer<'static>,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: PrivateKeyDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = rcgen::DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "cairn test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).expect("ca cert");
        let issuer = Issuer::new(ca_params, &ca_key);

        let leaf = |cn: &str, sans: Vec<String>, usages: Vec<ExtendedKeyUsagePurpose>| {
            let key = KeyPair::generate().expect("key");
            let mut params = CertificateParams::new(sans).expect("params");
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = usages;
            let cert = params.signed_by(&key, &issuer).expect("sign");
            (cert, key)
        };
        let (server, server_key) = leaf(
            "server",
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client, client_key) =
            leaf("client", vec![], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        let write = |name: &str, pem: String| {
            std::fs::write(dir.path().join(name), pem).expect("write pem");
        };
        write("ca.pem", ca_cert.pem());
        write("server.pem", server.pem());
        write("server-key.pem", server_key.serialize_pem());
        write("client.pem", client.pem());
        write("client-key.pem", client_key.serialize_pem());
        Pki {
            ca_der: ca_cert.der().clone(),
            client_chain: vec![client.der().clone()],
            client_key: PrivateKeyDer::try_from(client_key.serialize_der()).expect("client key"),
            dir,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir
            .path()
            .join(name)
            .to_str()
            .expect("utf-8")
            .to_string()
    }

    /// `--cert-file ... --key-file ...` with the server certificate.
    fn server_flags(&self) -> Vec<String> {
        vec![
            "--cert-file".into(),
            self.path("server.pem"),
            "--key-file".into(),
            self.path("server-key.pem"),
        ]
    }

    fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("ca root");
        roots
    }

    /// A client trusting this CA, presenting the client certificate when `with_cert`.
    fn client(&self, with_cert: bool, alpn: &[u8]) -> Arc<ClientConfig> {
        let builder =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(self.roots());
        let mut config = if with_cert {
            builder
                .with_client_auth_cert(self.client_chain.clone(), self.client_key.clone_key())
                .expect("client cert")
        } else {
            builder.with_no_client_auth()
        };
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }
}

/// A gRPC channel over TLS with `config`; `None` if the connection or handshake fails.
async fn tls_channel(url: &str, config: Arc<ClientConfig>) -> Option<Channel> {
    Endpoint::from_shared(url.to_string())
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .connect_with_connector(cairn_store::tls::connector::TlsConnector::new(config))
        .await
        .ok()
}

/// Whether a read through `config` succeeds (connection, handshake and RPC).
async fn can_read(url: &str, config: Arc<ClientConfig>) -> bool {
    match tls_channel(url, config).await {
        Some(ch) => KvClient::new(ch).range(get("probe")).await.is_ok(),
        None => false,
    }
}

/// One HTTP/1.1 GET over TLS (ALPN http/1.1, as curl --http1.1 sends it): status and body.
async fn https_get(addr: &str, path: &str, config: Arc<ClientConfig>) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("127.0.0.1").expect("server name");
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    // The server closes after the response; rustls may report the close without a
    // close_notify as an error, after the bytes have arrived.
    let _ = tls.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}

/// A member in this process with an `https` client URL and `extra` flags.
struct TlsSolo {
    server: Option<cairn_store::Server>,
    url: String,
    addr: String,
    _dir: tempfile::TempDir,
}

impl TlsSolo {
    async fn start(extra: Vec<String>) -> TlsSolo {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let url = format!("https://{addr}");
        let peer = format!("http://127.0.0.1:{}", free_port());
        let mut args: Vec<String> = [
            "cairn-store",
            "--name",
            "solo",
            "--data-dir",
            dir.path().to_str().expect("utf-8"),
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
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
        args.extend(extra);
        let cfg = cairn_store::Config::parse_args(args).expect("flags");
        let server = cairn_store::start(cfg).await.expect("start");
        TlsSolo {
            server: Some(server),
            url,
            addr,
            _dir: dir,
        }
    }

    async fn wait_ready(&self, config: Arc<ClientConfig>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !can_read(&self.url, config.clone()).await {
            assert!(Instant::now() < deadline, "{} not ready", self.url);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_client_url_serves_grpc_health_and_metrics() {
    let pki = Pki::new();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let mut flags = pki.server_flags();
    flags.extend([
        "--listen-metrics-urls".into(),
        format!("https://{metrics_addr}"),
    ]);
    let solo = TlsSolo::start(flags).await;
    solo.wait_ready(pki.client(false, b"h2")).await;

    phase("a gRPC client trusting the CA writes and reads");
    let ch = tls_channel(&solo.url, pki.client(false, b"h2"))
        .await
        .expect("TLS channel");
    let mut kv = KvClient::new(ch);
    kv.put(put("greeting", "hello")).await.expect("put");
    let got = kv.range(get("greeting")).await.expect("range").into_inner();
    assert_eq!(got.kvs[0].value, b"hello");

    phase("a plaintext client gets nothing from the TLS port");
    let plain = Endpoint::from_shared(format!("http://{}", solo.addr))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(3))
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(ch) => KvClient::new(ch).range(get("greeting")).await.is_err(),
    };
    assert!(refused, "plaintext gRPC must not be served on an https URL");

    phase("a client that does not trust the CA is refused");
    let stranger = Pki::new();
    assert!(!can_read(&solo.url, stranger.client(false, b"h2")).await);

    phase("/health and the JSON gateway over HTTP/1.1 on the same port");
    let (status, body) = https_get(&solo.addr, "/health", pki.client(false, b"http/1.1")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""health":"true""#), "{body}");

    phase("an https --listen-metrics-urls uses the client certificate");
    let (status, body) = https_get(&metrics_addr, "/metrics", pki.client(false, b"http/1.1")).await;
    assert_eq!(status, 200);
    assert!(body.contains("etcd_server_has_leader 1"), "{body}");
    solo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_cert_auth_refuses_clients_without_a_signed_certificate() {
    let pki = Pki::new();
    let mut flags = pki.server_flags();
    flags.extend([
        "--client-cert-auth".into(),
        "--trusted-ca-file".into(),
        pki.path("ca.pem"),
    ]);
    let solo = TlsSolo::start(flags).await;
    solo.wait_ready(pki.client(true, b"h2")).await;

    phase("a client presenting a certificate signed by the trusted CA works");
    let ch = tls_channel(&solo.url, pki.client(true, b"h2"))
        .await
        .expect("TLS channel");
    KvClient::new(ch)
        .put(put("k", "v"))
        .await
        .expect("put with a client certificate");

    phase("a client without a certificate is refused at the handshake");
    assert!(!can_read(&solo.url, pki.client(false, b"h2")).await);

    phase("a certificate from another CA is refused too");
    let stranger = Pki::new();
    let mut foreign =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(pki.roots())
            .with_client_auth_cert(
                stranger.client_chain.clone(),
                stranger.client_key.clone_key(),
            )
            .expect("client cert");
    foreign.alpn_protocols = vec![b"h2".to_vec()];
    assert!(!can_read(&solo.url, Arc::new(foreign)).await);
    solo.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_url_without_certificates_is_a_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("https://127.0.0.1:{}", free_port());
    let args = [
        "cairn-store",
        "--data-dir",
        dir.path().to_str().expect("utf-8"),
        "--listen-client-urls",
        &url,
        "--advertise-client-urls",
        &url,
    ];
    let cfg = cairn_store::Config::parse_args(args.iter().map(|s| s.to_string())).expect("flags");
    let err = cairn_store::start(cfg).await.err().expect("must not start");
    assert_eq!(
        err.to_string(),
        format!(
            "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with \
             HTTPS scheme"
        )
    );
}

/// Rewrites a test cluster's peer URLs to `https`.
fn https_peers(members: &mut [Member]) {
    for m in members.iter_mut() {
        m.peer_url = m.peer_url.replace("http://", "https://");
    }
    let spec = members
        .iter()
        .map(|m| format!("{}={}", m.name, m.peer_url))
        .collect::<Vec<_>>()
        .join(",");
    for m in members.iter_mut() {
        m.cluster = spec.clone();
    }
}

/// Waits until every member reports the same leader; returns it.
async fn agreed_leader(members: &[Member]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut leaders = Vec::new();
        for m in members {
            leaders.push(crate::harness::leader_of(&m.client_url).await);
        }
        if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
            return leaders[0];
        }
        assert!(Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes through the first member and waits for every member to serve it locally.
async fn replicates(members: &[Member]) {
    let mut first = crate::harness::kv(&members[0].client_url).await;
    first.put(put("replicated", "yes")).await.expect("put");
    for m in members {
        let mut kv = crate::harness::kv(&m.client_url).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let serializable = RangeRequest {
                serializable: true,
                ..get("replicated")
            };
            let got = kv.range(serializable).await.expect("range").into_inner();
            if got.kvs.first().is_some_and(|kv| kv.value == b"yes") {
                break;
            }
            assert!(Instant::now() < deadline, "{} never saw the write", m.name);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn peer_flags(pki: &Pki) -> Vec<String> {
    vec![
        "--peer-cert-file".into(),
        pki.path("server.pem"),
        "--peer-key-file".into(),
        pki.path("server-key.pem"),
        "--peer-trusted-ca-file".into(),
        pki.path("ca.pem"),
        "--peer-client-cert-auth".into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_with_peer_tls_elect_a_leader_and_replicate() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["p1", "p2", "p3"], dir.path());
    https_peers(&mut members);
    phase("starting three members whose peers speak TLS with client certificates");
    for m in &mut members {
        m.extra = peer_flags(&pki);
        m.start();
    }
    let leader = agreed_leader(&members).await;
    assert_ne!(leader, 0);
    phase("a write through one member reaches the others over TLS");
    replicates(&members).await;

    phase("member add p4, which learns its id from the others over TLS and catches up");
    let mut p4 = Member::new("p4", dir.path());
    p4.peer_url = p4.peer_url.replace("http://", "https://");
    let ch = crate::harness::channel(&members[1].client_url)
        .await
        .expect("connect");
    ClusterClient::new(ch)
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![p4.peer_url.clone()],
            is_learner: false,
        })
        .await
        .expect("member add");
    p4.cluster = format!("{},p4={}", members[0].cluster, p4.peer_url);
    p4.extra = peer_flags(&pki);
    p4.extra
        .extend(["--initial-cluster-state".into(), "existing".into()]);
    p4.start();
    crate::harness::wait_ready(&p4.client_url, Duration::from_secs(20)).await;
    members.push(p4);
    replicates(&members).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_auto_tls_from_environment_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["a1", "a2", "a3"], dir.path());
    https_peers(&mut members);
    phase("ETCD_PEER_AUTO_TLS=true: each member makes its own self-signed peer certificate");
    for m in &mut members {
        m.env = vec![("ETCD_PEER_AUTO_TLS".into(), "true".into())];
        m.start();
    }
    agreed_leader(&members).await;
    replicates(&members).await;
    let fixture = |m: &Member| -> PathBuf { m.data_dir.join("fixtures/peer/cert.pem") };
    assert!(members.iter().all(|m| Path::exists(&fixture(m))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_client_cert_auth_keeps_out_a_member_with_a_foreign_certificate() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["f1", "f2", "f3"], dir.path());
    https_peers(&mut members);
    phase("f3 trusts the cluster's CA but its own peer certificate comes from another CA");
    for (i, m) in members.iter_mut().enumerate() {
        m.extra = peer_flags(&pki);
        if i == 2 {
            m.extra[1] = stranger.path("server.pem");
            m.extra[3] = stranger.path("server-key.pem");
        }
        m.start();
    }
    phase("f1 and f2 are a quorum and replicate between themselves");
    agreed_leader(&members[..2]).await;
    replicates(&members[..2]).await;
    phase("f1 and f2 refuse f3's certificate at every handshake: f3 never gets the write");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut kv = crate::harness::kv(&members[2].client_url).await;
    let serializable = RangeRequest {
        serializable: true,
        ..get("replicated")
    };
    let got = kv.range(serializable).await.expect("range").into_inner();
    assert!(got.kvs.is_empty(), "f3 must not have joined");
}

/// With auth enabled and `--client-cert-auth`, a request without a token acts as the user its
/// verified client certificate names (CN "client" here), as etcd does; a token still wins,
/// and a CN header sent by the client itself is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_common_name_is_the_user_without_a_token() {
    use cairn_proto::authpb::permission::Type as PermType;
    use cairn_proto::authpb::Permission;
    use cairn_proto::etcdserverpb::auth_client::AuthClient;
    use cairn_proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest, AuthenticateRequest,
    };

    let pki = Pki::new();
    let mut flags = pki.server_flags();
    flags.extend([
        "--client-cert-auth".into(),
        "--trusted-ca-file".into(),
        pki.path("ca.pem"),
        "--bcrypt-cost".into(),
        "4".into(),
    ]);
    let solo = TlsSolo::start(flags).await;
    solo.wait_ready(pki.client(true, b"h2")).await;
    let ch = tls_channel(&solo.url, pki.client(true, b"h2"))
        .await
        .expect("TLS channel");

    phase("root and a user named after the certificate's CN, with write on /c/");
    let mut auth = AuthClient::new(ch.clone());
    for (user, role) in [("root", "root"), ("client", "c")] {
        auth.user_add(AuthUserAddRequest {
            name: user.into(),
            password: format!("{user}-pw"),
            ..Default::default()
        })
        .await
        .expect("user add");
        if role != "root" {
            auth.role_add(AuthRoleAddRequest { name: role.into() })
                .await
                .expect("role add");
            auth.role_grant_permission(AuthRoleGrantPermissionRequest {
                name: role.into(),
                perm: Some(Permission {
                    perm_type: PermType::Readwrite as i32,
                    key: b"/c/".to_vec(),
                    range_end: b"/c0".to_vec(),
                }),
            })
            .await
            .expect("grant");
        }
        auth.user_grant_role(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
        .await
        .expect("grant role");
    }
    auth.auth_enable(AuthEnableRequest {})
        .await
        .expect("enable");

    phase("no token: the CN's permissions apply");
    let mut kv = KvClient::new(ch.clone());
    kv.put(put("/c/1", "v")).await.expect("CN may write /c/");
    let err = kv
        .put(put("/d", "v"))
        .await
        .expect_err("CN may not write /d");
    assert_eq!(err.message(), "etcdserver: permission denied");

    phase("a CN header sent by the client is not believed");
    let mut spoofed = tonic::Request::new(put("/d", "v"));
    spoofed
        .metadata_mut()
        .insert("cairn-tls-common-name", "root".parse().expect("ascii"));
    let err = kv.put(spoofed).await.expect_err("spoofed root");
    assert_eq!(err.message(), "etcdserver: permission denied");

    phase("a token wins over the certificate");
    let token = auth
        .authenticate(AuthenticateRequest {
            name: "root".into(),
            password: "root-pw".into(),
        })
        .await
        .expect("login")
        .into_inner()
        .token;
    let mut as_root = tonic::Request::new(put("/d", "v"));
    as_root
        .metadata_mut()
        .insert("token", token.parse().expect("ascii"));
    kv.put(as_root).await.expect("root writes /d");
    solo.stop().await;
}

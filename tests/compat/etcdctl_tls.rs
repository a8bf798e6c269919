//! An operator's TLS runbook, side by side: one throwaway CA, a server certificate for
//! 127.0.0.1 and a client certificate; real etcd and cairn-store both started with
//! `--cert-file --key-file --trusted-ca-file --client-cert-auth` on an `https` client URL;
//! then `etcdctl --cacert --cert --key --endpoints https://...` (and curl for `/health`)
//! against each, outputs compared. A client without a certificate fails against both.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::harness::{free_port, have};

/// Writes ca.pem, server.pem, server-key.pem, client.pem and client-key.pem into `dir`.
fn write_pki(dir: &Path) {
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name.push(DnType::CommonName, "compat CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).expect("ca cert");
    let issuer = Issuer::new(ca, &ca_key);
    let leaf = |name: &str, cn: &str, sans: Vec<String>, usages| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = usages;
        let cert = params.signed_by(&key, &issuer).expect("sign");
        std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).expect("write cert");
        std::fs::write(dir.join(format!("{name}-key.pem")), key.serialize_pem()).expect("key");
    };
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).expect("write ca");
    leaf(
        "server",
        "server",
        vec!["127.0.0.1".into(), "localhost".into()],
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    );
    leaf(
        "client",
        "client",
        vec![],
        vec![ExtendedKeyUsagePurpose::ClientAuth],
    );
}

/// The flags both servers get: an https client URL, client certificates required.
fn server_args(pki: &Path, client_url: &str, peer_url: &str, name: &str) -> Vec<String> {
    let file = |f: &str| pki.join(f).to_str().expect("utf-8").to_string();
    vec![
        "--name".into(),
        name.into(),
        "--listen-client-urls".into(),
        client_url.into(),
        "--advertise-client-urls".into(),
        client_url.into(),
        "--listen-peer-urls".into(),
        peer_url.into(),
        "--initial-advertise-peer-urls".into(),
        peer_url.into(),
        "--initial-cluster".into(),
        format!("{name}={peer_url}"),
        "--cert-file".into(),
        file("server.pem"),
        "--key-file".into(),
        file("server-key.pem"),
        "--trusted-ca-file".into(),
        file("ca.pem"),
        "--client-cert-auth".into(),
    ]
}

/// etcdctl against `endpoint` with the test CA, and the client certificate when `with_cert`.
fn etcdctl_tls(pki: &Path, endpoint: &str, with_cert: bool, args: &[&str]) -> (bool, String) {
    let file = |f: &str| pki.join(f).to_str().expect("utf-8").to_string();
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .args(["--endpoints", endpoint, "--cacert", &file("ca.pem")])
        .args(["--dial-timeout", "1s", "--command-timeout", "2s"]);
    if with_cert {
        cmd.args([
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client-key.pem"),
        ]);
    }
    let out = cmd.args(args).output().expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn wait_tls_ready(pki: &Path, endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !etcdctl_tls(pki, endpoint, true, &["get", "ready-probe"]).0 {
        assert!(Instant::now() < deadline, "{endpoint} not ready over TLS");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl --cacert --cert --key https://.../health` over HTTP/1.1 or HTTP/2: the HTTP
/// version and status curl saw, and the `health` field of the body. (etcd 3.4 answers
/// `{"health":"true"}`, cairn-store etcd 3.5's `{"health":"true","reason":""}`.)
fn curl_health(pki: &Path, endpoint: &str, http1: bool) -> (String, String) {
    let file = |f: &str| pki.join(f).to_str().expect("utf-8").to_string();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "5", "--cacert", &file("ca.pem")])
        .args([
            "--cert",
            &file("client.pem"),
            "--key",
            &file("client-key.pem"),
        ])
        .arg(if http1 { "--http1.1" } else { "--http2" })
        .args(["-w", "\n%{http_version} %{http_code}"])
        .arg(format!("{endpoint}/health"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or_default();
    let health = serde_json::from_str::<serde_json::Value>(body)
        .map(|v| v["health"].to_string())
        .unwrap_or_else(|_| format!("unparsable: {body:?}"));
    (status.to_string(), health)
}

struct EtcdProcess(Child);

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_with_client_certificates_against_etcd_and_cairn() {
    if !have("etcd") || !have("etcdctl") {
        return;
    }
    let pki = tempfile::tempdir().expect("tempdir");
    write_pki(pki.path());

    eprintln!("--- real etcd and cairn-store with the same certificates");
    let etcd_dir = tempfile::tempdir().expect("tempdir");
    let etcd_url = format!("https://127.0.0.1:{}", free_port());
    let etcd_peer = format!("http://127.0.0.1:{}", free_port());
    let _etcd = EtcdProcess(
        Command::new("etcd")
            .arg("--data-dir")
            .arg(etcd_dir.path())
            .args(server_args(pki.path(), &etcd_url, &etcd_peer, "e1"))
            .args(["--log-level", "error"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcd"),
    );
    let cairn_dir = tempfile::tempdir().expect("tempdir");
    let cairn_url = format!("https://127.0.0.1:{}", free_port());
    let cairn_peer = format!("http://127.0.0.1:{}", free_port());
    let mut args = vec![
        "cairn-store".to_string(),
        "--data-dir".into(),
        cairn_dir.path().to_str().expect("utf-8").into(),
    ];
    args.extend(server_args(pki.path(), &cairn_url, &cairn_peer, "c1"));
    let cfg = cairn_store::Config::parse_args(args).expect("flags");
    let cairn = cairn_store::start(cfg).await.expect("start cairn-store");

    let dir = pki.path().to_path_buf();
    let curl = have("curl");
    tokio::task::spawn_blocking(move || {
        let pki = dir.as_path();
        wait_tls_ready(pki, &etcd_url);
        wait_tls_ready(pki, &cairn_url);
        let steps: &[&[&str]] = &[
            &["put", "foo", "bar"],
            &["get", "foo"],
            &["put", "foo2", "baz"],
            &["get", "foo", "--prefix", "--keys-only"],
            &["del", "foo2"],
            &["get", "foo", "--prefix", "--print-value-only"],
        ];
        for step in steps {
            eprintln!("--- etcdctl {}", step.join(" "));
            let want = etcdctl_tls(pki, &etcd_url, true, step);
            assert!(want.0, "etcd: {}", want.1);
            assert_eq!(etcdctl_tls(pki, &cairn_url, true, step), want);
        }

        eprintln!("--- no client certificate: refused by both");
        assert!(!etcdctl_tls(pki, &etcd_url, false, &["get", "foo"]).0);
        assert!(!etcdctl_tls(pki, &cairn_url, false, &["get", "foo"]).0);

        if curl {
            for http1 in [true, false] {
                eprintln!("--- curl /health over TLS (http1.1: {http1})");
                let want = curl_health(pki, &etcd_url, http1);
                let version = if http1 { "1.1" } else { "2" };
                assert_eq!(want, (format!("{version} 200"), r#""true""#.to_string()));
                assert_eq!(curl_health(pki, &cairn_url, http1), want);
            }
        }
    })
    .await
    .expect("etcdctl steps");
    cairn.shutdown().await;
}

//! The secure port's TLS: a serving certificate from `--tls-cert-file`/`--tls-private-key-file`,
//! or, without them, one generated into `--cert-dir` as kube-apiserver does (`apiserver.crt`
//! holds the serving certificate followed by the CA that signed it, `apiserver.key` its key;
//! made once, reused while both files exist). With `--client-ca-file`, client certificates are
//! requested and, when one is sent, verified against that CA during the handshake; a request
//! without one goes on to token or anonymous authentication.
//!
//! ALPN offers h2 and http/1.1, so HTTP/2 clients (client-go) and HTTP/1.1 clients both work.
//! Every config is built on ring (rustls's `ring` provider); no OpenSSL.

use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols of the secure port.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// How long a generated serving certificate (and its CA) is valid.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Why the secure port's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
    #[error("generating a self-signed serving certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum ServingCert {
    /// `--tls-cert-file` and `--tls-private-key-file`.
    Files { cert: PathBuf, key: PathBuf },
    /// Generated into `--cert-dir` for these hosts (IP addresses or DNS names).
    SelfSigned { dir: PathBuf, hosts: Vec<String> },
}

/// The certificate and key files the server uses, and its rustls config.
pub struct Serving {
    pub config: Arc<ServerConfig>,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn bad(path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file, in file order.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(path, format!("malformed PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// The first private key in a PEM file.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| bad(path, format!("no usable key: {e}")))
}

/// Builds the secure port's config; generates the self-signed certificate first if needed.
pub fn server_config(serving: &ServingCert, client_ca: Option<&Path>) -> Result<Serving, TlsError> {
    let (cert_file, key_file) = match serving {
        ServingCert::Files { cert, key } => (cert.clone(), key.clone()),
        ServingCert::SelfSigned { dir, hosts } => load_or_create(dir, hosts)?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rustls_err = |what: String| move |source| TlsError::Rustls { what, source };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_err("TLS versions".into()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in certificates(path)? {
                roots
                    .add(cert)
                    .map_err(|e| bad(path, format!("unusable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| bad(path, format!("cannot verify client certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let what = format!(
        "serving certificate {} with key {}",
        cert_file.display(),
        key_file.display()
    );
    let mut config = builder
        .with_single_cert(certificates(&cert_file)?, private_key(&key_file)?)
        .map_err(rustls_err(what))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Serving {
        config: Arc::new(config),
        cert_file,
        key_file,
    })
}

/// `<dir>/apiserver.crt` and `<dir>/apiserver.key`, made first if either is missing.
fn load_or_create(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_file = dir.join("apiserver.crt");
    let key_file = dir.join("apiserver.key");
    if !(cert_file.exists() && key_file.exists()) {
        let (chain_pem, key_pem) = generate(hosts)?;
        std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        write(&key_file, key_pem.as_bytes(), 0o600)?;
        write(&cert_file, chain_pem.as_bytes(), 0o644)?;
        tracing::info!(path = %cert_file.display(), "generated self-signed serving certificate");
    }
    Ok((cert_file, key_file))
}

/// A CA named `<host>-ca@<unix time>` and a serving certificate it signed for `hosts`:
/// (serving certificate + CA in PEM, serving key in PEM).
fn generate(hosts: &[String]) -> Result<(String, String), TlsError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let not_before = rcgen::date_time_ymd(1970, 1, 1) + now - Duration::from_secs(3600);
    let first = hosts.first().map(String::as_str).unwrap_or("localhost");

    let mut ca = CertificateParams::default();
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(DnType::CommonName, format!("{first}-ca@{}", now.as_secs()));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    ca.not_before = not_before;
    ca.not_after = not_before + VALIDITY;
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{first}@{}", now.as_secs()));
    for host in hosts.iter().filter(|h| !h.is_empty()) {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.clone().try_into()?),
        };
        if !leaf.subject_alt_names.contains(&san) {
            leaf.subject_alt_names.push(san);
        }
    }
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = not_before;
    leaf.not_after = not_before + VALIDITY;
    let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok((
        format!("{}{}", leaf_cert.pem(), ca_cert.pem()),
        leaf_key.serialize_pem(),
    ))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    let failed = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(failed)?;
    f.write_all(bytes).map_err(failed)?;
    f.sync_all().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_is_made_once_and_chains_to_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let serving = ServingCert::SelfSigned {
            dir: dir.path().to_path_buf(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
        };
        let first = server_config(&serving, None).unwrap();
        let chain = certificates(&first.cert_file).unwrap();
        assert_eq!(chain.len(), 2, "serving certificate, then its CA");
        let again = server_config(&serving, None).unwrap();
        assert_eq!(certificates(&again.cert_file).unwrap(), chain, "reused");
        let mode = std::fs::metadata(&first.key_file).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        assert_eq!(
            first.config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}

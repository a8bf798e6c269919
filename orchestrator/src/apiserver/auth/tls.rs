//! The secure port's TLS: a serving certificate from `--tls-cert-file`/`--tls-private-key-file`,
//! or, without them, one generated into `--cert-dir` as kube-apiserver does (`apiserver.crt`
//! holds the serving certificate followed by the CA that signed it, `apiserver.key` its key;
//! made once, reused while both files exist). With `--client-ca-file`, client certificates are
//! requested and, when one is sent, verified against that CA during the handshake; a request
//! without one goes on to token or anonymous authentication.
//!
//! ALPN offers h2 and http/1.1, so HTTP/2 clients (client-go) and HTTP/1.1 clients both work.
//! Every config is built on ring (rustls's `ring` provider); no OpenSSL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_tls::pem::{self, KeyErrors};
use cairn_tls::self_signed::{Issuer, Spec};
use rcgen::{DistinguishedName, DnType};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

/// ALPN protocols of the secure port.
pub const ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];

/// Why the secure port's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] cairn_tls::PemError),
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
    #[error(transparent)]
    SelfSigned(#[from] cairn_tls::self_signed::SelfSignedError),
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
            let roots = Arc::new(pem::roots(path)?);
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| TlsError::Pem {
                    path: path.to_path_buf(),
                    reason: format!("cannot verify client certificates: {e}"),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let what = format!(
        "serving certificate {} with key {}",
        cert_file.display(),
        key_file.display()
    );
    let mut config = builder
        .with_single_cert(
            pem::certificates(&cert_file)?,
            pem::private_key(&key_file, KeyErrors::Unusable)?,
        )
        .map_err(rustls_err(what))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Serving {
        config: Arc::new(config),
        cert_file,
        key_file,
    })
}

/// `<dir>/apiserver.crt` and `<dir>/apiserver.key`, made first if either is missing: a
/// serving certificate for `hosts` named `<host>@<unix time>`, signed by a CA named
/// `<host>-ca@<unix time>` made with it, both valid from an hour ago (kube-apiserver's).
fn load_or_create(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let first = hosts.first().map(String::as_str).unwrap_or("localhost");
    let named = |cn: String| {
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, cn);
        name
    };
    let spec = Spec {
        purpose: "serving",
        hosts,
        subject: named(format!("{first}@{now}")),
        issuer: Issuer::NewCa(named(format!("{first}-ca@{now}"))),
        client_auth: false,
        backdate: Duration::from_secs(3600),
    };
    let files =
        cairn_tls::self_signed::load_or_create(dir, "apiserver.crt", "apiserver.key", &spec)?;
    if files.created {
        tracing::info!(path = %files.cert_file.display(), "generated self-signed serving certificate");
    }
    Ok((files.cert_file, files.key_file))
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
        let chain = pem::certificates(&first.cert_file).unwrap();
        assert_eq!(chain.len(), 2, "serving certificate, then its CA");
        let again = server_config(&serving, None).unwrap();
        assert_eq!(
            pem::certificates(&again.cert_file).unwrap(),
            chain,
            "reused"
        );
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

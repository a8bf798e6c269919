//! The client side of `https` peer connections: the rustls config a member dials with, and
//! the connector tonic's channels use for it.
//!
//! As etcd's peer transport: the member presents its peer certificate (when it has one),
//! and verifies the peer's certificate and host name against `--peer-trusted-ca-file`, or,
//! without one, against the system's CA certificates. With `--peer-auto-tls` the other
//! members' certificates are self-signed, so verification is skipped (etcd's
//! `InsecureSkipVerify` for self-signed TLS info); the handshake signatures are still
//! checked, so the connection is encrypted to whoever holds the presented key.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use cairn_tls::{pem, AnyServerCert};
use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::flags::{Crypto, Side};
use super::{Identity, TlsError, PEER_ALPN};

/// The config for dialing `https` peers.
pub fn client_config(
    crypto: &Crypto,
    side: &Side<'_>,
    identity: Option<Identity>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(crypto.provider.clone())
        .with_protocol_versions(&crypto.versions)
        .map_err(|source| TlsError::Rustls {
            what: "TLS versions".into(),
            source,
        })?;
    let self_signed = identity.as_ref().is_some_and(|id| id.self_signed);
    let builder = if self_signed && side.trusted_ca_file.is_empty() {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServerCert::new(crypto.provider.clone())))
    } else if !side.trusted_ca_file.is_empty() {
        builder.with_root_certificates(pem::roots(std::path::Path::new(side.trusted_ca_file))?)
    } else {
        builder.with_root_certificates(system_roots())
    };
    let mut config = match identity {
        Some(id) => {
            let what = format!(
                "{} certificate {} with key {}",
                side.name,
                id.cert_file.display(),
                id.key_file.display()
            );
            builder
                .with_client_auth_cert(id.certs, id.key.clone_key())
                .map_err(|source| TlsError::Rustls { what, source })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = PEER_ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The system's CA certificates (Go's default roots), for a member without
/// `--peer-trusted-ca-file`. None found is not an error until an `https` peer is dialed,
/// which then fails verification: peer flags with `http` URLs must keep working.
fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::debug!("reading system CA certificates: {e}");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no --peer-trusted-ca-file and no system CA certificates: https peers cannot be \
             verified"
        );
    }
    roots
}

/// Dials `https://host:port` URIs: TCP (no Nagle), then the TLS handshake with the peer
/// config, which must agree on HTTP/2.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<ClientConfig>,
}

impl TlsConnector {
    pub fn new(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let config = self.config.clone();
        Box::pin(async move {
            let invalid =
                |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
            let host = uri
                .host()
                .ok_or_else(|| invalid("peer URL without a host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| invalid(&format!("peer host {host:?}: {e}")))?;
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, tcp)
                .await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                return Err(io::Error::other(format!(
                    "{uri}: the peer did not agree on HTTP/2 (ALPN h2)"
                )));
            }
            Ok(TokioIo::new(tls))
        })
    }
}

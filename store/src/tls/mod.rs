//! Transport security for the client and peer ports, with etcd's flags and meanings.
//!
//! - `flags`: `--cert-file` ... `--peer-auto-tls`, `--cipher-suites`, `--tls-min-version`,
//!   `--tls-max-version`, and their checks against the listen URLs;
//! - `self_signed`: `--auto-tls` / `--peer-auto-tls` certificates under
//!   `<data-dir>/fixtures/{client,peer}`, made once and reused, as etcd does;
//! - `acceptor`: the server side — handshakes run off the accept loop, and only completed
//!   TLS connections reach the HTTP/2 (and, on the client port, HTTP/1.1) server, each with
//!   its verified client certificate's subject CN, the user name of a request without a
//!   token when auth is enabled (as etcd);
//! - `connector`: the client side of `https` peer connections, used by
//!   [`crate::raft::network::PeerDialer`], the one place every peer connection is made.
//!
//! Reading PEM files, parsing certificate subjects, generating certificates and the verifier
//! for self-signed peers live in `cairn-tls`, which the apiserver shares.
//!
//! Invariants: an `http` URL never goes through rustls; a listener with an `https` URL
//! always does, with the settings of its side (client and metrics URLs: the client
//! settings; peer URLs: the peer settings); and a member with a trusted CA on a side
//! refuses, during the handshake, any connection without a certificate that CA signed
//! (etcd's `RequireAndVerifyClientCert`).
//!
//! Every TLS config is built from ring (rustls's `ring` provider): no OpenSSL, nothing
//! that needs a system tool.

pub mod acceptor;
pub mod connector;
pub mod flags;
pub mod self_signed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use cairn_tls::pem::{self, KeyErrors};
use rustls::{ClientConfig, ServerConfig};

pub use flags::TlsFlags;

use crate::config::Config;
use flags::Side;

/// ALPN protocols offered on the client port: gRPC needs HTTP/2; `/health`, `/metrics` and
/// the JSON gateway are also spoken over HTTP/1.1.
pub const CLIENT_ALPN: &[&[u8]] = &[b"h2", b"http/1.1"];
/// ALPN protocols of the peer port, which carries gRPC only.
pub const PEER_ALPN: &[&[u8]] = &[b"h2"];

/// A TLS configuration error: a flag combination refused before start, or a file that
/// cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with \
         HTTPS scheme"
    )]
    NoClientCert { url: String },
    #[error("cannot listen on TLS for {addr}: KeyFile and CertFile are not presented")]
    NoCert { addr: SocketAddr },
    #[error("KeyFile and CertFile must both be present[key: {key}, cert: {cert}]")]
    HalfPair { cert: String, key: String },
    #[error("{auth} needs {ca}: without a trusted CA no client certificate can be verified")]
    CertAuthWithoutCa {
        auth: &'static str,
        ca: &'static str,
    },
    #[error("unexpected TLS cipher suite {name:?} (supported: {supported})")]
    CipherSuite { name: String, supported: String },
    #[error("cipher suites cannot be configured when only TLS1.3 is enabled")]
    SuitesWithTls13Only,
    #[error("unexpected TLS version {0:?} (must be one of: TLS1.2, TLS1.3)")]
    UnknownVersion(String),
    #[error("{0} is not supported: the lowest TLS version served is TLS1.2")]
    OldVersion(String),
    #[error("min version ({min}) is greater than max version ({max})")]
    Versions { min: String, max: String },
    #[error(transparent)]
    File(#[from] cairn_tls::PemError),
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("{what}: {source}")]
    Rustls { what: String, source: rustls::Error },
    #[error(transparent)]
    SelfSigned(#[from] cairn_tls::self_signed::SelfSignedError),
}

/// The TLS configs a member runs with; `None` where its flags and URLs need none.
#[derive(Clone, Default)]
pub struct Tls {
    /// For `https` client and metrics URLs.
    pub client: Option<Arc<ServerConfig>>,
    /// For `https` peer URLs.
    pub peer: Option<Arc<ServerConfig>>,
    /// For dialing `https` peer URLs.
    pub peer_client: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// Reads (or, for auto TLS, makes) the certificates and builds the configs. The flags
    /// must have passed [`Config::validate`].
    pub fn load(cfg: &Config) -> Result<Tls, TlsError> {
        let flags = &cfg.tls;
        let crypto = flags.crypto()?;
        let data_dir = cfg.data_dir();
        let client_urls = cfg.client_listen_urls().unwrap_or_default();
        let metrics_urls = cfg.metrics_listen_urls().unwrap_or_default();
        let peer_urls = cfg.peer_listen_urls().unwrap_or_default();
        let mut tls = Tls::default();

        let client = flags.client();
        let client_hosts: Vec<String> = client_urls.iter().map(|u| u.host.clone()).collect();
        if client_urls.iter().chain(&metrics_urls).any(|u| u.secure) {
            let identity = identity(&client, &data_dir, &client_hosts)?;
            log_side(&client, &identity);
            tls.client = Some(acceptor::server_config(
                &crypto,
                &client,
                identity,
                CLIENT_ALPN,
            )?);
        } else if client.any_given() {
            tracing::warn!(
                "client URLs are all http: ignoring --cert-file, --key-file, \
                 --trusted-ca-file, --client-cert-auth and --auto-tls"
            );
        }

        let peer = flags.peer();
        let peer_hosts: Vec<String> = peer_urls.iter().map(|u| u.host.clone()).collect();
        let dials_https = cfg
            .initial_members()
            .unwrap_or_default()
            .iter()
            .flat_map(|m| m.peer_urls.iter())
            .any(|u| u.starts_with("https://"));
        if peer.any_given() || dials_https || peer_urls.iter().any(|u| u.secure) {
            let identity = if peer.can_serve() {
                Some(identity(&peer, &data_dir, &peer_hosts)?)
            } else {
                None
            };
            if peer_urls.iter().any(|u| u.secure) {
                // validate() made sure an https peer URL comes with an identity.
                if let Some(id) = identity.clone() {
                    log_side(&peer, &id);
                    tls.peer = Some(acceptor::server_config(&crypto, &peer, id, PEER_ALPN)?);
                }
            } else if peer.can_serve() {
                tracing::warn!(
                    "peer URLs are all http: --peer-cert-file/--peer-key-file/--peer-auto-tls \
                     only serve for dialing https peers"
                );
            }
            tls.peer_client = Some(connector::client_config(&crypto, &peer, identity)?);
        }
        Ok(tls)
    }
}

/// A side's certificate chain and key, given or made.
#[derive(Clone)]
pub struct Identity {
    pub certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    pub key: Arc<rustls_pki_types::PrivateKeyDer<'static>>,
    /// Made by auto TLS: peers dialing with it skip verification, as etcd's do.
    pub self_signed: bool,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

fn identity(
    side: &Side<'_>,
    data_dir: &std::path::Path,
    hosts: &[String],
) -> Result<Identity, TlsError> {
    if side.has_pair() {
        if side.auto_tls {
            tracing::warn!(side = side.name, "ignoring auto TLS since certs given");
        }
        let cert_file = PathBuf::from(side.cert_file);
        let key_file = PathBuf::from(side.key_file);
        Ok(Identity {
            certs: pem::certificates(&cert_file)?,
            key: Arc::new(pem::private_key(&key_file, KeyErrors::ByCause)?),
            self_signed: false,
            cert_file,
            key_file,
        })
    } else {
        let dir = data_dir.join("fixtures").join(side.name);
        self_signed::load_or_create(side.name, &dir, hosts)
    }
}

fn log_side(side: &Side<'_>, id: &Identity) {
    tracing::info!(
        side = side.name,
        cert = %id.cert_file.display(),
        key = %id.key_file.display(),
        trusted_ca = side.trusted_ca_file,
        client_cert_auth = side.client_cert_auth,
        auto_tls = id.self_signed,
        "serving TLS"
    );
}

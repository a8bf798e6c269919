//! How the apiserver reaches a node's kubelet (for `pods/log`), as kube-apiserver's node
//! connection info does:
//!
//! - the host is the node's first `status.addresses` entry of the first type in
//!   `--kubelet-preferred-address-types` that it has (a `Hostname` wanted but not reported falls
//!   back to the node's `kubernetes.io/hostname` label);
//! - the port is `status.daemonEndpoints.kubeletEndpoint.Port`, or 10250 when the node reports
//!   none;
//! - the scheme is HTTPS. With `--kubelet-certificate-authority`, the kubelet's serving
//!   certificate is verified against that CA; without it (kube-apiserver's default) it is not,
//!   though the handshake's signatures still are. `--kubelet-client-certificate` and
//!   `--kubelet-client-key` are presented to kubelets that ask for a client certificate.
//!
//! One connection per request (HTTP/1.1): log streams are long-lived and few.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cairn_tls::pem::{self, KeyErrors};
use cairn_tls::AnyServerCert;
use http::{header, Request, Response};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::auth::tls::TlsError;

/// The kubelet's port when its node reports none.
pub const DEFAULT_PORT: u16 = 10250;

/// The node address types `--kubelet-preferred-address-types` may name.
pub const ADDRESS_TYPES: [&str; 5] = [
    "Hostname",
    "InternalDNS",
    "InternalIP",
    "ExternalDNS",
    "ExternalIP",
];

/// The label a node's hostname is also published under.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The `--kubelet-*` flags.
#[derive(Debug, Clone)]
pub struct Settings {
    pub preferred_address_types: Vec<String>,
    pub certificate_authority: Option<PathBuf>,
    /// Certificate and key files.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            preferred_address_types: ADDRESS_TYPES.iter().map(|t| t.to_string()).collect(),
            certificate_authority: None,
            client_cert: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Where a node's kubelet listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, an IPv6 host in brackets (what is dialed and sent as `Host`).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `https://host:port<path_and_query>`.
    pub fn url(&self, path_and_query: &str) -> String {
        format!("https://{}{path_and_query}", self.authority())
    }
}

/// Why a kubelet could not be asked; the text is what clients see, after the request's URL.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("dial tcp {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("dial tcp {addr}: i/o timeout")]
    ConnectTimeout { addr: String },
    #[error("invalid kubelet host {0:?}")]
    Host(String),
    #[error("tls: {0}")]
    Tls(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("net/http: timeout awaiting response headers")]
    ResponseTimeout,
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
}

/// The apiserver's client of kubelets.
pub struct KubeletClient {
    preferred: Vec<String>,
    timeout: Duration,
    /// Verifies kubelets' certificates against `--kubelet-certificate-authority` when given.
    verified: Arc<ClientConfig>,
    /// For requests that ask to skip verification (`insecureSkipTLSVerifyBackend`).
    unverified: Arc<ClientConfig>,
}

impl KubeletClient {
    pub fn new(settings: &Settings) -> Result<KubeletClient, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let unverified = client_config(
            &provider,
            Arc::new(AnyServerCert::new(provider.clone())),
            settings,
        )?;
        let verified = match &settings.certificate_authority {
            None => unverified.clone(),
            Some(path) => {
                let roots = Arc::new(pem::roots(path)?);
                let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| TlsError::Pem {
                        path: path.clone(),
                        reason: format!("cannot verify kubelets with it: {e}"),
                    })?;
                client_config(&provider, verifier, settings)?
            }
        };
        Ok(KubeletClient {
            preferred: settings.preferred_address_types.clone(),
            timeout: settings.timeout,
            verified,
            unverified,
        })
    }

    /// Where `node`'s kubelet listens; the error is kube's text for a node without a usable
    /// address.
    pub fn endpoint(&self, node: &Value) -> Result<Endpoint, String> {
        let addresses = node
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        fn of<'a>(a: &'a Value, field: &str) -> &'a str {
            a.get(field).and_then(Value::as_str).unwrap_or("")
        }
        let mut host = None;
        for wanted in &self.preferred {
            host = addresses
                .iter()
                .find(|a| of(a, "type") == wanted)
                .map(|a| of(a, "address").to_string());
            if host.is_none() && wanted == "Hostname" {
                host = node
                    .pointer("/metadata/labels")
                    .and_then(|l| l.get(HOSTNAME_LABEL))
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            if host.is_some() {
                break;
            }
        }
        let Some(host) = host else {
            let known: Vec<String> = addresses
                .iter()
                .map(|a| format!("{{{} {}}}", of(a, "type"), of(a, "address")))
                .collect();
            return Err(format!(
                "no preferred addresses found; known addresses: [{}]",
                known.join(" ")
            ));
        };
        let port = node
            .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
            .and_then(Value::as_i64)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .unwrap_or(DEFAULT_PORT);
        Ok(Endpoint { host, port })
    }

    /// GET `path_and_query` from the kubelet at `endpoint`: the response once its headers are
    /// in (within `--kubelet-timeout`), its body still streaming.
    pub async fn get(
        &self,
        endpoint: &Endpoint,
        path_and_query: &str,
        skip_verify: bool,
    ) -> Result<Response<Incoming>, KubeletError> {
        let config = if skip_verify {
            self.unverified.clone()
        } else {
            self.verified.clone()
        };
        let addr = endpoint.authority();
        let server_name = ServerName::try_from(endpoint.host.clone())
            .map_err(|_| KubeletError::Host(endpoint.host.clone()))?;
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(source)) => return Err(KubeletError::Connect { addr, source }),
            Err(_) => return Err(KubeletError::ConnectTimeout { addr }),
        };
        let _ = tcp.set_nodelay(true);
        let tls = tokio::time::timeout(
            self.timeout,
            TlsConnector::from(config).connect(server_name, tcp),
        )
        .await
        .map_err(|_| KubeletError::ResponseTimeout)?
        .map_err(KubeletError::Tls)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        // Ends when the response body is read or dropped.
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "kubelet connection ended");
            }
        });
        let request = Request::get(path_and_query)
            .header(header::HOST, &addr)
            .header(header::USER_AGENT, "cairn-apiserver")
            .body(Empty::<Bytes>::new())?;
        tokio::time::timeout(self.timeout, sender.send_request(request))
            .await
            .map_err(|_| KubeletError::ResponseTimeout)?
            .map_err(KubeletError::Http)
    }
}

fn client_config(
    provider: &Arc<CryptoProvider>,
    verifier: Arc<dyn ServerCertVerifier>,
    settings: &Settings,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: "TLS versions".into(),
            source,
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &settings.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                pem::certificates(cert)?,
                pem::private_key(key, KeyErrors::Unusable)?,
            )
            .map_err(|source| TlsError::Rustls {
                what: format!(
                    "kubelet client certificate {} with key {}",
                    cert.display(),
                    key.display()
                ),
                source,
            })?,
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn client(types: &[&str]) -> KubeletClient {
        KubeletClient::new(&Settings {
            preferred_address_types: types.iter().map(|t| t.to_string()).collect(),
            ..Settings::default()
        })
        .expect("client")
    }

    #[test]
    fn the_first_preferred_address_type_present_wins() {
        let node = json!({
            "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1.local"}},
            "status": {
                "addresses": [
                    {"type": "ExternalIP", "address": "203.0.113.7"},
                    {"type": "InternalIP", "address": "10.0.0.7"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10260}},
            },
        });
        let all = client(&ADDRESS_TYPES);
        // No Hostname address: the label stands in for it.
        assert_eq!(
            all.endpoint(&node),
            Ok(Endpoint {
                host: "n1.local".into(),
                port: 10260
            })
        );
        let ips = client(&["InternalIP", "ExternalIP"]);
        assert_eq!(ips.endpoint(&node).map(|e| e.host), Ok("10.0.0.7".into()));
        let external = client(&["ExternalDNS", "ExternalIP"]);
        assert_eq!(
            external.endpoint(&node).map(|e| e.host),
            Ok("203.0.113.7".into())
        );
    }

    #[test]
    fn a_node_without_a_usable_address_is_refused_with_the_ones_it_has() {
        let node =
            json!({"status": {"addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]}});
        assert_eq!(
            client(&["Hostname", "ExternalIP"]).endpoint(&node),
            Err("no preferred addresses found; known addresses: [{InternalIP 10.0.0.7}]".into())
        );
        // Without a reported port, the kubelet's default.
        assert_eq!(
            client(&["InternalIP"]).endpoint(&node).map(|e| e.port),
            Ok(DEFAULT_PORT)
        );
    }

    #[test]
    fn urls_bracket_ipv6_hosts() {
        let v6 = Endpoint {
            host: "fd00::7".into(),
            port: 10250,
        };
        assert_eq!(v6.url("/x"), "https://[fd00::7]:10250/x");
    }
}

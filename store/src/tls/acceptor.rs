//! The server side: a side's rustls config, and a stream of accepted TLS connections to
//! hand to a tonic or hyper server in place of raw TCP ones.
//!
//! Handshakes run in their own tasks with a deadline, so a client that connects and says
//! nothing cannot hold up the accept loop; a failed handshake is logged and its connection
//! dropped (etcd's "rejected connection"), so a client without an acceptable certificate
//! never reaches a service.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use cairn_tls::pem;
use futures::Stream;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::flags::{Crypto, Side};
use super::{Identity, TlsError};

/// How long a client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Builds the server config of a side: its certificate, client certificates required and
/// verified against its trusted CA when one is given, and the ALPN protocols of its port.
pub fn server_config(
    crypto: &Crypto,
    side: &Side<'_>,
    identity: Identity,
    alpn: &[&[u8]],
) -> Result<Arc<ServerConfig>, TlsError> {
    let rustls_err = |what: String| move |source| TlsError::Rustls { what, source };
    let builder = ServerConfig::builder_with_provider(crypto.provider.clone())
        .with_protocol_versions(&crypto.versions)
        .map_err(rustls_err("TLS versions".into()))?;
    // As etcd: a trusted CA file alone already makes client certificates mandatory.
    let builder = if side.trusted_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let path = std::path::Path::new(side.trusted_ca_file);
        let roots = Arc::new(pem::roots(path)?);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots, crypto.provider.clone())
            .build()
            .map_err(|e| TlsError::Pem {
                path: path.to_path_buf(),
                reason: format!("cannot verify client certificates with it: {e}"),
            })?;
        builder.with_client_cert_verifier(verifier)
    };
    let what = format!(
        "{} certificate {} with key {}",
        side.name,
        identity.cert_file.display(),
        identity.key_file.display()
    );
    let mut config = builder
        .with_single_cert(identity.certs, identity.key.clone_key())
        .map_err(rustls_err(what))?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// An accepted connection whose handshake has completed.
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    common_name: Option<Arc<str>>,
}

/// What a request on a TLS connection knows of it (in the request's extensions).
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub tcp: TcpConnectInfo,
    /// The subject CN of the client certificate the handshake verified, if any.
    pub common_name: Option<Arc<str>>,
}

impl Connected for TlsConn {
    type ConnectInfo = TlsPeer;

    fn connect_info(&self) -> TlsPeer {
        TlsPeer {
            tcp: self.stream.get_ref().0.connect_info(),
            common_name: self.common_name.clone(),
        }
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Runs the handshake on an accepted socket; `None` (logged) if it fails or times out.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<TlsConn> {
    let _ = tcp.set_nodelay(true);
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            // Only a verifying config asks for client certificates, so one present here
            // chains to the trusted CA.
            let common_name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| cairn_tls::subject::subject(leaf))
                .and_then(|subject| subject.common_name)
                .map(Arc::from);
            Some(TlsConn {
                stream,
                common_name,
            })
        }
        Ok(Err(e)) => {
            tracing::warn!(remote = %peer, "rejected connection: {e}");
            None
        }
        Err(_) => {
            tracing::warn!(remote = %peer, "rejected connection: TLS handshake timed out");
            None
        }
    }
}

/// Accepts on `listener` and yields each connection once its handshake has completed. The
/// listener is closed when the stream is dropped (the server stopped).
pub fn incoming(
    listener: TcpListener,
    config: Arc<ServerConfig>,
) -> impl Stream<Item = io::Result<TlsConn>> + Send + 'static {
    let (tx, rx) = mpsc::channel::<TlsConn>(64);
    tokio::spawn(async move {
        let acceptor = TlsAcceptor::from(config);
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("TLS listener: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = tx.closed() => return,
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Some(conn) = handshake(&acceptor, tcp, peer).await {
                    // The server may have stopped meanwhile; the connection is dropped then.
                    let _ = tx.send(conn).await;
                }
            });
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|conn| (Ok(conn), rx))
    })
}

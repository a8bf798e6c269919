//! The HTTP side of a member: `/health`, `/livez`, `/readyz`, `/metrics`, `/version` and
//! etcd's JSON gateway under `/v3/`, on the client port next to gRPC (and on
//! `--listen-metrics-urls`, without the gateway).
//!
//! - `health`: the health verdict and the probes;
//! - `scrape`: the `/metrics` page and the leader-change counter;
//! - `gateway`: `/v3/...` JSON turned into in-process gRPC calls and back;
//! - `json`: etcd's gateway JSON mapping, driven by the API's descriptors.
//!
//! On the client port the split is made per request, as etcd's cmux makes it: HTTP/2 with a
//! `application/grpc` content type is gRPC, everything else (HTTP/1.1 included) is HTTP.
//! [`ClientLayer`] sits in front of the tonic router, sends gRPC on to it (counting each call
//! for `grpc_server_*`) and serves the rest itself.

pub mod authority;
pub mod gateway;
pub mod health;
pub use cairn_wire::json;
pub mod scrape;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::body::Body;
use tower_layer::Layer;
use tower_service::Service;

use crate::metrics::exposition;
use crate::metrics::grpc::instrument;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::server::maintenance::ETCD_VERSION;

/// What the HTTP handlers read.
pub struct HttpState {
    pub node: Arc<Node>,
    pub metrics: Arc<Metrics>,
    /// The effective --quota-backend-bytes, for `etcd_server_quota_backend_bytes`.
    pub quota_bytes: i64,
    /// Largest JSON body the gateway reads.
    pub max_body_bytes: usize,
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_2
        && req
            .headers()
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// A `text/plain` response; error statuses get `nosniff` as Go's `http.Error` sets it.
pub(crate) fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(Full::new(body.into())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if status != StatusCode::OK {
        h.insert(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        );
    }
    resp
}

/// Serves one HTTP (non-gRPC) request. `grpc` is absent on the metrics listener, which
/// serves no gateway.
pub async fn handle(
    state: Arc<HttpState>,
    req: Request<Body>,
    grpc: Option<gateway::GrpcCall>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let mut resp = if parts.method == Method::OPTIONS {
        // CORS preflight, answered as etcd's CORS handler does.
        plain(StatusCode::OK, "")
    } else if path == "/health" {
        health::health(&state, &parts).await
    } else if ["/livez", "/readyz"]
        .iter()
        .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        health::probe(&state, &parts).await
    } else if path == "/metrics" {
        let state = state.clone();
        let page = tokio::task::spawn_blocking(move || scrape::render(&state))
            .await
            .unwrap_or_default();
        let mut resp = plain(StatusCode::OK, page);
        resp.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(exposition::CONTENT_TYPE),
        );
        resp
    } else if path == "/version" {
        let cluster = ETCD_VERSION.rsplit_once('.').map_or(ETCD_VERSION, |v| v.0);
        let body = format!(r#"{{"etcdserver":"{ETCD_VERSION}","etcdcluster":"{cluster}.0"}}"#);
        let mut resp = plain(StatusCode::OK, body);
        resp.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        resp
    } else if let (Some(grpc), true) = (&grpc, gateway::is_bound(path)) {
        let req = Request::from_parts(parts, body);
        gateway::handle(req, grpc, state.max_body_bytes).await
    } else {
        plain(StatusCode::NOT_FOUND, "404 page not found\n")
    };
    let h = resp.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("accept, content-type, authorization"),
    );
    resp
}

/// The layer put in front of the client port's tonic router.
#[derive(Clone)]
pub struct ClientLayer {
    state: Arc<HttpState>,
}

impl ClientLayer {
    pub fn new(state: Arc<HttpState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for ClientLayer
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> ClientService<S> {
        let metrics = self.state.metrics.clone();
        let routes = inner.clone();
        // The gateway's way into the gRPC services: a fresh clone of the router per call,
        // made ready before use, and counted like any gRPC call (as etcd's loopback is).
        let grpc: gateway::GrpcCall = Arc::new(move |req: Request<Body>| {
            let mut svc = routes.clone();
            let guard = metrics.grpc.start(req.uri().path());
            Box::pin(async move {
                let ready = std::future::poll_fn(|cx| svc.poll_ready(cx)).await;
                let resp = match ready {
                    Ok(()) => svc.call(req).await,
                    Err(e) => Err(e),
                };
                let resp = resp.unwrap_or_else(|never| match never {});
                instrument(resp, guard)
            })
        });
        ClientService {
            inner,
            state: self.state.clone(),
            grpc,
        }
    }
}

#[derive(Clone)]
pub struct ClientService<S> {
    inner: S,
    state: Arc<HttpState>,
    grpc: gateway::GrpcCall,
}

impl<S> Service<Request<Body>> for ClientService<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The verified client certificate's CN travels to the services as metadata that only
        // this layer may set: whatever a client sent under that name is dropped first.
        let headers = req.headers_mut();
        headers.remove(crate::auth::TLS_USER_METADATA);
        let cn = req
            .extensions()
            .get::<crate::tls::acceptor::TlsPeer>()
            .and_then(|p| p.common_name.as_deref())
            .and_then(|cn| HeaderValue::from_str(cn).ok());
        if let Some(cn) = cn {
            req.headers_mut().insert(crate::auth::TLS_USER_METADATA, cn);
        }
        if is_grpc(&req) {
            let guard = self.state.metrics.grpc.start(req.uri().path());
            let fut = self.inner.call(req);
            Box::pin(async move { Ok(instrument(fut.await?, guard)) })
        } else {
            let state = self.state.clone();
            let grpc = self.grpc.clone();
            Box::pin(async move { Ok(handle(state, req, Some(grpc)).await) })
        }
    }
}

/// Serves `/health`, `/livez`, `/readyz`, `/metrics` and `/version` on a
/// `--listen-metrics-urls` listener until `stop` turns true; over TLS with `tls` (an `https`
/// metrics URL, which takes the client port's settings, as in etcd).
pub fn serve_metrics(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: Arc<HttpState>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let (stream, peer): (_, SocketAddr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("metrics listener: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => break,
            };
            let _ = stream.set_nodelay(true);
            let state = state.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(state, req.map(Body::new), None).await) }
            });
            let builder = builder.clone();
            let acceptor = acceptor.clone();
            connections.spawn(async move {
                let served = match acceptor {
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Some(acceptor) => {
                        let Some(tls) =
                            crate::tls::acceptor::handshake(&acceptor, stream, peer).await
                        else {
                            return;
                        };
                        builder.serve_connection(TokioIo::new(tls), service).await
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(%peer, "metrics connection: {e}");
                }
            });
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
        }
        connections.abort_all();
    })
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The client port's gRPC router with [`ClientLayer`] in front of it.
pub type ClientRouter =
    tonic::transport::server::Router<tower_layer::Stack<ClientLayer, tower_layer::Identity>>;

/// Serves the client port (gRPC and HTTP) until `stop` turns true; over TLS with `tls` (an
/// `https` client URL), where ALPN offers both h2 and http/1.1 so the same split applies.
pub fn serve_client(
    router: ClientRouter,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let signal = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        // Every connection gets its `:authority` repaired if a client sent a URL there.
        let served = match tls {
            Some(tls) => {
                let incoming = tokio_stream::StreamExt::map(
                    crate::tls::acceptor::incoming(listener, tls),
                    |conn| conn.map(authority::AuthorityFix::new),
                );
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
            None => {
                // The builder's tcp_nodelay does not reach sockets accepted here; without it
                // Nagle's algorithm holds a response's trailers back until the client's
                // delayed ACK (~40 ms).
                let incoming = tokio_stream::StreamExt::map(
                    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                    |conn| conn.map(authority::AuthorityFix::new),
                );
                router.serve_with_incoming_shutdown(incoming, signal).await
            }
        };
        if let Err(e) = served {
            tracing::error!("client server stopped: {e}");
        }
    })
}

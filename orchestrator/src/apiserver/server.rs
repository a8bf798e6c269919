//! Accept loop, per-connection HTTP (1.1 and cleartext HTTP/2), and request dispatch to
//! discovery, OpenAPI and the REST layer. `start` bootstraps (connects to etcd, creates the
//! system namespaces, then the `default/kubernetes` Service) before it reports ready, so a
//! returned [`Handle`] is serving; it also starts the namespace controller, the garbage
//! collector and the kubernetes Service controller in-process, on a loopback client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::http::{self as h, Body};
use super::loopback::Loopback;
use super::query::Query;
use super::route::{self, Route};
use super::storage::{StorageError, Store};
use super::{discovery, object, openapi, rest, ApiServer, Config};
use crate::controllers::{garbage_collector, kubernetes_service, namespace};

/// Why the apiserver could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("invalid flags: {0}")]
    Config(String),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("etcd at {endpoints:?} is not usable: {source}")]
    Etcd {
        endpoints: Vec<String>,
        source: StorageError,
    },
}

/// Namespaces every Kubernetes cluster has; "default" is where namespaced requests land.
const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces queued for the namespace controller before further wake-ups are dropped (its
/// periodic relist still finds them).
const NAMESPACE_WAKE_QUEUE: usize = 256;

/// How long startup waits for etcd to answer.
const ETCD_WAIT: Duration = Duration::from_secs(30);

/// A running apiserver.
pub struct Handle {
    addr: SocketAddr,
    api: Arc<ApiServer>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    /// The in-process controllers (namespace controller, garbage collector) and how to stop
    /// them.
    stop_controllers: watch::Sender<bool>,
    controllers: tokio::task::JoinHandle<()>,
}

impl Handle {
    /// The address the plain-HTTP port listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// etcd watches the apiserver holds open right now (its watch cache's, one per resource
    /// type) and the HTTP watchers they feed.
    pub fn watch_counts(&self) -> (i64, i64) {
        let cache = self.api.watch_cache();
        (cache.etcd_watches(), cache.watchers())
    }

    /// Resource types with a watch cache (every served one: they start with the server).
    pub fn watch_caches(&self) -> i64 {
        self.api.watch_cache().caches()
    }

    /// Stops accepting, closes every open connection (including watches) and stops the
    /// in-process controllers.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.stop_controllers.send(true);
        let _ = (&mut self.task).await;
        let _ = (&mut self.controllers).await;
    }
}

/// Validates flags, connects to etcd, ensures the system namespaces, binds and serves.
pub async fn start(config: Config) -> Result<Handle, StartError> {
    config.validate().map_err(StartError::Config)?;
    let store = Store::new(&config.etcd_servers).map_err(|source| StartError::Etcd {
        endpoints: config.etcd_servers.clone(),
        source,
    })?;
    let cidr = config.service_cidr().map_err(StartError::Config)?;
    let node_ports = config.node_port_range().map_err(StartError::Config)?;
    let (wake, woken) = mpsc::channel(NAMESPACE_WAKE_QUEUE);
    // One slot: a garbage-collector pass looks at everything, so one queued wake-up is enough.
    let (gc_wake, gc_woken) = mpsc::channel(1);
    let (kubernetes_wake, kubernetes_woken) = mpsc::channel(1);
    let api = Arc::new(ApiServer::new(
        store,
        config.etcd_prefix.clone(),
        cidr,
        node_ports,
        wake,
        config.watch_cache(),
        gc_wake,
        kubernetes_wake,
    ));
    bootstrap(&api).await.map_err(|source| StartError::Etcd {
        endpoints: config.etcd_servers.clone(),
        source,
    })?;
    // Every resource's watch cache starts with the server, as kube-apiserver's do: a watch
    // from the resourceVersion of any list answered after startup then finds it in the cache's
    // window, instead of predating a cache that its own first watch started.
    let mut started = std::collections::HashSet::new();
    for def in super::resources::RESOURCES {
        let prefix = api.collection_prefix(def, None);
        if started.insert(prefix.clone()) {
            api.watch_cache().resource(&prefix);
        }
    }
    let addr = SocketAddr::new(config.insecure_bind_address, config.insecure_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    // kube-apiserver's bootstrap controller: the kubernetes Service is there once we serve.
    let desired = kubernetes_service::Desired {
        cluster_ip: cidr.first(),
        address: config.advertise_address(),
        port: addr.port(),
    };
    if let Err(e) = kubernetes_service::reconcile(&Loopback(api.clone()), &desired).await {
        tracing::warn!(error = %e, "creating the default/kubernetes Service; will retry");
    }
    let (stop, stopped) = oneshot::channel();
    let (stop_controllers, controllers_stopped) = watch::channel(false);
    let controllers = tokio::spawn({
        let namespaces = namespace::run(Loopback(api.clone()), woken, controllers_stopped.clone());
        let collector =
            garbage_collector::run(Loopback(api.clone()), gc_woken, controllers_stopped.clone());
        let kubernetes = kubernetes_service::run(
            Loopback(api.clone()),
            desired,
            kubernetes_woken,
            controllers_stopped,
        );
        async move {
            tokio::join!(namespaces, collector, kubernetes);
        }
    });
    let task = tokio::spawn(serve(listener, api.clone(), stopped));
    Ok(Handle {
        api,
        addr,
        stop: Some(stop),
        task,
        stop_controllers,
        controllers,
    })
}

/// Creates the system namespaces that do not exist yet, retrying until etcd answers.
async fn bootstrap(api: &ApiServer) -> Result<(), StorageError> {
    let deadline = Instant::now() + ETCD_WAIT;
    let def = api.namespaces();
    for ns in SYSTEM_NAMESPACES {
        let mut obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        object::prepare_create(def, None, &mut obj)
            .map_err(|e| StorageError::Etcd(e.to_string()))?;
        loop {
            match api
                .store
                .create(&api.object_key(def, None, ns), object::encode(&obj), None)
                .await
            {
                Ok(_) | Err(StorageError::AlreadyExists) => break,
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::warn!(error = %e, "waiting for etcd");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }
    Ok(())
}

/// Serves connections from `listener` until `stop` fires; then drops every connection.
pub async fn serve(listener: TcpListener, api: Arc<ApiServer>, mut stop: oneshot::Receiver<()>) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let api = api.clone();
        conns.spawn(async move {
            let host = stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let service = hyper::service::service_fn(move |req| {
                let api = api.clone();
                let host = host.clone();
                async move { Ok::<_, std::convert::Infallible>(dispatch(&api, req, &host).await) }
            });
            if let Err(e) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    api.watch_cache.stop();
    conns.shutdown().await;
}

async fn dispatch(api: &ApiServer, req: Request<Incoming>, host: &str) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let method = parts.method.clone();
    let started = Instant::now();
    let result = match route::resolve(&path) {
        Err(e) => Err(e),
        Ok(Route::Resource(target)) => {
            rest::handle(api, &method, target, &query, &parts.headers, body).await
        }
        Ok(_) if method != Method::GET && method != Method::HEAD => {
            Err(super::status::ApiError::MethodNotAllowed)
        }
        Ok(Route::Version) => Ok(h::json(200, &discovery::version())),
        Ok(Route::Health) => health(api).await,
        Ok(Route::Api) => Ok(h::json(200, &discovery::api_versions(host))),
        Ok(Route::Apis) => Ok(h::json(200, &discovery::api_group_list())),
        Ok(Route::Group(g)) => Ok(h::json(200, &discovery::api_group(&g))),
        Ok(Route::ResourceList(g, v)) => Ok(h::json(200, &discovery::resource_list(&g, &v))),
        Ok(Route::OpenApiV2) => openapi::serve_v2(&parts.headers),
        Ok(Route::OpenApiV3) => Ok(h::json(200, &openapi::v3_discovery())),
        Ok(Route::OpenApiV3GroupVersion(gv)) => openapi::serve_v3(&gv, &query, &parts.headers),
    };
    let resp = result.unwrap_or_else(|e| h::error(&e));
    tracing::debug!(
        %method, %path, query = parts.uri.query().unwrap_or(""),
        accept = parts.headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or(""),
        status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    resp
}

/// /healthz, /livez, /readyz: "ok" when etcd answers a read.
async fn health(api: &ApiServer) -> Result<Response<Body>, super::status::ApiError> {
    match api.store.get(b"health").await {
        Ok(_) => Ok(h::text(200, "text/plain; charset=utf-8", "ok")),
        Err(e) => Ok(h::text(
            500,
            "text/plain; charset=utf-8",
            format!("[-]etcd failed: {e}\nhealthz check failed\n"),
        )),
    }
}

//! Accept loops, per-connection HTTP (1.1 and HTTP/2; on the secure port after the TLS
//! handshake), authentication and authorization of every request, and dispatch to discovery,
//! OpenAPI, the review APIs and the REST layer. `start` bootstraps (connects to etcd, creates
//! the default RBAC policy and the system namespaces, loads the RBAC cache, starts every
//! resource's watch cache, then creates the `default/kubernetes` Service) before it reports
//! ready, so a returned [`Handle`] is serving with its policy in force; it also starts the
//! namespace, garbage-collector, kubernetes Service and ClusterRole aggregation controllers
//! in-process, on a loopback client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{header, Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::auth::authenticate::Authenticator;
use super::auth::authorize::{self, Authorizer, Mode};
use super::auth::rbac_cache::RbacCache;
use super::auth::tls::{self, ServingCert, TlsError};
use super::auth::token_file::{TokenFile, TokenFileError};
use super::auth::{
    bootstrap_policy, escalation, impersonate, request_info, review, Caller, Security, UserInfo,
};
use super::http::{self as h, Body};
use super::kubelet::KubeletClient;
use super::loopback::Loopback;
use super::query::Query;
use super::route::{self, Route};
use super::storage::{StorageError, Store};
use super::{admission, discovery, object, openapi, rest, ApiServer, Config};
use crate::controllers::{
    clusterrole_aggregation, garbage_collector, kubernetes_service, namespace,
};

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
    #[error("--token-auth-file: {0}")]
    TokenFile(#[from] TokenFileError),
    #[error("secure serving: {0}")]
    Tls(#[from] TlsError),
    #[error("kubelet client: {0}")]
    KubeletTls(TlsError),
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

/// How long a TLS client may take to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running apiserver.
pub struct Handle {
    addr: SocketAddr,
    api: Arc<ApiServer>,
    secure: Option<SecurePort>,
    stop: Option<watch::Sender<bool>>,
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

    /// The address the secure port listens on, when it is on.
    pub fn secure_addr(&self) -> Option<SocketAddr> {
        self.secure.as_ref().map(|s| s.addr)
    }

    /// The serving certificate file (given, or generated into --cert-dir), when the secure
    /// port is on: with a generated certificate it also holds the CA clients should trust.
    pub fn serving_cert_file(&self) -> Option<&std::path::Path> {
        self.secure.as_ref().map(|s| s.cert_file.as_path())
    }

    /// Stops accepting, closes every open connection (including watches) and stops the
    /// in-process controllers.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let _ = self.stop_controllers.send(true);
        let _ = (&mut self.task).await;
        let _ = (&mut self.controllers).await;
    }
}

/// The secure port, once bound.
struct SecurePort {
    addr: SocketAddr,
    cert_file: std::path::PathBuf,
}

/// Validates flags, connects to etcd, creates the default policy and the system namespaces,
/// binds and serves.
pub async fn start(config: Config) -> Result<Handle, StartError> {
    config.validate().map_err(StartError::Config)?;
    let modes = config.authorization_modes().map_err(StartError::Config)?;
    let tokens = match &config.token_auth_file {
        Some(path) => Some(TokenFile::load(path)?),
        None => None,
    };
    let store = Store::new(&config.etcd_servers).map_err(|source| StartError::Etcd {
        endpoints: config.etcd_servers.clone(),
        source,
    })?;
    let etcd_err = |source| StartError::Etcd {
        endpoints: config.etcd_servers.clone(),
        source,
    };
    let cidr = config.service_cidr().map_err(StartError::Config)?;
    let node_ports = config.node_port_range().map_err(StartError::Config)?;
    let kubelet = KubeletClient::new(&config.kubelet()).map_err(StartError::KubeletTls)?;
    let (stop_controllers, controllers_stopped) = watch::channel(false);
    bootstrap_rbac(&store, &config.etcd_prefix)
        .await
        .map_err(etcd_err)?;
    let rbac = match tokio::time::timeout(
        ETCD_WAIT,
        RbacCache::start(
            store.clone(),
            config.etcd_prefix.clone(),
            controllers_stopped.clone(),
        ),
    )
    .await
    {
        Ok(cache) => cache.map_err(etcd_err)?,
        Err(_) => {
            return Err(etcd_err(StorageError::Etcd(
                "timed out listing the RBAC objects".into(),
            )))
        }
    };
    let security = Security {
        authenticator: Authenticator {
            tokens,
            anonymous: config.anonymous_allowed(),
        },
        authorizer: Authorizer {
            rbac: modes.contains(&Mode::Rbac).then(|| rbac.clone()),
            modes,
        },
    };
    let (wake, woken) = mpsc::channel(NAMESPACE_WAKE_QUEUE);
    // One slot: a garbage-collector pass looks at everything, so one queued wake-up is enough.
    let (gc_wake, gc_woken) = mpsc::channel(1);
    let (kubernetes_wake, kubernetes_woken) = mpsc::channel(1);
    let api = Arc::new(ApiServer::new(
        store,
        config.etcd_prefix.clone(),
        super::ServiceRanges {
            cluster_ip: cidr,
            node_port: node_ports,
        },
        config.watch_cache(),
        super::ControllerWakes {
            namespace: wake,
            garbage_collector: gc_wake,
            kubernetes_service: kubernetes_wake,
        },
        security,
        kubelet,
    ));
    bootstrap(&api).await.map_err(etcd_err)?;
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
    let (secure, secure_listener) = if config.secure_port == 0 {
        (None, None)
    } else {
        let serving = tls::server_config(&serving_cert(&config), config.client_ca_file.as_deref())?;
        let secure_addr = SocketAddr::new(config.bind_address, config.secure_port);
        let l = TcpListener::bind(secure_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: secure_addr,
                source,
            })?;
        let secure_addr = l.local_addr().map_err(|source| StartError::Bind {
            addr: secure_addr,
            source,
        })?;
        tracing::info!(
            addr = %secure_addr,
            cert = %serving.cert_file.display(),
            client_ca = ?config.client_ca_file,
            authorization_mode = %config.authorization_mode,
            "serving securely"
        );
        (
            Some(SecurePort {
                addr: secure_addr,
                cert_file: serving.cert_file,
            }),
            Some((l, tokio_rustls::TlsAcceptor::from(serving.config))),
        )
    };
    // kube-apiserver's bootstrap controller: the kubernetes Service is there once we serve. Its
    // Endpoints name the secure port when there is one, as kube-apiserver's do.
    let desired = kubernetes_service::Desired {
        cluster_ip: cidr.first(),
        address: config.advertise_address(),
        port: secure.as_ref().map_or(addr.port(), |s| s.addr.port()),
    };
    if let Err(e) = kubernetes_service::reconcile(&Loopback(api.clone()), &desired).await {
        tracing::warn!(error = %e, "creating the default/kubernetes Service; will retry");
    }
    let (stop, stopped) = watch::channel(false);
    let controllers = tokio::spawn({
        let namespaces = namespace::run(Loopback(api.clone()), woken, controllers_stopped.clone());
        let collector =
            garbage_collector::run(Loopback(api.clone()), gc_woken, controllers_stopped.clone());
        let kubernetes = kubernetes_service::run(
            Loopback(api.clone()),
            desired,
            kubernetes_woken,
            controllers_stopped.clone(),
        );
        let aggregation = clusterrole_aggregation::run(
            Loopback(api.clone()),
            rbac.cluster_role_changes(),
            controllers_stopped,
        );
        async move {
            tokio::join!(namespaces, collector, kubernetes, aggregation);
        }
    });
    let insecure = tokio::spawn(serve(listener, None, api.clone(), stopped.clone()));
    let task = tokio::spawn({
        let api = api.clone();
        async move {
            if let Some((l, acceptor)) = secure_listener {
                let secure = tokio::spawn(serve(l, Some(acceptor), api, stopped));
                let _ = tokio::join!(insecure, secure);
            } else {
                let _ = insecure.await;
            }
        }
    });
    Ok(Handle {
        api,
        addr,
        secure,
        stop: Some(stop),
        task,
        stop_controllers,
        controllers,
    })
}

/// The serving certificate the flags ask for: given files, or a generated one for the names
/// and addresses clients reach the server by (kube-apiserver's list).
fn serving_cert(config: &Config) -> ServingCert {
    match (&config.tls_cert_file, &config.tls_private_key_file) {
        (Some(cert), Some(key)) => ServingCert::Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let mut hosts: Vec<String> = vec![
                "localhost".into(),
                "127.0.0.1".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ];
            if !config.bind_address.is_unspecified() {
                hosts.insert(0, config.bind_address.to_string());
            }
            if let Ok(cidr) = config.service_cidr() {
                hosts.push(cidr.first().to_string());
            }
            ServingCert::SelfSigned {
                dir: config.cert_dir.clone(),
                hosts,
            }
        }
    }
}

/// Creates the default ClusterRoles and ClusterRoleBindings that do not exist yet, retrying
/// until etcd answers.
async fn bootstrap_rbac(store: &Store, prefix: &str) -> Result<(), StorageError> {
    let deadline = Instant::now() + ETCD_WAIT;
    let roles = bootstrap_policy::cluster_roles()
        .into_iter()
        .map(|r| ("clusterroles", r));
    let bindings = bootstrap_policy::cluster_role_bindings()
        .into_iter()
        .map(|b| ("clusterrolebindings", b));
    for (plural, mut obj) in roles.chain(bindings) {
        let def = super::resources::lookup("rbac.authorization.k8s.io", "v1", plural)
            .expect("the RBAC kinds are served");
        object::prepare_create(def, None, &mut obj)
            .map_err(|e| StorageError::Etcd(e.to_string()))?;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let key = format!("{prefix}/{plural}/{name}").into_bytes();
        loop {
            match store.create(&key, object::encode(&obj), None).await {
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
    // The system PriorityClasses, as kube-apiserver's bootstrap creates them.
    let def = super::resources::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are served");
    for mut class in admission::system_priority_classes() {
        let name = object::prepare_create(def, None, &mut class)
            .map_err(|e| StorageError::Etcd(e.to_string()))?;
        match api
            .store
            .create(
                &api.object_key(def, None, &name),
                object::encode(&class),
                None,
            )
            .await
        {
            Ok(_) | Err(StorageError::AlreadyExists) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Serves connections from `listener` until `stop` fires; then drops every connection. With an
/// acceptor (the secure port) each connection first completes its TLS handshake, in its own
/// task and within [`HANDSHAKE_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    api: Arc<ApiServer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
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
        let tls = tls.clone();
        conns.spawn(async move {
            let host = stream
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            match tls {
                None => serve_connection(stream, api, host, Caller::Insecure, peer).await,
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(
                        HANDSHAKE_TIMEOUT,
                        acceptor.accept(stream),
                    )
                    .await
                    {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    // Only a config with --client-ca-file asks for certificates, and it
                    // verifies any that is sent: a certificate here chains to that CA.
                    let subject = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|leaf| cairn_tls::subject::subject(leaf));
                    serve_connection(stream, api, host, Caller::Secure(subject), peer).await
                }
            }
        });
    }
    api.watch_cache.stop();
    conns.shutdown().await;
}

async fn serve_connection<S>(
    stream: S,
    api: Arc<ApiServer>,
    host: String,
    caller: Caller,
    peer: SocketAddr,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let api = api.clone();
        let host = host.clone();
        let caller = caller.clone();
        async move { Ok::<_, std::convert::Infallible>(dispatch(&api, req, &host, &caller).await) }
    });
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// Who a request is from, and whether it may go on: 401 and 403 as kube-apiserver answers.
fn admit(
    api: &ApiServer,
    caller: &Caller,
    method: &Method,
    path: &str,
    query: &Query,
    headers: &http::HeaderMap,
) -> Result<UserInfo, super::status::ApiError> {
    let Caller::Secure(subject) = caller else {
        return Ok(UserInfo::unsecured());
    };
    let security = &api.security;
    let user = security
        .authenticator
        .authenticate(subject.as_ref(), headers)
        .map_err(|e| {
            tracing::debug!(error = %e, "unable to authenticate the request");
            super::status::ApiError::Unauthorized
        })?;
    let user = impersonate::impersonate(&security.authorizer, user, headers)?;
    let info = request_info::resolve(method, path, query);
    let decision = security.authorizer.authorize(&user, &info);
    if decision.allowed() {
        Ok(user)
    } else {
        Err(authorize::forbidden(&user, &info, decision.reason()))
    }
}

async fn dispatch(
    api: &ApiServer,
    req: Request<Incoming>,
    host: &str,
    caller: &Caller,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    let method = parts.method.clone();
    let started = Instant::now();
    let user = admit(api, caller, &method, &path, &query, &parts.headers);
    let result = match (user, review::lookup(&path)) {
        (Err(e), _) => Err(e),
        (Ok(user), Some(r)) => {
            review::handle(
                r,
                &method,
                &user,
                &api.security.authorizer,
                &parts.headers,
                body,
            )
            .await
        }
        (Ok(user), None) => {
            let routed = route_request(api, &parts, &path, &query, &method, host, body);
            escalation::with_user(user, routed).await
        }
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

/// Discovery, health, OpenAPI and the REST layer, for an admitted request.
async fn route_request(
    api: &ApiServer,
    parts: &http::request::Parts,
    path: &str,
    query: &Query,
    method: &Method,
    host: &str,
    body: Incoming,
) -> Result<Response<Body>, super::status::ApiError> {
    match route::resolve(path) {
        Err(e) => Err(e),
        Ok(Route::Resource(target)) => {
            rest::handle(api, method, target, query, &parts.headers, body).await
        }
        Ok(_) if *method != Method::GET && *method != Method::HEAD => {
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
        Ok(Route::OpenApiV3GroupVersion(gv)) => openapi::serve_v3(&gv, query, &parts.headers),
    }
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

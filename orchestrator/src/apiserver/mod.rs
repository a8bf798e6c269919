//! The apiserver: Kubernetes' REST API over objects kept in etcd through the etcd v3 API only.
//!
//! - [`config`]: flags (kube-apiserver's names).
//! - [`server`]: listeners (the TLS secure port and the plain insecure port), connections
//!   (HTTP/1.1 and h2), authentication and authorization of each request, dispatch,
//!   `start`/`Handle`.
//! - [`auth`]: TLS, authentication, request attributes, authorization (RBAC), the default
//!   policy and the review APIs.
//! - [`route`]: URL path to discovery document or resource target.
//! - [`discovery`]: /version, /api, /apis, group and resource lists.
//! - [`openapi`]: /openapi/v2 (protobuf and JSON) and /openapi/v3, from the embedded definitions.
//! - [`field_validation`]: unknown and duplicate fields against the schemas (fieldValidation).
//! - [`resources`]: the table of served kinds.
//! - [`conversion`]: versions served by conversion from their storage version (HPA v1 <-> v2).
//! - [`rest`]: get, list, create, update, patch, delete.
//! - [`deletion`]: what DELETE does: namespace termination, finalizers, graceful deletion,
//!   propagation to dependents.
//! - [`watch`]: watch streams (`?watch=1`): resourceVersion semantics, bookmarks, selectors.
//! - [`watch_cache`]: one etcd watch per resource type, fanned out to every watcher.
//! - [`object`]: server-owned metadata of stored objects; the order of defaulting and validation.
//! - [`defaults`]: Kubernetes' per-kind defaults; [`admission`]: the default mutating
//!   admission of pods (DefaultTolerationSeconds, Priority).
//! - [`validation`]: name rules and per-kind validation, with Kubernetes' field paths.
//! - [`patch`]: JSON patch, merge patch, strategic merge patch.
//! - [`protobuf`]: Kubernetes' protobuf request bodies, read into the JSON a JSON client sends.
//! - [`scale`]: the autoscaling/v1 Scale subresource.
//! - [`selector`]: label and field selectors.
//! - [`table`]: server-side printing (meta.k8s.io/v1 Table).
//! - [`storage`]: the etcd client (Txn compare-and-swap writes, ranges, watches).
//! - [`service_ip`]: Service cluster IPs from `--service-cluster-ip-range`.
//! - [`service_node_port`]: Service node ports from `--service-node-port-range`.
//! - [`pod_log`]: `pods/log`, streamed from the kubelet of the pod's node; [`kubelet`]: how a
//!   node's kubelet is reached.
//! - [`status`]: API errors and their Status bodies.
//! - [`loopback`]: the in-process client the namespace, garbage-collector, kubernetes Service and
//!   ClusterRole aggregation controllers
//!   use.
//! - [`http`], [`query`], [`names`], [`clock`]: bodies and negotiation, query strings, name
//!   rules and uids, timestamps.

pub mod admission;
pub mod auth;
pub mod binding;
pub mod clock;
pub mod config;
pub mod conversion;
pub mod defaults;
pub mod deletion;
pub mod discovery;
pub mod field_validation;
pub mod http;
pub mod kubelet;
pub mod loopback;
pub mod names;
pub mod object;
pub mod openapi;
pub mod patch;
pub mod pod_log;
pub mod protobuf;
pub mod query;
pub mod resources;
pub mod rest;
pub mod route;
pub mod scale;
pub mod selector;
pub mod server;
pub mod service_ip;
pub mod service_node_port;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;
pub mod watch;
pub mod watch_cache;

pub use config::Config;
pub use server::{start, Handle, StartError};

use tokio::sync::mpsc;

use auth::Security;
use kubelet::KubeletClient;
use resources::ResourceDef;
use service_ip::ServiceCidr;
use service_node_port::NodePortRange;
use storage::Store;
use watch_cache::{CacheConfig, WatchCache};

/// Shared state of a running apiserver.
pub struct ApiServer {
    store: Store,
    prefix: String,
    service_cidr: ServiceCidr,
    node_port_range: NodePortRange,
    /// Names namespaces for the namespace controller to look at: one was marked for deletion,
    /// or something in one went away. Bounded; when full the controller's relist catches up.
    namespace_wake: mpsc::Sender<String>,
    /// Every watch is served from here: one etcd watch per resource type.
    watch_cache: WatchCache,
    /// Tells the garbage collector that ownership changed: an object went away, was marked
    /// with a garbage-collection finalizer, or was written with owner references. One slot:
    /// a wake-up already queued covers every later one, since a pass looks at everything.
    gc_wake: mpsc::Sender<()>,
    /// Tells the kubernetes Service controller that `default/kubernetes` (the Service or its
    /// Endpoints) was deleted. One slot.
    kubernetes_service_wake: mpsc::Sender<()>,
    /// Authentication and authorization of the secure port.
    security: Security,
    /// How pods/log reaches the kubelet of a pod's node.
    kubelet: KubeletClient,
}

/// The ranges Services get their cluster IPs and node ports from.
pub struct ServiceRanges {
    /// `--service-cluster-ip-range`.
    pub cluster_ip: ServiceCidr,
    /// `--service-node-port-range`.
    pub node_port: NodePortRange,
}

/// How the apiserver tells its in-process controllers to look again (each channel bounded).
pub struct ControllerWakes {
    /// The namespace controller: a namespace to look at.
    pub namespace: mpsc::Sender<String>,
    /// The garbage collector: ownership changed somewhere (one slot).
    pub garbage_collector: mpsc::Sender<()>,
    /// The kubernetes Service controller: `default/kubernetes` was deleted (one slot).
    pub kubernetes_service: mpsc::Sender<()>,
}

impl ApiServer {
    pub fn new(
        store: Store,
        prefix: String,
        services: ServiceRanges,
        cache: CacheConfig,
        wakes: ControllerWakes,
        security: Security,
        kubelet: KubeletClient,
    ) -> ApiServer {
        ApiServer {
            watch_cache: WatchCache::new(store.clone(), cache),
            store,
            prefix,
            service_cidr: services.cluster_ip,
            node_port_range: services.node_port,
            namespace_wake: wakes.namespace,
            gc_wake: wakes.garbage_collector,
            kubernetes_service_wake: wakes.kubernetes_service,
            security,
            kubelet,
        }
    }

    /// The watch cache (for its counters).
    pub fn watch_cache(&self) -> &WatchCache {
        &self.watch_cache
    }

    /// Asks the namespace controller to look at `namespace` soon.
    fn wake_namespace(&self, namespace: &str) {
        let _ = self.namespace_wake.try_send(namespace.to_string());
    }

    /// Asks the kubernetes Service controller to look again soon.
    fn wake_kubernetes_service(&self) {
        let _ = self.kubernetes_service_wake.try_send(());
    }

    /// Asks the garbage collector for a pass soon (a full slot means one is already due).
    fn wake_garbage_collector(&self) {
        let _ = self.gc_wake.try_send(());
    }

    /// `<prefix>/<plural>/<namespace>/<name>`, or `<prefix>/<plural>/<name>` when cluster-scoped.
    pub fn object_key(&self, def: &ResourceDef, namespace: Option<&str>, name: &str) -> Vec<u8> {
        match namespace.filter(|_| def.namespaced) {
            Some(ns) => format!("{}/{}/{ns}/{name}", self.prefix, def.plural),
            None => format!("{}/{}/{name}", self.prefix, def.plural),
        }
        .into_bytes()
    }

    /// The key prefix of a collection (one namespace, or all of them).
    pub fn collection_prefix(&self, def: &ResourceDef, namespace: Option<&str>) -> Vec<u8> {
        match namespace.filter(|_| def.namespaced) {
            Some(ns) => format!("{}/{}/{ns}/", self.prefix, def.plural),
            None => format!("{}/{}/", self.prefix, def.plural),
        }
        .into_bytes()
    }

    fn namespaces(&self) -> &'static ResourceDef {
        resources::lookup("", "v1", "namespaces").expect("namespaces are always served")
    }
}

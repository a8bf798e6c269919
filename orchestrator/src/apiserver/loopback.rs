//! The loopback client: the in-process controllers' API calls (the namespace controller's, the
//! garbage collector's, ClusterRole aggregation's) answered by the same REST functions that serve HTTP, so they get
//! exactly the HTTP verbs' semantics (deletecollection with finalizers and graceful deletion,
//! propagation policies, uid preconditions, optimistic `/status`, `/finalize` and object
//! updates). A controller-manager process would implement the same traits over HTTP.

use std::sync::Arc;

use serde_json::Value;

use super::deletion::{self, DeleteOptions, Propagation};
use super::object::UpdateMode;
use super::query::Query;
use super::resources::{self, ResourceDef};
use super::rest;
use super::route::Target;
use super::selector::Selectors;
use super::status::ApiError;
use super::ApiServer;
use crate::controllers::clusterrole_aggregation::ClusterRoleApi;
use crate::controllers::garbage_collector::{self as gc, GarbageCollectorApi, Policy};
use crate::controllers::kubernetes_service::{self as kubernetes, KubernetesServiceApi};
use crate::controllers::namespace::{NamespaceApi, Resource};
use crate::controllers::ClientError;

/// [`NamespaceApi`] over an in-process apiserver.
#[derive(Clone)]
pub struct Loopback(pub Arc<ApiServer>);

fn client_err(e: ApiError) -> ClientError {
    match e {
        ApiError::Conflict { .. } => ClientError::Conflict,
        ApiError::NotFound { .. } => ClientError::NotFound,
        ApiError::AlreadyExists { .. } | ApiError::AlreadyExistsDeleting { .. } => {
            ClientError::AlreadyExists
        }
        other => ClientError::Other(other.to_string()),
    }
}

fn target(def: &'static ResourceDef, namespace: Option<&str>) -> Target {
    Target {
        def,
        namespace: namespace.map(str::to_string),
        name: None,
        subresource: None,
    }
}

fn def_of(r: &Resource) -> Result<&'static ResourceDef, ClientError> {
    resources::lookup(r.group, r.version, r.plural)
        .ok_or_else(|| ClientError::Other(format!("{} is not served", r.plural)))
}

impl Loopback {
    async fn update_namespace(&self, ns: &Value, mode: UpdateMode) -> Result<(), ClientError> {
        let name = ns
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let t = target(self.0.namespaces(), None);
        rest::guaranteed_update(&self.0, &t, name, false, mode, |_| Ok(ns.clone()))
            .await
            .map(|_| ())
            .map_err(client_err)
    }
}

impl NamespaceApi for Loopback {
    async fn list_namespaces(&self) -> Result<Vec<Value>, ClientError> {
        let t = target(self.0.namespaces(), None);
        rest::list_objects(&self.0, &t, &Query::default(), &Selectors::default())
            .await
            .map(|l| l.items)
            .map_err(client_err)
    }

    async fn get_namespace(&self, name: &str) -> Result<Option<Value>, ClientError> {
        let t = target(self.0.namespaces(), None);
        match rest::read(&self.0, &t, name).await {
            Ok((ns, _)) => Ok(Some(ns)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(client_err(e)),
        }
    }

    fn namespaced_resources(&self) -> Vec<Resource> {
        let mut out: Vec<Resource> = Vec::new();
        for r in resources::RESOURCES.iter().filter(|r| r.namespaced) {
            // One entry per stored resource, whatever versions serve it.
            if !out
                .iter()
                .any(|o| o.group == r.group && o.plural == r.plural)
            {
                out.push(Resource {
                    group: r.group,
                    version: r.version,
                    plural: r.plural,
                });
            }
        }
        out
    }

    async fn delete_collection(&self, r: &Resource, namespace: &str) -> Result<(), ClientError> {
        let t = target(def_of(r)?, Some(namespace));
        let (q, sel) = (Query::default(), Selectors::default());
        // As kube's namespace controller: Background, so that no kind's default `orphan`
        // finalizer holds the namespace up (its dependents are being deleted anyway).
        let opts = DeleteOptions {
            propagation: Some(Propagation::Background),
            ..DeleteOptions::default()
        };
        deletion::delete_collection(&self.0, &t, &q, &sel, &opts)
            .await
            .map(|_| ())
            .map_err(client_err)
    }

    async fn list(&self, r: &Resource, namespace: &str) -> Result<Vec<Value>, ClientError> {
        let t = target(def_of(r)?, Some(namespace));
        rest::list_objects(&self.0, &t, &Query::default(), &Selectors::default())
            .await
            .map(|l| l.items)
            .map_err(client_err)
    }

    async fn update_status(&self, ns: &Value) -> Result<(), ClientError> {
        self.update_namespace(ns, UpdateMode::Status).await
    }

    async fn finalize(&self, ns: &Value) -> Result<(), ClientError> {
        self.update_namespace(ns, UpdateMode::Finalize).await
    }
}

fn gc_def(r: &gc::Resource) -> Result<&'static ResourceDef, ClientError> {
    resources::lookup(r.group, r.version, r.plural)
        .ok_or_else(|| ClientError::Other(format!("{} is not served", r.plural)))
}

impl GarbageCollectorApi for Loopback {
    fn resources(&self) -> Vec<gc::Resource> {
        let mut out: Vec<gc::Resource> = Vec::new();
        for r in resources::RESOURCES {
            // One entry per stored resource, whatever versions serve it.
            if !out
                .iter()
                .any(|o| o.group == r.group && o.plural == r.plural)
            {
                out.push(gc::Resource {
                    group: r.group,
                    version: r.version,
                    kind: r.kind,
                    plural: r.plural,
                    namespaced: r.namespaced,
                });
            }
        }
        out
    }

    async fn list_all(
        &self,
        r: &gc::Resource,
        revision: i64,
    ) -> Result<(Vec<Value>, i64), ClientError> {
        let t = target(gc_def(r)?, None);
        let q = if revision > 0 {
            Query::parse(Some(&format!(
                "resourceVersion={revision}&resourceVersionMatch=Exact"
            )))
        } else {
            Query::default()
        };
        rest::list_objects(&self.0, &t, &q, &Selectors::default())
            .await
            .map(|l| (l.items, l.revision))
            .map_err(client_err)
    }

    async fn get_object(
        &self,
        r: &gc::Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<Value>, ClientError> {
        let t = target(gc_def(r)?, namespace);
        match rest::read(&self.0, &t, name).await {
            Ok((obj, _)) => Ok(Some(obj)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(client_err(e)),
        }
    }

    async fn update_object(&self, r: &gc::Resource, obj: &Value) -> Result<(), ClientError> {
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let name = meta("name").unwrap_or_default();
        let t = target(gc_def(r)?, meta("namespace").as_deref());
        rest::guaranteed_update(&self.0, &t, &name, false, UpdateMode::Object, |_| {
            Ok(obj.clone())
        })
        .await
        .map(|_| ())
        .map_err(client_err)
    }

    async fn delete_object(
        &self,
        r: &gc::Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        policy: Policy,
    ) -> Result<(), ClientError> {
        let t = target(gc_def(r)?, namespace);
        let opts = DeleteOptions {
            uid: Some(uid.to_string()),
            propagation: Some(match policy {
                Policy::Orphan => Propagation::Orphan,
                Policy::Background => Propagation::Background,
                Policy::Foreground => Propagation::Foreground,
            }),
            ..DeleteOptions::default()
        };
        deletion::delete_object(&self.0, &t, name, &opts)
            .await
            .map(|_| ())
            .map_err(client_err)
    }
}

fn kubernetes_target(kind: kubernetes::Kind) -> Target {
    let plural = match kind {
        kubernetes::Kind::Service => "services",
        kubernetes::Kind::Endpoints => "endpoints",
    };
    let def = resources::lookup("", "v1", plural).expect("services and endpoints are served");
    target(def, Some(kubernetes::NAMESPACE))
}

impl KubernetesServiceApi for Loopback {
    async fn get(&self, kind: kubernetes::Kind) -> Result<Option<Value>, ClientError> {
        match rest::read(&self.0, &kubernetes_target(kind), kubernetes::NAME).await {
            Ok((obj, _)) => Ok(Some(obj)),
            Err(ApiError::NotFound { .. }) => Ok(None),
            Err(e) => Err(client_err(e)),
        }
    }

    async fn create(&self, kind: kubernetes::Kind, obj: &Value) -> Result<(), ClientError> {
        rest::create_object(&self.0, &kubernetes_target(kind), obj.clone(), false)
            .await
            .map(|_| ())
            .map_err(client_err)
    }

    async fn update(&self, kind: kubernetes::Kind, obj: &Value) -> Result<(), ClientError> {
        let t = kubernetes_target(kind);
        rest::guaranteed_update(
            &self.0,
            &t,
            kubernetes::NAME,
            false,
            UpdateMode::Object,
            |_| Ok(obj.clone()),
        )
        .await
        .map(|_| ())
        .map_err(client_err)
    }
}

impl ClusterRoleApi for Loopback {
    async fn list_cluster_roles(&self) -> Result<Vec<Value>, ClientError> {
        let def = resources::lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
            .ok_or_else(|| ClientError::Other("clusterroles are not served".into()))?;
        rest::list_objects(
            &self.0,
            &target(def, None),
            &Query::default(),
            &Selectors::default(),
        )
        .await
        .map(|l| l.items)
        .map_err(client_err)
    }

    async fn update_rules(&self, role: &Value, rules: Vec<Value>) -> Result<(), ClientError> {
        let def = resources::lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
            .ok_or_else(|| ClientError::Other("clusterroles are not served".into()))?;
        let name = role
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        // The role as listed, resourceVersion included: a concurrent change is a Conflict.
        let mut desired = role.clone();
        desired["rules"] = Value::Array(rules);
        rest::guaranteed_update(
            &self.0,
            &target(def, None),
            name,
            false,
            UpdateMode::Object,
            |_| Ok(desired.clone()),
        )
        .await
        .map(|_| ())
        .map_err(client_err)
    }
}

//! The loopback client: the in-process controllers' API calls (namespace, ClusterRole
//! aggregation) answered in-process by the same REST functions that serve HTTP, so they get
//! exactly the HTTP verbs' semantics (deletecollection with finalizers and graceful deletion,
//! optimistic `/status` and `/finalize` updates). A controller-manager process would implement
//! the same traits over HTTP.

use std::sync::Arc;

use serde_json::Value;

use super::deletion::{self, DeleteOptions};
use super::object::UpdateMode;
use super::query::Query;
use super::resources::{self, ResourceDef};
use super::rest;
use super::route::Target;
use super::selector::Selectors;
use super::status::ApiError;
use super::ApiServer;
use crate::controllers::clusterrole_aggregation::ClusterRoleApi;
use crate::controllers::namespace::{ClientError, NamespaceApi, Resource};

/// [`NamespaceApi`] over an in-process apiserver.
#[derive(Clone)]
pub struct Loopback(pub Arc<ApiServer>);

fn client_err(e: ApiError) -> ClientError {
    match e {
        ApiError::Conflict { .. } => ClientError::Conflict,
        ApiError::NotFound { .. } => ClientError::NotFound,
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
        deletion::delete_collection(&self.0, &t, &q, &sel, &DeleteOptions::default())
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

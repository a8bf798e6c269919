//! Controllers: level-triggered loops that drive objects toward what they ask for, each a
//! `reconcile(object) -> Action` plus a requeue policy, talking to the API through a narrow
//! client trait so the same code runs inside the apiserver (a loopback client) or, later, in a
//! controller-manager over HTTP.
//!
//! - [`namespace`]: empties a terminating namespace, then removes its `kubernetes` finalizer.
//! - [`garbage_collector`]: deletes dependents whose owners are gone, orphans or deletes the
//!   dependents of owners deleted with the `orphan` / `foregroundDeletion` finalizers.
//! - [`kubernetes_service`]: keeps the `default/kubernetes` Service and Endpoints.
//! - [`clusterrole_aggregation`]: fills aggregated ClusterRoles (`admin`, `edit`, `view`, ...)
//!   with the rules of the ClusterRoles their selectors match.

pub mod clusterrole_aggregation;
pub mod garbage_collector;
pub mod kubernetes_service;
pub mod namespace;

/// Why an API call of a controller failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    #[error("the object was modified")]
    Conflict,
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    #[error("{0}")]
    Other(String),
}

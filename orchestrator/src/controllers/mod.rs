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

/// Waits for a controller's next pass: until `next`, or a wake-up (which cuts a back-off
/// short). `false` when the controller must stop (asked to, or its channels closed).
pub(crate) async fn next_pass(
    wake: &mut tokio::sync::mpsc::Receiver<()>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    next: tokio::time::Instant,
) -> bool {
    loop {
        tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return false;
                }
            }
            woken = wake.recv() => return woken.is_some(),
            _ = tokio::time::sleep_until(next) => return true,
        }
    }
}

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

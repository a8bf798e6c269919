//! Controllers: level-triggered loops that drive objects toward what they ask for, each a
//! `reconcile(object) -> Action` plus a requeue policy, talking to the API through a narrow
//! client trait so the same code runs inside the apiserver (a loopback client) or, later, in a
//! controller-manager over HTTP.
//!
//! - [`namespace`]: empties a terminating namespace, then removes its `kubernetes` finalizer.
//! - [`clusterrole_aggregation`]: fills aggregated ClusterRoles (`admin`, `edit`, `view`, ...)
//!   with the rules of the ClusterRoles their selectors match.

pub mod clusterrole_aggregation;
pub mod namespace;

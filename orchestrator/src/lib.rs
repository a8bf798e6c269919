//! Cairn's Kubernetes-style control plane. Every component is a client of the apiserver, and the
//! apiserver is an ordinary etcd v3 client, so the whole plane runs on cairn-store or on etcd.
//!
//! - [`apiserver`]: the Kubernetes REST API (discovery, CRUD, list/watch, patch, Tables) over
//!   objects stored as JSON under `/registry/...` in etcd.
//!
//! - [`controllers`]: control loops; today the namespace controller, the garbage collector and
//!   the `default/kubernetes` Service controller, which the apiserver runs in-process until a
//!   controller-manager exists.
//!
//! The scheduler, the other controllers, kubelet and proxy come later, as further modules here.

pub mod apiserver;
pub mod controllers;

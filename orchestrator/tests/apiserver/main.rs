//! The apiserver end to end: in-process, on a free port, in front of cairn-store (in-process) and
//! of a real etcd 3.4 (skipped loudly when not installed, unless CAIRN_REQUIRE_ETCD=1), through
//! raw HTTP (JSON and Kubernetes protobuf bodies) and through the real `kubectl` (skipped loudly
//! when missing, unless CAIRN_REQUIRE_KUBECTL=1); the secure port over HTTPS with tokens,
//! client certificates and RBAC.

mod crud;
mod harness;
mod kinds;
mod kubectl;
mod lifecycle;
mod openapi;
mod protobuf;
mod security;
mod watch;

/// Declares one test per backend running `$scenario(&Cluster)`.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:path, $on_cairn:ident, $on_etcd:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_cairn() {
            let cluster =
                $crate::harness::Cluster::start($crate::harness::Backend::cairn().await).await;
            $scenario(&cluster).await;
            cluster.stop().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $on_etcd() {
            let Some(backend) = $crate::harness::Backend::etcd().await else {
                return;
            };
            let cluster = $crate::harness::Cluster::start(backend).await;
            $scenario(&cluster).await;
            cluster.stop().await;
        }
    };
}

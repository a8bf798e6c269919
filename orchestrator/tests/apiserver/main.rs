//! The apiserver end to end: in-process, on a free port, in front of cairn-store (in-process) and
//! of a real etcd 3.4 (skipped loudly when not installed, unless CAIRN_REQUIRE_ETCD=1), through
//! raw HTTP (JSON and Kubernetes protobuf bodies) and through the real `kubectl` (skipped loudly
//! when missing, unless CAIRN_REQUIRE_KUBECTL=1); the secure port over HTTPS with tokens,
//! client certificates and RBAC.

mod admission;
mod autoscaling;
mod binding;
mod crud;
mod gc;
mod harness;
mod kinds;
mod kube_client;
mod kubectl;
mod lifecycle;
mod openapi;
mod pod_log;
mod protobuf;
mod security;
mod services;
mod watch;

/// Declares one test per backend running `$scenario(&Cluster)` (or `&mut Cluster`), optionally
/// with extra apiserver flags.
#[macro_export]
macro_rules! on_both_backends {
    ($scenario:path, $on_cairn:ident, $on_etcd:ident) => {
        $crate::on_both_backends!($scenario, $on_cairn, $on_etcd, []);
    };
    // With extra apiserver flags. Scenarios take `&Cluster`, or `&mut Cluster` to restart parts.
    ($scenario:path, $on_cairn:ident, $on_etcd:ident, [$($flag:expr),*]) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[allow(clippy::unnecessary_mut_passed)]
        async fn $on_cairn() {
            let mut cluster = $crate::harness::Cluster::start_with(
                $crate::harness::Backend::cairn().await,
                &[$($flag),*],
            )
            .await;
            $scenario(&mut cluster).await;
            cluster.stop().await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        #[allow(clippy::unnecessary_mut_passed)]
        async fn $on_etcd() {
            let Some(backend) = $crate::harness::Backend::etcd().await else {
                return;
            };
            let mut cluster = $crate::harness::Cluster::start_with(backend, &[$($flag),*]).await;
            $scenario(&mut cluster).await;
            cluster.stop().await;
        }
    };
}

//! The `default/kubernetes` Service and its Endpoints, as kube-apiserver's "kubernetes service"
//! controller keeps them: the Service (labels `component: apiserver`, `provider: kubernetes`;
//! ClusterIP = the first address of `--service-cluster-ip-range`; port `https` 443 -> the
//! apiserver's port; no selector) is created when missing, and its ports and type are reset
//! when someone changed them; the Endpoints (label `endpointslice.kubernetes.io/skip-mirror`)
//! list this apiserver's advertise address and port, as kube's endpoint reconciler does with a
//! master count of one.
//!
//! [`run`] reconciles at start, every [`INTERVAL`] (kube's endpoint interval) and when the
//! apiserver says one of the two objects was deleted, so a deleted one comes back at once.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use super::ClientError;

/// The name of both objects, in namespace `default`.
pub const NAME: &str = "kubernetes";
pub const NAMESPACE: &str = "default";

/// How often the objects are checked without being asked.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Which of the two objects a call is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Endpoints,
}

/// The API calls the controller makes, on `default/kubernetes` objects.
pub trait KubernetesServiceApi: Send + Sync {
    /// GET; None when it does not exist.
    fn get(&self, kind: Kind) -> impl Future<Output = Result<Option<Value>, ClientError>> + Send;
    /// POST (AlreadyExists when someone was first).
    fn create(
        &self,
        kind: Kind,
        obj: &Value,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// PUT (optimistic on `obj`'s resourceVersion).
    fn update(
        &self,
        kind: Kind,
        obj: &Value,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// What the objects must say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desired {
    /// The first address of the service range.
    pub cluster_ip: Ipv4Addr,
    /// Where clients reach this apiserver (`--advertise-address`).
    pub address: IpAddr,
    /// The port this apiserver serves on.
    pub port: u16,
}

impl Desired {
    fn ports(&self) -> Value {
        json!([{"name": "https", "protocol": "TCP", "port": 443, "targetPort": self.port}])
    }

    /// The Service as kube-apiserver creates it.
    pub fn service(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {
                "type": "ClusterIP",
                "clusterIP": self.cluster_ip.to_string(),
                "ipFamilyPolicy": "SingleStack",
                "sessionAffinity": "None",
                "ports": self.ports(),
            },
        })
    }

    fn subsets(&self) -> Value {
        json!([{
            "addresses": [{"ip": self.address.to_string()}],
            "ports": [{"name": "https", "port": self.port, "protocol": "TCP"}],
        }])
    }

    /// The Endpoints as kube-apiserver's endpoint reconciler writes them.
    pub fn endpoints(&self) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"},
            },
            "subsets": self.subsets(),
        })
    }
}

/// Creates what is missing and resets what drifted; true when it wrote.
pub async fn reconcile<A: KubernetesServiceApi>(
    api: &A,
    desired: &Desired,
) -> Result<bool, ClientError> {
    let mut wrote = false;
    match api.get(Kind::Service).await? {
        None => match api.create(Kind::Service, &desired.service()).await {
            Ok(()) => wrote = true,
            Err(ClientError::AlreadyExists) => {}
            Err(e) => return Err(e),
        },
        Some(mut svc) => {
            // kube's getMasterServiceUpdateIfNeeded: only the ports and the type are reset.
            let ports_ok = svc.pointer("/spec/ports") == Some(&desired.ports());
            let type_ok = svc.pointer("/spec/type") == Some(&json!("ClusterIP"));
            if !ports_ok || !type_ok {
                tracing::warn!("resetting the default/kubernetes Service's ports and type");
                svc["spec"]["ports"] = desired.ports();
                svc["spec"]["type"] = json!("ClusterIP");
                api.update(Kind::Service, &svc).await?;
                wrote = true;
            }
        }
    }
    match api.get(Kind::Endpoints).await? {
        None => match api.create(Kind::Endpoints, &desired.endpoints()).await {
            Ok(()) => wrote = true,
            Err(ClientError::AlreadyExists) => {}
            Err(e) => return Err(e),
        },
        Some(mut ep) => {
            let labels_ok = ep.pointer("/metadata/labels/endpointslice.kubernetes.io~1skip-mirror")
                == Some(&json!("true"));
            if ep.get("subsets") != Some(&desired.subsets()) || !labels_ok {
                ep["subsets"] = desired.subsets();
                if !ep["metadata"]["labels"].is_object() {
                    ep["metadata"]["labels"] = json!({});
                }
                ep["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"] = json!("true");
                api.update(Kind::Endpoints, &ep).await?;
                wrote = true;
            }
        }
    }
    Ok(wrote)
}

/// Runs the controller until `stop` turns true (or its sender goes away). A message on `wake`
/// (one of the objects was deleted) asks for a reconcile now.
pub async fn run<A: KubernetesServiceApi>(
    api: A,
    desired: Desired,
    mut wake: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut next = Instant::now();
    loop {
        if !super::next_pass(&mut wake, &mut stop, next).await {
            return;
        }
        next = match reconcile(&api, &desired).await {
            Ok(_) => Instant::now() + INTERVAL,
            Err(e) => {
                tracing::warn!(error = %e, "kubernetes service controller: will retry");
                Instant::now() + Duration::from_secs(1)
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Fake {
        service: Mutex<Option<Value>>,
        endpoints: Mutex<Option<Value>>,
    }

    impl Fake {
        fn slot(&self, kind: Kind) -> &Mutex<Option<Value>> {
            match kind {
                Kind::Service => &self.service,
                Kind::Endpoints => &self.endpoints,
            }
        }
    }

    impl KubernetesServiceApi for Fake {
        async fn get(&self, kind: Kind) -> Result<Option<Value>, ClientError> {
            Ok(self.slot(kind).lock().unwrap().clone())
        }
        async fn create(&self, kind: Kind, obj: &Value) -> Result<(), ClientError> {
            let mut slot = self.slot(kind).lock().unwrap();
            if slot.is_some() {
                return Err(ClientError::AlreadyExists);
            }
            *slot = Some(obj.clone());
            Ok(())
        }
        async fn update(&self, kind: Kind, obj: &Value) -> Result<(), ClientError> {
            *self.slot(kind).lock().unwrap() = Some(obj.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn creates_then_resets_what_drifted() {
        let api = Fake::default();
        let desired = Desired {
            cluster_ip: Ipv4Addr::new(10, 0, 0, 1),
            address: IpAddr::V4(Ipv4Addr::new(192, 168, 1, 5)),
            port: 6443,
        };
        assert!(reconcile(&api, &desired).await.unwrap());
        let svc = api.service.lock().unwrap().clone().unwrap();
        assert_eq!(svc["spec"]["clusterIP"], "10.0.0.1");
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 6443);
        let ep = api.endpoints.lock().unwrap().clone().unwrap();
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "192.168.1.5");
        assert!(!reconcile(&api, &desired).await.unwrap(), "nothing to do");

        let mut edited = svc.clone();
        edited["spec"]["ports"][0]["port"] = json!(8443);
        edited["metadata"]["labels"]["extra"] = json!("kept");
        *api.service.lock().unwrap() = Some(edited);
        *api.endpoints.lock().unwrap() = None;
        assert!(reconcile(&api, &desired).await.unwrap());
        let svc = api.service.lock().unwrap().clone().unwrap();
        assert_eq!(svc["spec"]["ports"][0]["port"], 443);
        assert_eq!(svc["metadata"]["labels"]["extra"], "kept");
        assert!(api.endpoints.lock().unwrap().is_some());
    }
}

//! The real kubectl against the apiserver, with default flags: apply (create, then configure),
//! get (Tables, -o json|yaml|wide), describe, label, annotate, delete and get -w.

use std::io::Read;
use std::time::Duration;

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

const MANIFEST: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  color: blue
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
---
apiVersion: v1
kind: Pod
metadata:
  name: solo
  namespace: shop
spec:
  containers:
  - name: main
    image: busybox
"#;

async fn kubectl_workflow(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());
    std::fs::write(k.path("app.yaml"), MANIFEST).unwrap();
    let manifest = k.path("app.yaml");
    let manifest = manifest.to_str().unwrap();

    eprintln!("-- kubectl apply -f with default validation creates everything");
    let out = k.ok(&["apply", "-f", manifest]).await;
    for line in [
        "namespace/shop created",
        "deployment.apps/web created",
        "configmap/settings created",
        "service/web created",
        "pod/solo created",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    eprintln!("-- kubectl get prints Kubernetes' columns");
    let pods = k.ok(&["get", "pods", "-n", "shop"]).await;
    assert!(
        pods.starts_with("NAME")
            && pods.contains("READY")
            && pods.contains("STATUS")
            && pods.contains("RESTARTS"),
        "{pods}"
    );
    assert!(
        pods.contains("solo") && pods.contains("0/1") && pods.contains("Pending"),
        "{pods}"
    );
    let deploy = k.ok(&["get", "deploy", "-n", "shop", "-o", "wide"]).await;
    assert!(
        deploy.contains("UP-TO-DATE")
            && deploy.contains("nginx:1.25")
            && deploy.contains("app=web"),
        "{deploy}"
    );
    let ns = k.ok(&["get", "ns"]).await;
    assert!(
        ns.contains("default") && ns.contains("shop") && ns.contains("Active"),
        "{ns}"
    );
    let svc = k.ok(&["get", "svc", "-n", "shop"]).await;
    assert!(svc.contains("ClusterIP") && svc.contains("80/TCP"), "{svc}");
    let all = k.ok(&["get", "all", "-n", "shop"]).await;
    assert!(
        all.contains("pod/solo") && all.contains("deployment.apps/web"),
        "{all}"
    );

    eprintln!("-- -o json and -o yaml return the stored object");
    let json: serde_json::Value = serde_json::from_str(
        &k.ok(&["get", "cm", "settings", "-n", "shop", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(json["data"]["color"], "blue");
    let yaml = k
        .ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("replicas: 2") && yaml.contains("generation: 1"),
        "{yaml}"
    );

    eprintln!("-- re-apply with a change is a strategic merge patch");
    std::fs::write(
        k.path("app.yaml"),
        MANIFEST
            .replace("replicas: 2", "replicas: 3")
            .replace("color: blue", "color: red"),
    )
    .unwrap();
    let out = k.ok(&["apply", "-f", manifest]).await;
    assert!(
        out.contains("deployment.apps/web configured")
            && out.contains("configmap/settings configured"),
        "{out}"
    );
    assert!(out.contains("namespace/shop unchanged"), "{out}");
    let yaml = k
        .ok(&["get", "deploy", "web", "-n", "shop", "-o", "yaml"])
        .await;
    assert!(
        yaml.contains("replicas: 3") && yaml.contains("generation: 2"),
        "{yaml}"
    );

    eprintln!("-- label, annotate, selectors, describe");
    k.ok(&["label", "cm", "settings", "-n", "shop", "env=prod"])
        .await;
    k.ok(&["annotate", "cm", "settings", "-n", "shop", "owner=team-a"])
        .await;
    let labelled = k
        .ok(&["get", "cm", "-n", "shop", "-l", "env=prod", "-o", "name"])
        .await;
    assert_eq!(labelled.trim(), "configmap/settings");
    let none = k
        .run(&["get", "cm", "-n", "shop", "-l", "env!=prod", "-o", "name"])
        .await;
    assert!(none.ok && !none.stdout.contains("settings"));
    let described = k.ok(&["describe", "cm", "settings", "-n", "shop"]).await;
    assert!(
        described.contains("env=prod")
            && described.contains("owner: team-a")
            && described.contains("red"),
        "{described}"
    );
    let described = k.ok(&["describe", "pod", "solo", "-n", "shop"]).await;
    assert!(described.contains("busybox"), "{described}");
    let conflict = k
        .run(&["label", "cm", "settings", "-n", "shop", "env=dev"])
        .await;
    assert!(
        !conflict.ok && conflict.stderr.contains("already has a value"),
        "kubectl refuses to overwrite without --overwrite"
    );

    eprintln!("-- get -w prints changes as they happen");
    let mut watcher = k.spawn(&["get", "cm", "-n", "shop", "-w", "--request-timeout=8s"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    std::fs::write(
        k.path("extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\n  namespace: shop\n",
    )
    .unwrap();
    k.ok(&["create", "-f", k.path("extra.yaml").to_str().unwrap()])
        .await;
    k.ok(&["label", "cm", "settings", "-n", "shop", "watched=yes"])
        .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _ = watcher.kill();
    let _ = watcher.wait();
    let mut seen = String::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut seen)
        .unwrap();
    eprintln!("get -w printed:\n{seen}");
    assert!(
        seen.matches("settings").count() >= 2,
        "initial row and the labelled update: {seen}"
    );
    assert!(seen.contains("extra"), "the created configmap: {seen}");

    eprintln!("-- errors come back as kubectl prints them for Kubernetes");
    let missing = k.run(&["get", "cm", "nope", "-n", "shop"]).await;
    assert!(
        !missing.ok && missing.stderr.contains("configmaps \"nope\" not found"),
        "{}",
        missing.stderr
    );

    eprintln!("-- delete by name and kind, then the namespace with what is left in it");
    let out = k
        .ok(&["delete", "deploy/web", "svc/web", "-n", "shop"])
        .await;
    assert!(
        out.contains("deployment.apps \"web\" deleted") && out.contains("service \"web\" deleted"),
        "{out}"
    );
    // kubectl waits while the namespace terminates and the namespace controller empties it.
    let out = k.ok(&["delete", "ns", "shop"]).await;
    assert!(out.contains("namespace \"shop\" deleted"), "{out}");
    let after = k.ok(&["get", "ns", "-o", "name"]).await;
    assert!(!after.contains("namespace/shop"), "{after}");
    let leftovers = k.ok(&["get", "cm,pods", "-A", "-o", "name"]).await;
    assert!(
        !leftovers.contains("settings") && !leftovers.contains("solo"),
        "{leftovers}"
    );
}
on_both_backends!(
    kubectl_workflow,
    kubectl_workflow_on_cairn_store,
    kubectl_workflow_on_etcd
);

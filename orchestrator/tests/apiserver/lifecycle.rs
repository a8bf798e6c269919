//! Deletion as Kubernetes does it: namespaces terminate (marked, emptied by the namespace
//! controller, finalized, gone) and refuse new content meanwhile; finalizers hold objects until
//! they are removed; pods get a grace period unless nothing runs them; collections are deleted
//! by selector. Through raw HTTP and the real kubectl.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{have, Api, Cluster, Kubectl};
use crate::on_both_backends;

/// Polls `check` until it returns Some, for at most `within`.
async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn namespace(name: &str, finalizers: &[&str]) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        "spec": {"finalizers": finalizers}})
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

async fn items(api: &Api, path: &str) -> Vec<Value> {
    let r = api.get(path).await;
    assert_eq!(r.code, 200, "{path}: {}", r.body);
    r.body["items"].as_array().cloned().unwrap_or_default()
}

async fn namespace_termination(c: &Cluster) {
    let api = &c.api;
    const NS: &str = "/api/v1/namespaces/doomed";
    eprintln!("-- a namespace with content, and a finalizer of someone else's");
    let r = api
        .post(
            "/api/v1/namespaces",
            &namespace("doomed", &["example.com/hold"]),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(
        r.body["spec"]["finalizers"],
        json!(["example.com/hold", "kubernetes"])
    );
    for (path, body) in [
        (format!("{NS}/configmaps"), cm("settings")),
        (format!("{NS}/pods"), pod("solo")),
        (
            format!("{NS}/services"),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 80}]}}),
        ),
        (
            "/apis/apps/v1/namespaces/doomed/deployments".to_string(),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}),
        ),
    ] {
        assert_eq!(api.post(&path, &body).await.code, 201, "{path}");
    }

    eprintln!("-- DELETE marks it Terminating and answers with the namespace");
    let r = api.delete(NS).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "Namespace");
    assert_eq!(r.body["status"]["phase"], "Terminating");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());

    eprintln!("-- the namespace controller empties it and removes only its own finalizer");
    let ns = eventually(
        Duration::from_secs(10),
        "the kubernetes finalizer to go",
        || async {
            let ns = api.get(NS).await.body;
            (ns["spec"]["finalizers"] == json!(["example.com/hold"])).then_some(ns)
        },
    )
    .await;
    for path in [
        format!("{NS}/configmaps"),
        format!("{NS}/pods"),
        format!("{NS}/services"),
        "/apis/apps/v1/namespaces/doomed/deployments".to_string(),
    ] {
        assert!(items(api, &path).await.is_empty(), "{path}");
    }
    let condition = |t: &str| {
        ns["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .cloned()
            .unwrap_or_else(|| panic!("no {t} condition in {ns}"))
    };
    assert_eq!(
        (
            &condition("NamespaceContentRemaining")["status"],
            &condition("NamespaceContentRemaining")["reason"]
        ),
        (&json!("False"), &json!("ContentRemoved"))
    );
    assert_eq!(
        condition("NamespaceDeletionContentFailure")["reason"],
        "ContentDeleted"
    );

    eprintln!("-- no new content while it terminates (NamespaceLifecycle)");
    let r = api.post(&format!("{NS}/configmaps"), &cm("late")).await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(r.body["reason"], "Forbidden");
    assert_eq!(
        r.body["message"],
        "configmaps \"late\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    assert_eq!(
        r.body["details"]["causes"],
        json!([{"reason": "NamespaceTerminating", "message": "namespace doomed is being terminated", "field": "metadata.namespace"}])
    );
    let r = api
        .post("/api/v1/namespaces", &namespace("doomed", &[]))
        .await;
    assert_eq!(r.code, 409);
    assert_eq!(
        r.body["message"],
        "object is being deleted: namespaces \"doomed\" already exists"
    );
    eprintln!("-- a second DELETE changes nothing; an update cannot drop spec.finalizers");
    let again = api.delete(NS).await;
    assert_eq!(
        (again.code, &again.body["status"]["phase"]),
        (200, &json!("Terminating"))
    );
    let mut edited = api.get(NS).await.body;
    edited["spec"]["finalizers"] = json!([]);
    let r = api.put(NS, &edited).await;
    assert_eq!(
        (r.code, &r.body["spec"]["finalizers"]),
        (200, &json!(["example.com/hold"]))
    );
    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        let k = Kubectl::new(&api.url());
        let out = k.ok(&["get", "ns", "doomed"]).await;
        assert!(out.contains("Terminating"), "{out}");
    }

    eprintln!("-- /finalize removing the last finalizer deletes it; the name is free again");
    let mut finalized = api.get(NS).await.body;
    finalized["spec"]["finalizers"] = json!([]);
    let r = api.put(&format!("{NS}/finalize"), &finalized).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(api.get(NS).await.code, 404);
    assert_eq!(
        api.post("/api/v1/namespaces", &namespace("doomed", &[]))
            .await
            .code,
        201
    );
    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"clusterIP": "10.0.0.9", "ports": [{"port": 80}]}});
    assert_eq!(
        api.post("/api/v1/namespaces/default/services", &svc)
            .await
            .code,
        201,
        "the deleted namespace's Service released its cluster IP"
    );

    eprintln!("-- the system namespaces cannot be deleted");
    let r = api.delete("/api/v1/namespaces/default").await;
    assert_eq!(r.code, 403);
    assert_eq!(
        r.body["message"],
        "namespaces \"default\" is forbidden: this namespace may not be deleted"
    );
    let discovery = api.get("/api/v1").await.body;
    assert!(discovery["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "namespaces/finalize"));
}
on_both_backends!(
    namespace_termination,
    namespace_termination_on_cairn_store,
    namespace_termination_on_etcd
);

async fn kubectl_delete_namespace_with_contents(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());
    k.ok(&["create", "namespace", "shop"]).await;
    k.ok(&["create", "deployment", "web", "--image=nginx", "-n", "shop"])
        .await;
    k.ok(&[
        "create",
        "configmap",
        "cfg",
        "--from-literal=a=b",
        "-n",
        "shop",
    ])
    .await;
    k.ok(&["run", "solo", "--image=busybox", "-n", "shop"])
        .await;
    eprintln!("-- kubectl delete ns waits until the namespace is gone");
    let out = k.ok(&["delete", "ns", "shop"]).await;
    assert!(out.contains("namespace \"shop\" deleted"), "{out}");
    let gone = k.run(&["get", "ns", "shop"]).await;
    assert!(
        !gone.ok && gone.stderr.contains("namespaces \"shop\" not found"),
        "{}",
        gone.stderr
    );
    let left = k.ok(&["get", "deploy,cm,pods", "-A", "-o", "name"]).await;
    assert!(
        !left.contains("web") && !left.contains("cfg") && !left.contains("solo"),
        "{left}"
    );
}
on_both_backends!(
    kubectl_delete_namespace_with_contents,
    kubectl_delete_namespace_with_contents_on_cairn_store,
    kubectl_delete_namespace_with_contents_on_etcd
);

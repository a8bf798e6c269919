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

async fn finalizers_and_graceful_deletion(c: &Cluster) {
    let api = &c.api;
    const CMS: &str = "/api/v1/namespaces/default/configmaps";
    const PODS: &str = "/api/v1/namespaces/default/pods";
    eprintln!("-- an object with finalizers is only marked, and answers with itself");
    let mut held = cm("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(api.post(CMS, &held).await.code, 201);
    let r = api.delete(&format!("{CMS}/held")).await;
    assert_eq!(
        (r.code, &r.body["kind"]),
        (200, &json!("ConfigMap")),
        "{}",
        r.body
    );
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 0);
    let rv = r.body["metadata"]["resourceVersion"].clone();
    let again = api.delete(&format!("{CMS}/held")).await;
    assert_eq!(
        (again.code, &again.body["metadata"]["resourceVersion"]),
        (200, &rv)
    );
    let r = api.post(CMS, &cm("held")).await;
    assert_eq!(
        (r.code, &r.body["message"]),
        (
            409,
            &json!("object is being deleted: configmaps \"held\" already exists")
        )
    );

    eprintln!("-- no finalizer may be added once it is being deleted");
    let r = api
        .patch(
            &format!("{CMS}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": ["example.com/hold", "example.com/more"]}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "ConfigMap \"held\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\"}"
    );

    eprintln!("-- the update that removes the last finalizer deletes it");
    let mut watch = api
        .watch(&format!(
            "{CMS}?watch=1&resourceVersion={}",
            rv.as_str().unwrap()
        ))
        .await;
    let r = api
        .patch(
            &format!("{CMS}/held"),
            "application/merge-patch+json",
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(api.get(&format!("{CMS}/held")).await.code, 404);
    if c.backend.supports_watch().await {
        let ev = watch.next().await;
        assert_eq!(
            (&ev["type"], &ev["object"]["metadata"]["name"]),
            (&json!("DELETED"), &json!("held"))
        );
    }

    eprintln!("-- a pod no node runs is deleted at once");
    assert_eq!(api.post(PODS, &pod("loose")).await.code, 201);
    let r = api.delete(&format!("{PODS}/loose")).await;
    assert_eq!((r.code, &r.body["kind"]), (200, &json!("Pod")));
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(api.get(&format!("{PODS}/loose")).await.code, 404);

    eprintln!("-- a bound pod gets its grace period, which a later DELETE may only shorten");
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-1");
    bound["spec"]["terminationGracePeriodSeconds"] = json!(45);
    assert_eq!(api.post(PODS, &bound).await.code, 201);
    let r = api.delete(&format!("{PODS}/bound")).await;
    assert_eq!(r.code, 200);
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 45);
    let first = r.body["metadata"]["deletionTimestamp"]
        .as_str()
        .unwrap()
        .to_string();
    let still = api.get(&format!("{PODS}/bound")).await;
    assert_eq!(still.code, 200);
    let r = api
        .call(
            "DELETE",
            &format!("{PODS}/bound"),
            "application/json",
            &json!({"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 60})
                .to_string(),
        )
        .await;
    assert_eq!(
        (r.code, r.body["metadata"]["deletionTimestamp"].as_str()),
        (200, Some(first.as_str())),
        "a longer period changes nothing"
    );
    let r = api
        .delete(&format!("{PODS}/bound?gracePeriodSeconds=5"))
        .await;
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 5);
    assert!(r.body["metadata"]["deletionTimestamp"].as_str().unwrap() < first.as_str());
    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        let k = Kubectl::new(&api.url());
        let out = k.ok(&["get", "pod", "bound"]).await;
        assert!(out.contains("Terminating"), "{out}");
        let out = k
            .ok(&["delete", "pod", "bound", "--grace-period=0", "--force"])
            .await;
        assert!(out.contains("pod \"bound\" force deleted"), "{out}");
    } else {
        let r = api
            .delete(&format!("{PODS}/bound?gracePeriodSeconds=0"))
            .await;
        assert_eq!(r.code, 200);
    }
    assert_eq!(api.get(&format!("{PODS}/bound")).await.code, 404);
}
on_both_backends!(
    finalizers_and_graceful_deletion,
    finalizers_and_graceful_deletion_on_cairn_store,
    finalizers_and_graceful_deletion_on_etcd
);

async fn kubectl_delete_namespace_waits_for_finalizers(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let api = c.api.clone();
    let k = Kubectl::new(&api.url());
    k.ok(&["create", "namespace", "held"]).await;
    let mut blocker = cm("blocker");
    blocker["metadata"]["finalizers"] = json!(["example.com/hold"]);
    assert_eq!(
        api.post("/api/v1/namespaces/held/configmaps", &blocker)
            .await
            .code,
        201
    );
    eprintln!("-- kubectl delete ns blocks while a finalizer holds the content");
    let releaser = tokio::spawn({
        let api = api.clone();
        async move {
            let path = "/api/v1/namespaces/held/configmaps/blocker";
            // The namespace controller marks it and says what holds the namespace up.
            let remaining = eventually(
                Duration::from_secs(10),
                "the finalizer condition",
                || async {
                    let ns = api.get("/api/v1/namespaces/held").await.body;
                    ns["status"]["conditions"]
                        .as_array()
                        .and_then(|cs| {
                            cs.iter()
                                .find(|c| c["type"] == "NamespaceFinalizersRemaining")
                        })
                        .filter(|c| c["status"] == "True")
                        .map(|c| c["message"].clone())
                },
            )
            .await;
            let cm = api.get(path).await.body;
            assert!(cm["metadata"]["deletionTimestamp"].is_string(), "{cm}");
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let r = api
                .patch(
                    path,
                    "application/merge-patch+json",
                    &json!({"metadata": {"finalizers": []}}),
                )
                .await;
            assert_eq!(r.code, 200, "{}", r.body);
            remaining
        }
    });
    let started = Instant::now();
    let out = k.ok(&["delete", "ns", "held", "--timeout=20s"]).await;
    let took = started.elapsed();
    assert!(out.contains("namespace \"held\" deleted"), "{out}");
    assert!(
        took >= Duration::from_millis(1500),
        "kubectl returned after {took:?}"
    );
    let remaining = releaser.await.unwrap();
    assert_eq!(
        remaining,
        json!("Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances")
    );
    let gone = k.run(&["get", "ns", "held"]).await;
    assert!(!gone.ok, "{}", gone.stdout);
}
on_both_backends!(
    kubectl_delete_namespace_waits_for_finalizers,
    kubectl_delete_namespace_waits_for_finalizers_on_cairn_store,
    kubectl_delete_namespace_waits_for_finalizers_on_etcd
);

async fn delete_collection(c: &Cluster) {
    let api = &c.api;
    assert_eq!(
        api.post("/api/v1/namespaces", &namespace("bulk", &[]))
            .await
            .code,
        201
    );
    const CMS: &str = "/api/v1/namespaces/bulk/configmaps";
    const PODS: &str = "/api/v1/namespaces/bulk/pods";
    for (name, app) in [("a1", "y"), ("a2", "y"), ("b1", "z"), ("c1", "y")] {
        let mut obj = cm(name);
        obj["metadata"]["labels"] = json!({"app": app});
        if name == "c1" {
            obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
        }
        assert_eq!(api.post(CMS, &obj).await.code, 201);
    }
    eprintln!("-- discovery advertises deletecollection (not for namespaces)");
    let core = api.get("/api/v1").await.body;
    let verbs = |name: &str| {
        core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["verbs"].clone())
            .unwrap()
    };
    assert!(verbs("configmaps")
        .as_array()
        .unwrap()
        .contains(&json!("deletecollection")));
    assert!(!verbs("namespaces")
        .as_array()
        .unwrap()
        .contains(&json!("deletecollection")));

    eprintln!("-- DELETE on a collection with a label selector deletes what it selects");
    let r = api.delete(&format!("{CMS}?labelSelector=app%3Dy")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["kind"], "ConfigMapList");
    let names: Vec<&str> = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1", "a2", "c1"]);
    let left: Vec<Value> = items(api, CMS).await;
    let left_names: Vec<&str> = left
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(left_names, ["b1", "c1"], "c1 stays, held by its finalizer");
    assert!(left[1]["metadata"]["deletionTimestamp"].is_string());

    eprintln!("-- field selectors, dry runs, and pods with their grace periods");
    let r = api
        .delete(&format!(
            "{CMS}?fieldSelector=metadata.name%3Db1&dryRun=All"
        ))
        .await;
    assert_eq!(
        (r.code, r.body["items"].as_array().unwrap().len()),
        (200, 1)
    );
    assert_eq!(api.get(&format!("{CMS}/b1")).await.code, 200);
    let r = api
        .delete(&format!("{CMS}?fieldSelector=metadata.name%3Db1"))
        .await;
    assert_eq!(
        (r.code, r.body["items"].as_array().unwrap().len()),
        (200, 1)
    );
    assert_eq!(api.get(&format!("{CMS}/b1")).await.code, 404);
    assert_eq!(api.post(PODS, &pod("loose")).await.code, 201);
    let mut bound = pod("bound");
    bound["spec"]["nodeName"] = json!("node-1");
    assert_eq!(api.post(PODS, &bound).await.code, 201);
    let r = api.delete(PODS).await;
    assert_eq!(
        (r.code, r.body["items"].as_array().unwrap().len()),
        (200, 2)
    );
    let pods = items(api, PODS).await;
    assert_eq!(pods.len(), 1, "the bound pod waits for its grace period");
    assert_eq!(pods[0]["metadata"]["deletionGracePeriodSeconds"], 30);

    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        eprintln!("-- kubectl delete --all and -l");
        let k = Kubectl::new(&api.url());
        for n in ["p1", "p2"] {
            k.ok(&["run", n, "--image=busybox", "-n", "bulk"]).await;
        }
        k.ok(&["create", "cm", "y1", "-n", "bulk"]).await;
        k.ok(&["label", "cm", "y1", "app=y", "-n", "bulk"]).await;
        k.ok(&["create", "cm", "keep", "-n", "bulk"]).await;
        let out = k
            .ok(&[
                "delete",
                "pods",
                "--all",
                "-n",
                "bulk",
                "--grace-period=0",
                "--force",
            ])
            .await;
        assert!(
            out.contains("pod \"p1\" force deleted") && out.contains("pod \"p2\" force deleted"),
            "{out}"
        );
        let out = k
            .ok(&["delete", "cm", "-l", "app=y", "-n", "bulk", "--wait=false"])
            .await;
        assert!(out.contains("configmap \"y1\" deleted"), "{out}");
        let left = k.ok(&["get", "pods,cm", "-n", "bulk", "-o", "name"]).await;
        assert!(
            !left.contains("pod/p1") && !left.contains("pod/bound") && !left.contains("y1"),
            "{left}"
        );
        assert!(left.contains("configmap/keep"), "{left}");
    }
}
on_both_backends!(
    delete_collection,
    delete_collection_on_cairn_store,
    delete_collection_on_etcd
);

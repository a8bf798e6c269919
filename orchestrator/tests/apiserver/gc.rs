//! Garbage collection of dependents, as Kubernetes does it: DELETE with each propagation policy
//! (Background, Foreground with blockOwnerDeletion, Orphan, and the kinds that orphan by
//! default) over a Deployment -> ReplicaSet -> Pods chain linked by hand with ownerReferences
//! (no workload controllers exist yet), dependents of owners that never existed, and
//! `kubectl delete --cascade=...`.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{have, Api, Cluster, Kubectl};
use crate::on_both_backends;

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";
const RSS: &str = "/apis/apps/v1/namespaces/default/replicasets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const CMS: &str = "/api/v1/namespaces/default/configmaps";

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

async fn gone(api: &Api, path: &str) {
    eventually(
        Duration::from_secs(15),
        &format!("{path} to go"),
        || async { (api.get(path).await.code == 404).then_some(()) },
    )
    .await
}

fn template(app: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}})
}

fn owner_ref(owner: &Value, block: bool) -> Value {
    json!({"apiVersion": owner["apiVersion"], "kind": owner["kind"],
        "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
        "controller": true, "blockOwnerDeletion": block})
}

async fn create(api: &Api, path: &str, body: Value) -> Value {
    let r = api.post(path, &body).await;
    assert_eq!(r.code, 201, "{path}: {}", r.body);
    r.body
}

/// A ReplicaSet `<name>-rs` owned by `owner`, and its pods: `(pod suffix, blockOwnerDeletion,
/// bound to a node)` — a bound pod is deleted gracefully, so it stays Terminating until it is
/// force-deleted, as if its kubelet were still stopping it.
async fn replica_set_with_pods(
    api: &Api,
    name: &str,
    owner: Option<&Value>,
    pods: &[(&str, bool, bool)],
) -> Value {
    let mut rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": format!("{name}-rs"), "labels": {"app": name}},
        "spec": {"replicas": pods.len(), "selector": {"matchLabels": {"app": name}}, "template": template(name)}});
    if let Some(owner) = owner {
        rs["metadata"]["ownerReferences"] = json!([owner_ref(owner, true)]);
    }
    let rs = create(api, RSS, rs).await;
    for (suffix, block, bound) in pods {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("{name}-rs-{suffix}"), "labels": {"app": name},
                "ownerReferences": [owner_ref(&rs, *block)]},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        if *bound {
            pod["spec"]["nodeName"] = json!("node-1");
        }
        create(api, PODS, pod).await;
    }
    rs
}

async fn deployment(api: &Api, name: &str) -> Value {
    create(
        api,
        DEPLOYS,
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name)}}),
    )
    .await
}

async fn delete_with(api: &Api, path: &str, policy: &str) -> Value {
    let body = json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy});
    let r = api
        .call("DELETE", path, "application/json", &body.to_string())
        .await;
    assert_eq!(r.code, 200, "{path}: {}", r.body);
    r.body
}

async fn background_propagation(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- Background (the default): the owner goes now, the collector takes the rest");
    let d = deployment(api, "bg").await;
    replica_set_with_pods(
        api,
        "bg",
        Some(&d),
        &[("a", true, false), ("b", false, false)],
    )
    .await;
    let r = api.delete(&format!("{DEPLOYS}/bg")).await;
    assert_eq!((r.code, &r.body["status"]), (200, &json!("Success")));
    assert_eq!(api.get(&format!("{DEPLOYS}/bg")).await.code, 404);
    gone(api, &format!("{RSS}/bg-rs")).await;
    gone(api, &format!("{PODS}/bg-rs-a")).await;
    gone(api, &format!("{PODS}/bg-rs-b")).await;

    eprintln!("-- a dependent whose owner uid never existed is collected");
    let mut orphan = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "stray",
        "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost",
            "uid": "00000000-0000-0000-0000-000000000000"}]}});
    create(api, CMS, orphan.clone()).await;
    gone(api, &format!("{CMS}/stray")).await;
    eprintln!("-- ... also when an object of that name exists with another uid");
    create(
        api,
        CMS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ghost"}}),
    )
    .await;
    orphan["metadata"]["name"] = json!("stray2");
    create(api, CMS, orphan).await;
    gone(api, &format!("{CMS}/stray2")).await;

    eprintln!("-- one live owner keeps a dependent; its reference to a gone owner is removed");
    let live = api.get(&format!("{CMS}/ghost")).await.body;
    create(
        api,
        CMS,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared",
            "ownerReferences": [owner_ref(&live, false),
                {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone", "uid": "11111111-0000-0000-0000-000000000000"}]}}),
    )
    .await;
    let refs = eventually(
        Duration::from_secs(15),
        "the dangling reference to go",
        || async {
            let cm = api.get(&format!("{CMS}/shared")).await.body;
            let refs = cm["metadata"]["ownerReferences"].as_array().cloned()?;
            (refs.len() == 1).then_some(refs)
        },
    )
    .await;
    assert_eq!(refs[0]["name"], "ghost");
    eprintln!("-- ... and when that owner goes too, so does the dependent");
    api.delete(&format!("{CMS}/ghost")).await;
    gone(api, &format!("{CMS}/shared")).await;

    eprintln!("-- bad propagation options are refused as kube-apiserver refuses them");
    let r = api
        .delete(&format!("{CMS}/whatever?propagationPolicy=Sideways"))
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
    );
    let both = json!({"propagationPolicy": "Orphan", "orphanDependents": true});
    let r = api
        .call(
            "DELETE",
            &format!("{CMS}/whatever"),
            "application/json",
            &both.to_string(),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert!(r.body["message"]
        .as_str()
        .unwrap()
        .ends_with("orphanDependents and deletionPropagation cannot be both set"));
}
on_both_backends!(
    background_propagation,
    gc_background_on_cairn_store,
    gc_background_on_etcd
);

async fn foreground_propagation(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- Foreground: the owner is marked with foregroundDeletion and answers as itself");
    let d = deployment(api, "fg").await;
    // Pod a blocks its ReplicaSet and is still being stopped; pod b does not block it.
    replica_set_with_pods(
        api,
        "fg",
        Some(&d),
        &[("a", true, true), ("b", false, true)],
    )
    .await;
    let r = delete_with(api, &format!("{DEPLOYS}/fg"), "Foreground").await;
    assert_eq!(r["kind"], "Deployment");
    assert!(r["metadata"]["deletionTimestamp"].is_string(), "{r}");
    assert_eq!(r["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert_eq!(r["metadata"]["deletionGracePeriodSeconds"], 0);

    eprintln!("-- the ReplicaSet (it has dependents) goes in the foreground too; pods get deleted");
    let rs = eventually(
        Duration::from_secs(15),
        "the ReplicaSet to be marked",
        || async {
            let rs = api.get(&format!("{RSS}/fg-rs")).await.body;
            rs["metadata"]["deletionTimestamp"]
                .is_string()
                .then_some(rs)
        },
    )
    .await;
    assert_eq!(rs["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    for pod in ["fg-rs-a", "fg-rs-b"] {
        eventually(Duration::from_secs(15), "the pods to terminate", || async {
            let p = api.get(&format!("{PODS}/{pod}")).await.body;
            p["metadata"]["deletionTimestamp"].is_string().then_some(())
        })
        .await;
    }
    eprintln!("-- a blocking pod that is still there holds its owners");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(api.get(&format!("{RSS}/fg-rs")).await.code, 200);
    let d = api.get(&format!("{DEPLOYS}/fg")).await;
    assert_eq!(d.code, 200);
    assert_eq!(
        d.body["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );

    eprintln!("-- once it is gone the chain finishes, though the non-blocking pod remains");
    let r = api
        .delete(&format!("{PODS}/fg-rs-a?gracePeriodSeconds=0"))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    gone(api, &format!("{RSS}/fg-rs")).await;
    gone(api, &format!("{DEPLOYS}/fg")).await;
    let b = api.get(&format!("{PODS}/fg-rs-b")).await;
    assert_eq!(b.code, 200, "pod b waits for its grace period");
    assert!(b.body["metadata"]["deletionTimestamp"].is_string());

    eprintln!("-- a later DELETE may switch the policy of an owner still waiting");
    let held = replica_set_with_pods(api, "sw", None, &[("a", true, true)]).await;
    delete_with(api, &format!("{RSS}/sw-rs"), "Foreground").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api.get(&format!("{RSS}/sw-rs")).await.code, 200);
    let r = api
        .delete(&format!("{RSS}/sw-rs?propagationPolicy=Background"))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["status"], "Success");
    gone(api, &format!("{RSS}/sw-rs")).await;
    assert_eq!(held["kind"], "ReplicaSet");
}
on_both_backends!(
    foreground_propagation,
    gc_foreground_on_cairn_store,
    gc_foreground_on_etcd
);

async fn orphan_propagation(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- Orphan: the owner gets the orphan finalizer; dependents lose their reference");
    let d = deployment(api, "or").await;
    replica_set_with_pods(api, "or", Some(&d), &[("a", true, false)]).await;
    let r = api
        .delete(&format!("{DEPLOYS}/or?propagationPolicy=Orphan"))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["metadata"]["finalizers"], json!(["orphan"]));
    gone(api, &format!("{DEPLOYS}/or")).await;
    let rs = api.get(&format!("{RSS}/or-rs")).await;
    assert_eq!(rs.code, 200);
    assert!(
        rs.body["metadata"].get("ownerReferences").is_none(),
        "{}",
        rs.body
    );
    let pod = api.get(&format!("{PODS}/or-rs-a")).await.body;
    assert_eq!(pod["metadata"]["ownerReferences"][0]["name"], "or-rs");

    eprintln!("-- the deprecated orphanDependents=true does the same");
    let r = api
        .delete(&format!("{RSS}/or-rs?orphanDependents=true"))
        .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["orphan"]),
        "{}",
        r.body
    );
    gone(api, &format!("{RSS}/or-rs")).await;
    let pod = api.get(&format!("{PODS}/or-rs-a")).await.body;
    assert!(pod["metadata"].get("ownerReferences").is_none(), "{pod}");

    eprintln!("-- batch/v1 Jobs orphan by default (kube keeps that for compatibility)");
    let job = create(
        api,
        "/apis/batch/v1/namespaces/default/jobs",
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "once"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "c", "image": "busybox"}]}}}}),
    )
    .await;
    create(
        api,
        PODS,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "once-x",
            "ownerReferences": [owner_ref(&job, true)]},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
    let r = api
        .delete("/apis/batch/v1/namespaces/default/jobs/once")
        .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["orphan"]),
        "{}",
        r.body
    );
    gone(api, "/apis/batch/v1/namespaces/default/jobs/once").await;
    let pod = api.get(&format!("{PODS}/once-x")).await;
    assert_eq!(pod.code, 200);
    assert!(pod.body["metadata"].get("ownerReferences").is_none());
}
on_both_backends!(
    orphan_propagation,
    gc_orphan_on_cairn_store,
    gc_orphan_on_etcd
);

async fn kubectl_cascade(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let api = &c.api;
    let k = Kubectl::new(&api.url());
    for (name, cascade) in [("kb", "background"), ("kf", "foreground"), ("ko", "orphan")] {
        eprintln!("-- kubectl delete deployment --cascade={cascade}");
        k.ok(&["create", "deployment", name, "--image=nginx"]).await;
        let d = api.get(&format!("{DEPLOYS}/{name}")).await.body;
        replica_set_with_pods(api, name, Some(&d), &[("a", true, false)]).await;
        let out = k
            .ok(&[
                "delete",
                "deployment",
                name,
                &format!("--cascade={cascade}"),
                "--timeout=30s",
            ])
            .await;
        assert!(
            out.contains(&format!("deployment.apps \"{name}\" deleted")),
            "{out}"
        );
        let deploys = k.ok(&["get", "deployments", "-o", "name"]).await;
        assert!(
            !deploys.contains(&format!("deployment.apps/{name}")),
            "{deploys}"
        );
        if cascade == "orphan" {
            let rs = k
                .ok(&["get", "rs", &format!("{name}-rs"), "-o", "json"])
                .await;
            let rs: Value = serde_json::from_str(&rs).unwrap();
            assert!(rs["metadata"].get("ownerReferences").is_none(), "{rs}");
            k.ok(&["get", "pod", &format!("{name}-rs-a")]).await;
        } else {
            if cascade == "foreground" {
                // kubectl waited for the owner, which waited for its dependents.
                assert_eq!(api.get(&format!("{RSS}/{name}-rs")).await.code, 404);
            }
            gone(api, &format!("{RSS}/{name}-rs")).await;
            gone(api, &format!("{PODS}/{name}-rs-a")).await;
        }
    }
}
on_both_backends!(
    kubectl_cascade,
    gc_kubectl_cascade_on_cairn_store,
    gc_kubectl_cascade_on_etcd
);

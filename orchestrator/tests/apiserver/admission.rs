//! The default mutating admission of pods: DefaultTolerationSeconds and Priority, with the
//! system PriorityClasses every cluster has, as kube-apiserver admits pods.

use serde_json::json;

use crate::harness::Cluster;
use crate::on_both_backends;

const PODS: &str = "/api/v1/namespaces/default/pods";
const CLASSES: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";

fn pod(name: &str, spec_extra: serde_json::Value) -> serde_json::Value {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), spec_extra.as_object()) {
        spec.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

async fn pod_admission(c: &Cluster) {
    let api = &c.api;

    eprintln!("-- the system PriorityClasses exist");
    let r = api.get(&format!("{CLASSES}/system-node-critical")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["value"], 2_000_001_000);
    assert_eq!(r.body["preemptionPolicy"], "PreemptLowerPriority");
    let r = api.get(&format!("{CLASSES}/system-cluster-critical")).await;
    assert_eq!(r.body["value"], 2_000_000_000);

    eprintln!("-- a plain pod: priority 0 and five minutes on a lost node");
    let r = api.post(PODS, &pod("plain", json!({}))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let spec = &r.body["spec"];
    assert_eq!(spec["priority"], 0);
    assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
    assert!(spec.get("priorityClassName").is_none(), "{spec}");
    assert_eq!(
        spec["tolerations"],
        json!([
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        ])
    );

    eprintln!("-- a pod's own toleration of a lost node is kept");
    let own = json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10});
    let r = api
        .post(PODS, &pod("patient", json!({"tolerations": [own.clone()]})))
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let tolerations = r.body["spec"]["tolerations"].as_array().unwrap().clone();
    assert_eq!(tolerations.len(), 2, "{tolerations:?}");
    assert_eq!(tolerations[0], own);
    assert_eq!(tolerations[1]["key"], "node.kubernetes.io/unreachable");

    eprintln!("-- a named class sets the priority and policy");
    let r = api
        .post(
            PODS,
            &pod(
                "critical",
                json!({"priorityClassName": "system-cluster-critical"}),
            ),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["priority"], 2_000_000_000);
    let r = api
        .post(PODS, &pod("lost", json!({"priorityClassName": "gold"})))
        .await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods \"lost\" is forbidden: no PriorityClass with name gold was found"
    );
    let r = api
        .post(
            CLASSES,
            &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "gold"}, "value": 1000, "preemptionPolicy": "Never"}),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = api
        .post(
            PODS,
            &pod("rich", json!({"priorityClassName": "gold", "priority": 5})),
        )
        .await;
    assert_eq!(r.code, 403, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "pods \"rich\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
    let r = api
        .post(PODS, &pod("rich", json!({"priorityClassName": "gold"})))
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["priority"], 1000);
    assert_eq!(r.body["spec"]["preemptionPolicy"], "Never");

    eprintln!("-- a replaced pod keeps the priority it was given");
    let mut replaced = r.body.clone();
    let spec = replaced["spec"].as_object_mut().unwrap();
    spec.remove("priority");
    spec.remove("preemptionPolicy");
    replaced["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    let r = api.put(&format!("{PODS}/rich"), &replaced).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["spec"]["priority"], 1000);

    eprintln!("-- a globalDefault class applies to pods that name none");
    let r = api
        .post(
            CLASSES,
            &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "standard"}, "value": 100, "globalDefault": true}),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = api.post(PODS, &pod("ordinary", json!({}))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["spec"]["priorityClassName"], "standard");
    assert_eq!(r.body["spec"]["priority"], 100);

    eprintln!("-- system- names are reserved");
    let r = api
        .post(
            CLASSES,
            &json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": "system-mine"}, "value": 10}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "PriorityClass.scheduling.k8s.io \"system-mine\" is invalid: metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"
    );
}

on_both_backends!(pod_admission, pod_admission_on_cairn, pod_admission_on_etcd);

//! `pods/<name>/binding`, as a scheduler uses it: the pod gets its node, the Binding's
//! annotations and a PodScheduled condition; a second binding, a bad target, a mismatched name
//! or a pod being deleted are refused as Kubernetes refuses them.

use serde_json::json;

use crate::harness::Cluster;
use crate::on_both_backends;

const PODS: &str = "/api/v1/namespaces/default/pods";

fn binding(name: &str, node: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "annotations": {"scheduler.example/score": "7"}},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
}

async fn pod_binding(c: &Cluster) {
    let api = &c.api;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_eq!(api.post(PODS, &pod).await.code, 201);

    eprintln!("-- discovery lists the subresource");
    let list = api.get("/api/v1").await.body;
    let entry = list["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "pods/binding"))
        .cloned()
        .expect("pods/binding in discovery");
    assert_eq!(entry["kind"], "Binding");
    assert_eq!(entry["verbs"], json!(["create"]));

    eprintln!("-- bad bindings");
    let r = api
        .post(
            &format!("{PODS}/web/binding"),
            &json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
                "target": {"kind": "Pod"}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Binding \"web\" is invalid: [target.kind: Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\", target.name: Required value]"
    );
    let r = api
        .post(&format!("{PODS}/web/binding"), &binding("other", "n1"))
        .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "name in URL does not match name in Binding object"
    );
    let r = api
        .post(&format!("{PODS}/nope/binding"), &binding("nope", "n1"))
        .await;
    assert_eq!(r.code, 404, "{}", r.body);
    let r = api.get(&format!("{PODS}/web/binding")).await;
    assert_eq!(r.code, 405, "{}", r.body);

    eprintln!("-- the binding assigns the node once");
    let r = api
        .post(&format!("{PODS}/web/binding"), &binding("web", "n1"))
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["status"], "Success");
    let bound = api.get(&format!("{PODS}/web")).await.body;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(
        bound["metadata"]["annotations"]["scheduler.example/score"],
        "7"
    );
    let scheduled = bound["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "PodScheduled"))
        .cloned()
        .expect("PodScheduled condition");
    assert_eq!(scheduled["status"], "True");
    assert!(scheduled["lastTransitionTime"].is_string());
    let r = api
        .post(&format!("{PODS}/web/binding"), &binding("web", "n2"))
        .await;
    assert_eq!(r.code, 409, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Operation cannot be fulfilled on pods/binding \"web\": pod web is already assigned to node \"n1\""
    );

    eprintln!("-- an update of the pod itself may not move it");
    let mut moved = bound.clone();
    moved["spec"]["nodeName"] = json!("n2");
    let r = api.put(&format!("{PODS}/web"), &moved).await;
    assert_eq!(r.code, 422, "{}", r.body);

    eprintln!("-- a pod being deleted is not bound");
    let held = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    assert_eq!(api.post(PODS, &held).await.code, 201);
    assert_eq!(api.delete(&format!("{PODS}/held")).await.code, 200);
    let r = api
        .post(&format!("{PODS}/held/binding"), &binding("held", "n1"))
        .await;
    assert_eq!(r.code, 409, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Operation cannot be fulfilled on pods/binding \"held\": pod held is being deleted, cannot be assigned to a host"
    );
}
on_both_backends!(pod_binding, pod_binding_on_cairn_store, pod_binding_on_etcd);

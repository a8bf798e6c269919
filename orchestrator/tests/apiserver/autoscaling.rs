//! HorizontalPodAutoscalers served as autoscaling/v1 as well as v2 (the storage version): the
//! same objects through both, converted as Kubernetes converts them, in discovery, tables and
//! watches.

use serde_json::{json, Value};

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

const V1: &str = "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers";
const V2: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";

fn target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

async fn hpa_v1(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- discovery: autoscaling serves v2 (preferred) and v1");
    let group = api.get("/apis/autoscaling").await.body;
    assert_eq!(
        group["versions"],
        json!([{"groupVersion": "autoscaling/v2", "version": "v2"},
            {"groupVersion": "autoscaling/v1", "version": "v1"}])
    );
    assert_eq!(group["preferredVersion"]["version"], "v2");
    let v1 = api.get("/apis/autoscaling/v1").await.body;
    let names: Vec<&str> = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "horizontalpodautoscalers",
            "horizontalpodautoscalers/status"
        ]
    );

    eprintln!("-- a v1 CPU target is the v2 CPU Utilization metric");
    let r = api
        .post(
            V1,
            &json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
                "metadata": {"name": "web"},
                "spec": {"scaleTargetRef": target(), "maxReplicas": 5, "targetCPUUtilizationPercentage": 60}}),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["apiVersion"], "autoscaling/v1");
    assert_eq!(
        r.body["spec"],
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 60})
    );
    assert_eq!(
        r.body["status"],
        json!({"currentReplicas": 0, "desiredReplicas": 0})
    );
    let v2 = api.get(&format!("{V2}/web")).await.body;
    assert_eq!(v2["apiVersion"], "autoscaling/v2");
    assert_eq!(
        v2["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 60}}}])
    );
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");
    assert_eq!(
        v2["metadata"]["resourceVersion"],
        r.body["metadata"]["resourceVersion"]
    );

    eprintln!("-- v2-only metrics and behavior show in v1 as kube's annotations, and survive");
    let mut wider = v2.clone();
    wider["spec"]["metrics"].as_array_mut().unwrap().push(json!(
        {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}}
    ));
    wider["spec"]["behavior"] = json!({"scaleDown": {"stabilizationWindowSeconds": 60}});
    let r = api.put(&format!("{V2}/web"), &wider).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let as_v1 = api.get(&format!("{V1}/web")).await.body;
    assert_eq!(as_v1["spec"]["targetCPUUtilizationPercentage"], 60);
    let metrics = as_v1["metadata"]["annotations"]["autoscaling.alpha.kubernetes.io/metrics"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics annotation: {as_v1}"));
    let metrics: Value = serde_json::from_str(metrics).unwrap();
    assert_eq!(
        metrics,
        json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}}])
    );
    assert!(as_v1["metadata"]["annotations"]
        .get("autoscaling.alpha.kubernetes.io/behavior")
        .is_some());
    eprintln!("-- a v1 merge patch changes the CPU target and keeps the memory metric");
    let r = api
        .patch(
            &format!("{V1}/web"),
            "application/merge-patch+json",
            &json!({"spec": {"targetCPUUtilizationPercentage": 75}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body["spec"]["targetCPUUtilizationPercentage"], 75);
    let v2 = api.get(&format!("{V2}/web")).await.body;
    let kinds: Vec<(&Value, &Value)> = v2["spec"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (&m["resource"]["name"], &m["resource"]["target"]["type"]))
        .collect();
    assert_eq!(
        kinds,
        [
            (&json!("memory"), &json!("AverageValue")),
            (&json!("cpu"), &json!("Utilization"))
        ]
    );
    assert_eq!(
        v2["spec"]["metrics"][1]["resource"]["target"]["averageUtilization"],
        75
    );
    assert!(v2["metadata"].get("annotations").is_none(), "{v2}");
    assert_eq!(
        v2["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
        60
    );
    eprintln!("-- a v1 PUT of what v1 GET returned changes nothing");
    let as_v1 = api.get(&format!("{V1}/web")).await.body;
    let r = api.put(&format!("{V1}/web"), &as_v1).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.body["metadata"]["resourceVersion"],
        as_v1["metadata"]["resourceVersion"]
    );

    eprintln!("-- v1 status: currentCPUUtilizationPercentage from the v2 CPU metric status");
    let mut st = api.get(&format!("{V2}/web")).await.body;
    st["status"] = json!({"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 91, "averageValue": "450m"}}}]});
    let r = api.put(&format!("{V2}/web/status"), &st).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let s1 = api.get(&format!("{V1}/web/status")).await.body;
    assert_eq!(s1["status"]["currentCPUUtilizationPercentage"], 91);
    assert_eq!(s1["status"]["desiredReplicas"], 3);

    eprintln!("-- lists, tables and deletes speak v1 on v1");
    let list = api.get(V1).await.body;
    assert_eq!(
        (&list["kind"], &list["apiVersion"]),
        (
            &json!("HorizontalPodAutoscalerList"),
            &json!("autoscaling/v1")
        )
    );
    assert_eq!(list["items"][0]["apiVersion"], "autoscaling/v1");
    let table = api
        .call_with(
            "GET",
            V1,
            &[("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")],
            "",
        )
        .await
        .body;
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"][0], "web");

    if c.backend.supports_watch().await {
        let rv = list["metadata"]["resourceVersion"].as_str().unwrap();
        let mut w = api
            .watch(&format!("{V1}?watch=1&resourceVersion={rv}"))
            .await;
        api.patch(
            &format!("{V2}/web"),
            "application/merge-patch+json",
            &json!({"spec": {"maxReplicas": 6}}),
        )
        .await;
        let ev = w.next().await;
        assert_eq!(ev["type"], "MODIFIED");
        assert_eq!(ev["object"]["apiVersion"], "autoscaling/v1");
        assert_eq!(ev["object"]["spec"]["maxReplicas"], 6);
    }

    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        let k = Kubectl::new(&api.url());
        // The full resource name picks the version (the short name means the preferred one).
        let out = k
            .ok(&[
                "get",
                "horizontalpodautoscalers.v1.autoscaling",
                "web",
                "-o",
                "json",
            ])
            .await;
        let obj: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(obj["apiVersion"], "autoscaling/v1");
        assert_eq!(obj["spec"]["targetCPUUtilizationPercentage"], 75);
        let out = k.ok(&["get", "hpa"]).await;
        assert!(
            out.contains("REFERENCE") && out.contains("Deployment/web"),
            "{out}"
        );
    }
    let r = api.delete(&format!("{V1}/web")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(api.get(&format!("{V2}/web")).await.code, 404);
}
on_both_backends!(hpa_v1, hpa_v1_on_cairn_store, hpa_v1_on_etcd);

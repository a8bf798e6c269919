//! Versions served by conversion from a storage version: autoscaling/v1 HorizontalPodAutoscalers
//! are stored as autoscaling/v2 (the storage version, as in Kubernetes) and converted on the way
//! in and out, after Kubernetes' `autoscaling/v1` conversion functions:
//!
//! - v1 `spec.targetCPUUtilizationPercentage` <-> the v2 CPU `Utilization` resource metric, and a
//!   v1 object without it gets the 80% CPU metric Kubernetes defaults;
//! - v1 `status.currentCPUUtilizationPercentage` <-> the v2 CPU resource metric status;
//! - what v1 cannot say is kept in Kubernetes' annotations on the v1 form, as JSON:
//!   `autoscaling.alpha.kubernetes.io/metrics` (the other metrics, in v1's MetricSpec shape),
//!   `.../current-metrics` (every current metric, v1's MetricStatus shape), `.../conditions`
//!   and `.../behavior`; reading them back restores the v2 object, and they are never stored.
//!
//! Every other served version is its own storage version: the functions here are then the
//! identity.

use serde_json::{json, Map, Value};

use super::resources::{self, ResourceDef};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
/// The CPU target autoscaling/v1 implied when none was given.
const DEFAULT_CPU_UTILIZATION: i64 = 80;

fn is_hpa_v1(def: &ResourceDef) -> bool {
    (def.group, def.version, def.kind) == ("autoscaling", "v1", "HorizontalPodAutoscaler")
}

/// The resource whose objects are stored for `def` (`def` itself unless it is converted).
pub fn storage_def(def: &'static ResourceDef) -> &'static ResourceDef {
    if is_hpa_v1(def) {
        resources::lookup("autoscaling", "v2", def.plural).unwrap_or(def)
    } else {
        def
    }
}

/// A stored object as `def`'s version shows it.
pub fn to_version(def: &ResourceDef, stored: Value) -> Value {
    if is_hpa_v1(def) && stored.get("apiVersion") == Some(&json!("autoscaling/v2")) {
        hpa_v2_to_v1(&stored)
    } else {
        stored
    }
}

/// An object sent to `def`'s version, in the storage version (bodies naming another version
/// are left for the type checks to judge).
pub fn to_storage(def: &ResourceDef, obj: Value) -> Value {
    if is_hpa_v1(def) && obj.get("apiVersion") == Some(&json!("autoscaling/v1")) {
        hpa_v1_to_v2(&obj)
    } else {
        obj
    }
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["averageUtilization"].is_i64()
}

fn put(out: &mut Map<String, Value>, key: &str, v: &Value) {
    if !v.is_null() {
        out.insert(key.into(), v.clone());
    }
}

/// A v2 MetricSpec in autoscaling/v1's (v2beta1-style) MetricSpec shape.
fn metric_spec_to_v1(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut src = Map::new();
    let key = match ty {
        "Resource" | "ContainerResource" => {
            let r = if ty == "Resource" {
                &m["resource"]
            } else {
                &m["containerResource"]
            };
            put(&mut src, "name", &r["name"]);
            put(&mut src, "container", &r["container"]);
            put(
                &mut src,
                "targetAverageUtilization",
                &r["target"]["averageUtilization"],
            );
            put(&mut src, "targetAverageValue", &r["target"]["averageValue"]);
            if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            }
        }
        "Pods" => {
            let p = &m["pods"];
            put(&mut src, "metricName", &p["metric"]["name"]);
            put(&mut src, "targetAverageValue", &p["target"]["averageValue"]);
            put(&mut src, "selector", &p["metric"]["selector"]);
            "pods"
        }
        "Object" => {
            let o = &m["object"];
            put(&mut src, "target", &o["describedObject"]);
            put(&mut src, "metricName", &o["metric"]["name"]);
            src.insert(
                "targetValue".into(),
                o["target"].get("value").cloned().unwrap_or(json!("0")),
            );
            put(&mut src, "selector", &o["metric"]["selector"]);
            put(&mut src, "averageValue", &o["target"]["averageValue"]);
            "object"
        }
        "External" => {
            let e = &m["external"];
            put(&mut src, "metricName", &e["metric"]["name"]);
            put(&mut src, "metricSelector", &e["metric"]["selector"]);
            put(&mut src, "targetValue", &e["target"]["value"]);
            put(&mut src, "targetAverageValue", &e["target"]["averageValue"]);
            "external"
        }
        _ => return m.clone(),
    };
    json!({"type": ty, key: src})
}

/// A v1 (annotation) MetricSpec back in v2's shape.
fn metric_spec_to_v2(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let target = |utilization: &Value, average: &Value, value: &Value| {
        let mut t = Map::new();
        if !utilization.is_null() {
            t.insert("type".into(), json!("Utilization"));
            t.insert("averageUtilization".into(), utilization.clone());
        } else if !average.is_null() {
            t.insert("type".into(), json!("AverageValue"));
            t.insert("averageValue".into(), average.clone());
        } else {
            t.insert("type".into(), json!("Value"));
            put(&mut t, "value", value);
        }
        Value::Object(t)
    };
    let metric = |name: &Value, selector: &Value| {
        let mut id = Map::new();
        put(&mut id, "name", name);
        put(&mut id, "selector", selector);
        Value::Object(id)
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut out = Map::new();
            put(&mut out, "name", &r["name"]);
            put(&mut out, "container", &r["container"]);
            out.insert(
                "target".into(),
                target(
                    &r["targetAverageUtilization"],
                    &r["targetAverageValue"],
                    &Value::Null,
                ),
            );
            json!({"type": ty, key: out})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": ty, "pods": {
                "metric": metric(&p["metricName"], &p["selector"]),
                "target": target(&Value::Null, &p["targetAverageValue"], &Value::Null),
            }})
        }
        "Object" => {
            let o = &m["object"];
            json!({"type": ty, "object": {
                "describedObject": o["target"],
                "metric": metric(&o["metricName"], &o["selector"]),
                "target": target(&Value::Null, &o["averageValue"], &o["targetValue"]),
            }})
        }
        "External" => {
            let e = &m["external"];
            json!({"type": ty, "external": {
                "metric": metric(&e["metricName"], &e["metricSelector"]),
                "target": target(&Value::Null, &e["targetAverageValue"], &e["targetValue"]),
            }})
        }
        _ => m.clone(),
    }
}

/// A v2 MetricStatus in autoscaling/v1's MetricStatus shape.
fn metric_status_to_v1(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let mut src = Map::new();
    let key = match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            put(&mut src, "name", &r["name"]);
            put(&mut src, "container", &r["container"]);
            put(
                &mut src,
                "currentAverageUtilization",
                &r["current"]["averageUtilization"],
            );
            src.insert(
                "currentAverageValue".into(),
                r["current"]
                    .get("averageValue")
                    .cloned()
                    .unwrap_or(json!("0")),
            );
            key
        }
        "Pods" => {
            let p = &m["pods"];
            put(&mut src, "metricName", &p["metric"]["name"]);
            put(
                &mut src,
                "currentAverageValue",
                &p["current"]["averageValue"],
            );
            put(&mut src, "selector", &p["metric"]["selector"]);
            "pods"
        }
        "Object" => {
            let o = &m["object"];
            put(&mut src, "target", &o["describedObject"]);
            put(&mut src, "metricName", &o["metric"]["name"]);
            put(&mut src, "currentValue", &o["current"]["value"]);
            put(&mut src, "selector", &o["metric"]["selector"]);
            put(&mut src, "averageValue", &o["current"]["averageValue"]);
            "object"
        }
        "External" => {
            let e = &m["external"];
            put(&mut src, "metricName", &e["metric"]["name"]);
            put(&mut src, "metricSelector", &e["metric"]["selector"]);
            put(&mut src, "currentValue", &e["current"]["value"]);
            put(
                &mut src,
                "currentAverageValue",
                &e["current"]["averageValue"],
            );
            "external"
        }
        _ => return m.clone(),
    };
    json!({"type": ty, key: src})
}

/// A v1 (annotation) MetricStatus back in v2's shape.
fn metric_status_to_v2(m: &Value) -> Value {
    let ty = m["type"].as_str().unwrap_or("");
    let current = |utilization: &Value, average: &Value, value: &Value| {
        let mut c = Map::new();
        put(&mut c, "value", value);
        put(&mut c, "averageValue", average);
        put(&mut c, "averageUtilization", utilization);
        Value::Object(c)
    };
    let metric = |name: &Value, selector: &Value| {
        let mut id = Map::new();
        put(&mut id, "name", name);
        put(&mut id, "selector", selector);
        Value::Object(id)
    };
    match ty {
        "Resource" | "ContainerResource" => {
            let key = if ty == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let r = &m[key];
            let mut out = Map::new();
            put(&mut out, "name", &r["name"]);
            put(&mut out, "container", &r["container"]);
            out.insert(
                "current".into(),
                current(
                    &r["currentAverageUtilization"],
                    &r["currentAverageValue"],
                    &Value::Null,
                ),
            );
            json!({"type": ty, key: out})
        }
        "Pods" => {
            let p = &m["pods"];
            json!({"type": ty, "pods": {
                "metric": metric(&p["metricName"], &p["selector"]),
                "current": current(&Value::Null, &p["currentAverageValue"], &Value::Null),
            }})
        }
        "Object" => {
            let o = &m["object"];
            json!({"type": ty, "object": {
                "describedObject": o["target"],
                "metric": metric(&o["metricName"], &o["selector"]),
                "current": current(&Value::Null, &o["averageValue"], &o["currentValue"]),
            }})
        }
        "External" => {
            let e = &m["external"];
            json!({"type": ty, "external": {
                "metric": metric(&e["metricName"], &e["metricSelector"]),
                "current": current(&Value::Null, &e["currentAverageValue"], &e["currentValue"]),
            }})
        }
        _ => m.clone(),
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Kubernetes' `Convert_autoscaling_HorizontalPodAutoscaler_To_v1_HorizontalPodAutoscaler`.
pub fn hpa_v2_to_v1(v2: &Value) -> Value {
    let mut metadata = v2.get("metadata").cloned().unwrap_or(json!({}));
    let spec2 = &v2["spec"];
    let status2 = &v2["status"];
    let mut annotations: Map<String, Value> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut spec = Map::new();
    put(&mut spec, "scaleTargetRef", &spec2["scaleTargetRef"]);
    put(&mut spec, "minReplicas", &spec2["minReplicas"]);
    put(&mut spec, "maxReplicas", &spec2["maxReplicas"]);
    let metrics = list(&spec2["metrics"]);
    if let Some(cpu) = metrics.iter().find(|m| is_cpu_utilization(m)) {
        spec.insert(
            "targetCPUUtilizationPercentage".into(),
            cpu["resource"]["target"]["averageUtilization"].clone(),
        );
    }
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(metric_spec_to_v1)
        .collect();
    let mut status = Map::new();
    put(
        &mut status,
        "observedGeneration",
        &status2["observedGeneration"],
    );
    put(&mut status, "lastScaleTime", &status2["lastScaleTime"]);
    status.insert(
        "currentReplicas".into(),
        status2.get("currentReplicas").cloned().unwrap_or(json!(0)),
    );
    status.insert(
        "desiredReplicas".into(),
        status2.get("desiredReplicas").cloned().unwrap_or(json!(0)),
    );
    let current = list(&status2["currentMetrics"]);
    if let Some(cpu) = current.iter().find(|m| {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["current"]["averageUtilization"].is_i64()
    }) {
        status.insert(
            "currentCPUUtilizationPercentage".into(),
            cpu["resource"]["current"]["averageUtilization"].clone(),
        );
    }
    let encode = |v: &Value| Value::String(v.to_string());
    if !others.is_empty() {
        annotations.insert(METRICS.into(), encode(&Value::Array(others)));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current.iter().map(metric_status_to_v1).collect();
        annotations.insert(CURRENT_METRICS.into(), encode(&Value::Array(v1)));
    }
    if spec2.get("behavior").is_some_and(|b| !b.is_null()) {
        annotations.insert(BEHAVIOR.into(), encode(&spec2["behavior"]));
    }
    let conditions = list(&status2["conditions"]);
    if !conditions.is_empty() {
        annotations.insert(CONDITIONS.into(), encode(&status2["conditions"]));
    }
    if !annotations.is_empty() {
        metadata["annotations"] = Value::Object(annotations);
    }
    json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": spec,
        "status": status,
    })
}

/// Kubernetes' `Convert_v1_HorizontalPodAutoscaler_To_autoscaling_HorizontalPodAutoscaler`.
pub fn hpa_v1_to_v2(v1: &Value) -> Value {
    let mut metadata = v1.get("metadata").cloned().unwrap_or(json!({}));
    let mut annotations: Map<String, Value> = metadata
        .get("annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    // Only the round-trip annotations produced by conversion are read, and none is stored.
    let mut take = |key: &str| -> Option<Value> {
        let text = annotations.remove(key)?;
        serde_json::from_str(text.as_str()?).ok()
    };
    let other_metrics = take(METRICS);
    let current_metrics = take(CURRENT_METRICS);
    let conditions = take(CONDITIONS);
    let behavior = take(BEHAVIOR);
    if annotations.is_empty() {
        if let Some(m) = metadata.as_object_mut() {
            m.remove("annotations");
        }
    } else {
        metadata["annotations"] = Value::Object(annotations);
    }
    let spec1 = &v1["spec"];
    let status1 = &v1["status"];
    let mut spec = Map::new();
    put(&mut spec, "scaleTargetRef", &spec1["scaleTargetRef"]);
    put(&mut spec, "minReplicas", &spec1["minReplicas"]);
    put(&mut spec, "maxReplicas", &spec1["maxReplicas"]);
    let mut metrics: Vec<Value> = other_metrics
        .as_ref()
        .map(|m| list(m).iter().map(metric_spec_to_v2).collect())
        .unwrap_or_default();
    let cpu = |utilization: &Value| {
        json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": utilization}}})
    };
    if let Some(target) = spec1
        .get("targetCPUUtilizationPercentage")
        .filter(|t| !t.is_null())
    {
        metrics.push(cpu(target));
    }
    if metrics.is_empty() {
        metrics.push(cpu(&json!(DEFAULT_CPU_UTILIZATION)));
    }
    spec.insert("metrics".into(), Value::Array(metrics));
    if let Some(b) = behavior {
        spec.insert("behavior".into(), b);
    }
    let mut status = Map::new();
    put(
        &mut status,
        "observedGeneration",
        &status1["observedGeneration"],
    );
    put(&mut status, "lastScaleTime", &status1["lastScaleTime"]);
    put(&mut status, "currentReplicas", &status1["currentReplicas"]);
    put(&mut status, "desiredReplicas", &status1["desiredReplicas"]);
    let mut current: Vec<Value> = current_metrics
        .as_ref()
        .map(|m| list(m).iter().map(metric_status_to_v2).collect())
        .unwrap_or_default();
    if current.is_empty() {
        if let Some(u) = status1
            .get("currentCPUUtilizationPercentage")
            .filter(|u| !u.is_null())
        {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": u}}}));
        }
    }
    if !current.is_empty() {
        status.insert("currentMetrics".into(), Value::Array(current));
    }
    if let Some(c) = conditions.filter(|c| !list(c).is_empty()) {
        status.insert("conditions".into(), c);
    }
    let mut out = json!({
        "kind": "HorizontalPodAutoscaler",
        "apiVersion": "autoscaling/v2",
        "metadata": metadata,
        "spec": spec,
    });
    if v1.get("status").is_some() {
        out["status"] = Value::Object(status);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_target_and_status_map_to_the_v2_metric() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 5, "targetCPUUtilizationPercentage": 60},
            "status": {"currentReplicas": 2, "desiredReplicas": 3, "currentCPUUtilizationPercentage": 71}});
        let v2 = hpa_v1_to_v2(&v1);
        assert_eq!(v2["apiVersion"], "autoscaling/v2");
        assert_eq!(
            v2["spec"]["metrics"],
            json!([{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 60}}}])
        );
        assert_eq!(
            v2["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"],
            71
        );
        let back = hpa_v2_to_v1(&v2);
        assert_eq!(back["spec"], v1["spec"]);
        assert_eq!(back["status"]["currentCPUUtilizationPercentage"], 71);
        // The current metrics travel in the annotation as well (the raw values).
        let ann = back["metadata"]["annotations"][CURRENT_METRICS]
            .as_str()
            .unwrap();
        assert!(ann.contains("\"currentAverageUtilization\":71"), "{ann}");
        // Without a CPU target, v1 means Kubernetes' 80%.
        let mut bare = v1.clone();
        bare["spec"]
            .as_object_mut()
            .unwrap()
            .remove("targetCPUUtilizationPercentage");
        assert_eq!(
            hpa_v1_to_v2(&bare)["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
    }

    #[test]
    fn what_v1_cannot_say_round_trips_through_annotations() {
        let v2 = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "annotations": {"team": "a"}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}},
                    {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}},
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 1, "desiredReplicas": 1,
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}});
        let v1 = hpa_v2_to_v1(&v2);
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        let ann = &v1["metadata"]["annotations"];
        assert_eq!(ann["team"], "a");
        let others: Value = serde_json::from_str(ann[METRICS].as_str().unwrap()).unwrap();
        assert_eq!(
            others[0],
            json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}})
        );
        assert_eq!(
            others[1],
            json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "1k"}})
        );
        assert!(ann[CONDITIONS]
            .as_str()
            .unwrap()
            .contains("ReadyForNewScale"));
        let back = hpa_v1_to_v2(&v1);
        assert_eq!(back["spec"]["behavior"], v2["spec"]["behavior"]);
        assert_eq!(back["status"]["conditions"], v2["status"]["conditions"]);
        assert_eq!(back["metadata"]["annotations"], json!({"team": "a"}));
        let names: Vec<&Value> = back["spec"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["type"])
            .collect();
        assert_eq!(names, ["Resource", "Pods", "External", "Resource"]);
        assert_eq!(back["spec"]["metrics"][1], v2["spec"]["metrics"][1]);
        assert_eq!(back["spec"]["metrics"][2], v2["spec"]["metrics"][2]);
    }
}

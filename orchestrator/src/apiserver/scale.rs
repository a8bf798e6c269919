//! The `scale` subresource (autoscaling/v1 Scale) of Deployments, ReplicaSets, StatefulSets and
//! ReplicationControllers, as their Kubernetes `ScaleREST`s serve it: a Scale is a view of the
//! object (`spec.replicas`, `status.replicas`, the selector as a string) and writing one changes
//! only the object's `spec.replicas`, through the object's own update path (so generation,
//! optimistic concurrency and validation apply). A Scale's resourceVersion is the object's, and
//! one sent back is a precondition on the object.

use serde_json::{json, Map, Value};

use super::object::meta_str;
use super::resources::ResourceDef;
use super::status::{ApiError, Cause};

pub const API_VERSION: &str = "autoscaling/v1";
pub const KIND: &str = "Scale";

/// A label selector in selector syntax, sorted by key; "" when it selects everything.
fn selector_string(selector: Option<&Value>) -> String {
    match super::table::format_label_selector(selector) {
        s if s == "<none>" => String::new(),
        s => s,
    }
}

/// The Scale view of `obj`.
pub fn from_object(def: &ResourceDef, obj: &Value) -> Value {
    let mut meta = Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = obj.pointer(&format!("/metadata/{field}")) {
            meta.insert(field.into(), v.clone());
        }
    }
    let selector = if def.kind == "ReplicationController" {
        // An RC's selector is a plain map: `labels.SelectorFromSet`.
        selector_string(Some(&json!({"matchLabels": obj.pointer("/spec/selector")
            .cloned().unwrap_or(Value::Null)})))
    } else {
        selector_string(obj.pointer("/spec/selector"))
    };
    let mut spec = Map::new();
    // ScaleSpec.replicas is `omitempty`: zero replicas is an empty spec.
    if let Some(r) = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r != 0)
    {
        spec.insert("replicas".into(), json!(r));
    }
    let mut status = json!({
        "replicas": obj.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
    });
    if !selector.is_empty() {
        status["selector"] = json!(selector);
    }
    json!({
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metadata": meta,
        "spec": spec,
        "status": status,
    })
}

/// Checks a Scale sent by a client (PUT body or patch result) against the object it scales.
fn check(name: &str, scale: &Value) -> Result<i64, ApiError> {
    let kind = scale.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = scale
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if (!kind.is_empty() && kind != KIND) || (!api_version.is_empty() && api_version != API_VERSION)
    {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({API_VERSION}) or kind ({kind}) does not match {KIND}"
        )));
    }
    let body_name = meta_str(scale, "name").unwrap_or("");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let replicas = scale.pointer("/spec/replicas").unwrap_or(&Value::Null);
    match replicas {
        Value::Null => Ok(0),
        v => match v.as_i64() {
            Some(r) if (0..=i64::from(i32::MAX)).contains(&r) => Ok(r),
            _ => Err(ApiError::Invalid {
                kind: "Scale.autoscaling".into(),
                name: name.into(),
                causes: vec![Cause {
                    reason: "FieldValueInvalid",
                    field: "spec.replicas".into(),
                    message: format!("Invalid value: {v}: must be greater than or equal to 0"),
                }],
            }),
        },
    }
}

/// The object `current` with the replicas of `scale`; the Scale's resourceVersion (and uid),
/// when given, become preconditions of the write.
pub fn apply(
    def: &ResourceDef,
    name: &str,
    current: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let replicas = check(name, scale)?;
    if let (Some(uid), Some(have)) = (
        meta_str(scale, "uid").filter(|u| !u.is_empty()),
        meta_str(current, "uid"),
    ) {
        if uid != have {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name: name.into(),
                detail: format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                ),
            });
        }
    }
    let mut desired = current.clone();
    let meta = super::object::meta_mut(&mut desired);
    match meta_str(scale, "resourceVersion").filter(|v| !v.is_empty()) {
        Some(rv) => meta.insert("resourceVersion".into(), json!(rv)),
        None => meta.remove("resourceVersion"),
    };
    if let Some(spec) = desired.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("replicas".into(), json!(replicas));
    } else {
        desired["spec"] = json!({"replicas": replicas});
    }
    Ok(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    #[test]
    fn scale_views_and_updates() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let d = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7",
            "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"x": "y"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web", "tier": "a"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]}},
            "status": {"replicas": 1}});
        let s = from_object(def, &d);
        assert_eq!(s["spec"], json!({"replicas": 2}));
        assert_eq!(
            s["status"],
            json!({"replicas": 1, "selector": "app=web,env in (dev,prod),tier=a"})
        );
        assert_eq!(s["metadata"]["resourceVersion"], "7");
        assert!(s["metadata"].get("labels").is_none());

        let rc = lookup("", "v1", "replicationcontrollers").unwrap();
        let r = json!({"metadata": {"name": "r"}, "spec": {"replicas": 0, "selector": {"b": "2", "a": "1"}}});
        let s = from_object(rc, &r);
        assert_eq!(s["spec"], json!({}));
        assert_eq!(s["status"], json!({"replicas": 0, "selector": "a=1,b=2"}));

        let scaled = apply(def, "web", &d, &json!({"spec": {"replicas": 5}})).unwrap();
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert!(scaled["metadata"].get("resourceVersion").is_none());
        let pinned = apply(
            def,
            "web",
            &d,
            &json!({"metadata": {"resourceVersion": "6"}, "spec": {}}),
        )
        .unwrap();
        assert_eq!(
            (
                &pinned["spec"]["replicas"],
                &pinned["metadata"]["resourceVersion"]
            ),
            (&json!(0), &json!("6"))
        );
        let err = apply(def, "web", &d, &json!({"spec": {"replicas": -1}})).unwrap_err();
        assert_eq!(
            err.to_string(),
            "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            apply(def, "web", &d, &json!({"metadata": {"name": "other"}}))
                .unwrap_err()
                .code(),
            400
        );
        assert_eq!(
            apply(def, "web", &d, &json!({"metadata": {"uid": "v"}}))
                .unwrap_err()
                .code(),
            409
        );
    }
}

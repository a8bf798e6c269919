//! `POST .../pods/<name>/binding`: a scheduler assigns a pod to a node with a core/v1 Binding,
//! as kube-apiserver's pod registry serves it. The pod gets `spec.nodeName` (which no update of
//! the pod itself may change), the Binding's annotations, and a `PodScheduled=True` condition,
//! in one compare-and-swap on the pod's mod_revision. The answer is a Success Status.

use serde_json::{json, Map, Value};

use super::http::{self as h, BodyEncoding};
use super::object::{self, meta_str};
use super::query::Query;
use super::route::Target;
use super::status::{ApiError, Cause};
use super::storage::{Expect, StorageError, Write, WriteOp};
use super::{clock, rest, ApiServer};

/// The Kubernetes resource a binding conflict is reported on.
const RESOURCE: &str = "pods/binding";

fn conflict(name: &str, detail: String) -> ApiError {
    ApiError::Conflict {
        resource: RESOURCE.into(),
        name: name.into(),
        detail,
    }
}

/// Kubernetes' `ValidatePodBinding`.
fn validate(name: &str, binding: &Value) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    let target_kind = binding
        .pointer("/target/kind")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !target_kind.is_empty() && target_kind != "Node" {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            field: "target.kind".into(),
            message: format!(
                "Unsupported value: {}: supported values: \"Node\", \"<empty>\"",
                json!(target_kind)
            ),
        });
    }
    let target_name = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    if target_name.is_empty() {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: "target.name".into(),
            message: "Required value".into(),
        });
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            kind: "Binding".into(),
            name: name.into(),
            causes,
        })
    }
}

/// Sets the pod's PodScheduled condition to True, keeping its transition time if it already
/// was (Kubernetes' `UpdatePodCondition`).
fn mark_scheduled(pod: &mut Value, now: &str) {
    if !pod.get("status").is_some_and(Value::is_object) {
        pod["status"] = json!({});
    }
    let status = &mut pod["status"];
    if !status.get("conditions").is_some_and(Value::is_array) {
        status["conditions"] = json!([]);
    }
    let conditions = status["conditions"].as_array_mut().expect("an array");
    match conditions.iter_mut().find(|c| c["type"] == "PodScheduled") {
        Some(c) if c["status"] == "True" => {}
        Some(c) => {
            c["status"] = json!("True");
            c["lastTransitionTime"] = json!(now);
            if let Some(c) = c.as_object_mut() {
                c.remove("reason");
                c.remove("message");
            }
        }
        None => conditions.push(json!({
            "type": "PodScheduled",
            "status": "True",
            "lastProbeTime": null,
            "lastTransitionTime": now,
        })),
    }
}

/// POST of a Binding for the pod `name` in `t` (the pods collection of a namespace).
pub async fn bind(
    api: &ApiServer,
    t: &Target,
    name: &str,
    q: &Query,
    encoding: BodyEncoding,
    body: &[u8],
) -> Result<Value, ApiError> {
    let dry_run = q.dry_run()?;
    let binding = h::parse_body(encoding, body, "v1", "Binding")?;
    for (field, want) in [("kind", "Binding"), ("apiVersion", "v1")] {
        if let Some(got) = binding.get(field).and_then(Value::as_str) {
            if !got.is_empty() && got != want {
                return Err(ApiError::BadRequest(format!(
                    "{field} {got:?} is not {want:?}: the body of pods/binding must be a v1 Binding"
                )));
            }
        }
    }
    let body_ns = meta_str(&binding, "namespace").unwrap_or("");
    if !body_ns.is_empty() && Some(body_ns) != t.namespace.as_deref() {
        return Err(ApiError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    if meta_str(&binding, "name").unwrap_or("") != name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Binding object".into(),
        ));
    }
    validate(name, &binding)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = meta_str(&binding, "uid").filter(|u| !u.is_empty());
    let rv = meta_str(&binding, "resourceVersion").filter(|v| !v.is_empty());
    let annotations: Map<String, Value> = binding
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let key = api.object_key(t.def, t.namespace.as_deref(), name);
    for _ in 0..rest::WRITE_RETRIES {
        let (mut pod, mod_rev) = rest::read(api, t, name).await?;
        if let Some(uid) = uid {
            let have = meta_str(&pod, "uid").unwrap_or("");
            if uid != have {
                return Err(conflict(
                    name,
                    format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        if let Some(rv) = rv {
            if rv != mod_rev.to_string() {
                return Err(conflict(
                    name,
                    format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {mod_rev}"
                    ),
                ));
            }
        }
        if pod
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null())
        {
            return Err(conflict(
                name,
                format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        let assigned = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !assigned.is_empty() {
            return Err(conflict(
                name,
                format!("pod {name} is already assigned to node {}", json!(assigned)),
            ));
        }
        if pod
            .pointer("/spec/schedulingGates")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty())
        {
            return Err(conflict(
                name,
                format!("pod {name} has non-empty .spec.schedulingGates"),
            ));
        }
        pod["spec"]["nodeName"] = json!(node);
        if !annotations.is_empty() {
            let meta = object::meta_mut(&mut pod);
            let merged = meta
                .entry("annotations")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|a| {
                    for (k, v) in &annotations {
                        a.insert(k.clone(), v.clone());
                    }
                });
            if merged.is_none() {
                meta.insert("annotations".into(), Value::Object(annotations.clone()));
            }
        }
        mark_scheduled(&mut pod, &clock::now_rfc3339());
        object::meta_mut(&mut pod).remove("resourceVersion");
        if dry_run {
            return Ok(success());
        }
        let write = Write {
            key: key.clone(),
            expect: Expect::ModRevision(mod_rev),
            op: WriteOp::Put(object::encode(&pod)),
            guards: Vec::new(),
            side: Vec::new(),
        };
        match api.store.write(write).await {
            Ok(_) => return Ok(success()),
            // The pod changed since it was read: look again (it may have been bound meanwhile).
            Err(StorageError::Conflict) => continue,
            Err(StorageError::NotFound) => return Err(ApiError::not_found("pods", name)),
            Err(e) => return Err(ApiError::Internal(e.to_string())),
        }
    }
    Err(ApiError::conflict_modified(RESOURCE, name))
}

/// What a successful binding answers (with HTTP 201).
fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_validated_as_kubernetes_does() {
        let ok = json!({"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "n1"}});
        assert!(validate("p", &ok).is_ok());
        let empty_kind = json!({"metadata": {"name": "p"}, "target": {"name": "n1"}});
        assert!(validate("p", &empty_kind).is_ok());
        let Err(ApiError::Invalid { kind, causes, .. }) =
            validate("p", &json!({"target": {"kind": "Pod"}}))
        else {
            panic!("a Pod target and no name are invalid");
        };
        assert_eq!(kind, "Binding");
        let fields: Vec<(&str, &str)> = causes
            .iter()
            .map(|c| (c.field.as_str(), c.message.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                (
                    "target.kind",
                    "Unsupported value: \"Pod\": supported values: \"Node\", \"<empty>\""
                ),
                ("target.name", "Required value"),
            ]
        );
    }

    #[test]
    fn scheduling_sets_the_condition_once() {
        let mut pod = json!({"status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/1 nodes are available", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]}});
        mark_scheduled(&mut pod, "2026-01-02T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "PodScheduled", "status": "True",
                    "lastTransitionTime": "2026-01-02T00:00:00Z"}])
        );
        mark_scheduled(&mut pod, "2026-01-03T00:00:00Z");
        assert_eq!(
            pod["status"]["conditions"][0]["lastTransitionTime"], "2026-01-02T00:00:00Z",
            "already True: the transition time stays"
        );
        let mut bare = json!({"spec": {}});
        mark_scheduled(&mut bare, "2026-01-02T00:00:00Z");
        assert_eq!(bare["status"]["conditions"][0]["status"], "True");
        assert!(bare["status"]["conditions"][0]["lastProbeTime"].is_null());
    }
}

//! What the server does to an object's body on the way into storage: type checks, server-owned
//! metadata (uid, creationTimestamp, generation, resourceVersion), then the per-kind defaults
//! (`defaults.rs`) and validation (`validation.rs`), in Kubernetes' order: defaults first, so
//! validation sees the object as it will be stored.
//!
//! Invariant: stored values never carry metadata.resourceVersion — it is the key's etcd
//! mod_revision and is injected on every read (`decode`), as kube-apiserver does.

use serde_json::{json, Map, Value};

use super::clock;
use super::defaults;
use super::names;
use super::resources::ResourceDef;
use super::status::{ApiError, Cause};
use super::storage::Versioned;
use super::validation;

/// A stored value as an API object with its resourceVersion.
pub fn decode(kv: &Versioned) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        ApiError::Internal(format!(
            "stored value at {} is not JSON: {e}",
            String::from_utf8_lossy(&kv.key)
        ))
    })?;
    set_resource_version(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub fn set_resource_version(obj: &mut Value, rev: i64) {
    meta_mut(obj).insert("resourceVersion".into(), json!(rev.to_string()));
}

/// The bytes stored for `obj` (without resourceVersion).
pub fn encode(obj: &Value) -> Vec<u8> {
    let mut stored = obj.clone();
    meta_mut(&mut stored).remove("resourceVersion");
    serde_json::to_vec(&stored).unwrap_or_default()
}

/// metadata as a mutable map, created if missing or not an object.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// The body names this kind in this group/version (apiVersion and kind are required).
pub fn check_type(def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::BadRequest(
            "Object 'Kind' is missing in the request body".into(),
        ));
    }
    if api_version.is_empty() {
        return Err(ApiError::BadRequest(
            "Object 'apiVersion' is missing in the request body".into(),
        ));
    }
    if kind != def.kind || api_version != def.api_version() {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({}) or kind ({kind}) does not match {}",
            def.api_version(),
            def.kind
        )));
    }
    if !obj.get("metadata").is_none_or(Value::is_object) {
        return Err(ApiError::BadRequest("metadata must be an object".into()));
    }
    Ok(())
}

/// Fills server-owned metadata and defaults on a new object; returns its name.
/// `namespace` is the request's (None for cluster-scoped kinds).
/// Drops metadata's maps and lists that are null or empty, as Go's `omitempty` does when
/// Kubernetes writes an object: a patch that removes the last label leaves no `labels: {}`.
fn drop_empty_collections(meta: &mut Map<String, Value>) {
    for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
        let empty = match meta.get(field) {
            Some(Value::Null) => true,
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(field);
        }
    }
}

pub fn prepare_create(
    def: &ResourceDef,
    namespace: Option<&str>,
    obj: &mut Value,
) -> Result<String, ApiError> {
    check_type(def, obj)?;
    if meta_str(obj, "resourceVersion").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::BadRequest(
            "resourceVersion should not be set on objects to be created".into(),
        ));
    }
    let meta = meta_mut(obj);
    let mut name = meta
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if name.is_empty() {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => name = names::generate(prefix),
            _ => {
                return Err(ApiError::invalid(
                    &def.qualified_kind(),
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required".into(),
                ));
            }
        }
        meta.insert("name".into(), json!(name));
    }
    set_namespace(def, namespace, meta)?;
    meta.insert("uid".into(), json!(names::new_uid()));
    meta.insert("creationTimestamp".into(), json!(clock::now_rfc3339()));
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ] {
        meta.remove(server_owned);
    }
    drop_empty_collections(meta);
    if def.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    // Nodes are the one kind whose status may be set on create: a kubelet registers its node
    // with addresses, capacity and conditions in one request.
    let keeps_status =
        (def.group, def.kind) == ("", "Node") && obj.get("status").is_some_and(Value::is_object);
    if def.has_status && !keeps_status {
        obj["status"] = defaults::initial_status(def);
    }
    defaults::prepare_for_create(def, obj);
    defaults::set_defaults(def, obj);
    validation::validate(def, &name, obj)?;
    refuse_both_propagation_finalizers(def, &name, obj)?;
    Ok(name)
}

fn set_namespace(
    def: &ResourceDef,
    namespace: Option<&str>,
    meta: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    match (def.namespaced, namespace) {
        (true, Some(ns)) => {
            match meta.get("namespace").and_then(Value::as_str) {
                Some(body_ns) if !body_ns.is_empty() && body_ns != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ))
                }
                _ => {}
            }
            meta.insert("namespace".into(), json!(ns));
        }
        (true, None) => {
            return Err(ApiError::BadRequest(
                "a namespace is required for namespaced resources".into(),
            ))
        }
        (false, _) => {
            meta.remove("namespace");
        }
    }
    Ok(())
}

/// What an update writes: see [`prepare_update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    Object,
    Status,
    Finalize,
}

/// An object cannot both orphan its dependents and wait for their deletion (Kubernetes'
/// `ValidateFinalizers`).
fn refuse_both_propagation_finalizers(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    let finalizers: Vec<&str> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !(finalizers.contains(&"orphan") && finalizers.contains(&"foregroundDeletion")) {
        return Ok(());
    }
    let go_list: Vec<String> = finalizers.iter().map(|f| format!("{f:?}")).collect();
    Err(ApiError::invalid(
        &def.qualified_kind(),
        name,
        "metadata.finalizers",
        "FieldValueInvalid",
        format!(
            "Invalid value: []string{{{}}}: finalizer orphan and foregroundDeletion cannot be both set",
            go_list.join(", ")
        ),
    ))
}

/// Once an object is being deleted its finalizers may only go away (ValidateObjectMetaUpdate).
fn refuse_new_finalizers(
    def: &ResourceDef,
    name: &str,
    old_meta: &Value,
    meta: &Map<String, Value>,
) -> Result<(), ApiError> {
    let list = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let old = list(old_meta.get("finalizers"));
    let mut added: Vec<String> = list(meta.get("finalizers"))
        .into_iter()
        .filter(|f| !old.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    added.sort();
    added.dedup();
    let go_list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
    Err(ApiError::Invalid {
        kind: def.qualified_kind(),
        name: name.into(),
        causes: vec![Cause {
            reason: "FieldValueForbidden",
            field: "metadata.finalizers".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                go_list.join(", ")
            ),
        }],
    })
}

/// Carries server-owned state from the stored object `old` into the replacement `new`
/// (a PUT body, or the result of a patch), by what is being written: the object (status changes
/// are ignored for kinds with a `/status` subresource; a Namespace's `spec.finalizers` only
/// change through `/finalize`), its `/status` (only status changes), or a Namespace's
/// `/finalize` (spec and metadata change, status does not).
pub fn prepare_update(
    def: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
    old: &Value,
    new: &mut Value,
    mode: UpdateMode,
) -> Result<(), ApiError> {
    check_type(def, new)?;
    let body_name = meta_str(new, "name").unwrap_or("");
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    if let (Some(u), Some(old_uid)) = (
        meta_str(new, "uid").filter(|u| !u.is_empty()),
        meta_str(old, "uid"),
    ) {
        if u != old_uid {
            return Err(ApiError::Conflict {
                resource: def.qualified(),
                name: name.into(),
                detail: format!(
                    "Precondition failed: UID in precondition: {u}, UID in object meta: {old_uid}"
                ),
            });
        }
    }
    if mode == UpdateMode::Status {
        let status = new.get("status").cloned().unwrap_or(json!({}));
        let rv = meta_str(new, "resourceVersion").map(str::to_string);
        *new = old.clone();
        new["status"] = status;
        if let Some(rv) = rv {
            meta_mut(new).insert("resourceVersion".into(), json!(rv));
        }
        return Ok(());
    }
    let old_meta = old.get("metadata").cloned().unwrap_or(json!({}));
    let meta = meta_mut(new);
    meta.insert("name".into(), json!(name));
    set_namespace(def, namespace, meta)?;
    for owned in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(owned) {
            Some(v) => meta.insert(owned.into(), v.clone()),
            None => meta.remove(owned),
        };
    }
    meta.remove("managedFields");
    meta.remove("selfLink");
    drop_empty_collections(meta);
    if old_meta
        .get("deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        refuse_new_finalizers(def, name, &old_meta, meta)?;
    }
    if def.has_status {
        new["status"] = old.get("status").cloned().unwrap_or(json!({}));
    }
    if (def.group, def.kind, mode) == ("", "Namespace", UpdateMode::Object) {
        let kept = old.pointer("/spec/finalizers").cloned();
        match (kept, new.get_mut("spec").and_then(Value::as_object_mut)) {
            (Some(f), Some(spec)) => {
                spec.insert("finalizers".into(), f);
            }
            (Some(f), None) => new["spec"] = json!({ "finalizers": f }),
            (None, Some(spec)) => {
                spec.remove("finalizers");
            }
            (None, None) => {}
        }
    }
    defaults::set_defaults(def, new);
    validation::validate(def, name, new)?;
    refuse_both_propagation_finalizers(def, name, new)?;
    validation::validate_update(def, name, old, new)?;
    if def.tracks_generation && new.get("spec") != old.get("spec") {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        meta_mut(new).insert("generation".into(), json!(generation));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    #[test]
    fn a_node_is_created_with_the_status_it_was_sent() {
        let def = lookup("", "v1", "nodes").unwrap();
        let status = json!({"addresses": [{"type": "InternalIP", "address": "10.0.0.5"}],
            "capacity": {"cpu": "2"}});
        let mut node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
            "status": status.clone()});
        prepare_create(def, None, &mut node).unwrap();
        assert_eq!(node["status"], status);
        // Other kinds start from their initial status, whatever was sent.
        let def = lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}, "status": {"phase": "Running"}});
        prepare_create(def, Some("default"), &mut pod).unwrap();
        assert_eq!(pod["status"]["phase"], "Pending");
    }

    #[test]
    fn empty_metadata_collections_are_not_kept() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c",
            "labels": {}, "annotations": null, "finalizers": [], "ownerReferences": []}});
        prepare_create(def, Some("default"), &mut cm).unwrap();
        let meta = cm["metadata"].as_object().unwrap();
        for gone in ["labels", "annotations", "finalizers", "ownerReferences"] {
            assert!(!meta.contains_key(gone), "{gone} in {cm}");
        }
        let old = cm.clone();
        let mut new = cm.clone();
        new["metadata"]["labels"] = json!({});
        new["metadata"]["annotations"] = json!({"a": "b"});
        prepare_update(
            def,
            Some("default"),
            "c",
            &old,
            &mut new,
            UpdateMode::Object,
        )
        .unwrap();
        assert_eq!(new["metadata"].get("labels"), None);
        assert_eq!(new["metadata"]["annotations"], json!({"a": "b"}));
    }

    #[test]
    fn create_fills_server_owned_metadata() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        prepare_create(def, Some("default"), &mut d).unwrap();
        assert_eq!(d["metadata"]["namespace"], "default");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        let mut changed = d.clone();
        changed["spec"]["replicas"] = json!(3);
        changed["status"] = json!({"replicas": 99});
        prepare_update(
            def,
            Some("default"),
            "web",
            &d,
            &mut changed,
            UpdateMode::Object,
        )
        .unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(changed["status"], json!({}));
    }

    #[test]
    fn orphan_and_foreground_finalizers_exclude_each_other() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let mut both = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "finalizers": ["orphan", "foregroundDeletion"]}});
        assert_eq!(
            prepare_create(def, Some("default"), &mut both)
                .unwrap_err()
                .to_string(),
            "ConfigMap \"x\" is invalid: metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set"
        );
        let mut one = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "finalizers": ["orphan"]}});
        assert!(prepare_create(def, Some("default"), &mut one).is_ok());
    }

    #[test]
    fn create_rejects_bad_input() {
        let def = lookup("", "v1", "configmaps").unwrap();
        let mut bad_name =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
        assert_eq!(
            prepare_create(def, Some("default"), &mut bad_name)
                .unwrap_err()
                .code(),
            422
        );
        let mut wrong_kind =
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
        assert_eq!(
            prepare_create(def, Some("default"), &mut wrong_kind)
                .unwrap_err()
                .code(),
            400
        );
        let mut other_ns = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a"}});
        assert_eq!(
            prepare_create(def, Some("b"), &mut other_ns)
                .unwrap_err()
                .code(),
            400
        );
    }
}

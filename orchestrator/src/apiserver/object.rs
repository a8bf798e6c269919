//! What the server does to an object's body on the way into storage: type checks, name rules,
//! server-owned metadata (uid, creationTimestamp, generation, resourceVersion), per-kind defaults
//! (a subset of Kubernetes' `SetDefaults_*`) and the few validations of required fields.
//!
//! Invariant: stored values never carry metadata.resourceVersion — it is the key's etcd
//! mod_revision and is injected on every read (`decode`), as kube-apiserver does.

use serde_json::{json, Map, Value};

use super::clock;
use super::names;
use super::resources::ResourceDef;
use super::status::{ApiError, Cause};
use super::storage::Versioned;

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

fn check_string_map(
    def: &ResourceDef,
    obj: &Value,
    name: &str,
    field: &str,
) -> Result<(), ApiError> {
    match obj.pointer(&format!("/metadata/{field}")) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(m)) if m.values().all(Value::is_string) => Ok(()),
        Some(_) => Err(ApiError::invalid(
            def.kind,
            name,
            &format!("metadata.{field}"),
            "FieldValueInvalid",
            "must be a map of string to string".into(),
        )),
    }
}

/// Fills server-owned metadata and defaults on a new object; returns its name.
/// `namespace` is the request's (None for cluster-scoped kinds).
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
                    def.kind,
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
    if def.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    validate(def, &name, obj)?;
    if def.has_status {
        obj["status"] = initial_status(def);
    }
    set_defaults(def, obj);
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

/// Name rules plus the required fields Kubernetes' validation checks for the kinds served.
fn validate(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut causes: Vec<Cause> = names::validate(def.name_rule, name)
        .into_iter()
        .map(|m| Cause {
            reason: "FieldValueInvalid",
            field: "metadata.name".into(),
            message: format!("Invalid value: {name:?}: {m}"),
        })
        .collect();
    for field in ["labels", "annotations"] {
        if let Err(ApiError::Invalid { causes: c, .. }) = check_string_map(def, obj, name, field) {
            causes.extend(c);
        }
    }
    let required = |causes: &mut Vec<Cause>, field: &str| {
        causes.push(Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message: "Required value".into(),
        })
    };
    let containers_ok = |ptr: &str, field: &str, causes: &mut Vec<Cause>| match obj
        .pointer(ptr)
        .and_then(Value::as_array)
    {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                if c.get("name")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    required(causes, &format!("{field}[{i}].name"));
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    required(causes, &format!("{field}[{i}].image"));
                }
            }
        }
        _ => required(causes, field),
    };
    match def.kind {
        "Pod" => containers_ok("/spec/containers", "spec.containers", &mut causes),
        "Deployment" => {
            containers_ok(
                "/spec/template/spec/containers",
                "spec.template.spec.containers",
                &mut causes,
            );
            let selector = obj
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object);
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .and_then(Value::as_object);
            match selector {
                None => required(&mut causes, "spec.selector"),
                Some(sel) => {
                    if !sel
                        .iter()
                        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
                    {
                        causes.push(Cause {
                            reason: "FieldValueInvalid",
                            field: "spec.template.metadata.labels".into(),
                            message: "Invalid value: `selector` does not match template `labels`"
                                .into(),
                        });
                    }
                }
            }
        }
        "ConfigMap" | "Secret" => {
            for field in ["data", "stringData"] {
                if let Some(v) = obj.get(field) {
                    if !v.is_null()
                        && !v
                            .as_object()
                            .is_some_and(|m| m.values().all(Value::is_string))
                    {
                        return Err(ApiError::BadRequest(format!(
                            "{field}: must be a map of string to string"
                        )));
                    }
                }
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            kind: def.kind.into(),
            name: name.into(),
            causes,
        })
    }
}

fn initial_status(def: &ResourceDef) -> Value {
    match def.kind {
        "Namespace" => json!({"phase": "Active"}),
        "Pod" => json!({"phase": "Pending", "qosClass": "BestEffort"}),
        "Service" => json!({"loadBalancer": {}}),
        _ => json!({}),
    }
}

fn default_field(obj: &mut Value, ptr: &str, value: Value) {
    let (parent, field) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    let mut cur = obj;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        if !cur.get(part).is_some_and(Value::is_object) {
            cur[part] = json!({});
        }
        cur = &mut cur[part];
    }
    if cur.get(field).is_none_or(Value::is_null) {
        cur[field] = value;
    }
}

fn default_pod_spec(spec: &mut Value) {
    default_field(spec, "/restartPolicy", json!("Always"));
    default_field(spec, "/terminationGracePeriodSeconds", json!(30));
    default_field(spec, "/dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "/schedulerName", json!("default-scheduler"));
    default_field(spec, "/securityContext", json!({}));
    default_field(spec, "/enableServiceLinks", json!(true));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c.get("image").and_then(Value::as_str).unwrap_or("");
                let tag = image
                    .rsplit('/')
                    .next()
                    .and_then(|last| last.split_once(':'))
                    .map(|(_, t)| t);
                let policy = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
                    "IfNotPresent"
                } else {
                    "Always"
                };
                default_field(c, "/imagePullPolicy", json!(policy));
                default_field(c, "/terminationMessagePath", json!("/dev/termination-log"));
                default_field(c, "/terminationMessagePolicy", json!("File"));
                default_field(c, "/resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        default_field(p, "/protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Kubernetes' defaults for the fields clients commonly leave out (`SetDefaults_*`).
pub fn set_defaults(def: &ResourceDef, obj: &mut Value) {
    match def.kind {
        "Namespace" => default_field(obj, "/spec/finalizers", json!(["kubernetes"])),
        "Secret" => default_field(obj, "/type", json!("Opaque")),
        "Pod" if obj.get("spec").is_some_and(Value::is_object) => {
            default_pod_spec(&mut obj["spec"]);
        }
        "Service" => {
            default_field(obj, "/spec/type", json!("ClusterIP"));
            default_field(obj, "/spec/sessionAffinity", json!("None"));
            if let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) {
                for p in ports {
                    default_field(p, "/protocol", json!("TCP"));
                    // A zero or empty targetPort means unset (Go clients write the zero
                    // IntOrString as `0`), as in Kubernetes' SetDefaults_Service.
                    if let Some(port) = p.as_object_mut() {
                        if matches!(port.get("targetPort"), Some(t) if *t == json!(0) || *t == json!(""))
                        {
                            port.remove("targetPort");
                        }
                    }
                    if let Some(port) = p.get("port").cloned() {
                        default_field(p, "/targetPort", port);
                    }
                }
            }
        }
        "Deployment" => {
            default_field(obj, "/spec/replicas", json!(1));
            default_field(obj, "/spec/revisionHistoryLimit", json!(10));
            default_field(obj, "/spec/progressDeadlineSeconds", json!(600));
            default_field(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                default_field(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                default_field(
                    obj,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    json!("25%"),
                );
            }
            if let Some(spec) = obj.pointer_mut("/spec/template/spec") {
                default_pod_spec(spec);
            }
        }
        _ => {}
    }
}

/// Carries server-owned state from the stored object `old` into the replacement `new`
/// (a PUT body, or the result of a patch). `status_only` is a write to the `/status`
/// subresource: only status changes; otherwise status changes are ignored for kinds that have
/// the subresource.
pub fn prepare_update(
    def: &ResourceDef,
    namespace: Option<&str>,
    name: &str,
    old: &Value,
    new: &mut Value,
    status_only: bool,
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
    if status_only {
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
    if def.has_status {
        new["status"] = old.get("status").cloned().unwrap_or(json!({}));
    }
    set_defaults(def, new);
    validate(def, name, new)?;
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
        prepare_update(def, Some("default"), "web", &d, &mut changed, false).unwrap();
        assert_eq!(changed["metadata"]["generation"], 2);
        assert_eq!(changed["status"], json!({}));
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

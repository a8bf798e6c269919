//! The three PATCH formats Kubernetes accepts on JSON objects:
//! - JSON patch (RFC 6902): add/remove/replace/move/copy/test with JSON pointers;
//! - JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, arrays replace;
//! - strategic merge patch: merge patch plus Kubernetes' per-field list semantics — lists of
//!   objects with a merge key (containers by `name`, ports by `containerPort`, ...) merge element
//!   by element, some lists of scalars (finalizers) union — and the directives kubectl emits
//!   (`$patch: replace|delete|merge`, `$setElementOrder/<field>`, `$deleteFromPrimitiveList/<field>`,
//!   `$retainKeys`).
//!
//! Strategic merge keys and strategies come from the kind's OpenAPI schema
//! (`x-kubernetes-patch-merge-key`, `x-kubernetes-patch-strategy`), exactly the Go struct tags
//! Kubernetes merges by. Where no schema types a field (a patch applied without a schema, a
//! field below a RawExtension), a table keyed by field name stands in (see [`merge_key`]).

use serde_json::{Map, Value};

use super::field_validation::{field_schema, item_schema};
use super::status::ApiError;

/// The schema of the value being merged, when one is known.
type Schema = Option<&'static Value>;

/// The patch formats, by request Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Result<PatchKind, ApiError> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            _ => Err(ApiError::UnsupportedMediaType(
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
                    .into(),
            )),
        }
    }
}

/// Applies `patch` (raw body) of `kind` to `doc`, an object with `schema` (which decides how a
/// strategic merge patch merges lists).
pub fn apply(
    kind: PatchKind,
    doc: &Value,
    patch: &[u8],
    schema: Schema,
) -> Result<Value, ApiError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?;
    match kind {
        PatchKind::Json => json_patch(doc, &patch),
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            Ok(merge_patch(doc, &patch))
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err(ApiError::BadRequest(
                    "a strategic merge patch must be a JSON object".into(),
                ));
            }
            strategic_merge_with(doc, &patch, schema)
        }
    }
}

/// RFC 7386.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Some(p) = patch.as_object() else {
        return patch.clone();
    };
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in p {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

// ---------------------------------------------------------------------------------------------
// RFC 6902
// ---------------------------------------------------------------------------------------------

fn unprocessable(msg: String) -> ApiError {
    ApiError::Unprocessable(msg)
}

/// RFC 6901 pointer to reference tokens.
fn tokens(ptr: &str) -> Result<Vec<String>, ApiError> {
    if ptr.is_empty() {
        return Ok(vec![]);
    }
    let rest = ptr
        .strip_prefix('/')
        .ok_or_else(|| ApiError::BadRequest(format!("invalid JSON pointer {ptr:?}")))?;
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn array_index(tok: &str, len: usize, allow_end: bool) -> Result<usize, ApiError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    let ok = !tok.is_empty()
        && tok.bytes().all(|b| b.is_ascii_digit())
        && (tok == "0" || !tok.starts_with('0'));
    let i: usize = if ok {
        tok.parse().unwrap_or(usize::MAX)
    } else {
        usize::MAX
    };
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i == usize::MAX || i > max || (!allow_end && len == 0) {
        return Err(unprocessable(format!("array index {tok:?} out of bounds")));
    }
    Ok(i)
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m
                .get_mut(t)
                .ok_or_else(|| unprocessable(format!("path component {t:?} does not exist")))?,
            Value::Array(a) => {
                let i = array_index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => {
                return Err(unprocessable(format!(
                    "path component {t:?} is not a container"
                )))
            }
        };
    }
    Ok(cur)
}

fn get_at(doc: &Value, ptr: &str) -> Result<Value, ApiError> {
    doc.pointer(ptr)
        .cloned()
        .ok_or_else(|| unprocessable(format!("path {ptr:?} does not exist")))
}

fn add_at(doc: &mut Value, ptr: &str, value: Value) -> Result<(), ApiError> {
    let toks = tokens(ptr)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = array_index(last, a.len(), true)?;
            a.insert(i, value);
        }
        _ => {
            return Err(unprocessable(format!(
                "cannot add at {ptr:?}: parent is not a container"
            )))
        }
    }
    Ok(())
}

fn remove_at(doc: &mut Value, ptr: &str) -> Result<Value, ApiError> {
    let toks = tokens(ptr)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(unprocessable("cannot remove the whole document".into()));
    };
    match parent_mut(doc, parents)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| unprocessable(format!("cannot remove {ptr:?}: it does not exist"))),
        Value::Array(a) => {
            let i = array_index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(unprocessable(format!(
            "cannot remove {ptr:?}: parent is not a container"
        ))),
    }
}

/// RFC 6902. Operations apply in order; the first failure aborts the whole patch.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    let ops = patch.as_array().ok_or_else(|| {
        ApiError::BadRequest("a JSON patch must be an array of operations".into())
    })?;
    let mut doc = doc.clone();
    for op in ops {
        let field = |name: &str| {
            op.get(name).and_then(Value::as_str).ok_or_else(|| {
                ApiError::BadRequest(format!("JSON patch operation {op} is missing {name:?}"))
            })
        };
        let path = field("path")?;
        let value = || {
            op.get("value").cloned().ok_or_else(|| {
                ApiError::BadRequest(format!("JSON patch operation {op} is missing \"value\""))
            })
        };
        match field("op")? {
            "add" => add_at(&mut doc, path, value()?)?,
            "remove" => {
                remove_at(&mut doc, path)?;
            }
            "replace" => {
                remove_at(&mut doc, path)?;
                add_at(&mut doc, path, value()?)?;
            }
            "move" => {
                let from = field("from")?;
                let v = remove_at(&mut doc, from)?;
                add_at(&mut doc, path, v)?;
            }
            "copy" => {
                let v = get_at(&doc, field("from")?)?;
                add_at(&mut doc, path, v)?;
            }
            "test" => {
                if get_at(&doc, path)? != value()? {
                    return Err(unprocessable(format!("testing value {path} failed")));
                }
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown JSON patch operation {other:?}"
                )))
            }
        }
    }
    Ok(doc)
}

// ---------------------------------------------------------------------------------------------
// Strategic merge patch
// ---------------------------------------------------------------------------------------------

/// How a list field merges: by a key inside each element, or as a set of scalars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListMerge {
    Key(&'static str),
    ScalarSet,
    Replace,
}

/// Kubernetes' `patchMergeKey`/`patchStrategy` tags for the list fields of built-in kinds,
/// by field name. `ports` is ambiguous (container ports merge on containerPort, Service ports on
/// port); the elements decide.
fn merge_key(field: &str, sample: Option<&Value>) -> ListMerge {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims"
        | "containerStatuses"
        | "initContainerStatuses"
        | "ephemeralContainerStatuses" => ListMerge::Key("name"),
        "volumeMounts" => ListMerge::Key("mountPath"),
        "volumeDevices" => ListMerge::Key("devicePath"),
        "hostAliases" => ListMerge::Key("ip"),
        "conditions" | "addresses" => ListMerge::Key("type"),
        "ownerReferences" => ListMerge::Key("uid"),
        "topologySpreadConstraints" => ListMerge::Key("topologyKey"),
        "taints" => ListMerge::Key("key"),
        "finalizers" => ListMerge::ScalarSet,
        "ports" => {
            if sample.and_then(|s| s.get("containerPort")).is_some() {
                ListMerge::Key("containerPort")
            } else {
                ListMerge::Key("port")
            }
        }
        _ => ListMerge::Replace,
    }
}

fn bad_smp(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

/// Applies a strategic merge patch to an object (both JSON objects) without a schema: list
/// merging follows the field-name table.
pub fn strategic_merge(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    strategic_merge_with(original, patch, None)
}

/// Applies a strategic merge patch to an object with `schema`.
pub fn strategic_merge_with(
    original: &Value,
    patch: &Value,
    schema: Schema,
) -> Result<Value, ApiError> {
    let orig = original.as_object().cloned().unwrap_or_default();
    let p = patch.as_object().cloned().unwrap_or_default();
    Ok(Value::Object(merge_map(orig, p, schema)?))
}

/// How the list field with `schema` merges, from its patch tags.
fn list_merge_from_schema(schema: &'static Value) -> ListMerge {
    let strategy = schema
        .get("x-kubernetes-patch-strategy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !strategy.split(',').any(|s| s == "merge") {
        return ListMerge::Replace;
    }
    match schema
        .get("x-kubernetes-patch-merge-key")
        .and_then(Value::as_str)
    {
        Some(key) => ListMerge::Key(key),
        None => ListMerge::ScalarSet,
    }
}

fn list_merge(field: &str, schema: Schema, sample: Option<&Value>) -> ListMerge {
    match schema {
        Some(s) => list_merge_from_schema(s),
        None => merge_key(field, sample),
    }
}

fn merge_map(
    mut orig: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Schema,
) -> Result<Map<String, Value>, ApiError> {
    match patch.remove("$patch") {
        Some(Value::String(d)) if d == "replace" => return Ok(patch),
        Some(Value::String(d)) if d == "delete" => return Ok(Map::new()),
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => return Err(bad_smp(format!("unknown patch directive {other}"))),
        None => {}
    }
    // `$retainKeys`: keys of the original not listed are dropped (used with `replace` strategies).
    if let Some(retain) = patch.remove("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| bad_smp("$retainKeys must be a list"))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    // Directives on sibling lists are applied after the lists themselves merged.
    let mut orders = Vec::new();
    let mut deletes = Vec::new();
    for key in patch.keys().cloned().collect::<Vec<_>>() {
        if let Some(field) = key.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), patch.remove(&key).unwrap_or(Value::Null)));
        } else if let Some(field) = key.strip_prefix("$deleteFromPrimitiveList/") {
            deletes.push((field.to_string(), patch.remove(&key).unwrap_or(Value::Null)));
        }
    }
    let field = |k: &str| schema.and_then(|s| field_schema(s, k));
    for (k, pv) in patch {
        if pv.is_null() {
            orig.remove(&k);
            continue;
        }
        let fs = field(&k);
        let merged = match (orig.remove(&k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(o, p, fs)?),
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(&k, o, p, fs)?),
            (None, Value::Object(p)) => Value::Object(merge_map(Map::new(), p, fs)?),
            (None, Value::Array(p)) => Value::Array(merge_list(&k, Vec::new(), p, fs)?),
            (_, p) => p,
        };
        orig.insert(k, merged);
    }
    for (field, vals) in deletes {
        let vals = vals.as_array().cloned().unwrap_or_default();
        if let Some(Value::Array(list)) = orig.get_mut(&field) {
            list.retain(|v| !vals.contains(v));
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(list)), Some(order)) = (orig.get_mut(&field), order.as_array()) {
            reorder(
                &field,
                list,
                order,
                schema.and_then(|s| field_schema(s, &field)),
            );
        }
    }
    Ok(orig)
}

fn merge_list(
    field: &str,
    orig: Vec<Value>,
    patch: Vec<Value>,
    schema: Schema,
) -> Result<Vec<Value>, ApiError> {
    let element = schema.and_then(item_schema);
    let sample = patch.iter().chain(orig.iter()).find(|v| v.is_object());
    // A `{"$patch": "replace"}` element replaces the whole list with the other elements.
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .into_iter()
            .filter(|e| e.get("$patch").is_none())
            .collect());
    }
    match list_merge(field, schema, sample) {
        ListMerge::Replace => Ok(patch),
        ListMerge::ScalarSet => {
            let mut out = orig;
            for v in patch {
                if !out.contains(&v) {
                    out.push(v);
                }
            }
            Ok(out)
        }
        ListMerge::Key(key) => {
            let mut out = orig;
            for pe in patch {
                let Value::Object(mut pm) = pe else {
                    return Err(bad_smp(format!(
                        "list {field:?} merges on {key:?}: elements must be objects"
                    )));
                };
                let id = pm.get(key).cloned().ok_or_else(|| {
                    bad_smp(format!(
                        "map: {pm:?} does not contain declared merge key: {key}"
                    ))
                })?;
                let pos = out.iter().position(|e| e.get(key) == Some(&id));
                let directive = pm.get("$patch").and_then(Value::as_str).map(str::to_string);
                match (directive.as_deref(), pos) {
                    (Some("delete"), Some(i)) => {
                        out.remove(i);
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        let cur = match out[i].take() {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        out[i] = Value::Object(merge_map(cur, pm, element)?);
                    }
                    (_, None) => {
                        pm.remove("$patch");
                        out.push(Value::Object(merge_map(Map::new(), pm, element)?));
                    }
                }
            }
            Ok(out)
        }
    }
}

/// `$setElementOrder`: the patch's order first for listed elements, others keep their place
/// after them.
fn reorder(field: &str, list: &mut Vec<Value>, order: &[Value], schema: Schema) {
    let strategy = list_merge(field, schema, list.iter().find(|v| v.is_object()));
    let key_of = |v: &Value| -> Value {
        match strategy {
            ListMerge::Key(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let ids: Vec<Value> = order.iter().map(key_of).collect();
    let mut ordered = Vec::with_capacity(list.len());
    for id in &ids {
        if let Some(i) = list.iter().position(|e| &key_of(e) == id) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_rfc7386_examples() {
        let doc = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        let patched = merge_patch(&doc, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(patched, json!({"a": "z", "c": {"d": "e"}}));
        assert_eq!(
            merge_patch(&json!({"a": [1, 2]}), &json!({"a": [3]})),
            json!({"a": [3]})
        );
    }

    #[test]
    fn json_patch_operations() {
        let doc = json!({"metadata": {"labels": {"a": "1"}}, "list": [1, 2, 3]});
        let patch = json!([
            {"op": "add", "path": "/metadata/labels/b~1c", "value": "2"},
            {"op": "remove", "path": "/list/0"},
            {"op": "add", "path": "/list/-", "value": 4},
            {"op": "replace", "path": "/metadata/labels/a", "value": "x"},
            {"op": "copy", "from": "/list/0", "path": "/first"},
            {"op": "move", "from": "/first", "path": "/moved"},
            {"op": "test", "path": "/moved", "value": 2}
        ]);
        let out = json_patch(&doc, &patch).unwrap();
        assert_eq!(
            out,
            json!({"metadata": {"labels": {"a": "x", "b/c": "2"}}, "list": [2, 3, 4], "moved": 2})
        );
        let failing = json!([{"op": "test", "path": "/list/0", "value": 9}]);
        assert_eq!(json_patch(&doc, &failing).unwrap_err().code(), 422);
        let missing = json!([{"op": "replace", "path": "/nope", "value": 9}]);
        assert_eq!(json_patch(&doc, &missing).unwrap_err().code(), 422);
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let pod = json!({"spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}
        ], "tolerations": [{"key": "k"}]}, "metadata": {"finalizers": ["f1"]}});
        let patch = json!({
            "spec": {
                "$setElementOrder/containers": [{"name": "b"}, {"name": "a"}, {"name": "c"}],
                "containers": [
                    {"name": "a", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                    {"name": "b", "$patch": "delete"},
                    {"name": "c", "image": "c:1"}
                ],
                "tolerations": [{"key": "other"}]
            },
            "metadata": {"finalizers": ["f2"]}
        });
        let out = strategic_merge(&pod, &patch).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [
            {"name": "a", "image": "a:2", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
            {"name": "c", "image": "c:1"}
        ], "tolerations": [{"key": "other"}]}, "metadata": {"finalizers": ["f1", "f2"]}})
        );
    }

    #[test]
    fn strategic_merge_follows_the_schema_patch_tags() {
        use crate::apiserver::field_validation::schema_of;
        // ServiceAccount secrets merge by name (the field-name table would replace them); its
        // imagePullSecrets are atomic (unlike a PodSpec's, which merge by name).
        let sa = json!({"secrets": [{"name": "a"}], "imagePullSecrets": [{"name": "p"}]});
        let patch = json!({"secrets": [{"name": "b"}], "imagePullSecrets": [{"name": "q"}]});
        let out = strategic_merge_with(&sa, &patch, schema_of("", "v1", "ServiceAccount")).unwrap();
        assert_eq!(out["secrets"], json!([{"name": "a"}, {"name": "b"}]));
        assert_eq!(out["imagePullSecrets"], json!([{"name": "q"}]));
        // Pod status container statuses are atomic in Kubernetes: replaced, not merged.
        let pod = json!({"status": {"containerStatuses": [{"name": "a", "ready": true}],
            "conditions": [{"type": "Ready", "status": "False"}]}});
        let patch = json!({"status": {"containerStatuses": [{"name": "b", "ready": false}],
            "conditions": [{"type": "PodScheduled", "status": "True"}]}});
        let out = strategic_merge_with(&pod, &patch, schema_of("", "v1", "Pod")).unwrap();
        assert_eq!(
            out["status"]["containerStatuses"],
            json!([{"name": "b", "ready": false}])
        );
        assert_eq!(out["status"]["conditions"].as_array().unwrap().len(), 2);
        // Nested lists: containers by name, then their ports by containerPort, their env by name.
        let dep = json!({"spec": {"template": {"spec": {"containers": [{"name": "web",
            "ports": [{"containerPort": 80}], "env": [{"name": "A", "value": "1"}], "args": ["x"]}]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web",
            "ports": [{"containerPort": 443}], "env": [{"name": "B", "value": "2"}], "args": ["y"]}]}}}});
        let out =
            strategic_merge_with(&dep, &patch, schema_of("apps", "v1", "Deployment")).unwrap();
        let c = &out["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["ports"],
            json!([{"containerPort": 80}, {"containerPort": 443}])
        );
        assert_eq!(c["env"].as_array().unwrap().len(), 2);
        assert_eq!(c["args"], json!(["y"]));
    }

    #[test]
    fn strategic_merge_directives() {
        let doc = json!({"spec": {"selector": {"a": "1", "b": "2"}, "finalizers": ["x", "y"]}});
        let replace = json!({"spec": {"selector": {"$patch": "replace", "c": "3"}}});
        assert_eq!(
            strategic_merge(&doc, &replace).unwrap()["spec"]["selector"],
            json!({"c": "3"})
        );
        let del = json!({"spec": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        assert_eq!(
            strategic_merge(&doc, &del).unwrap()["spec"]["finalizers"],
            json!(["y"])
        );
        let retain = json!({"spec": {"$retainKeys": ["finalizers"], "selector": null}});
        assert_eq!(
            strategic_merge(&doc, &retain).unwrap()["spec"],
            json!({"finalizers": ["x", "y"]})
        );
    }
}

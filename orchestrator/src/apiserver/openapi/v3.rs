//! OpenAPI v3 documents, one per served group-version, as kube-apiserver publishes them under
//! `/openapi/v3/api/v1` and `/openapi/v3/apis/<group>/<version>`: the REST paths of every served
//! resource with their operations (operationId, `x-kubernetes-action`,
//! `x-kubernetes-group-version-kind`, query parameters — kubectl looks for `fieldValidation` on
//! the PATCH operations of a kind before it relies on server-side field validation) and
//! `components.schemas` named as Kubernetes names them (`io.k8s.api.core.v1.Pod`).
//!
//! Schemas come from the swagger 2.0 definitions, converted as kube-openapi converts them:
//! references move to `#/components/schemas/`, a reference with siblings (a field's description)
//! becomes `allOf: [{$ref}]` beside them, and IntOrString / Quantity become `oneOf`s.

use serde_json::{json, Map, Value};

use super::definitions::{Definitions, V2_REF};
use crate::apiserver::resources::{self, ResourceDef};

const V3_REF: &str = "#/components/schemas/";
const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.";

/// The discovery key of a group-version: `api/v1` or `apis/apps/v1`.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// A swagger 2.0 schema in OpenAPI v3 form.
pub fn schema_v3(name: Option<&str>, schema: &Value) -> Value {
    match name {
        Some(QUANTITY) => {
            return json!({
                "description": schema["description"],
                "oneOf": [{"type": "string"}, {"type": "number"}],
            })
        }
        Some(INT_OR_STRING) => {
            return json!({
                "description": schema["description"],
                "format": "int-or-string",
                "oneOf": [{"type": "integer"}, {"type": "string"}],
            })
        }
        _ => {}
    }
    convert(schema)
}

fn convert(schema: &Value) -> Value {
    let Some(m) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    let mut reference = None;
    for (k, v) in m {
        let v = match k.as_str() {
            "$ref" => {
                let r = v.as_str().unwrap_or("");
                reference = Some(Value::String(r.replacen(V2_REF, V3_REF, 1)));
                continue;
            }
            "properties" => Value::Object(
                v.as_object()
                    .into_iter()
                    .flatten()
                    .map(|(p, s)| (p.clone(), convert(s)))
                    .collect(),
            ),
            "items" | "additionalProperties" => convert(v),
            _ => v.clone(),
        };
        out.insert(k.clone(), v);
    }
    match reference {
        None => Value::Object(out),
        Some(r) if out.is_empty() => json!({ "$ref": r }),
        Some(r) => {
            out.insert("allOf".into(), json!([{ "$ref": r }]));
            Value::Object(out)
        }
    }
}

/// `rbac.authorization.k8s.io` -> `RbacAuthorization`, "" -> `Core`: the group part of
/// Kubernetes' operation ids.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    group
        .trim_end_matches(".k8s.io")
        .split('.')
        .map(capitalize)
        .collect()
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `rbac.authorization.k8s.io` -> `rbacAuthorization`: the tag prefix.
fn group_tag(group: &str) -> String {
    let camel = group_camel(group);
    let mut c = camel.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => camel,
    }
}

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": kind, "uniqueItems": true},
    })
}

fn path_param(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string", "uniqueItems": true},
    })
}

fn pretty() -> Value {
    query(
        "pretty",
        "string",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
    )
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
    )
}

fn list_params() -> Vec<Value> {
    vec![
        query("allowWatchBookmarks", "boolean", "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion."),
        query("continue", "string", "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue)."),
        query("fieldSelector", "string", "A selector to restrict the list of returned objects by their fields. Defaults to everything."),
        query("labelSelector", "string", "A selector to restrict the list of returned objects by their labels. Defaults to everything."),
        query("limit", "integer", "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results."),
        query("resourceVersion", "string", "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details."),
        query("resourceVersionMatch", "string", "resourceVersionMatch determines how resourceVersion is applied to list calls. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details."),
        query("sendInitialEvents", "boolean", "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection."),
        query("timeoutSeconds", "integer", "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity."),
        query("watch", "boolean", "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion."),
    ]
}

fn delete_params() -> Vec<Value> {
    vec![
        dry_run(),
        query("gracePeriodSeconds", "integer", "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately."),
        query("orphanDependents", "boolean", "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both."),
        query("propagationPolicy", "string", "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground."),
    ]
}

fn content(schema: &str, types: &[&str]) -> Value {
    let mut c = Map::new();
    for t in types {
        c.insert(
            t.to_string(),
            json!({"schema": {"$ref": format!("{V3_REF}{schema}")}}),
        );
    }
    Value::Object(c)
}

const RESPONSE_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

fn responses(codes: &[(&str, &str)], schema: &str) -> Value {
    let mut r = Map::new();
    for (code, description) in codes {
        r.insert(
            code.to_string(),
            json!({"description": description, "content": content(schema, RESPONSE_TYPES)}),
        );
    }
    r.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(r)
}

/// One operation.
struct Op<'a> {
    verb: &'a str,
    action: &'a str,
    description: String,
    parameters: Vec<Value>,
    body: Option<Value>,
    responses: Value,
    gvk: Value,
}

impl Op<'_> {
    fn to_json(&self, id: String, tag: &str) -> Value {
        let mut op = json!({
            "tags": [tag],
            "description": self.description,
            "operationId": id,
            "responses": self.responses,
            "x-kubernetes-action": self.action,
            "x-kubernetes-group-version-kind": self.gvk,
        });
        if !self.parameters.is_empty() {
            op["parameters"] = Value::Array(self.parameters.clone());
        }
        if let Some(b) = &self.body {
            op["requestBody"] = b.clone();
        }
        op
    }
}

fn body(schema: &str) -> Value {
    json!({"content": {"*/*": {"schema": {"$ref": format!("{V3_REF}{schema}")}}}, "required": true})
}

fn patch_body() -> Value {
    let mut c = Map::new();
    for t in [
        "application/apply-patch+yaml",
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ] {
        c.insert(
            t.into(),
            json!({"schema": {"$ref": format!("{V3_REF}{META}Patch")}}),
        );
    }
    json!({"content": c, "required": true})
}

/// The paths of one resource, added to `paths`.
fn resource_paths(
    defs: &Definitions,
    r: &ResourceDef,
    paths: &mut Map<String, Value>,
    roots: &mut Vec<String>,
) {
    let Some(kind_schema) = defs.name_of(r.group, r.version, r.kind) else {
        return;
    };
    let list_kind = format!("{}List", r.kind);
    let list_schema = defs
        .name_of(r.group, r.version, &list_kind)
        .unwrap_or(kind_schema)
        .to_string();
    roots.push(kind_schema.to_string());
    roots.push(list_schema.clone());
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let prefix = format!("{}{}", group_camel(r.group), capitalize(r.version));
    let tag = format!("{}_{}", group_tag(r.group), r.version);
    let kind = r.kind;
    let plural = r.plural;
    let status = format!("{META}Status");
    let delete_options = format!("{META}DeleteOptions");
    let name_param = |what: &str| path_param("name", &format!("name of the {what}"));
    let ns_param = || {
        path_param(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        )
    };
    let path_params = |extra: Option<Value>| {
        let mut p: Vec<Value> = extra.into_iter().collect();
        if r.namespaced {
            p.push(ns_param());
        }
        p.push(pretty());
        Value::Array(p)
    };
    let write_params = || vec![dry_run(), field_manager(), field_validation()];
    let mut patch_params = write_params();
    patch_params.push(query("force", "boolean", "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests."));

    let mut add = |path: String, ops: Vec<(String, Op)>, params: Value| {
        let mut item = Map::new();
        for (id, op) in ops {
            item.insert(op.verb.to_string(), op.to_json(id, &tag));
        }
        item.insert("parameters".into(), params);
        paths.insert(path, Value::Object(item));
    };

    // The collection: list, create, deletecollection.
    let mut ops = vec![
        (
            format!("list{prefix}{scope}{kind}"),
            Op {
                verb: "get",
                action: "list",
                description: format!("list or watch objects of kind {kind}"),
                parameters: list_params(),
                body: None,
                responses: responses(&[("200", "OK")], &list_schema),
                gvk: gvk.clone(),
            },
        ),
        (
            format!("create{prefix}{scope}{kind}"),
            Op {
                verb: "post",
                action: "post",
                description: format!("create a {kind}"),
                parameters: write_params(),
                body: Some(body(kind_schema)),
                responses: responses(
                    &[("200", "OK"), ("201", "Created"), ("202", "Accepted")],
                    kind_schema,
                ),
                gvk: gvk.clone(),
            },
        ),
    ];
    if r.deletes_collections() {
        let mut params = delete_params();
        params.extend(list_params());
        ops.push((
            format!("delete{prefix}Collection{scope}{kind}"),
            Op {
                verb: "delete",
                action: "deletecollection",
                description: format!("delete collection of {kind}"),
                parameters: params,
                body: Some(body(&delete_options)),
                responses: responses(&[("200", "OK")], &status),
                gvk: gvk.clone(),
            },
        ));
    }
    add(collection, ops, path_params(None));

    // The object: read, replace, patch, delete.
    let ops = vec![
        (
            format!("read{prefix}{scope}{kind}"),
            Op {
                verb: "get",
                action: "get",
                description: format!("read the specified {kind}"),
                parameters: vec![],
                body: None,
                responses: responses(&[("200", "OK")], kind_schema),
                gvk: gvk.clone(),
            },
        ),
        (
            format!("replace{prefix}{scope}{kind}"),
            Op {
                verb: "put",
                action: "put",
                description: format!("replace the specified {kind}"),
                parameters: write_params(),
                body: Some(body(kind_schema)),
                responses: responses(&[("200", "OK"), ("201", "Created")], kind_schema),
                gvk: gvk.clone(),
            },
        ),
        (
            format!("patch{prefix}{scope}{kind}"),
            Op {
                verb: "patch",
                action: "patch",
                description: format!("partially update the specified {kind}"),
                parameters: patch_params.clone(),
                body: Some(patch_body()),
                responses: responses(&[("200", "OK"), ("201", "Created")], kind_schema),
                gvk: gvk.clone(),
            },
        ),
        (
            format!("delete{prefix}{scope}{kind}"),
            Op {
                verb: "delete",
                action: "delete",
                description: format!("delete a {kind}"),
                parameters: delete_params(),
                body: Some(body(&delete_options)),
                responses: responses(&[("200", "OK"), ("202", "Accepted")], &status),
                gvk: gvk.clone(),
            },
        ),
    ];
    add(item.clone(), ops, path_params(Some(name_param(kind))));

    // Subresources read and written through the object.
    let mut sub = |name: &str, schema: &str, sub_gvk: Value, what: String| {
        let suffix = capitalize(name);
        let ops = vec![
            (
                format!("read{prefix}{scope}{kind}{suffix}"),
                Op {
                    verb: "get",
                    action: "get",
                    description: format!("read {what} of the specified {kind}"),
                    parameters: vec![],
                    body: None,
                    responses: responses(&[("200", "OK")], schema),
                    gvk: sub_gvk.clone(),
                },
            ),
            (
                format!("replace{prefix}{scope}{kind}{suffix}"),
                Op {
                    verb: "put",
                    action: "put",
                    description: format!("replace {what} of the specified {kind}"),
                    parameters: write_params(),
                    body: Some(body(schema)),
                    responses: responses(&[("200", "OK"), ("201", "Created")], schema),
                    gvk: sub_gvk.clone(),
                },
            ),
            (
                format!("patch{prefix}{scope}{kind}{suffix}"),
                Op {
                    verb: "patch",
                    action: "patch",
                    description: format!("partially update {what} of the specified {kind}"),
                    parameters: patch_params.clone(),
                    body: Some(patch_body()),
                    responses: responses(&[("200", "OK"), ("201", "Created")], schema),
                    gvk: sub_gvk,
                },
            ),
        ];
        add(
            format!("{item}/{name}"),
            ops,
            path_params(Some(name_param(kind))),
        );
    };
    if r.has_status {
        sub("status", kind_schema, gvk.clone(), "status".into());
    }
    if r.has_scale {
        let scale = "io.k8s.api.autoscaling.v1.Scale";
        roots.push(scale.into());
        let scale_gvk = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
        sub("scale", scale, scale_gvk, "scale".into());
    }
    if (r.group, r.kind) == ("", "Namespace") {
        let op = Op {
            verb: "put",
            action: "put",
            description: "replace finalize of the specified Namespace".into(),
            parameters: write_params(),
            body: Some(body(kind_schema)),
            responses: responses(&[("200", "OK"), ("201", "Created")], kind_schema),
            gvk: gvk.clone(),
        };
        add(
            format!("{item}/finalize"),
            vec![(format!("replace{prefix}NamespaceFinalize"), op)],
            path_params(Some(name_param(kind))),
        );
    }
    if r.namespaced {
        let op = Op {
            verb: "get",
            action: "list",
            description: format!("list or watch objects of kind {kind}"),
            parameters: list_params(),
            body: None,
            responses: responses(&[("200", "OK")], &list_schema),
            gvk,
        };
        add(
            format!("{base}/{plural}"),
            vec![(format!("list{prefix}{kind}ForAllNamespaces"), op)],
            Value::Array(vec![pretty()]),
        );
    }
}

/// The OpenAPI v3 document of one served group-version.
pub fn document(defs: &Definitions, group: &str, version: &str, info: &Value) -> Value {
    let mut paths = Map::new();
    let mut roots: Vec<String> = [
        "Status",
        "DeleteOptions",
        "WatchEvent",
        "Patch",
        "APIResourceList",
    ]
    .iter()
    .map(|k| format!("{META}{k}"))
    .collect();
    for r in resources::in_group_version(group, version) {
        resource_paths(defs, r, &mut paths, &mut roots);
    }
    let mut schemas = Map::new();
    for name in defs.closure(roots.iter().map(String::as_str)) {
        if let Some(s) = defs.get(&name) {
            schemas.insert(name.clone(), schema_v3(Some(&name), s));
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": info,
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::openapi::definitions::definitions;

    #[test]
    fn references_with_siblings_become_all_of() {
        let s = json!({"$ref": "#/definitions/a.B", "description": "d"});
        assert_eq!(
            convert(&s),
            json!({"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "d"})
        );
        let s = json!({"type": "array", "items": {"$ref": "#/definitions/a.B"}});
        assert_eq!(
            convert(&s)["items"],
            json!({"$ref": "#/components/schemas/a.B"})
        );
    }

    #[test]
    fn operation_ids_follow_kubernetes() {
        assert_eq!(
            group_camel("rbac.authorization.k8s.io"),
            "RbacAuthorization"
        );
        assert_eq!(group_camel(""), "Core");
        assert_eq!(group_tag("coordination.k8s.io"), "coordination");
    }

    #[test]
    fn apps_document_has_patch_operations_with_field_validation() {
        let doc = document(definitions(), "apps", "v1", &json!({}));
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        let params = patch["parameters"].as_array().unwrap();
        assert!(params
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        for name in [
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.apps.v1.DeploymentList",
            "io.k8s.api.core.v1.PodSpec",
            "io.k8s.api.autoscaling.v1.Scale",
            "io.k8s.apimachinery.pkg.apis.meta.v1.Status",
        ] {
            assert!(schemas.contains_key(name), "{name}");
        }
        assert_eq!(
            schemas[INT_OR_STRING]["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert!(doc["paths"]
            .as_object()
            .unwrap()
            .contains_key("/apis/apps/v1/deployments"));
    }
}

//! The REST verbs on resources: get, list, create, update, patch (watch is in `watch.rs`,
//! delete and deletecollection in `deletion.rs`), each a read or a compare-and-swap write
//! through [`Store`], and the `/scale` and `/finalize` subresources.
//!
//! Writes follow kube-apiserver's `GuaranteedUpdate`: read the object and its mod_revision,
//! compute the new object, write it with a Txn comparing that mod_revision. When the client
//! named a resourceVersion, a mismatch is a 409 Conflict; when it did not (patches, unconditional
//! PUTs), a lost race is retried on the fresh object.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use http::{header, HeaderMap, Method, Response};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::auth::escalation;
use super::deletion::{self, DeleteOptions};
use super::field_validation::{self as fv, Directive};
use super::http::{self as h, Body, BodyEncoding, Render};
use super::object::{self, meta_str, UpdateMode};
use super::patch::{self, PatchKind};
use super::query::{parse_resource_version, Query};
use super::resources::ResourceDef;
use super::route::Target;
use super::selector::{FieldSelector, LabelSelector, Selectors};
use super::status::{ApiError, Cause};
use super::storage::{prefix_end, Expect, Guard, StorageError, Write, WriteOp};
use super::table;
use super::{
    admission, binding, clock, conversion, names, pod_log, scale, service_ip, service_node_port,
    watch, ApiServer,
};

/// Attempts at a write whose read went stale before giving up with a Conflict.
pub const WRITE_RETRIES: usize = 8;

pub async fn handle(
    api: &ApiServer,
    method: &Method,
    t: Target,
    q: &Query,
    headers: &HeaderMap,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let render = h::negotiate(headers);
    // Requests to a version served by conversion work on the storage version's objects;
    // `view` is the version the client speaks, for bodies in and objects out.
    let view = t.def;
    if t.name.is_none() && *method == Method::GET && q.flag("watch") {
        return watch::serve(api, &t, q, render).await;
    }
    let t = Target {
        def: conversion::storage_def(t.def),
        ..t
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = match *method {
        Method::POST | Method::PUT => h::body_encoding(content_type)?,
        // DELETE bodies (DeleteOptions) may come in either encoding; others were always JSON.
        _ => h::body_encoding(content_type).unwrap_or(BodyEncoding::Json),
    };
    match (&t.name, t.subresource.as_deref()) {
        (None, _) => match *method {
            Method::GET => list(api, &t, view, q, render).await,
            Method::POST if t.def.namespaced && t.namespace.is_none() => {
                Err(ApiError::MethodNotAllowed)
            }
            Method::POST => create(api, &t, view, q, encoding, &h::read_body(body).await?).await,
            // deletecollection is served per namespace for namespaced kinds, as in Kubernetes.
            Method::DELETE
                if t.def.deletes_collections() && (t.namespace.is_some() || !t.def.namespaced) =>
            {
                let body = h::read_body(body).await?;
                let opts = DeleteOptions::parse(t.def, q, encoding, &body)?;
                let sel = selectors(t.def, q)?;
                let (items, revision) =
                    deletion::delete_collection(api, &t, q, &sel, &opts).await?;
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|o| conversion::to_version(view, o))
                    .collect();
                Ok(h::json(
                    200,
                    &json!({
                        "kind": format!("{}List", view.kind),
                        "apiVersion": view.api_version(),
                        "metadata": {"resourceVersion": revision.to_string()},
                        "items": items,
                    }),
                ))
            }
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(name), Some("binding")) if (t.def.group, t.def.kind) == ("", "Pod") => {
            match *method {
                Method::POST => {
                    let body = h::read_body(body).await?;
                    let status = binding::bind(api, &t, name, q, encoding, &body).await?;
                    Ok(h::json(201, &status))
                }
                _ => Err(ApiError::MethodNotAllowed),
            }
        }
        (Some(name), Some("log")) if (t.def.group, t.def.kind) == ("", "Pod") => match *method {
            Method::GET => pod_log::serve(api, &t, name, q).await,
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(name), Some("scale")) if t.def.has_scale => {
            scale_subresource(api, &t, name, method, q, content_type, encoding, body).await
        }
        (Some(name), Some("finalize")) if is_namespace(t.def) => match *method {
            Method::PUT => {
                let body = h::read_body(body).await?;
                update(
                    api,
                    &t,
                    view,
                    name,
                    q,
                    encoding,
                    &body,
                    UpdateMode::Finalize,
                )
                .await
            }
            _ => Err(ApiError::MethodNotAllowed),
        },
        (Some(name), sub) => {
            let mode = match sub {
                None => UpdateMode::Object,
                Some("status") if t.def.has_status => UpdateMode::Status,
                Some(_) => return Err(ApiError::NoRoute),
            };
            let status_only = mode == UpdateMode::Status;
            match *method {
                Method::GET => get(api, &t, view, name, q, render).await,
                Method::PUT => {
                    let body = h::read_body(body).await?;
                    update(api, &t, view, name, q, encoding, &body, mode).await
                }
                Method::PATCH => {
                    let kind = patch_kind(content_type)?;
                    let body = h::read_body(body).await?;
                    patch(api, &t, view, name, q, kind, &body, mode).await
                }
                Method::DELETE if !status_only => {
                    let body = h::read_body(body).await?;
                    let opts = DeleteOptions::parse(view, q, encoding, &body)?;
                    let outcome = deletion::delete_object(api, &t, name, &opts).await?;
                    let answer = deletion::response_body(t.def, &outcome);
                    let answer = if answer["kind"] == "Status" {
                        answer
                    } else {
                        conversion::to_version(view, answer)
                    };
                    Ok(h::json(200, &answer))
                }
                _ => Err(ApiError::MethodNotAllowed),
            }
        }
    }
}

/// The patch format of a PATCH request (server-side apply is refused).
fn patch_kind(content_type: &str) -> Result<PatchKind, ApiError> {
    if content_type.starts_with("application/apply-patch") {
        return Err(ApiError::UnsupportedMediaType(
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (server-side apply is not implemented yet)".into(),
        ));
    }
    PatchKind::from_content_type(content_type)
}

/// GET, PUT and PATCH of `<object>/scale`: reads and writes go through the object itself.
#[allow(clippy::too_many_arguments)]
async fn scale_subresource(
    api: &ApiServer,
    t: &Target,
    name: &str,
    method: &Method,
    q: &Query,
    content_type: &str,
    encoding: BodyEncoding,
    body: Incoming,
) -> Result<Response<Body>, ApiError> {
    let mut warnings = Vec::new();
    let updated = match *method {
        Method::GET => read(api, t, name).await?.0,
        Method::PUT => {
            let body = h::read_body(body).await?;
            let directive = Directive::from_query(q, "UpdateOptions")?;
            let (wanted, found) = read_object(
                encoding,
                &body,
                ("autoscaling", "v1", scale::KIND),
                directive,
            )?;
            warnings = found;
            guaranteed_update(api, t, name, q.dry_run()?, UpdateMode::Object, |current| {
                scale::apply(t.def, name, current, &wanted)
            })
            .await?
        }
        Method::PATCH => {
            let kind = patch_kind(content_type)?;
            let body = h::read_body(body).await?;
            let checker = PatchChecker::new(q, kind, &body, ("autoscaling", "v1", scale::KIND))?;
            let updated =
                guaranteed_update(api, t, name, q.dry_run()?, UpdateMode::Object, |current| {
                    let mut base = scale::from_object(t.def, current);
                    object::meta_mut(&mut base).remove("resourceVersion");
                    let patched =
                        checker.check(patch::apply(kind, &base, &body, checker.schema)?)?;
                    scale::apply(t.def, name, current, &patched)
                })
                .await?;
            warnings = checker.warnings();
            updated
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let mut resp = h::json(200, &scale::from_object(t.def, &updated));
    fv::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// Reads a create or update body of the kind `gvk` (group, version, kind) under the request's
/// field validation: unknown fields dropped, findings returned for Warn, a 400 for Strict
/// worded as kube-apiserver's decoder words it.
fn read_object(
    encoding: BodyEncoding,
    body: &[u8],
    (group, version, kind): (&str, &str, &str),
    directive: Directive,
) -> Result<(Value, Vec<String>), ApiError> {
    let schema = fv::schema_of(group, version, kind);
    match encoding {
        BodyEncoding::Json => {
            let (obj, findings) = fv::decode(body, schema)?;
            if directive == Directive::Strict && !findings.is_empty() {
                // The kind and version named are the body's, as Kubernetes' decoder reports.
                let body_kind = obj.get("kind").and_then(Value::as_str).unwrap_or(kind);
                let body_version = obj
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .map(|av| av.rsplit('/').next().unwrap_or(av))
                    .unwrap_or(version);
                return Err(ApiError::BadRequest(format!(
                    "{body_kind} in version {body_version:?} cannot be handled as a {kind}: {}",
                    fv::strict_error(&findings)
                )));
            }
            Ok((
                obj,
                if directive.reports() {
                    findings
                } else {
                    Vec::new()
                },
            ))
        }
        BodyEncoding::Protobuf => {
            // The protobuf schema has no unknown fields to report; what it decodes is still
            // held to the OpenAPI schema, so both encodings store the same fields.
            let api_version = if group.is_empty() {
                version.to_string()
            } else {
                format!("{group}/{version}")
            };
            let mut obj = h::parse_body(encoding, body, &api_version, kind)?;
            if let Some(schema) = schema {
                fv::prune(&mut obj, schema);
            }
            Ok((obj, Vec::new()))
        }
    }
}

/// Field validation of a patch: duplicate keys in the patch itself (merge and strategic merge
/// patches) and unknown fields of the patched object, which are dropped; under Strict any
/// finding refuses the patch with Kubernetes' 422 on `patch`. Findings of the attempt that was
/// written are kept for Warn's headers.
struct PatchChecker {
    directive: Directive,
    kind: PatchKind,
    schema: Option<&'static Value>,
    /// Duplicates in the patch body and the patch as Go printed it, for errors.
    in_patch: Vec<String>,
    printed_patch: Option<String>,
    found: std::sync::Mutex<Vec<String>>,
}

impl PatchChecker {
    fn new(
        q: &Query,
        kind: PatchKind,
        body: &[u8],
        (group, version, k): (&str, &str, &str),
    ) -> Result<PatchChecker, ApiError> {
        let directive = Directive::from_query(q, "PatchOptions")?;
        let (mut in_patch, mut printed_patch) = (Vec::new(), None);
        if kind != PatchKind::Json && directive.reports() {
            // An undecodable patch fails later, in patch::apply, with its own error.
            if let Ok((value, findings)) = fv::decode(body, None) {
                in_patch = findings;
                printed_patch = Some(fv::go_format(&value));
            }
        }
        Ok(PatchChecker {
            directive,
            kind,
            schema: fv::schema_of(group, version, k),
            in_patch,
            printed_patch,
            found: std::sync::Mutex::new(Vec::new()),
        })
    }

    fn check(&self, mut patched: Value) -> Result<Value, ApiError> {
        let Some(schema) = self.schema else {
            return Ok(patched);
        };
        let printed_object = (self.directive == Directive::Strict
            && self.kind != PatchKind::Strategic)
            .then(|| patched.to_string());
        let mut findings = self.in_patch.clone();
        findings.extend(fv::prune(&mut patched, schema));
        if !self.directive.reports() {
            return Ok(patched);
        }
        if self.directive == Directive::Strict && !findings.is_empty() {
            // Kubernetes prints the patched object for JSON and merge patches, the patch map
            // for strategic merge patches.
            let printed = printed_object
                .or_else(|| self.printed_patch.clone())
                .unwrap_or_default();
            return Err(fv::patch_error(&printed, &findings));
        }
        if let Ok(mut found) = self.found.lock() {
            *found = findings;
        }
        Ok(patched)
    }

    fn warnings(&self) -> Vec<String> {
        self.found.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

/// Maps storage failures on `name` to API errors.
pub fn storage_err(def: &ResourceDef, name: &str, e: StorageError) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::not_found(def.qualified(), name),
        StorageError::AlreadyExists => ApiError::AlreadyExists {
            resource: def.qualified(),
            name: name.into(),
        },
        StorageError::Conflict => ApiError::conflict_modified(def.qualified(), name),
        StorageError::ParentMissing => ApiError::not_found("namespaces", ""),
        StorageError::GuardFailed(_) => ApiError::conflict_modified(def.qualified(), name),
        StorageError::Compacted(rev) => ApiError::Gone(format!("too old resource version: {rev}")),
        StorageError::Etcd(msg) => ApiError::Internal(msg),
    }
}

fn render_one(def: &ResourceDef, obj: Value, q: &Query, render: Render) -> Value {
    match render {
        Render::Object => obj,
        Render::Table => {
            let rv = meta_str(&obj, "resourceVersion").unwrap_or("").to_string();
            table::to_table(def.kind, &[obj], json!({"resourceVersion": rv}), q)
        }
    }
}

pub async fn read(api: &ApiServer, t: &Target, name: &str) -> Result<(Value, i64), ApiError> {
    let key = api.object_key(t.def, t.namespace.as_deref(), name);
    match api
        .store
        .get(&key)
        .await
        .map_err(|e| storage_err(t.def, name, e))?
    {
        Some(kv) => Ok((object::decode(&kv)?, kv.mod_revision)),
        None => Err(ApiError::not_found(t.def.qualified(), name)),
    }
}

async fn get(
    api: &ApiServer,
    t: &Target,
    view: &ResourceDef,
    name: &str,
    q: &Query,
    render: Render,
) -> Result<Response<Body>, ApiError> {
    let (obj, _) = read(api, t, name).await?;
    let obj = match render {
        Render::Object => conversion::to_version(view, obj),
        Render::Table => obj,
    };
    Ok(h::json(200, &render_one(t.def, obj, q, render)))
}

/// Continue tokens: base64url JSON `{"rv": <list revision>, "start": "<next key>"}`, as
/// kube-apiserver's (which also pins the revision so every page reads one snapshot).
fn encode_continue(rev: i64, next_key: &[u8]) -> String {
    use base64::Engine;
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": rev, "start": String::from_utf8_lossy(next_key)});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &[u8]) -> Result<(i64, Vec<u8>), ApiError> {
    use base64::Engine;
    let bad = || {
        ApiError::BadRequest(
            "continue key is not valid: the continue parameter is malformed".into(),
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v["rv"].as_i64().filter(|r| *r > 0).ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.as_bytes().to_vec();
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((rev, start))
}

/// The objects of a list, the revision they were read at, and paging state.
pub struct Listed {
    pub items: Vec<Value>,
    pub revision: i64,
    pub continue_token: Option<String>,
    pub remaining: Option<i64>,
}

pub fn selectors(def: &ResourceDef, q: &Query) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), def)?,
    })
}

/// Reads a (page of a) collection at one revision, filtering by selectors. With a limit, pages
/// are fetched until `limit` objects matched or the range ends, as kube-apiserver does.
pub async fn list_objects(
    api: &ApiServer,
    t: &Target,
    q: &Query,
    sel: &Selectors,
) -> Result<Listed, ApiError> {
    let prefix = api.collection_prefix(t.def, t.namespace.as_deref());
    let end = prefix_end(&prefix);
    let limit = q.int("limit")?.filter(|l| *l > 0).unwrap_or(0) as usize;
    let (mut revision, mut start) = match q.get("continue") {
        Some(token) => decode_continue(token, &prefix)?,
        None => {
            let exact = q.get("resourceVersionMatch") == Some("Exact");
            let rv = q
                .get("resourceVersion")
                .map(parse_resource_version)
                .transpose()?
                .unwrap_or(0);
            if exact && rv == 0 {
                return Err(ApiError::BadRequest(
                    "resourceVersionMatch=Exact requires a non-zero resourceVersion".into(),
                ));
            }
            (if exact { rv } else { 0 }, prefix.clone())
        }
    };
    let min_rv = match (q.get("continue"), q.get("resourceVersion")) {
        (None, Some(rv)) => parse_resource_version(rv)?,
        _ => 0,
    };
    let continuing = q.get("continue").is_some();
    let mut items = Vec::new();
    loop {
        let want = if limit > 0 {
            (limit - items.len()) as i64
        } else {
            0
        };
        let page = api.store.range(&start, &end, want, revision).await.map_err(|e| match e {
            StorageError::Compacted(_) if continuing => ApiError::Gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
            ),
            StorageError::Compacted(rev) => ApiError::Gone(format!("too old resource version: {rev}")),
            other => storage_err(t.def, "", other),
        })?;
        if revision == 0 {
            revision = page.revision;
            if revision < min_rv {
                return Err(ApiError::TooLargeResourceVersion {
                    requested: min_rv,
                    current: revision,
                });
            }
        }
        let n = page.kvs.len();
        for (i, kv) in page.kvs.iter().enumerate() {
            let obj = object::decode(kv)?;
            if sel.matches(&obj) {
                items.push(obj);
            }
            if limit > 0 && items.len() == limit {
                let more = i + 1 < n || page.more;
                let mut next = kv.key.clone();
                next.push(0);
                let remaining = sel.is_empty().then(|| page.count - (i as i64 + 1));
                return Ok(Listed {
                    items,
                    revision,
                    continue_token: more.then(|| encode_continue(revision, &next)),
                    remaining: remaining.filter(|r| more && *r > 0),
                });
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => {
                return Ok(Listed {
                    items,
                    revision,
                    continue_token: None,
                    remaining: None,
                })
            }
        }
    }
}

async fn list(
    api: &ApiServer,
    t: &Target,
    view: &ResourceDef,
    q: &Query,
    render: Render,
) -> Result<Response<Body>, ApiError> {
    let sel = selectors(t.def, q)?;
    let listed = list_objects(api, t, q, &sel).await?;
    let mut meta = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(c) = &listed.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = listed.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let body = match render {
        Render::Table => table::to_table(t.def.kind, &listed.items, meta, q),
        Render::Object => json!({
            "kind": format!("{}List", view.kind),
            "apiVersion": view.api_version(),
            "metadata": meta,
            "items": listed.items.into_iter().map(|o| conversion::to_version(view, o)).collect::<Vec<_>>(),
        }),
    };
    Ok(h::json(200, &body))
}

/// The cluster IP and node port plan of a Service write (create when `old` is None), reading
/// which addresses and ports are taken first.
async fn service_plan(
    api: &ApiServer,
    name: &str,
    svc: &mut Value,
    old: Option<&Value>,
) -> Result<service_ip::Plan, ApiError> {
    let taken = |prefix: Vec<u8>| async move {
        let keys = api
            .store
            .keys(&prefix, &prefix_end(&prefix))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok::<Vec<String>, ApiError>(
            keys.iter()
                .filter_map(|k| Some(std::str::from_utf8(&k[prefix.len()..]).ok()?.to_string()))
                .collect(),
        )
    };
    let used: HashSet<Ipv4Addr> = taken(service_ip::reservations_prefix(&api.prefix))
        .await?
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect();
    let (uid, now) = (names::new_uid(), clock::now_rfc3339());
    let alloc = service_ip::Allocator {
        cidr: &api.service_cidr,
        prefix: &api.prefix,
        used: &used,
        random: names::random_u64(),
        uid: &uid,
        now: &now,
    };
    let mut plan = match old {
        None => alloc.on_create(name, svc)?,
        Some(old) => alloc.on_update(name, old, svc)?,
    };
    let used_ports: HashSet<u16> = taken(service_node_port::reservations_prefix(&api.prefix))
        .await?
        .iter()
        .filter_map(|k| k.parse().ok())
        .collect();
    let ports = service_node_port::Allocator {
        range: &api.node_port_range,
        prefix: &api.prefix,
        used: &used_ports,
        random: names::random_u64(),
    };
    service_node_port::merge(&mut plan, ports.plan(name, old, svc)?);
    Ok(plan)
}

fn is_service(def: &ResourceDef) -> bool {
    (def.group, def.kind) == ("", "Service")
}

fn is_pod(def: &ResourceDef) -> bool {
    (def.group, def.kind) == ("", "Pod")
}

fn is_namespace(def: &ResourceDef) -> bool {
    (def.group, def.kind) == ("", "Namespace")
}

async fn create(
    api: &ApiServer,
    t: &Target,
    view: &ResourceDef,
    q: &Query,
    encoding: BodyEncoding,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let dry_run = q.dry_run()?;
    let directive = Directive::from_query(q, "CreateOptions")?;
    let gvk = (view.group, view.version, view.kind);
    let (obj, warnings) = read_object(encoding, body, gvk, directive)?;
    let created = create_object(api, t, conversion::to_storage(view, obj), dry_run).await?;
    let mut resp = h::json(201, &conversion::to_version(view, created));
    fv::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

/// POST of `obj` (as decoded from a request body) into the collection `t`: returns the object
/// as stored (or as it would be, on a dry run).
pub async fn create_object(
    api: &ApiServer,
    t: &Target,
    mut obj: Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let name = object::prepare_create(t.def, t.namespace.as_deref(), &mut obj)?;
    if is_pod(t.def) {
        admission::admit_pod_create(api, &mut obj).await?;
    }
    escalation::check(
        &api.security.authorizer,
        t.def,
        t.namespace.as_deref(),
        &obj,
        None,
    )?;
    let key = api.object_key(t.def, t.namespace.as_deref(), &name);
    let namespace_missing =
        || ApiError::not_found("namespaces", t.namespace.clone().unwrap_or_default());
    let parent = t
        .namespace
        .as_deref()
        .map(|ns| api.object_key(api.namespaces(), None, ns));
    for _ in 0..WRITE_RETRIES {
        // NamespaceLifecycle: the namespace must exist and not be terminating, as read here
        // and still at that revision when the Txn applies.
        let mut guards = Vec::new();
        if let Some(p) = &parent {
            let ns_kv = api
                .store
                .get(p)
                .await
                .map_err(|e| storage_err(t.def, &name, e))?
                .ok_or_else(namespace_missing)?;
            if deletion::is_deleting(&object::decode(&ns_kv)?) {
                let ns = t.namespace.as_deref().unwrap_or("");
                return Err(ApiError::Forbidden {
                    resource: t.def.qualified(),
                    name: name.clone(),
                    message: format!(
                        "unable to create new content in namespace {ns} because it is being terminated"
                    ),
                    causes: vec![Cause {
                        reason: "NamespaceTerminating",
                        field: "metadata.namespace".into(),
                        message: format!("namespace {ns} is being terminated"),
                    }],
                });
            }
            guards.push(Guard::ModRevision(p.clone(), ns_kv.mod_revision));
        }
        let parent_guards = guards.len();
        let mut candidate = obj.clone();
        let plan = if is_service(t.def) {
            service_plan(api, &name, &mut candidate, None).await?
        } else {
            service_ip::Plan::default()
        };
        if dry_run {
            if let Some(kv) = api
                .store
                .get(&key)
                .await
                .map_err(|e| storage_err(t.def, &name, e))?
            {
                return Err(already_exists(t.def, &name, &object::decode(&kv)?));
            }
            return Ok(candidate);
        }
        guards.extend(plan.guards);
        let write = Write {
            key: key.clone(),
            expect: Expect::Absent,
            op: WriteOp::Put(object::encode(&candidate)),
            guards,
            side: plan.side,
        };
        match api.store.write(write).await {
            Ok(rev) => {
                object::set_resource_version(&mut candidate, rev);
                if deletion::concerns_garbage_collector(&candidate) {
                    api.wake_garbage_collector();
                }
                return Ok(candidate);
            }
            // The namespace changed (or went) since it was read: look again.
            Err(StorageError::GuardFailed(i)) if i < parent_guards => continue,
            Err(StorageError::AlreadyExists) => {
                let existing = match api.store.get(&key).await {
                    Ok(Some(kv)) => object::decode(&kv)?,
                    _ => Value::Null,
                };
                return Err(already_exists(t.def, &name, &existing));
            }
            // Another Service took an address or port: one asked for is an error, one picked
            // here is picked again.
            Err(StorageError::GuardFailed(i)) => match plan.conflicts.get(i - parent_guards) {
                Some(Some(conflict)) => return Err(conflict.clone()),
                _ => continue,
            },
            Err(e) => return Err(storage_err(t.def, &name, e)),
        }
    }
    Err(ApiError::Internal(format!(
        "{} {name:?} could not be created: the store kept changing under it",
        t.def.qualified()
    )))
}

/// AlreadyExists, worded as Kubernetes words it when the existing object is being deleted.
fn already_exists(def: &ResourceDef, name: &str, existing: &Value) -> ApiError {
    if deletion::is_deleting(existing) {
        ApiError::AlreadyExistsDeleting {
            resource: def.qualified(),
            name: name.into(),
        }
    } else {
        ApiError::AlreadyExists {
            resource: def.qualified(),
            name: name.into(),
        }
    }
}

/// Read-modify-write with the optimistic-concurrency rules described in the module doc.
/// `mutate` gets the current object and returns the desired one (or an error).
pub async fn guaranteed_update(
    api: &ApiServer,
    t: &Target,
    name: &str,
    dry_run: bool,
    mode: UpdateMode,
    mutate: impl Fn(&Value) -> Result<Value, ApiError>,
) -> Result<Value, ApiError> {
    let key = api.object_key(t.def, t.namespace.as_deref(), name);
    for _ in 0..WRITE_RETRIES {
        let (current, mod_rev) = read(api, t, name).await?;
        let mut desired = mutate(&current)?;
        let precondition = match meta_str(&desired, "resourceVersion").filter(|v| !v.is_empty()) {
            Some(rv) => Some(parse_resource_version(rv)?),
            None => None,
        };
        if let Some(rv) = precondition {
            if rv != mod_rev {
                return Err(ApiError::conflict_modified(t.def.qualified(), name));
            }
        }
        if is_pod(t.def) && mode == UpdateMode::Object {
            admission::admit_pod_update(&current, &mut desired);
        }
        object::prepare_update(
            t.def,
            t.namespace.as_deref(),
            name,
            &current,
            &mut desired,
            mode,
        )?;
        escalation::check(
            &api.security.authorizer,
            t.def,
            t.namespace.as_deref(),
            &desired,
            Some(&current),
        )?;
        if deletion::completes_deletion(t.def, &current, &desired) {
            // The last finalizer is gone: the update deletes the object (Kubernetes'
            // ShouldDeleteDuringUpdate) and answers with the object as updated.
            if !dry_run {
                match deletion::remove(api, t.def, &key, &current, mod_rev).await {
                    Ok(_) | Err(StorageError::NotFound) => {}
                    Err(StorageError::Conflict) if precondition.is_none() => continue,
                    Err(e) => return Err(storage_err(t.def, name, e)),
                }
            }
            object::set_resource_version(&mut desired, mod_rev);
            return Ok(desired);
        }
        let plan = if is_service(t.def) && mode == UpdateMode::Object {
            service_plan(api, name, &mut desired, Some(&current)).await?
        } else {
            service_ip::Plan::default()
        };
        let unchanged = {
            let mut a = desired.clone();
            object::set_resource_version(&mut a, mod_rev);
            a == current
        };
        if dry_run || unchanged {
            // Kubernetes skips the write of a no-op update; the object keeps its resourceVersion.
            object::set_resource_version(&mut desired, mod_rev);
            return Ok(desired);
        }
        let conflicts = plan.conflicts;
        let write = Write {
            key: key.clone(),
            expect: Expect::ModRevision(mod_rev),
            op: WriteOp::Put(object::encode(&desired)),
            guards: plan.guards,
            side: plan.side,
        };
        match api.store.write(write).await {
            Ok(rev) => {
                if deletion::concerns_garbage_collector(&current)
                    || deletion::concerns_garbage_collector(&desired)
                {
                    api.wake_garbage_collector();
                }
                object::set_resource_version(&mut desired, rev);
                return Ok(desired);
            }
            Err(StorageError::Conflict) if precondition.is_none() => continue,
            Err(StorageError::GuardFailed(i)) => match conflicts.get(i) {
                Some(Some(conflict)) => return Err(conflict.clone()),
                _ => continue,
            },
            Err(e) => return Err(storage_err(t.def, name, e)),
        }
    }
    Err(ApiError::conflict_modified(t.def.qualified(), name))
}

#[allow(clippy::too_many_arguments)]
async fn update(
    api: &ApiServer,
    t: &Target,
    view: &ResourceDef,
    name: &str,
    q: &Query,
    encoding: BodyEncoding,
    body: &[u8],
    mode: UpdateMode,
) -> Result<Response<Body>, ApiError> {
    let dry_run = q.dry_run()?;
    let directive = Directive::from_query(q, "UpdateOptions")?;
    let gvk = (view.group, view.version, view.kind);
    let (new, warnings) = read_object(encoding, body, gvk, directive)?;
    object::check_type(view, &new)?;
    let new = conversion::to_storage(view, new);
    let obj = guaranteed_update(api, t, name, dry_run, mode, |_| Ok(new.clone())).await?;
    let mut resp = h::json(200, &conversion::to_version(view, obj));
    fv::add_warnings(&mut resp, &warnings);
    Ok(resp)
}

#[allow(clippy::too_many_arguments)]
async fn patch(
    api: &ApiServer,
    t: &Target,
    view: &ResourceDef,
    name: &str,
    q: &Query,
    kind: PatchKind,
    body: &[u8],
    mode: UpdateMode,
) -> Result<Response<Body>, ApiError> {
    let dry_run = q.dry_run()?;
    let checker = PatchChecker::new(q, kind, body, (view.group, view.version, view.kind))?;
    let obj = guaranteed_update(api, t, name, dry_run, mode, |current| {
        // The patch applies to the object as the client's version shows it.
        let mut base = conversion::to_version(view, current.clone());
        // The stored resourceVersion must not become a precondition of its own: only one the
        // patch sets explicitly is.
        object::meta_mut(&mut base).remove("resourceVersion");
        let patched = patch::apply(kind, &base, body, checker.schema)?;
        if !patched.is_object() {
            return Err(ApiError::BadRequest(
                "the patch result is not a JSON object".into(),
            ));
        }
        let patched = checker.check(patched)?;
        Ok(conversion::to_storage(view, patched))
    })
    .await?;
    let mut resp = h::json(200, &conversion::to_version(view, obj));
    fv::add_warnings(&mut resp, &checker.warnings());
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_stay_in_prefix() {
        let tok = encode_continue(42, b"/registry/pods/ns/b\0");
        assert_eq!(
            decode_continue(&tok, b"/registry/pods/").unwrap(),
            (42, b"/registry/pods/ns/b\0".to_vec())
        );
        assert!(decode_continue(&tok, b"/registry/secrets/").is_err());
        assert!(decode_continue("!!!", b"/").is_err());
    }
}

//! What DELETE does, after kube-apiserver's generic registry (`Store.Delete`, `BeforeDelete`)
//! and the Namespace registry:
//!
//! - a Namespace is first only marked: `deletionTimestamp` and `status.phase: Terminating`; the
//!   namespace controller (`crate::controllers::namespace`) empties it and then removes the
//!   `kubernetes` finalizer through `/finalize`, which deletes it. `default`, `kube-system` and
//!   `kube-public` may not be deleted (NamespaceLifecycle);
//! - a Pod is deleted gracefully: marked with `deletionTimestamp` = now + grace period and
//!   `deletionGracePeriodSeconds` (the request's `gracePeriodSeconds`, else the pod's
//!   terminationGracePeriodSeconds), for its kubelet to finish; a pod no node runs, or one that
//!   already finished, has no grace period and goes at once; a later DELETE may only shorten
//!   the period, and one with 0 (`kubectl delete --grace-period=0 --force`) deletes it;
//! - an object with `metadata.finalizers` is only marked (deletionTimestamp, grace period 0)
//!   and goes when an update removes its last finalizer (see [`completes_deletion`]);
//! - anything else is deleted at once, in one Txn with what goes with it (a Service's cluster
//!   IP and node ports).
//!
//! Dependents (objects whose `metadata.ownerReferences` name the deleted one) follow the
//! propagation policy, as kube-apiserver's `deletionFinalizersForGarbageCollection` sets it up:
//! `Background` (the default of most kinds) deletes the owner now and leaves the dependents to
//! the garbage collector (`crate::controllers::garbage_collector`); `Foreground` adds the
//! `foregroundDeletion` finalizer, so the owner stays (marked) until the collector has deleted
//! the dependents that block it; `Orphan` (the default of core/v1 ReplicationControllers and
//! batch/v1 Jobs) adds the `orphan` finalizer, which the collector removes once it has taken the
//! owner out of its dependents' ownerReferences. A policy named on a later DELETE replaces the
//! one recorded by the finalizers, except while a graceful deletion is pending. Namespaces are
//! left out: their deletion is the namespace controller's.
//!
//! The decision is a pure function of the stored object and the options ([`decide`]); the
//! writes follow the REST layer's optimistic-concurrency rules.

use serde_json::{json, Value};

use super::clock;
use super::http::{self as h, BodyEncoding};
use super::object::{self, meta_str};
use super::query::{parse_resource_version, Query};
use super::resources::ResourceDef;
use super::rest::{self, storage_err, WRITE_RETRIES};
use super::route::Target;
use super::selector::Selectors;
use super::status::{self, ApiError};
use super::storage::{Expect, SideOp, StorageError, Write, WriteOp};
use super::ApiServer;
use super::{service_ip, service_node_port};
use crate::controllers::kubernetes_service;

/// Namespaces NamespaceLifecycle never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// The finalizer that keeps an owner until the garbage collector has orphaned its dependents.
pub const ORPHAN_FINALIZER: &str = "orphan";
/// The finalizer that keeps an owner until its blocking dependents are gone.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// `DeleteOptions.propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn as_str(self) -> &'static str {
        match self {
            Propagation::Orphan => "Orphan",
            Propagation::Background => "Background",
            Propagation::Foreground => "Foreground",
        }
    }
}

/// A request's DeleteOptions (body or query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    pub dry_run: bool,
    pub propagation: Option<Propagation>,
    /// The deprecated `orphanDependents` (never set together with `propagation`).
    pub orphan_dependents: Option<bool>,
}

/// `ValidateDeleteOptions`' errors, as kube-apiserver reports them.
fn invalid_options(field: &str, reason: &'static str, message: String) -> ApiError {
    ApiError::invalid("DeleteOptions.meta.k8s.io", "", field, reason, message)
}

impl DeleteOptions {
    /// Reads a DeleteOptions body (JSON or protobuf) and the query parameters Kubernetes also
    /// accepts (`gracePeriodSeconds`, `propagationPolicy`, `dryRun`).
    pub fn parse(
        def: &ResourceDef,
        q: &Query,
        encoding: BodyEncoding,
        body: &[u8],
    ) -> Result<DeleteOptions, ApiError> {
        let options: Value = if body.is_empty() {
            json!({})
        } else {
            h::parse_body(encoding, body, &def.api_version(), "DeleteOptions")?
        };
        let propagation = match options
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(q.get("propagationPolicy"))
        {
            None => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(p) => {
                return Err(invalid_options(
                    "propagationPolicy",
                    "FieldValueNotSupported",
                    format!("Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""),
                ))
            }
        };
        let orphan_dependents = match options.get("orphanDependents") {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::Null) | None => match q.get("orphanDependents") {
                None => None,
                Some("true") => Some(true),
                Some("false") => Some(false),
                Some(v) => {
                    return Err(ApiError::BadRequest(format!(
                        "invalid value for orphanDependents: {v:?}"
                    )))
                }
            },
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "orphanDependents must be a boolean, not {v}"
                )))
            }
        };
        if let (Some(p), Some(_)) = (propagation, orphan_dependents) {
            return Err(invalid_options(
                "propagationPolicy",
                "FieldValueInvalid",
                format!(
                    "Invalid value: {:?}: orphanDependents and deletionPropagation cannot be both set",
                    p.as_str()
                ),
            ));
        }
        let grace_period = match options.get("gracePeriodSeconds") {
            Some(Value::Null) | None => q.int("gracePeriodSeconds")?,
            Some(v) => Some(v.as_i64().ok_or_else(|| {
                ApiError::BadRequest(format!("gracePeriodSeconds must be an integer, not {v}"))
            })?),
        };
        let body_dry_run = options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
        let pre = &options["preconditions"];
        Ok(DeleteOptions {
            grace_period,
            uid: pre["uid"].as_str().map(str::to_string),
            resource_version: pre["resourceVersion"]
                .as_str()
                .map(parse_resource_version)
                .transpose()?,
            dry_run: q.dry_run()? || body_dry_run,
            propagation,
            orphan_dependents,
        })
    }
}

/// What a DELETE did.
#[derive(Debug)]
pub enum Outcome {
    /// The object is gone; this was its last state.
    Deleted(Value),
    /// The object stays, marked for deletion (or already marked).
    Marked(Value),
}

/// What to do with the stored object.
#[derive(Debug, PartialEq)]
pub enum Decision {
    /// Remove it from storage.
    Now,
    /// Write this (marked) version and keep it.
    Mark(Value),
    /// Write this (marked, no grace period left) version, then remove it: a graceful delete
    /// with a zero grace period, as Kubernetes does it (watchers see MODIFIED, then DELETED).
    MarkThenDelete(Value),
    /// A graceful deletion is already under way and this request does not shorten it.
    Pending,
}

/// Whether `obj` carries a deletionTimestamp.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// Whether a write of `obj` may give the garbage collector work: it has owners (perhaps gone
/// already), or a garbage-collection finalizer.
pub fn concerns_garbage_collector(obj: &Value) -> bool {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty())
        || has_finalizer(obj, ORPHAN_FINALIZER)
        || has_finalizer(obj, FOREGROUND_FINALIZER)
}

/// Whether a DELETE that names no policy orphans the dependents of this kind (the registry
/// strategy's `DefaultGarbageCollectionPolicy`: `OrphanDependents` for core/v1
/// ReplicationControllers and batch/v1 Jobs, kept for backwards compatibility;
/// `DeleteDependents` for every other served kind).
pub fn orphans_by_default(def: &ResourceDef) -> bool {
    matches!(
        (def.group, def.version, def.kind),
        ("", "v1", "ReplicationController") | ("batch", "v1", "Job")
    )
}

/// `shouldOrphanDependents`: an explicit option, else a finalizer already there, else the
/// kind's default.
fn should_orphan(def: &ResourceDef, obj: &Value, opts: &DeleteOptions) -> bool {
    if let Some(orphan) = opts.orphan_dependents {
        return orphan;
    }
    match opts.propagation {
        Some(p) => p == Propagation::Orphan,
        None if has_finalizer(obj, ORPHAN_FINALIZER) => true,
        None if has_finalizer(obj, FOREGROUND_FINALIZER) => false,
        None => orphans_by_default(def),
    }
}

/// `shouldDeleteDependents`: foreground only when asked for, or already under way.
fn should_delete_in_foreground(obj: &Value, opts: &DeleteOptions) -> bool {
    if opts.orphan_dependents.is_some() {
        return false;
    }
    match opts.propagation {
        Some(p) => p == Propagation::Foreground,
        None if has_finalizer(obj, FOREGROUND_FINALIZER) => true,
        None => false,
    }
}

/// `deletionFinalizersForGarbageCollection`: the object's finalizers with `orphan` and
/// `foregroundDeletion` set as the options say, or None when the set would not change.
fn gc_finalizers(def: &ResourceDef, obj: &Value, opts: &DeleteOptions) -> Option<Vec<Value>> {
    let old: Vec<Value> = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut new: Vec<Value> = old
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    if should_orphan(def, obj, opts) {
        new.push(json!(ORPHAN_FINALIZER));
    }
    if should_delete_in_foreground(obj, opts) {
        new.push(json!(FOREGROUND_FINALIZER));
    }
    let set = |v: &[Value]| -> std::collections::BTreeSet<String> {
        v.iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    };
    (set(&old) != set(&new)).then_some(new)
}

/// Kinds whose registries delete gracefully (Kubernetes' `RESTGracefulDeleteStrategy`).
fn deletes_gracefully(def: &ResourceDef) -> bool {
    (def.group, def.kind) == ("", "Pod")
}

/// The Pod strategy's `CheckGracefulDelete`: the requested period, else the pod's
/// terminationGracePeriodSeconds; zero for a pod no node runs (no kubelet would ever finish it)
/// and for a pod that already finished.
fn pod_grace_period(pod: &Value, requested: Option<i64>) -> i64 {
    let unscheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if unscheduled || finished {
        return 0;
    }
    requested
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(0)
}

fn bump_generation(meta: &mut serde_json::Map<String, Value>) {
    if let Some(g) = meta
        .get("generation")
        .and_then(Value::as_i64)
        .filter(|g| *g > 0)
    {
        meta.insert("generation".into(), json!(g + 1));
    }
}

/// `markAsDeleting`: an object that cannot be deleted gracefully but has finalizers is marked
/// now, with no grace period.
fn mark_as_deleting(obj: &Value, now: i64) -> Value {
    let mut marked = obj.clone();
    let meta = object::meta_mut(&mut marked);
    let existing = meta
        .get("deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(clock::parse_rfc3339);
    if existing.is_none() {
        bump_generation(meta);
    }
    if existing.is_none_or(|t| t > now) {
        meta.insert(
            "deletionTimestamp".into(),
            json!(clock::format_rfc3339(now)),
        );
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    marked
}

/// The Namespace registry's first DELETE: mark it Terminating and leave the rest to the
/// namespace controller. None when the namespace is already finalized (generic rules apply).
fn decide_namespace(obj: &Value, now: &str) -> Option<Decision> {
    if !is_deleting(obj) {
        let mut marked = obj.clone();
        object::meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now));
        if !marked.get("status").is_some_and(Value::is_object) {
            marked["status"] = json!({});
        }
        marked["status"]["phase"] = json!("Terminating");
        return Some(Decision::Mark(marked));
    }
    let spec_finalizers = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    spec_finalizers.then(|| Decision::Mark(obj.clone()))
}

/// What a DELETE does to `obj` of kind `def`, at `now` (Unix seconds): Kubernetes'
/// `BeforeDelete` followed by `Store.Delete`'s choice between deleting, marking (finalizers,
/// grace period) and doing nothing.
pub fn decide(def: &ResourceDef, obj: &Value, opts: &DeleteOptions, now: i64) -> Decision {
    if (def.group, def.kind) == ("", "Namespace") {
        if let Some(d) = decide_namespace(obj, &clock::format_rfc3339(now)) {
            return d;
        }
    }
    // A negative grace period means "as soon as possible": one second.
    let requested = opts.grace_period.map(|g| if g < 0 { 1 } else { g });
    let mut marked = obj.clone();
    let mut grace = None;
    if deletes_gracefully(def) {
        if is_deleting(obj) {
            let existing = obj
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .map(|g| if g < 0 { 1 } else { g });
            match (existing.filter(|g| *g > 0), requested) {
                // Marked with no grace period left: delete for real now.
                (None, _) => {}
                // Only a shorter grace period may be asked for.
                (Some(current), Some(shorter)) if shorter < current => {
                    let since = obj
                        .pointer("/metadata/deletionTimestamp")
                        .and_then(Value::as_str)
                        .and_then(clock::parse_rfc3339)
                        .unwrap_or(now);
                    let meta = object::meta_mut(&mut marked);
                    meta.insert(
                        "deletionTimestamp".into(),
                        json!(clock::format_rfc3339(since - current + shorter)),
                    );
                    meta.insert("deletionGracePeriodSeconds".into(), json!(shorter));
                    grace = Some(shorter);
                }
                (Some(_), _) => return Decision::Pending,
            }
        } else {
            let period = pod_grace_period(obj, requested);
            let meta = object::meta_mut(&mut marked);
            meta.insert(
                "deletionTimestamp".into(),
                json!(clock::format_rfc3339(now + period)),
            );
            meta.insert("deletionGracePeriodSeconds".into(), json!(period));
            bump_generation(meta);
            grace = Some(period);
        }
    }
    // Past a pending graceful deletion: the options decide the garbage collector's finalizers.
    if let Some(finalizers) = gc_finalizers(def, obj, opts) {
        let meta = object::meta_mut(&mut marked);
        if finalizers.is_empty() {
            meta.remove("finalizers");
        } else {
            meta.insert("finalizers".into(), Value::Array(finalizers));
        }
    }
    match (grace, has_finalizers(&marked)) {
        (None, false) => Decision::Now,
        (None, true) => Decision::Mark(mark_as_deleting(&marked, now)),
        (Some(_), true) => Decision::Mark(marked),
        (Some(g), false) if g > 0 => Decision::Mark(marked),
        (Some(_), false) => Decision::MarkThenDelete(marked),
    }
}

/// Whether an update that produced `new` from `old` is really the end of a deletion: the last
/// finalizer went away from an object marked with no grace period left (and, for a Namespace,
/// its `spec.finalizers` are empty too).
pub fn completes_deletion(def: &ResourceDef, old: &Value, new: &Value) -> bool {
    let empty = |v: Option<&Value>| v.and_then(Value::as_array).is_none_or(Vec::is_empty);
    if !empty(new.pointer("/metadata/finalizers")) || !is_deleting(old) {
        return false;
    }
    if (def.group, def.kind) == ("", "Namespace") && !empty(new.pointer("/spec/finalizers")) {
        return false;
    }
    old.pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_none_or(|g| g == 0)
}

/// The writes that go with removing `obj` from storage (a Service's cluster IP and node ports).
pub fn side_writes(api: &ApiServer, def: &ResourceDef, obj: &Value) -> Vec<SideOp> {
    if (def.group, def.kind) == ("", "Service") {
        let mut side = service_ip::on_delete(&api.prefix, obj);
        side.extend(service_node_port::on_delete(&api.prefix, obj));
        side
    } else {
        Vec::new()
    }
}

/// Removes the object at `key` if it is still at `mod_rev`.
pub async fn remove(
    api: &ApiServer,
    def: &ResourceDef,
    key: &[u8],
    obj: &Value,
    mod_rev: i64,
) -> Result<i64, StorageError> {
    let rev = api
        .store
        .write(Write {
            key: key.to_vec(),
            expect: Expect::ModRevision(mod_rev),
            op: WriteOp::Delete,
            guards: Vec::new(),
            side: side_writes(api, def, obj),
        })
        .await?;
    if let Some(ns) = meta_str(obj, "namespace").filter(|_| def.namespaced) {
        // Something left a namespace; if it is terminating, its controller may finish now.
        api.wake_namespace(ns);
    }
    // Its dependents may be garbage now, or an owner waiting for it may go.
    api.wake_garbage_collector();
    let kubernetes_service = matches!((def.group, def.kind), ("", "Service" | "Endpoints"))
        && meta_str(obj, "namespace") == Some(kubernetes_service::NAMESPACE)
        && meta_str(obj, "name") == Some(kubernetes_service::NAME);
    if kubernetes_service {
        api.wake_kubernetes_service();
    }
    Ok(rev)
}

fn precondition_failed(def: &ResourceDef, name: &str, detail: String) -> ApiError {
    ApiError::Conflict {
        resource: def.qualified(),
        name: name.into(),
        detail,
    }
}

/// Deletes (or marks) one object, with the optimistic-concurrency rules of the REST layer.
pub async fn delete_object(
    api: &ApiServer,
    t: &Target,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Outcome, ApiError> {
    let def = t.def;
    if (def.group, def.kind) == ("", "Namespace") && IMMORTAL_NAMESPACES.contains(&name) {
        return Err(ApiError::Forbidden {
            resource: "namespaces".into(),
            name: name.into(),
            message: "this namespace may not be deleted".into(),
            causes: Vec::new(),
        });
    }
    let key = api.object_key(def, t.namespace.as_deref(), name);
    for _ in 0..WRITE_RETRIES {
        let (current, mod_rev) = rest::read(api, t, name).await?;
        let uid = meta_str(&current, "uid").unwrap_or("");
        if let Some(want) = opts.uid.as_deref().filter(|u| *u != uid) {
            return Err(precondition_failed(
                def,
                name,
                format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {uid}"
                ),
            ));
        }
        if let Some(want) = opts.resource_version.filter(|rv| *rv != mod_rev) {
            return Err(precondition_failed(
                def,
                name,
                format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {mod_rev}"),
            ));
        }
        let decision = decide(def, &current, opts, clock::now_secs());
        let (marked, then_delete) = match decision {
            Decision::Pending => return Ok(Outcome::Marked(current)),
            Decision::Now if opts.dry_run => return Ok(Outcome::Deleted(current)),
            Decision::Now => match remove(api, def, &key, &current, mod_rev).await {
                Ok(_) => return Ok(Outcome::Deleted(current)),
                Err(StorageError::Conflict) if opts.resource_version.is_none() => continue,
                Err(e) => return Err(storage_err(def, name, e)),
            },
            Decision::Mark(marked) => (marked, false),
            Decision::MarkThenDelete(marked) => (marked, true),
        };
        if opts.dry_run {
            return Ok(if then_delete {
                Outcome::Deleted(marked)
            } else {
                Outcome::Marked(marked)
            });
        }
        let (mut marked, rev) = if marked == current {
            (marked, mod_rev)
        } else {
            let write = Write {
                key: key.clone(),
                expect: Expect::ModRevision(mod_rev),
                op: WriteOp::Put(object::encode(&marked)),
                guards: Vec::new(),
                side: Vec::new(),
            };
            match api.store.write(write).await {
                Ok(rev) => (marked, rev),
                Err(StorageError::Conflict) if opts.resource_version.is_none() => continue,
                Err(e) => return Err(storage_err(def, name, e)),
            }
        };
        object::set_resource_version(&mut marked, rev);
        if (def.group, def.kind) == ("", "Namespace") {
            api.wake_namespace(name);
        }
        if has_finalizer(&marked, ORPHAN_FINALIZER) || has_finalizer(&marked, FOREGROUND_FINALIZER)
        {
            api.wake_garbage_collector();
        }
        if !then_delete {
            return Ok(Outcome::Marked(marked));
        }
        // Someone else may finish the deletion first (Kubernetes ignores that NotFound too).
        return match remove(api, def, &key, &marked, rev).await {
            Ok(_) | Err(StorageError::NotFound) => Ok(Outcome::Deleted(marked)),
            Err(StorageError::Conflict) => Ok(Outcome::Marked(marked)),
            Err(e) => Err(storage_err(def, name, e)),
        };
    }
    Err(ApiError::conflict_modified(def.qualified(), name))
}

/// DELETE of a collection (deletecollection): every object the selectors pick, one by one with
/// the same options, so finalizers and grace periods apply to each (Kubernetes'
/// DeleteCollection is not atomic either). Returns the objects as listed and the list's
/// revision. Objects that vanish meanwhile are skipped.
pub async fn delete_collection(
    api: &ApiServer,
    t: &Target,
    q: &Query,
    sel: &Selectors,
    opts: &DeleteOptions,
) -> Result<(Vec<Value>, i64), ApiError> {
    // `limit` (and `continue`) make it one page, as Kubernetes does.
    let listed = rest::list_objects(api, t, q, sel).await?;
    for item in &listed.items {
        let one = Target {
            def: t.def,
            namespace: meta_str(item, "namespace").map(str::to_string),
            name: None,
            subresource: None,
        };
        let name = meta_str(item, "name").unwrap_or("");
        match delete_object(api, &one, name, opts).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok((listed.items, listed.revision))
}

/// The body of a DELETE's answer: the deleted object for kinds whose registries return it,
/// else a Success Status; an object that stays (marked) is always returned as itself.
pub fn response_body(def: &ResourceDef, outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Marked(obj) => obj.clone(),
        Outcome::Deleted(obj) if def.returns_deleted_object => obj.clone(),
        Outcome::Deleted(obj) => status::success(
            meta_str(obj, "name").unwrap_or(""),
            def.group,
            def.plural,
            meta_str(obj, "uid"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    fn marked(d: Decision) -> Value {
        match d {
            Decision::Mark(v) | Decision::MarkThenDelete(v) => v,
            other => panic!("not marked: {other:?}"),
        }
    }

    #[test]
    fn pods_get_a_grace_period_unless_no_node_runs_them() {
        let def = lookup("", "v1", "pods").unwrap();
        let opts = DeleteOptions::default();
        let unbound =
            json!({"metadata": {"name": "p"}, "spec": {"terminationGracePeriodSeconds": 30}});
        let d = decide(def, &unbound, &opts, 100);
        let Decision::MarkThenDelete(m) = d else {
            panic!("{d:?}")
        };
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 0);

        let bound = json!({"metadata": {"name": "p", "generation": 1},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        let m = marked(decide(def, &bound, &opts, 100));
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(
            m["metadata"]["deletionTimestamp"],
            clock::format_rfc3339(130)
        );
        assert_eq!(m["metadata"]["generation"], 2);
        assert!(matches!(decide(def, &bound, &opts, 100), Decision::Mark(_)));

        // Again without a period: pending. A longer one: pending. A shorter one: moved up.
        assert_eq!(decide(def, &m, &opts, 105), Decision::Pending);
        let longer = DeleteOptions {
            grace_period: Some(60),
            ..opts.clone()
        };
        assert_eq!(decide(def, &m, &longer, 105), Decision::Pending);
        let shorter = DeleteOptions {
            grace_period: Some(10),
            ..opts.clone()
        };
        let s = marked(decide(def, &m, &shorter, 105));
        assert_eq!(
            s["metadata"]["deletionTimestamp"],
            clock::format_rfc3339(110)
        );
        assert_eq!(s["metadata"]["deletionGracePeriodSeconds"], 10);
        let force = DeleteOptions {
            grace_period: Some(0),
            ..opts.clone()
        };
        assert!(matches!(
            decide(def, &m, &force, 105),
            Decision::MarkThenDelete(_)
        ));

        let done = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"},
            "status": {"phase": "Succeeded"}});
        assert!(matches!(
            decide(def, &done, &opts, 1),
            Decision::MarkThenDelete(_)
        ));
        // A finalizer keeps even a zero-grace pod.
        let held = json!({"metadata": {"name": "p", "finalizers": ["x"]}, "spec": {}});
        assert!(matches!(decide(def, &held, &opts, 1), Decision::Mark(_)));
    }

    #[test]
    fn finalizers_hold_other_objects() {
        let def = lookup("apps", "v1", "deployments").unwrap();
        let opts = DeleteOptions::default();
        let plain = json!({"metadata": {"name": "d", "generation": 3}});
        assert_eq!(decide(def, &plain, &opts, 1), Decision::Now);
        let held =
            json!({"metadata": {"name": "d", "generation": 3, "finalizers": ["example.com/x"]}});
        let m = marked(decide(def, &held, &opts, 50));
        assert_eq!(
            m["metadata"]["deletionTimestamp"],
            clock::format_rfc3339(50)
        );
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(m["metadata"]["generation"], 4);
        // Deleting it again changes nothing.
        assert_eq!(decide(def, &m, &opts, 60), Decision::Mark(m.clone()));
        let mut released = m.clone();
        released["metadata"]["finalizers"] = json!([]);
        assert!(completes_deletion(def, &m, &released));
        assert!(!completes_deletion(def, &held, &plain));
    }

    #[test]
    fn propagation_policies_set_the_garbage_collector_finalizers() {
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        let job = lookup("batch", "v1", "jobs").unwrap();
        let rc = lookup("", "v1", "replicationcontrollers").unwrap();
        let with = |p: Option<Propagation>| DeleteOptions {
            propagation: p,
            ..DeleteOptions::default()
        };
        let d =
            json!({"metadata": {"name": "d", "generation": 1, "finalizers": ["example.com/x"]}});
        // Background is the default of most kinds: no finalizer of the collector's.
        assert_eq!(
            marked(decide(deploy, &d, &with(None), 7))["metadata"]["finalizers"],
            json!(["example.com/x"])
        );
        let plain = json!({"metadata": {"name": "d"}});
        assert_eq!(decide(deploy, &plain, &with(None), 7), Decision::Now);
        let fg = marked(decide(
            deploy,
            &plain,
            &with(Some(Propagation::Foreground)),
            7,
        ));
        assert_eq!(fg["metadata"]["finalizers"], json!([FOREGROUND_FINALIZER]));
        assert_eq!(
            fg["metadata"]["deletionTimestamp"],
            clock::format_rfc3339(7)
        );
        let orphan = marked(decide(deploy, &d, &with(Some(Propagation::Orphan)), 7));
        assert_eq!(
            orphan["metadata"]["finalizers"],
            json!(["example.com/x", ORPHAN_FINALIZER])
        );
        // A second DELETE with no policy keeps the one under way; another policy replaces it.
        assert_eq!(
            decide(deploy, &fg, &with(None), 9),
            Decision::Mark(fg.clone())
        );
        assert_eq!(
            decide(deploy, &fg, &with(Some(Propagation::Background)), 9),
            Decision::Now
        );
        let switched = marked(decide(deploy, &fg, &with(Some(Propagation::Orphan)), 9));
        assert_eq!(
            switched["metadata"]["finalizers"],
            json!([ORPHAN_FINALIZER])
        );
        // Jobs and ReplicationControllers orphan unless told otherwise.
        for def in [job, rc] {
            let m = marked(decide(def, &plain, &with(None), 1));
            assert_eq!(m["metadata"]["finalizers"], json!([ORPHAN_FINALIZER]));
            assert_eq!(
                decide(def, &plain, &with(Some(Propagation::Background)), 1),
                Decision::Now
            );
        }
        let legacy = DeleteOptions {
            orphan_dependents: Some(false),
            ..DeleteOptions::default()
        };
        assert_eq!(decide(job, &plain, &legacy, 1), Decision::Now);
        // A pending graceful deletion keeps its finalizers whatever the options say.
        let pods = lookup("", "v1", "pods").unwrap();
        let bound = json!({"metadata": {"name": "p"},
            "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        let terminating = marked(decide(pods, &bound, &with(None), 1));
        assert_eq!(
            decide(pods, &terminating, &with(Some(Propagation::Orphan)), 2),
            Decision::Pending
        );
    }

    #[test]
    fn namespaces_are_marked_then_wait_for_their_finalizers() {
        let def = lookup("", "v1", "namespaces").unwrap();
        let opts = DeleteOptions::default();
        let ns = json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"}});
        let Decision::Mark(marked) = decide(def, &ns, &opts, 0) else {
            panic!("marked")
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            decide(def, &marked, &opts, 5),
            Decision::Mark(marked.clone())
        );
        let mut finalized = marked.clone();
        finalized["spec"]["finalizers"] = json!([]);
        assert_eq!(decide(def, &finalized, &opts, 5), Decision::Now);
        assert!(completes_deletion(def, &marked, &finalized));
        assert!(!completes_deletion(def, &marked, &marked));
        assert!(!completes_deletion(def, &ns, &finalized));
    }
}

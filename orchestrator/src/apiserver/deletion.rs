//! What DELETE does, after kube-apiserver's generic registry (`Store.Delete`, `BeforeDelete`)
//! and the Namespace registry:
//!
//! - a Namespace is first only marked: `deletionTimestamp` and `status.phase: Terminating`; the
//!   namespace controller (`crate::controllers::namespace`) empties it and then removes the
//!   `kubernetes` finalizer through `/finalize`, which deletes it. `default`, `kube-system` and
//!   `kube-public` may not be deleted (NamespaceLifecycle);
//! - any other object is deleted at once, in one Txn with what goes with it (a Service's
//!   cluster IP).
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
use super::service_ip;
use super::status::{self, ApiError};
use super::storage::{Expect, SideOp, StorageError, Write, WriteOp};
use super::ApiServer;

/// Namespaces NamespaceLifecycle never lets go.
const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

/// A request's DeleteOptions (body or query parameters).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub grace_period: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<i64>,
    pub dry_run: bool,
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
        if let Some(p) = options
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(q.get("propagationPolicy"))
        {
            if !matches!(p, "Orphan" | "Background" | "Foreground") {
                return Err(ApiError::BadRequest(format!(
                    "propagationPolicy {p:?} is not one of Orphan, Background, Foreground"
                )));
            }
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
}

/// Whether `obj` carries a deletionTimestamp.
pub fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// The Namespace registry's first DELETE: mark it Terminating and leave the rest to the
/// namespace controller.
fn decide_namespace(obj: &Value, now: &str) -> Decision {
    if !is_deleting(obj) {
        let mut marked = obj.clone();
        object::meta_mut(&mut marked).insert("deletionTimestamp".into(), json!(now));
        if !marked.get("status").is_some_and(Value::is_object) {
            marked["status"] = json!({});
        }
        marked["status"]["phase"] = json!("Terminating");
        return Decision::Mark(marked);
    }
    let spec_finalizers = obj
        .pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if spec_finalizers {
        return Decision::Mark(obj.clone());
    }
    Decision::Now
}

/// What a DELETE does to `obj` of kind `def`, at `now` (Unix seconds).
pub fn decide(def: &ResourceDef, obj: &Value, _opts: &DeleteOptions, now: i64) -> Decision {
    if (def.group, def.kind) == ("", "Namespace") {
        return decide_namespace(obj, &clock::format_rfc3339(now));
    }
    Decision::Now
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

/// The writes that go with removing `obj` from storage (a Service's cluster IP).
pub fn side_writes(api: &ApiServer, def: &ResourceDef, obj: &Value) -> Vec<SideOp> {
    if (def.group, def.kind) == ("", "Service") {
        service_ip::on_delete(&api.prefix, obj)
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
        let result = match decision {
            Decision::Now if opts.dry_run => return Ok(Outcome::Deleted(current)),
            Decision::Now => remove(api, def, &key, &current, mod_rev)
                .await
                .map(|_| Outcome::Deleted(current)),
            Decision::Mark(marked) => {
                let unchanged = marked == current;
                if opts.dry_run || unchanged {
                    return Ok(Outcome::Marked(marked));
                }
                let write = Write {
                    key: key.clone(),
                    expect: Expect::ModRevision(mod_rev),
                    op: WriteOp::Put(object::encode(&marked)),
                    guards: Vec::new(),
                    side: Vec::new(),
                };
                let written = api.store.write(write).await;
                if written.is_ok() && (def.group, def.kind) == ("", "Namespace") {
                    api.wake_namespace(name);
                }
                written.map(|rev| {
                    let mut marked = marked;
                    object::set_resource_version(&mut marked, rev);
                    Outcome::Marked(marked)
                })
            }
        };
        match result {
            Ok(outcome) => return Ok(outcome),
            Err(StorageError::Conflict) if opts.resource_version.is_none() => continue,
            Err(e) => return Err(storage_err(def, name, e)),
        }
    }
    Err(ApiError::conflict_modified(def.qualified(), name))
}

/// DELETE of a collection: every object the selectors pick, one by one with the same options
/// (Kubernetes' DeleteCollection is not atomic either). Returns the objects as listed and the
/// list's revision. Objects that vanish meanwhile are skipped.
pub async fn delete_collection(
    api: &ApiServer,
    t: &Target,
    sel: &Selectors,
    opts: &DeleteOptions,
) -> Result<(Vec<Value>, i64), ApiError> {
    let listed = rest::list_objects(api, t, &Query::default(), sel).await?;
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

//! The garbage collector, after kube-controller-manager's: an object whose
//! `metadata.ownerReferences` all point at owners that are gone (no object of that kind and
//! name, or one with another uid) is deleted; owners deleted with the `orphan` finalizer first
//! lose their place in their dependents' ownerReferences, then the finalizer; owners deleted with
//! the `foregroundDeletion` finalizer see their dependents deleted first and keep the finalizer
//! until no dependent whose reference says `blockOwnerDeletion: true` is left.
//!
//! The decisions are kube's `attemptToDeleteItem`: an item with at least one live ("solid")
//! owner stays, and only its references to gone owners (or to owners waiting for their
//! dependents) are removed; an item with no solid owner is deleted — in the foreground when an
//! owner waits for it and it has dependents of its own, else with the policy its own finalizers
//! name (Background by default), always with its uid as a precondition.
//!
//! Level-triggered: a pass lists every served resource at one etcd revision, builds the
//! ownership graph from that snapshot, and acts on what the graph says might need work,
//! confirming each item and each of its owners with a fresh read before writing anything. [`run`] makes a pass when the apiserver says ownership changed
//! (a bounded wake channel: an object went away, was marked with one of these finalizers, or
//! was written with owner references), soon after a pass that changed something, and every
//! [`RELIST`] otherwise, which catches writes made through another apiserver.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

pub use super::ClientError;

/// The finalizer of an owner whose dependents are to be orphaned.
pub const ORPHAN: &str = "orphan";
/// The finalizer of an owner waiting for its blocking dependents to be deleted.
pub const FOREGROUND: &str = "foregroundDeletion";

/// How often everything is looked at without being asked.
pub const RELIST: Duration = Duration::from_secs(10);
/// After a pass that changed something, the next one comes this soon even without a wake-up.
const SETTLE: Duration = Duration::from_millis(200);
/// First and last delay after a pass that failed.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A served resource (one per stored collection, whatever versions serve it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// The propagation policy of a delete the collector makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Orphan,
    Background,
    Foreground,
}

/// The API calls the collector makes (client-go's, in kube-controller-manager).
pub trait GarbageCollectorApi: Send + Sync {
    /// Every resource whose objects may be owners or dependents.
    fn resources(&self) -> Vec<Resource>;
    /// LIST of `resource` across all namespaces at `revision` (a resourceVersion with
    /// `resourceVersionMatch=Exact`; 0: the latest), and the revision it was read at.
    fn list_all(
        &self,
        resource: &Resource,
        revision: i64,
    ) -> impl Future<Output = Result<(Vec<Value>, i64), ClientError>> + Send;
    /// GET of one object; None when it does not exist.
    fn get_object(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, ClientError>> + Send;
    /// PUT of `obj` (optimistic: Conflict when its resourceVersion is stale). Removing the last
    /// finalizer of an object marked for deletion deletes it.
    fn update_object(
        &self,
        resource: &Resource,
        obj: &Value,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// DELETE with `propagationPolicy` and a uid precondition (Conflict when the uid differs).
    fn delete_object(
        &self,
        resource: &Resource,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        policy: Policy,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// One entry of `metadata.ownerReferences`.
#[derive(Debug, Clone, PartialEq)]
struct OwnerRef {
    group: String,
    kind: String,
    name: String,
    uid: String,
    blocks: bool,
}

fn owner_refs(obj: &Value) -> Vec<OwnerRef> {
    let Some(refs) = obj
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    refs.iter()
        .filter_map(|r| {
            let api_version = r.get("apiVersion")?.as_str()?;
            let group = api_version.split_once('/').map_or("", |(g, _)| g);
            Some(OwnerRef {
                group: group.to_string(),
                kind: r.get("kind")?.as_str()?.to_string(),
                name: r.get("name")?.as_str()?.to_string(),
                uid: r.get("uid")?.as_str()?.to_string(),
                blocks: r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true),
            })
        })
        .collect()
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn is_deleting(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// An object as the collector sees it.
#[derive(Debug, Clone)]
struct Node {
    resource: Resource,
    namespace: Option<String>,
    name: String,
    uid: String,
    owners: Vec<OwnerRef>,
    deleting: bool,
    orphan_finalizer: bool,
    foreground_finalizer: bool,
}

impl Node {
    fn new(resource: &Resource, obj: &Value) -> Option<Node> {
        Some(Node {
            resource: resource.clone(),
            namespace: meta_str(obj, "namespace")
                .filter(|_| resource.namespaced)
                .map(str::to_string),
            name: meta_str(obj, "name")?.to_string(),
            uid: meta_str(obj, "uid")?.to_string(),
            owners: owner_refs(obj),
            deleting: is_deleting(obj),
            orphan_finalizer: has_finalizer(obj, ORPHAN),
            foreground_finalizer: has_finalizer(obj, FOREGROUND),
        })
    }

    /// Marked for deletion and waiting for its dependents to go (kube's `isDeletingDependents`).
    fn deleting_dependents(&self) -> bool {
        self.deleting && self.foreground_finalizer
    }

    /// Marked for deletion and waiting for its dependents to be orphaned.
    fn orphaning(&self) -> bool {
        self.deleting && self.orphan_finalizer
    }
}

/// Every object by uid, and who depends on whom.
struct Graph {
    nodes: HashMap<String, Node>,
    /// owner uid -> uids of the objects naming it in their ownerReferences.
    dependents: HashMap<String, Vec<String>>,
}

impl Graph {
    fn new(nodes: Vec<Node>) -> Graph {
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for n in &nodes {
            for r in &n.owners {
                dependents
                    .entry(r.uid.clone())
                    .or_default()
                    .push(n.uid.clone());
            }
        }
        Graph {
            nodes: nodes.into_iter().map(|n| (n.uid.clone(), n)).collect(),
            dependents,
        }
    }

    fn dependents_of<'a>(&'a self, owner: &str) -> impl Iterator<Item = &'a Node> + 'a {
        self.dependents
            .get(owner)
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nodes.get(uid))
    }

    /// Dependents whose reference to `owner` says `blockOwnerDeletion: true`.
    fn blocking_dependents<'a>(&'a self, owner: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.dependents_of(owner)
            .filter(move |d| d.owners.iter().any(|r| r.uid == owner && r.blocks))
    }

    /// Whether, as far as the graph tells, every owner of `item` is there and not waiting for
    /// its dependents. References to kinds nobody serves cannot be checked and count as there.
    fn owners_all_solid(&self, resources: &[Resource], item: &Node) -> bool {
        item.owners.iter().all(|r| {
            if !resources
                .iter()
                .any(|res| res.group == r.group && res.kind == r.kind)
            {
                return true;
            }
            self.nodes.get(&r.uid).is_some_and(|owner| {
                owner.resource.group == r.group
                    && owner.resource.kind == r.kind
                    && owner.name == r.name
                    && (!owner.resource.namespaced || owner.namespace == item.namespace)
                    && !owner.deleting_dependents()
            })
        })
    }
}

/// What an owner reference points at, read fresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ownership {
    /// The owner is there and not waiting for its dependents.
    Solid,
    /// No such owner (or one with another uid).
    Dangling,
    /// The owner is being deleted in the foreground.
    Waiting,
}

/// kube's `isDangling` plus the foreground check of `classifyReferences`.
async fn classify<A: GarbageCollectorApi>(
    api: &A,
    resources: &[Resource],
    item: &Node,
    r: &OwnerRef,
) -> Result<Ownership, ClientError> {
    let Some(resource) = resources
        .iter()
        .find(|res| res.group == r.group && res.kind == r.kind)
    else {
        return Err(ClientError::Other(format!(
            "owner kind {:?} of group {:?} is not served",
            r.kind, r.group
        )));
    };
    let namespace = match (resource.namespaced, item.namespace.as_deref()) {
        (false, _) => None,
        (true, Some(ns)) => Some(ns),
        // A cluster-scoped dependent cannot have a namespaced owner: the reference is invalid.
        (true, None) => return Ok(Ownership::Dangling),
    };
    Ok(match api.get_object(resource, namespace, &r.name).await? {
        None => Ownership::Dangling,
        Some(owner) if meta_str(&owner, "uid") != Some(r.uid.as_str()) => Ownership::Dangling,
        Some(owner) if is_deleting(&owner) && has_finalizer(&owner, FOREGROUND) => {
            Ownership::Waiting
        }
        Some(_) => Ownership::Solid,
    })
}

/// The current version of `node`, if it is still the same object (same uid).
async fn latest<A: GarbageCollectorApi>(
    api: &A,
    node: &Node,
) -> Result<Option<Value>, ClientError> {
    Ok(api
        .get_object(&node.resource, node.namespace.as_deref(), &node.name)
        .await?
        .filter(|obj| meta_str(obj, "uid") == Some(node.uid.as_str())))
}

/// `obj` without its references to `owners` (uids).
fn without_owners(obj: &Value, owners: &[&str]) -> Value {
    let mut out = obj.clone();
    if let Some(refs) = out
        .pointer_mut("/metadata/ownerReferences")
        .and_then(Value::as_array_mut)
    {
        refs.retain(|r| {
            !r.get("uid")
                .and_then(Value::as_str)
                .is_some_and(|u| owners.contains(&u))
        });
        if refs.is_empty() {
            if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("ownerReferences");
            }
        }
    }
    out
}

/// kube's `attemptToDeleteItem` for an item that is not being deleted. Returns whether it
/// wrote anything.
async fn attempt_to_delete<A: GarbageCollectorApi>(
    api: &A,
    resources: &[Resource],
    graph: &Graph,
    seen: &Node,
) -> Result<bool, ClientError> {
    let Some(obj) = latest(api, seen).await? else {
        return Ok(false);
    };
    let Some(item) = Node::new(&seen.resource, &obj) else {
        return Ok(false);
    };
    if item.deleting || item.owners.is_empty() {
        return Ok(false);
    }
    let (mut solid, mut gone) = (0, Vec::new());
    let mut waiting = false;
    for r in &item.owners {
        match classify(api, resources, &item, r).await? {
            Ownership::Solid => solid += 1,
            Ownership::Dangling => gone.push(r.uid.as_str()),
            Ownership::Waiting => {
                waiting = true;
                gone.push(r.uid.as_str());
            }
        }
    }
    if solid > 0 {
        if gone.is_empty() {
            return Ok(false);
        }
        // A live owner keeps the item; only the references to owners that are gone (or that
        // wait for their dependents) go.
        tracing::debug!(item = %item.name, owners = ?gone, "garbage collector: removing owner references");
        api.update_object(&item.resource, &without_owners(&obj, &gone))
            .await?;
        return Ok(true);
    }
    let has_dependents = graph.dependents_of(&item.uid).next().is_some();
    let policy = if waiting && has_dependents {
        if graph
            .dependents_of(&item.uid)
            .any(Node::deleting_dependents)
        {
            // A dependent of this item waits for it while it waits for its owner: a cycle.
            // Stop blocking the owner so that one of them can go.
            let mut unblocked = obj.clone();
            if let Some(refs) = unblocked
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                for r in refs.iter_mut() {
                    if r.get("blockOwnerDeletion") == Some(&Value::Bool(true)) {
                        r["blockOwnerDeletion"] = Value::Bool(false);
                    }
                }
            }
            api.update_object(&item.resource, &unblocked).await?;
        }
        Policy::Foreground
    } else if has_finalizer(&obj, ORPHAN) {
        Policy::Orphan
    } else if has_finalizer(&obj, FOREGROUND) {
        Policy::Foreground
    } else {
        Policy::Background
    };
    tracing::debug!(
        resource = item.resource.plural, namespace = ?item.namespace, name = %item.name, ?policy,
        "garbage collector: deleting an object whose owners are gone"
    );
    match api
        .delete_object(
            &item.resource,
            item.namespace.as_deref(),
            &item.name,
            &item.uid,
            policy,
        )
        .await
    {
        Ok(()) | Err(ClientError::NotFound) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Removes `finalizer` from the owner; true when it wrote.
async fn remove_finalizer<A: GarbageCollectorApi>(
    api: &A,
    owner: &Node,
    finalizer: &str,
) -> Result<bool, ClientError> {
    let Some(mut obj) = latest(api, owner).await? else {
        return Ok(false);
    };
    let Some(list) = obj
        .pointer_mut("/metadata/finalizers")
        .and_then(Value::as_array_mut)
    else {
        return Ok(false);
    };
    let before = list.len();
    list.retain(|f| f != finalizer);
    if list.len() == before {
        return Ok(false);
    }
    tracing::debug!(owner = %owner.name, finalizer, "garbage collector: removing finalizer");
    match api.update_object(&owner.resource, &obj).await {
        Ok(()) | Err(ClientError::NotFound) => Ok(true),
        Err(e) => Err(e),
    }
}

/// kube's `attemptToOrphanWorker`: every dependent loses its reference to `owner`, then the
/// owner loses its `orphan` finalizer.
async fn orphan_dependents<A: GarbageCollectorApi>(
    api: &A,
    graph: &Graph,
    owner: &Node,
) -> Result<bool, ClientError> {
    let mut changed = false;
    for dependent in graph.dependents_of(&owner.uid) {
        let Some(obj) = latest(api, dependent).await? else {
            continue;
        };
        if !owner_refs(&obj).iter().any(|r| r.uid == owner.uid) {
            continue;
        }
        match api
            .update_object(&dependent.resource, &without_owners(&obj, &[&owner.uid]))
            .await
        {
            Ok(()) | Err(ClientError::NotFound) => changed = true,
            Err(e) => return Err(e),
        }
    }
    Ok(remove_finalizer(api, owner, ORPHAN).await? || changed)
}

/// What a pass did.
#[derive(Debug, Default)]
pub struct PassReport {
    /// Something was written (so the state moved and another pass may find more to do).
    pub changed: bool,
    /// Items that could not be handled, as messages; they are tried again next pass.
    pub failures: Vec<String>,
}

/// One look at every object: orphan the dependents of orphaning owners, release foreground
/// owners with no blocking dependents left, and delete (or trim the owner references of) every
/// object whose owners are gone or waiting.
pub async fn pass<A: GarbageCollectorApi>(api: &A) -> Result<PassReport, ClientError> {
    let resources = api.resources();
    let mut nodes = Vec::new();
    // Every list reads the first one's revision, so the graph is one snapshot: a dependent
    // created before its owner was marked is in it whenever the mark is.
    let mut revision = 0;
    for r in &resources {
        let (items, at) = api.list_all(r, revision).await?;
        revision = at;
        for obj in items {
            nodes.extend(Node::new(r, &obj));
        }
    }
    let graph = Graph::new(nodes);
    let mut report = PassReport::default();
    let mut record = |result: Result<bool, ClientError>, node: &Node| match result {
        Ok(changed) => report.changed |= changed,
        Err(e) => report.failures.push(format!(
            "{} {}{}: {e}",
            node.resource.plural,
            node.namespace
                .as_deref()
                .map(|ns| format!("{ns}/"))
                .unwrap_or_default(),
            node.name
        )),
    };
    for owner in graph.nodes.values().filter(|n| n.orphaning()) {
        record(orphan_dependents(api, &graph, owner).await, owner);
    }
    for owner in graph
        .nodes
        .values()
        .filter(|n| n.deleting_dependents() && !n.orphaning())
    {
        if graph.blocking_dependents(&owner.uid).next().is_none() {
            record(remove_finalizer(api, owner, FOREGROUND).await, owner);
        }
    }
    for item in graph
        .nodes
        .values()
        .filter(|n| !n.owners.is_empty() && !n.deleting && !graph.owners_all_solid(&resources, n))
    {
        record(attempt_to_delete(api, &resources, &graph, item).await, item);
    }
    Ok(report)
}

/// Runs the collector until `stop` turns true (or its sender goes away). A message on `wake`
/// asks for a pass now.
pub async fn run<A: GarbageCollectorApi>(
    api: A,
    mut wake: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut next = Instant::now();
    loop {
        if !super::next_pass(&mut wake, &mut stop, next).await {
            return;
        }
        next = match pass(&api).await {
            Ok(report) if report.failures.is_empty() => {
                backoff = MIN_BACKOFF;
                Instant::now() + if report.changed { SETTLE } else { RELIST }
            }
            Ok(report) => {
                tracing::warn!(failures = ?report.failures, "garbage collector: will retry");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Instant::now() + backoff
            }
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: listing objects; will retry");
                backoff = (backoff * 2).min(MAX_BACKOFF);
                Instant::now() + backoff
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use serde_json::json;

    use super::*;

    const RS: Resource = Resource {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
    };
    const DEPLOY: Resource = Resource {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
    };
    const PODS: Resource = Resource {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
    };

    /// An in-memory API with the apiserver's deletion rules in small: Background deletes now,
    /// Orphan and Foreground mark with their finalizer; an update that empties the finalizers
    /// of a marked object deletes it.
    #[derive(Default)]
    struct Fake {
        objects: Mutex<BTreeMap<(&'static str, String), Value>>,
    }

    impl Fake {
        fn put(&self, r: &Resource, obj: Value) {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            self.objects.lock().unwrap().insert((r.plural, name), obj);
        }
        fn get(&self, r: &Resource, name: &str) -> Option<Value> {
            self.objects
                .lock()
                .unwrap()
                .get(&(r.plural, name.to_string()))
                .cloned()
        }
        async fn settle(&self) {
            for _ in 0..20 {
                let report = pass(self).await.unwrap();
                assert!(report.failures.is_empty(), "{:?}", report.failures);
                if !report.changed {
                    return;
                }
            }
            panic!("the collector never settled");
        }
    }

    impl GarbageCollectorApi for Fake {
        fn resources(&self) -> Vec<Resource> {
            vec![DEPLOY, RS, PODS]
        }
        async fn list_all(&self, r: &Resource, _: i64) -> Result<(Vec<Value>, i64), ClientError> {
            let objects = self.objects.lock().unwrap();
            let items = objects
                .iter()
                .filter(|((p, _), _)| *p == r.plural)
                .map(|(_, o)| o.clone())
                .collect();
            Ok((items, 1))
        }
        async fn get_object(
            &self,
            r: &Resource,
            _: Option<&str>,
            name: &str,
        ) -> Result<Option<Value>, ClientError> {
            Ok(self.get(r, name))
        }
        async fn update_object(&self, r: &Resource, obj: &Value) -> Result<(), ClientError> {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            let released = is_deleting(obj)
                && obj["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty);
            let mut objects = self.objects.lock().unwrap();
            if released {
                objects.remove(&(r.plural, name));
            } else {
                objects.insert((r.plural, name), obj.clone());
            }
            Ok(())
        }
        async fn delete_object(
            &self,
            r: &Resource,
            _: Option<&str>,
            name: &str,
            uid: &str,
            policy: Policy,
        ) -> Result<(), ClientError> {
            let mut objects = self.objects.lock().unwrap();
            let key = (r.plural, name.to_string());
            let obj = objects.get_mut(&key).ok_or(ClientError::NotFound)?;
            if obj["metadata"]["uid"] != uid {
                return Err(ClientError::Conflict);
            }
            let finalizer = match policy {
                Policy::Background => {
                    objects.remove(&key);
                    return Ok(());
                }
                Policy::Orphan => ORPHAN,
                Policy::Foreground => FOREGROUND,
            };
            obj["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            obj["metadata"]["finalizers"] = json!([finalizer]);
            Ok(())
        }
    }

    fn object(name: &str, owner: Option<(&str, &str, bool)>) -> Value {
        let mut obj =
            json!({"metadata": {"name": name, "namespace": "d", "uid": format!("uid-{name}")}});
        if let Some((kind, owner, blocks)) = owner {
            let api_version = if kind == "Pod" { "v1" } else { "apps/v1" };
            obj["metadata"]["ownerReferences"] = json!([{"apiVersion": api_version, "kind": kind,
                "name": owner, "uid": format!("uid-{owner}"), "blockOwnerDeletion": blocks}]);
        }
        obj
    }

    fn chain() -> Fake {
        let api = Fake::default();
        api.put(&DEPLOY, object("web", None));
        api.put(&RS, object("web-1", Some(("Deployment", "web", true))));
        api.put(
            &PODS,
            object("web-1-a", Some(("ReplicaSet", "web-1", true))),
        );
        api.put(
            &PODS,
            object("web-1-b", Some(("ReplicaSet", "web-1", false))),
        );
        api
    }

    #[tokio::test]
    async fn background_deletion_takes_the_whole_chain() {
        let api = chain();
        api.delete_object(&DEPLOY, None, "web", "uid-web", Policy::Background)
            .await
            .unwrap();
        api.settle().await;
        assert!(api.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn foreground_deletion_removes_dependents_before_the_owner() {
        let api = chain();
        api.delete_object(&DEPLOY, None, "web", "uid-web", Policy::Foreground)
            .await
            .unwrap();
        // One pass: the ReplicaSet has dependents of its own, so it goes in the foreground too.
        pass(&api).await.unwrap();
        let rs = api.get(&RS, "web-1").unwrap();
        assert_eq!(rs["metadata"]["finalizers"], json!([FOREGROUND]));
        assert!(api.get(&DEPLOY, "web").is_some());
        api.settle().await;
        assert!(api.objects.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn only_blocking_dependents_hold_a_foreground_owner() {
        let api = Fake::default();
        let mut rs = object("web-1", None);
        rs["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        rs["metadata"]["finalizers"] = json!([FOREGROUND]);
        api.put(&RS, rs);
        // Both pods are being deleted already (a kubelet is stopping them).
        for (name, blocks) in [("a", true), ("b", false)] {
            let mut pod = object(name, Some(("ReplicaSet", "web-1", blocks)));
            pod["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
            api.put(&PODS, pod);
        }
        api.settle().await;
        assert!(api.get(&RS, "web-1").is_some(), "pod a blocks it");
        api.objects
            .lock()
            .unwrap()
            .remove(&("pods", "a".to_string()));
        api.settle().await;
        assert!(api.get(&RS, "web-1").is_none(), "pod b does not block it");
        assert!(api.get(&PODS, "b").is_some());
    }

    #[tokio::test]
    async fn orphaning_keeps_dependents_and_drops_the_reference() {
        let api = chain();
        api.delete_object(&DEPLOY, None, "web", "uid-web", Policy::Orphan)
            .await
            .unwrap();
        api.settle().await;
        assert!(api.get(&DEPLOY, "web").is_none());
        let rs = api.get(&RS, "web-1").unwrap();
        assert!(rs["metadata"].get("ownerReferences").is_none(), "{rs}");
        assert_eq!(api.objects.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_live_owner_keeps_an_object_and_a_stale_uid_does_not() {
        let api = Fake::default();
        api.put(&DEPLOY, object("web", None));
        // Two owners, one gone: the object stays, the dangling reference goes.
        let mut rs = object("two", Some(("Deployment", "web", false)));
        rs["metadata"]["ownerReferences"]
            .as_array_mut()
            .unwrap()
            .push(json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "old", "uid": "uid-old"}));
        api.put(&RS, rs);
        // The owner's name is there, with another uid: the owner is gone.
        let mut stale = object("stale", None);
        stale["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "uid-previous-web"}]);
        api.put(&RS, stale);
        // Owned by a kind nobody serves: cannot be judged, so it stays.
        let mut foreign = object("foreign", None);
        foreign["metadata"]["ownerReferences"] = json!([{"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "uid-w"}]);
        api.put(&RS, foreign);
        api.settle().await;
        let two = api.get(&RS, "two").unwrap();
        assert_eq!(
            two["metadata"]["ownerReferences"].as_array().unwrap().len(),
            1
        );
        assert!(api.get(&RS, "stale").is_none());
        assert!(api.get(&RS, "foreign").is_some());
    }
}

//! The namespace controller, after kube-controller-manager's: a namespace marked for deletion
//! (Terminating) is emptied — every namespaced resource deleted as a collection, which honours
//! finalizers and graceful deletion —, its status conditions report what is left, and once
//! nothing is left its `kubernetes` finalizer is removed through `/finalize`, which lets the
//! apiserver delete it.
//!
//! Level-triggered: [`reconcile`] looks only at the current state. [`run`] reconciles a
//! namespace when it is named on the wake channel (the apiserver names a namespace when it is
//! marked or when something in it goes away), at its requeue time, and after every relist
//! (which catches namespaces marked elsewhere, e.g. through another apiserver).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The finalizer this controller owns.
pub const FINALIZER: &str = "kubernetes";

/// How often every namespace is listed again.
const RELIST: Duration = Duration::from_secs(10);
/// First and last delay before a namespace whose content makes no progress is looked at again.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// A namespaced resource the controller empties.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

impl Resource {
    /// `plural.group` as Kubernetes' condition messages print it (core: "pods.").
    fn group_resource(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }
}

pub use super::ClientError;

/// The API calls the controller makes (client-go's, in kube-controller-manager).
pub trait NamespaceApi: Send + Sync {
    /// Every namespace.
    fn list_namespaces(&self) -> impl Future<Output = Result<Vec<Value>, ClientError>> + Send;
    /// One namespace, None when it is gone.
    fn get_namespace(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<Value>, ClientError>> + Send;
    /// The namespaced resources to empty.
    fn namespaced_resources(&self) -> Vec<Resource>;
    /// DELETE of `resource`'s collection in `namespace` (deletecollection, default options).
    fn delete_collection(
        &self,
        resource: &Resource,
        namespace: &str,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// LIST of `resource` in `namespace`.
    fn list(
        &self,
        resource: &Resource,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<Value>, ClientError>> + Send;
    /// PUT `namespaces/<name>/status` (optimistic: Conflict when `ns` is stale).
    fn update_status(&self, ns: &Value) -> impl Future<Output = Result<(), ClientError>> + Send;
    /// PUT `namespaces/<name>/finalize` (optimistic: Conflict when `ns` is stale).
    fn finalize(&self, ns: &Value) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// What to do with a namespace after a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing more to do (gone, not terminating, or finalized).
    Done,
    /// Content remains (`remaining` objects); look again later, sooner when `estimate` (the
    /// longest grace period among them) says so.
    Wait {
        remaining: usize,
        estimate: Duration,
    },
}

fn is_terminating(ns: &Value) -> bool {
    ns.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn has_finalizer(ns: &Value) -> bool {
    ns.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// What deleting the content left behind.
#[derive(Debug, Default)]
struct Leftovers {
    /// Objects per resource (`plural.group`).
    by_resource: BTreeMap<String, usize>,
    /// Objects per finalizer.
    by_finalizer: BTreeMap<String, usize>,
    /// Deletions that failed, as messages.
    failures: Vec<String>,
    /// The longest grace period among remaining objects, in seconds.
    estimate: i64,
}

impl Leftovers {
    fn remaining(&self) -> usize {
        self.by_resource.values().sum()
    }
}

/// "a, b has 2 resource instances; c has 1 resource instances", largest counts first.
fn counts(by: &BTreeMap<String, usize>, word: &str) -> String {
    let mut grouped: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (name, n) in by.iter().filter(|(_, n)| **n > 0) {
        grouped.entry(*n).or_default().push(name);
    }
    grouped
        .iter()
        .rev()
        .map(|(n, names)| format!("{} {word} {n} resource instances", names.join(", ")))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The namespace deletion conditions kube-controller-manager maintains.
fn conditions(left: &Leftovers) -> Vec<(&'static str, &'static str, &'static str, String)> {
    let content_failure = if left.failures.is_empty() {
        (
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_string(),
        )
    } else {
        (
            "True",
            "ContentDeletionFailed",
            format!(
                "Failed to delete all resource types, {} remaining: {}",
                left.failures.len(),
                left.failures.join(", ")
            ),
        )
    };
    let remaining = if left.remaining() == 0 {
        (
            "False",
            "ContentRemoved",
            "All content successfully removed".to_string(),
        )
    } else {
        (
            "True",
            "SomeResourcesRemain",
            format!(
                "Some resources are remaining: {}",
                counts(&left.by_resource, "has")
            ),
        )
    };
    let finalizers = if left.by_finalizer.is_empty() {
        (
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".to_string(),
        )
    } else {
        (
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                counts(&left.by_finalizer, "in")
            ),
        )
    };
    vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".to_string(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_string(),
        ),
        (
            "NamespaceDeletionContentFailure",
            content_failure.0,
            content_failure.1,
            content_failure.2,
        ),
        (
            "NamespaceContentRemaining",
            remaining.0,
            remaining.1,
            remaining.2,
        ),
        (
            "NamespaceFinalizersRemaining",
            finalizers.0,
            finalizers.1,
            finalizers.2,
        ),
    ]
}

/// `ns` with its deletion conditions set from `left`; a condition keeps its
/// lastTransitionTime unless its status, reason or message changed.
fn with_conditions(ns: &Value, left: &Leftovers, now: &str) -> Value {
    let mut out = ns.clone();
    let old: Vec<Value> = ns
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut list: Vec<Value> = old
        .iter()
        .filter(|c| !conditions(left).iter().any(|(t, ..)| c["type"] == *t))
        .cloned()
        .collect();
    for (ty, status, reason, message) in conditions(left) {
        let previous = old.iter().find(|c| c["type"] == ty);
        let same = previous.is_some_and(|p| {
            p["status"] == status && p["reason"] == reason && p["message"] == message.as_str()
        });
        let time = match previous {
            Some(p) if same => p["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        list.push(
            json!({"type": ty, "status": status, "lastTransitionTime": time,
            "reason": reason, "message": message}),
        );
    }
    if !out.get("status").is_some_and(Value::is_object) {
        out["status"] = json!({});
    }
    out["status"]["conditions"] = Value::Array(list);
    out
}

/// Deletes everything in `name` and reports what stayed.
async fn delete_content<A: NamespaceApi>(api: &A, name: &str) -> Leftovers {
    let mut left = Leftovers::default();
    for r in api.namespaced_resources() {
        if let Err(e) = api.delete_collection(&r, name).await {
            left.failures.push(format!("{}: {e}", r.group_resource()));
        }
        match api.list(&r, name).await {
            Ok(items) if items.is_empty() => {}
            Ok(items) => {
                *left.by_resource.entry(r.group_resource()).or_default() += items.len();
                for item in &items {
                    if let Some(fs) = item
                        .pointer("/metadata/finalizers")
                        .and_then(Value::as_array)
                    {
                        for f in fs.iter().filter_map(Value::as_str) {
                            *left.by_finalizer.entry(f.to_string()).or_default() += 1;
                        }
                    }
                    let grace = item
                        .pointer("/metadata/deletionGracePeriodSeconds")
                        .and_then(Value::as_i64)
                        .unwrap_or(0);
                    left.estimate = left.estimate.max(grace);
                }
            }
            Err(e) => left.failures.push(format!("{}: {e}", r.group_resource())),
        }
    }
    left
}

/// One pass over namespace `name` (the namespace controller's `syncNamespace`).
pub async fn reconcile<A: NamespaceApi>(
    api: &A,
    name: &str,
    now: &str,
) -> Result<Action, ClientError> {
    let Some(ns) = api.get_namespace(name).await? else {
        return Ok(Action::Done);
    };
    if !is_terminating(&ns) || !has_finalizer(&ns) {
        return Ok(Action::Done);
    }
    let left = delete_content(api, name).await;
    let updated = with_conditions(&ns, &left, now);
    let ns = if updated != ns {
        api.update_status(&updated).await?;
        match api.get_namespace(name).await? {
            Some(ns) => ns,
            None => return Ok(Action::Done),
        }
    } else {
        ns
    };
    if !left.failures.is_empty() {
        return Err(ClientError::Other(left.failures.join("; ")));
    }
    if left.remaining() > 0 {
        return Ok(Action::Wait {
            remaining: left.remaining(),
            estimate: Duration::from_secs(left.estimate.max(0) as u64),
        });
    }
    let mut finalized = ns.clone();
    if let Some(fs) = finalized
        .pointer_mut("/spec/finalizers")
        .and_then(Value::as_array_mut)
    {
        fs.retain(|f| f != FINALIZER);
    }
    match api.finalize(&finalized).await {
        Ok(()) | Err(ClientError::NotFound) => Ok(Action::Done),
        Err(e) => Err(e),
    }
}

/// When a namespace is looked at next, and how it went last time.
struct Due {
    at: Instant,
    backoff: Duration,
    remaining: Option<usize>,
}

/// Runs the controller until `stop` turns true (or its sender goes away). `wake` names
/// namespaces to look at now.
pub async fn run<A: NamespaceApi>(
    api: A,
    mut wake: mpsc::Receiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut due: HashMap<String, Due> = HashMap::new();
    let mut next_relist = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_relist {
            match api.list_namespaces().await {
                Ok(list) => {
                    for ns in list.iter().filter(|ns| is_terminating(ns)) {
                        let name = ns["metadata"]["name"].as_str().unwrap_or("").to_string();
                        due.entry(name).or_insert(Due {
                            at: now,
                            backoff: MIN_BACKOFF,
                            remaining: None,
                        });
                    }
                    next_relist = now + RELIST;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "namespace controller: listing namespaces");
                    next_relist = now + MIN_BACKOFF;
                }
            }
        }
        let ready: Vec<String> = due
            .iter()
            .filter(|(_, d)| d.at <= now)
            .map(|(n, _)| n.clone())
            .collect();
        for name in ready {
            let stamp = crate::apiserver::clock::now_rfc3339();
            let result = reconcile(&api, &name, &stamp).await;
            let Some(d) = due.get_mut(&name) else {
                continue;
            };
            match result {
                Ok(Action::Done) => {
                    tracing::debug!(namespace = %name, "namespace controller: done");
                    due.remove(&name);
                }
                Ok(Action::Wait {
                    remaining,
                    estimate,
                }) => {
                    // Progress resets the back-off; a stuck namespace is looked at less often.
                    if d.remaining.is_some_and(|r| r <= remaining) {
                        d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
                    } else {
                        d.backoff = MIN_BACKOFF;
                    }
                    d.remaining = Some(remaining);
                    let wait = if estimate.is_zero() {
                        d.backoff
                    } else {
                        estimate.min(d.backoff.max(MIN_BACKOFF) * 4)
                    };
                    d.at = Instant::now() + wait;
                }
                Err(e) => {
                    tracing::warn!(namespace = %name, error = %e, "namespace controller: will retry");
                    d.backoff = (d.backoff * 2).min(MAX_BACKOFF);
                    d.at = Instant::now() + d.backoff;
                }
            }
        }
        let next = due
            .values()
            .map(|d| d.at)
            .min()
            .unwrap_or(next_relist)
            .min(next_relist);
        tokio::select! {
            woken = wake.recv() => match woken {
                Some(name) => {
                    let d = due.entry(name).or_insert(Due {
                        at: Instant::now(),
                        backoff: MIN_BACKOFF,
                        remaining: None,
                    });
                    d.at = Instant::now();
                    // Take every other name already queued, so a burst is one pass.
                    while let Ok(more) = wake.try_recv() {
                        let d = due.entry(more).or_insert(Due {
                            at: Instant::now(),
                            backoff: MIN_BACKOFF,
                            remaining: None,
                        });
                        d.at = Instant::now();
                    }
                }
                None => return,
            },
            _ = tokio::time::sleep_until(next) => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An in-memory API: namespaces and objects per (resource, namespace).
    #[derive(Default)]
    struct Fake {
        namespaces: Mutex<BTreeMap<String, Value>>,
        objects: Mutex<BTreeMap<(&'static str, String), Vec<Value>>>,
    }

    const PODS: Resource = Resource {
        group: "",
        version: "v1",
        plural: "pods",
    };
    const CMS: Resource = Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
    };

    impl NamespaceApi for Fake {
        async fn list_namespaces(&self) -> Result<Vec<Value>, ClientError> {
            Ok(self.namespaces.lock().unwrap().values().cloned().collect())
        }
        async fn get_namespace(&self, name: &str) -> Result<Option<Value>, ClientError> {
            Ok(self.namespaces.lock().unwrap().get(name).cloned())
        }
        fn namespaced_resources(&self) -> Vec<Resource> {
            vec![PODS, CMS]
        }
        async fn delete_collection(&self, r: &Resource, ns: &str) -> Result<(), ClientError> {
            // Objects with finalizers stay (marked); the others go.
            let mut objects = self.objects.lock().unwrap();
            if let Some(items) = objects.get_mut(&(r.plural, ns.to_string())) {
                items.retain(|o| o["metadata"].get("finalizers").is_some());
            }
            Ok(())
        }
        async fn list(&self, r: &Resource, ns: &str) -> Result<Vec<Value>, ClientError> {
            let objects = self.objects.lock().unwrap();
            Ok(objects
                .get(&(r.plural, ns.to_string()))
                .cloned()
                .unwrap_or_default())
        }
        async fn update_status(&self, ns: &Value) -> Result<(), ClientError> {
            let name = ns["metadata"]["name"].as_str().unwrap().to_string();
            self.namespaces.lock().unwrap().insert(name, ns.clone());
            Ok(())
        }
        async fn finalize(&self, ns: &Value) -> Result<(), ClientError> {
            let name = ns["metadata"]["name"].as_str().unwrap().to_string();
            let mut all = self.namespaces.lock().unwrap();
            if ns["spec"]["finalizers"]
                .as_array()
                .is_some_and(|f| f.is_empty())
            {
                all.remove(&name);
            } else {
                all.insert(name, ns.clone());
            }
            Ok(())
        }
    }

    fn terminating(name: &str) -> Value {
        json!({"metadata": {"name": name, "deletionTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Terminating"}})
    }

    #[tokio::test]
    async fn empties_then_finalizes_and_reports_what_holds_it_up() {
        let api = Fake::default();
        api.namespaces
            .lock()
            .unwrap()
            .insert("x".into(), terminating("x"));
        api.namespaces.lock().unwrap().insert(
            "live".into(),
            json!({"metadata": {"name": "live"}, "spec": {"finalizers": ["kubernetes"]}}),
        );
        api.objects.lock().unwrap().insert(
            ("configmaps", "x".into()),
            vec![
                json!({"metadata": {"name": "a"}}),
                json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
            ],
        );
        api.objects.lock().unwrap().insert(
            ("pods", "x".into()),
            vec![json!({"metadata": {"name": "p"}})],
        );

        let action = reconcile(&api, "x", "t1").await.unwrap();
        assert_eq!(
            action,
            Action::Wait {
                remaining: 1,
                estimate: Duration::ZERO
            }
        );
        let ns = api.get_namespace("x").await.unwrap().unwrap();
        let cond = |t: &str| {
            ns["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(
            cond("NamespaceContentRemaining")["message"],
            "Some resources are remaining: configmaps. has 1 resource instances"
        );
        assert_eq!(
            cond("NamespaceFinalizersRemaining")["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));

        // The finalizer goes away: the next pass finalizes, and the namespace is gone.
        api.objects
            .lock()
            .unwrap()
            .insert(("configmaps", "x".into()), Vec::new());
        assert_eq!(reconcile(&api, "x", "t2").await.unwrap(), Action::Done);
        assert!(api.get_namespace("x").await.unwrap().is_none());
        // A namespace that is not terminating is left alone.
        assert_eq!(reconcile(&api, "live", "t3").await.unwrap(), Action::Done);
        assert!(api.get_namespace("live").await.unwrap().is_some());
    }

    #[test]
    fn condition_times_move_only_on_change() {
        let ns = terminating("x");
        let left = Leftovers::default();
        let first = with_conditions(&ns, &left, "t1");
        let again = with_conditions(&first, &left, "t2");
        assert_eq!(first, again);
        let more = Leftovers {
            by_resource: [("pods.".to_string(), 2)].into(),
            ..Leftovers::default()
        };
        let changed = with_conditions(&again, &more, "t3");
        let times: Vec<&str> = changed["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["lastTransitionTime"].as_str().unwrap())
            .collect();
        assert_eq!(times, ["t1", "t1", "t1", "t3", "t1"]);
    }
}

//! The RBAC objects in memory, so authorizing a request reads no etcd: each of Roles,
//! ClusterRoles, RoleBindings and ClusterRoleBindings is listed once and then followed by an
//! etcd watch from the list's revision (kube's reflector pattern). When the watch ends (store
//! restarted, history compacted, Watch not served) the kind is listed again after a short pause,
//! so the cache is at most that pause plus one round trip behind etcd.
//!
//! A change to any ClusterRole bumps a counter the ClusterRole aggregation controller waits on.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use cairn_proto::mvccpb::event::EventType;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

use super::super::storage::{prefix_end, StorageError, Store};
use super::rbac::{Binding, Policy, Rule, Verdict};
use super::request_info::RequestInfo;
use super::UserInfo;

/// Pause before a kind is listed again after its watch ended or a list failed.
const RELIST_PAUSE: Duration = Duration::from_millis(500);

/// The four RBAC kinds, by their storage plural.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    ClusterRoles,
    Roles,
    ClusterRoleBindings,
    RoleBindings,
}

const KINDS: [Kind; 4] = [
    Kind::ClusterRoles,
    Kind::Roles,
    Kind::ClusterRoleBindings,
    Kind::RoleBindings,
];

impl Kind {
    fn plural(self) -> &'static str {
        match self {
            Kind::ClusterRoles => "clusterroles",
            Kind::Roles => "roles",
            Kind::ClusterRoleBindings => "clusterrolebindings",
            Kind::RoleBindings => "rolebindings",
        }
    }

    fn clear(self, p: &mut Policy) {
        match self {
            Kind::ClusterRoles => p.cluster_roles.clear(),
            Kind::Roles => p.roles.clear(),
            Kind::ClusterRoleBindings => p.cluster_role_bindings.clear(),
            Kind::RoleBindings => p.role_bindings.clear(),
        }
    }

    /// Applies one stored object (`None`: deleted) at `path` (`<name>` or `<ns>/<name>`).
    fn apply(self, p: &mut Policy, path: &str, obj: Option<&Value>) {
        let (ns, name) = match path.split_once('/') {
            Some((ns, name)) => (ns.to_string(), name.to_string()),
            None => (String::new(), path.to_string()),
        };
        match (self, obj) {
            (Kind::ClusterRoles, Some(o)) => {
                p.cluster_roles.insert(name, Rule::of_role(o));
            }
            (Kind::ClusterRoles, None) => {
                p.cluster_roles.remove(&name);
            }
            (Kind::Roles, Some(o)) => {
                p.roles.insert((ns, name), Rule::of_role(o));
            }
            (Kind::Roles, None) => {
                p.roles.remove(&(ns, name));
            }
            (Kind::ClusterRoleBindings, Some(o)) => {
                p.cluster_role_bindings.insert(name, Binding::from_json(o));
            }
            (Kind::ClusterRoleBindings, None) => {
                p.cluster_role_bindings.remove(&name);
            }
            (Kind::RoleBindings, Some(o)) => {
                let mut b = Binding::from_json(o);
                // The key, not the body, says where a binding lives.
                b.namespace = ns.clone();
                p.role_bindings.insert((ns, name), b);
            }
            (Kind::RoleBindings, None) => {
                p.role_bindings.remove(&(ns, name));
            }
        }
    }
}

/// The RBAC policy as last seen in etcd.
pub struct RbacCache {
    policy: RwLock<Policy>,
    cluster_role_changes: watch::Sender<u64>,
}

impl RbacCache {
    /// Starts following the RBAC objects under `prefix`; returns once every kind has been
    /// listed (so the bootstrap policy is in force before the first request), or with the
    /// last list error when `stop` fires first.
    pub async fn start(
        store: Store,
        prefix: String,
        stop: watch::Receiver<bool>,
    ) -> Result<Arc<RbacCache>, StorageError> {
        let cache = Arc::new(RbacCache {
            policy: RwLock::new(Policy::default()),
            cluster_role_changes: watch::channel(0).0,
        });
        let mut listed = Vec::new();
        for kind in KINDS {
            let (tx, rx) = oneshot::channel();
            listed.push(rx);
            tokio::spawn(follow(
                cache.clone(),
                store.clone(),
                format!("{prefix}/{}/", kind.plural()),
                kind,
                tx,
                stop.clone(),
            ));
        }
        for rx in listed {
            rx.await.map_err(|_| {
                StorageError::Etcd("stopped before the RBAC objects were listed".into())
            })?;
        }
        Ok(cache)
    }

    /// What RBAC says about `request` from `user`, under the current policy.
    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Verdict {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .authorize(user, request)
    }

    /// The rules that apply to `user` in `namespace`, and the errors met collecting them.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .rules_for(user, namespace)
    }

    /// The rules of a Role (in `namespace`) or ClusterRole, if it exists.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .role_rules(kind, namespace, name)
    }

    /// Changes whenever a ClusterRole is created, changed or deleted.
    pub fn cluster_role_changes(&self) -> watch::Receiver<u64> {
        self.cluster_role_changes.subscribe()
    }

    fn update(&self, kind: Kind, f: impl FnOnce(&mut Policy)) {
        f(&mut self.policy.write().unwrap_or_else(|e| e.into_inner()));
        if kind == Kind::ClusterRoles {
            self.cluster_role_changes.send_modify(|n| *n += 1);
        }
    }
}

/// Lists `kind` and follows its watch, forever (until `stop`); `listed` fires after the first
/// successful list.
async fn follow(
    cache: Arc<RbacCache>,
    store: Store,
    prefix: String,
    kind: Kind,
    listed: oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) {
    let mut listed = Some(listed);
    let end = prefix_end(prefix.as_bytes());
    loop {
        let run = async {
            let page = store.range(prefix.as_bytes(), &end, 0, 0).await?;
            cache.update(kind, |p| {
                kind.clear(p);
                for kv in &page.kvs {
                    if let (Some(path), Ok(obj)) = (
                        kv.key.strip_prefix(prefix.as_bytes()),
                        serde_json::from_slice::<Value>(&kv.value),
                    ) {
                        kind.apply(p, &String::from_utf8_lossy(path), Some(&obj));
                    }
                }
            });
            if let Some(tx) = listed.take() {
                let _ = tx.send(());
            }
            let mut stream = store.watch(prefix.as_bytes(), page.revision + 1).await?;
            while let Some(resp) = stream.next().await? {
                if resp.canceled || resp.compact_revision > 0 {
                    break;
                }
                cache.update(kind, |p| {
                    for ev in &resp.events {
                        let Some(kv) = &ev.kv else { continue };
                        let Some(path) = kv.key.strip_prefix(prefix.as_bytes()) else {
                            continue;
                        };
                        let path = String::from_utf8_lossy(path);
                        if ev.r#type == EventType::Delete as i32 {
                            kind.apply(p, &path, None);
                        } else if let Ok(obj) = serde_json::from_slice::<Value>(&kv.value) {
                            kind.apply(p, &path, Some(&obj));
                        }
                    }
                });
            }
            Ok::<(), StorageError>(())
        };
        tokio::select! {
            r = run => if let Err(e) = r {
                tracing::debug!(kind = kind.plural(), error = %e, "RBAC cache: listing again");
            },
            _ = stop.changed() => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(RELIST_PAUSE) => {}
            _ = stop.changed() => return,
        }
    }
}

//! The default RBAC policy kube-apiserver creates at startup (the part that matters for the
//! kinds served here): `cluster-admin`; the user-facing `admin`, `edit` and `view`, which are
//! aggregated from every ClusterRole labelled `rbac.authorization.k8s.io/aggregate-to-<role>`
//! (filled by the ClusterRole aggregation controller) together with the
//! `system:aggregate-to-*` roles holding their rules; `system:basic-user`, `system:discovery`
//! and `system:public-info-viewer`; and their bindings — cluster-admin to `system:masters`, the
//! discovery, basic-user and public-info-viewer roles to `system:authenticated`, and
//! public-info-viewer also to `system:unauthenticated`.
//!
//! Objects that exist are left as they are (an administrator's changes are kept); missing ones
//! are created, so deleting one and restarting brings it back.

use serde_json::{json, Value};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
const AGGREGATE_TO: &str = "rbac.authorization.k8s.io/aggregate-to-";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> Value {
    json!({"apiGroups": groups, "resources": resources, "verbs": verbs})
}

fn urls(paths: &[&str], verbs: &[&str]) -> Value {
    json!({"nonResourceURLs": paths, "verbs": verbs})
}

fn cluster_role(name: &str, labels: Value, rules: Vec<Value>) -> Value {
    let mut all_labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    if let (Some(into), Some(from)) = (all_labels.as_object_mut(), labels.as_object()) {
        into.extend(from.clone());
    }
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {
            "name": name,
            "labels": all_labels,
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "rules": rules,
    })
}

/// A ClusterRole whose rules are those of every ClusterRole labelled
/// `rbac.authorization.k8s.io/aggregate-to-<role>: "true"`.
fn aggregated(name: &str, labels: Value) -> Value {
    let mut role = cluster_role(name, labels, Vec::new());
    role["aggregationRule"] = json!({
        "clusterRoleSelectors": [{"matchLabels": {format!("{AGGREGATE_TO}{name}"): "true"}}]
    });
    role
}

fn aggregate_label(to: &str) -> Value {
    json!({format!("{AGGREGATE_TO}{to}"): "true"})
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"},
        },
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": groups.iter().map(|g| json!({"apiGroup": RBAC_GROUP, "kind": "Group", "name": g})).collect::<Vec<_>>(),
    })
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let view_core = &[
        "configmaps",
        "endpoints",
        "persistentvolumeclaims",
        "persistentvolumeclaims/status",
        "pods",
        "replicationcontrollers",
        "replicationcontrollers/scale",
        "serviceaccounts",
        "services",
        "services/status",
        "events",
        "limitranges",
        "namespaces/status",
        "pods/status",
        "pods/log",
        "bindings",
        "replicationcontrollers/status",
        "resourcequotas",
        "resourcequotas/status",
    ];
    let apps = &[
        "controllerrevisions",
        "daemonsets",
        "daemonsets/status",
        "deployments",
        "deployments/scale",
        "deployments/status",
        "replicasets",
        "replicasets/scale",
        "replicasets/status",
        "statefulsets",
        "statefulsets/scale",
        "statefulsets/status",
    ];
    let batch = &["cronjobs", "cronjobs/status", "jobs", "jobs/status"];
    let hpa = &[
        "horizontalpodautoscalers",
        "horizontalpodautoscalers/status",
    ];
    let pdb = &["poddisruptionbudgets", "poddisruptionbudgets/status"];
    vec![
        cluster_role(
            "cluster-admin",
            json!({}),
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        aggregated("admin", json!({})),
        aggregated("edit", aggregate_label("admin")),
        aggregated("view", aggregate_label("edit")),
        cluster_role(
            "system:aggregate-to-admin",
            aggregate_label("admin"),
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["localsubjectaccessreviews"],
                    &["create"],
                ),
                rule(
                    &[RBAC_GROUP],
                    &["rolebindings", "roles"],
                    &[
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                ),
            ],
        ),
        cluster_role(
            "system:aggregate-to-edit",
            aggregate_label("edit"),
            vec![
                rule(&[""], &["secrets"], READ),
                rule(
                    &[""],
                    &[
                        "configmaps",
                        "events",
                        "persistentvolumeclaims",
                        "pods",
                        "replicationcontrollers",
                        "replicationcontrollers/scale",
                        "secrets",
                        "serviceaccounts",
                        "services",
                        "endpoints",
                    ],
                    WRITE,
                ),
                rule(
                    &["apps"],
                    &[
                        "daemonsets",
                        "deployments",
                        "deployments/scale",
                        "replicasets",
                        "replicasets/scale",
                        "statefulsets",
                        "statefulsets/scale",
                    ],
                    WRITE,
                ),
                rule(&["autoscaling"], &["horizontalpodautoscalers"], WRITE),
                rule(&["batch"], &["cronjobs", "jobs"], WRITE),
                rule(&["policy"], &["poddisruptionbudgets"], WRITE),
            ],
        ),
        cluster_role(
            "system:aggregate-to-view",
            aggregate_label("view"),
            vec![
                rule(&[""], view_core, READ),
                rule(&[""], &["namespaces"], READ),
                rule(&["apps"], apps, READ),
                rule(&["autoscaling"], hpa, READ),
                rule(&["batch"], batch, READ),
                rule(&["policy"], pdb, READ),
            ],
        ),
        cluster_role(
            "system:basic-user",
            json!({}),
            vec![
                rule(
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                    &["create"],
                ),
                rule(
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                    &["create"],
                ),
            ],
        ),
        cluster_role(
            "system:discovery",
            json!({}),
            vec![urls(
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
                &["get"],
            )],
        ),
        cluster_role(
            "system:public-info-viewer",
            json!({}),
            vec![urls(
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
                &["get"],
            )],
        ),
    ]
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[super::MASTERS_GROUP]),
        binding(
            "system:basic-user",
            "system:basic-user",
            &[super::AUTHENTICATED_GROUP],
        ),
        binding(
            "system:discovery",
            "system:discovery",
            &[super::AUTHENTICATED_GROUP],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[super::AUTHENTICATED_GROUP, super::UNAUTHENTICATED_GROUP],
        ),
    ]
}

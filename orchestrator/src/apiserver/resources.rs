//! The resource table: every kind the apiserver serves, with its discovery facts and per-kind
//! behaviour flags. Adding a kind is one entry here, plus its Table columns in `table.rs` and
//! its defaults and validation in `defaults.rs` / `validation.rs` when Kubernetes has them.
//! Invariant: (group, version, plural) is unique; a resource served in several versions has
//! its storage version listed first (it is the preferred one in discovery).

/// How the name of an object is validated (Kubernetes' `ValidateNameFunc` per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
    Subdomain,
    /// DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    Label,
    /// RFC 1035 label: a DNS-1123 label that starts with a letter (Service names).
    Rfc1035Label,
    /// A URL path segment: anything but '/' and '%', and not "." or ".." (RBAC object names such
    /// as `system:controller:foo`).
    PathSegment,
}

/// One served resource.
#[derive(Debug)]
pub struct ResourceDef {
    /// API group; "" is the core (legacy) group served under /api.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL and storage name (`/registry/<plural>/...`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub namespaced: bool,
    pub name_rule: NameRule,
    /// Served with a `/status` subresource: the main resource ignores status changes, and status
    /// is reset on create, as Kubernetes' strategies for these kinds do.
    pub has_status: bool,
    /// Served with a `/scale` subresource (autoscaling/v1 Scale over `spec.replicas`).
    pub has_scale: bool,
    /// metadata.generation is kept: 1 on create, +1 whenever `spec` changes.
    pub tracks_generation: bool,
    /// Field selector labels accepted besides metadata.name / metadata.namespace.
    pub field_labels: &'static [&'static str],
    /// DELETE answers with the deleted object rather than a Status (Kubernetes' registries for
    /// these kinds set `ReturnDeletedObject`).
    pub returns_deleted_object: bool,
}

impl ResourceDef {
    /// `apiVersion` of objects of this kind: "v1" or "apps/v1".
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Group-qualified resource name as used in error messages ("deployments.apps").
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Group-qualified kind as used in Invalid errors ("Deployment.apps", "ConfigMap").
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// Verbs advertised in discovery: exactly those the REST layer implements. Namespaces have
    /// no deletecollection, as in Kubernetes.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.deletes_collections() {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        } else {
            &[
                "create", "delete", "get", "list", "patch", "update", "watch",
            ]
        }
    }

    /// Whether DELETE on the collection (deletecollection) is served.
    pub fn deletes_collections(&self) -> bool {
        (self.group, self.kind) != ("", "Namespace")
    }
}

const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// What every entry starts from: a namespaced core/v1 kind with subdomain names and no
/// subresources.
const BASE: ResourceDef = ResourceDef {
    group: "",
    version: "v1",
    kind: "",
    plural: "",
    singular: "",
    short_names: &[],
    categories: &[],
    namespaced: true,
    name_rule: NameRule::Subdomain,
    has_status: false,
    has_scale: false,
    tracks_generation: false,
    field_labels: &[],
    returns_deleted_object: false,
};

const APPS: ResourceDef = ResourceDef {
    group: "apps",
    ..BASE
};
const BATCH: ResourceDef = ResourceDef {
    group: "batch",
    ..BASE
};
const RBAC: ResourceDef = ResourceDef {
    group: "rbac.authorization.k8s.io",
    name_rule: NameRule::PathSegment,
    ..BASE
};

/// Every served resource, with the discovery facts kube-apiserver 1.33 publishes for it.
pub static RESOURCES: &[ResourceDef] = &[
    // core/v1
    ResourceDef {
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        short_names: &["ns"],
        namespaced: false,
        name_rule: NameRule::Label,
        has_status: true,
        field_labels: &["status.phase"],
        returns_deleted_object: true,
        ..BASE
    },
    ResourceDef {
        kind: "Node",
        plural: "nodes",
        singular: "node",
        short_names: &["no"],
        namespaced: false,
        has_status: true,
        field_labels: &["spec.unschedulable"],
        ..BASE
    },
    ResourceDef {
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        short_names: &["po"],
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        field_labels: POD_FIELDS,
        returns_deleted_object: true,
        ..BASE
    },
    ResourceDef {
        kind: "Service",
        plural: "services",
        singular: "service",
        short_names: &["svc"],
        categories: &["all"],
        name_rule: NameRule::Rfc1035Label,
        has_status: true,
        returns_deleted_object: true,
        ..BASE
    },
    ResourceDef {
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        short_names: &["cm"],
        ..BASE
    },
    ResourceDef {
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        field_labels: &["type"],
        ..BASE
    },
    ResourceDef {
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        short_names: &["sa"],
        ..BASE
    },
    ResourceDef {
        kind: "Event",
        plural: "events",
        singular: "event",
        short_names: &["ev"],
        field_labels: EVENT_FIELDS,
        ..BASE
    },
    ResourceDef {
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        short_names: &["ep"],
        ..BASE
    },
    ResourceDef {
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        short_names: &["pv"],
        namespaced: false,
        has_status: true,
        ..BASE
    },
    ResourceDef {
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        short_names: &["pvc"],
        has_status: true,
        ..BASE
    },
    ResourceDef {
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        short_names: &["rc"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
        tracks_generation: true,
        field_labels: &["status.replicas"],
        ..BASE
    },
    ResourceDef {
        kind: "ResourceQuota",
        plural: "resourcequotas",
        singular: "resourcequota",
        short_names: &["quota"],
        has_status: true,
        ..BASE
    },
    ResourceDef {
        kind: "LimitRange",
        plural: "limitranges",
        singular: "limitrange",
        short_names: &["limits"],
        ..BASE
    },
    // apps/v1
    ResourceDef {
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
        tracks_generation: true,
        ..APPS
    },
    ResourceDef {
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        short_names: &["rs"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
        tracks_generation: true,
        field_labels: &["status.replicas"],
        ..APPS
    },
    ResourceDef {
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        short_names: &["sts"],
        categories: &["all"],
        has_status: true,
        has_scale: true,
        tracks_generation: true,
        ..APPS
    },
    ResourceDef {
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        short_names: &["ds"],
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        ..APPS
    },
    ResourceDef {
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        ..APPS
    },
    // batch/v1
    ResourceDef {
        kind: "Job",
        plural: "jobs",
        singular: "job",
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        ..BATCH
    },
    ResourceDef {
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        short_names: &["cj"],
        categories: &["all"],
        has_status: true,
        tracks_generation: true,
        ..BATCH
    },
    // autoscaling/v2
    ResourceDef {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        short_names: &["hpa"],
        categories: &["all"],
        has_status: true,
        ..BASE
    },
    // autoscaling/v1: the same objects, stored as v2 and converted (`conversion.rs`).
    ResourceDef {
        group: "autoscaling",
        version: "v1",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        short_names: &["hpa"],
        categories: &["all"],
        has_status: true,
        ..BASE
    },
    // coordination.k8s.io/v1
    ResourceDef {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        ..BASE
    },
    // policy/v1
    ResourceDef {
        group: "policy",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        short_names: &["pdb"],
        has_status: true,
        tracks_generation: true,
        ..BASE
    },
    // rbac.authorization.k8s.io/v1
    ResourceDef {
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        ..RBAC
    },
    ResourceDef {
        kind: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        ..RBAC
    },
    ResourceDef {
        kind: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        ..RBAC
    },
    ResourceDef {
        kind: "Role",
        plural: "roles",
        singular: "role",
        ..RBAC
    },
    // scheduling.k8s.io/v1
    ResourceDef {
        group: "scheduling.k8s.io",
        kind: "PriorityClass",
        plural: "priorityclasses",
        singular: "priorityclass",
        short_names: &["pc"],
        namespaced: false,
        ..BASE
    },
];

/// The resource served at `/api(s)/<group>/<version>/<plural>`, if any.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Group/versions that serve at least one resource or review (see `auth::review`), core
/// first, each listed once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    let reviews = super::auth::review::REVIEWS
        .iter()
        .map(|r| (r.group, r.version));
    for gv in RESOURCES
        .iter()
        .map(|r| (r.group, r.version))
        .chain(reviews)
    {
        if !out.contains(&gv) {
            out.push(gv);
        }
    }
    out
}

/// Resources of one group/version.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceDef> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

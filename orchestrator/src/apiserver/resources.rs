//! The resource table: every kind the apiserver serves, with its discovery facts and per-kind
//! behaviour flags. Adding a kind is one entry here (plus Table columns in `table.rs` if it has
//! Kubernetes-specific ones). Invariant: (group, version, plural) is unique.

/// How the name of an object is validated (Kubernetes' `ValidateNameFunc` per kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// DNS-1123 subdomain: lowercase alphanumerics, '-' and '.', at most 253 characters.
    Subdomain,
    /// DNS-1123 label: lowercase alphanumerics and '-', at most 63 characters.
    Label,
    /// RFC 1035 label: a DNS-1123 label that starts with a letter (Service names).
    Rfc1035Label,
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
    /// metadata.generation is kept: 1 on create, +1 whenever `spec` changes.
    pub tracks_generation: bool,
    /// Field selector labels accepted besides metadata.name / metadata.namespace.
    pub field_labels: &'static [&'static str],
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

    /// Verbs advertised in discovery: exactly those the REST layer implements.
    pub fn verbs(&self) -> &'static [&'static str] {
        &[
            "create", "delete", "get", "list", "patch", "update", "watch",
        ]
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

macro_rules! core {
    ($kind:literal, $plural:literal, $singular:literal, $short:expr, $cats:expr, $ns:literal,
     $rule:ident, $status:literal, $gen:literal, $fields:expr) => {
        ResourceDef {
            group: "",
            version: "v1",
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: $short,
            categories: $cats,
            namespaced: $ns,
            name_rule: NameRule::$rule,
            has_status: $status,
            tracks_generation: $gen,
            field_labels: $fields,
        }
    };
}

/// Every served resource.
pub static RESOURCES: &[ResourceDef] = &[
    core!(
        "Namespace",
        "namespaces",
        "namespace",
        &["ns"],
        &[],
        false,
        Label,
        true,
        false,
        &["status.phase"]
    ),
    core!(
        "Node",
        "nodes",
        "node",
        &["no"],
        &[],
        false,
        Subdomain,
        true,
        false,
        &["spec.unschedulable"]
    ),
    core!(
        "Pod",
        "pods",
        "pod",
        &["po"],
        &["all"],
        true,
        Subdomain,
        true,
        true,
        POD_FIELDS
    ),
    core!(
        "Service",
        "services",
        "service",
        &["svc"],
        &["all"],
        true,
        Rfc1035Label,
        true,
        false,
        &[]
    ),
    core!(
        "ConfigMap",
        "configmaps",
        "configmap",
        &["cm"],
        &[],
        true,
        Subdomain,
        false,
        false,
        &[]
    ),
    core!(
        "Secret",
        "secrets",
        "secret",
        &[],
        &[],
        true,
        Subdomain,
        false,
        false,
        &["type"]
    ),
    core!(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        &["sa"],
        &[],
        true,
        Subdomain,
        false,
        false,
        &[]
    ),
    core!(
        "Event",
        "events",
        "event",
        &["ev"],
        &[],
        true,
        Subdomain,
        false,
        false,
        EVENT_FIELDS
    ),
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        short_names: &["deploy"],
        categories: &["all"],
        namespaced: true,
        name_rule: NameRule::Subdomain,
        has_status: true,
        tracks_generation: true,
        field_labels: &[],
    },
];

/// The resource served at `/api(s)/<group>/<version>/<plural>`, if any.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Group/versions that serve at least one resource, core first, each listed once.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
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

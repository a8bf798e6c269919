//! RBAC evaluation, after Kubernetes' RBAC authorizer: the rules of every ClusterRoleBinding
//! that names the user, then — for a request in a namespace — of every RoleBinding in that
//! namespace that names the user (its Role in the namespace, or a ClusterRole), until one rule
//! allows the request. Nothing matching is "no opinion" (the next authorization mode decides);
//! RBAC never denies. A binding whose role is missing contributes its error to the reason.
//!
//! Rule matching: verbs (`*`), apiGroups (`*`), resources (`*`, `<resource>/<subresource>`,
//! `*/<subresource>`), resourceNames (empty means any), nonResourceURLs (`*`, exact, or a
//! prefix ending in `*`). Subjects: User by name, Group by membership, ServiceAccount by the
//! user `system:serviceaccount:<namespace>:<name>` (a RoleBinding's own namespace when the
//! subject leaves it out).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use super::request_info::RequestInfo;
use super::UserInfo;

/// One PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

impl Rule {
    /// Every verb on every resource of every group, and on every non-resource URL:
    /// cluster-admin's rules.
    pub fn everything() -> Vec<Rule> {
        vec![
            Rule {
                verbs: vec!["*".into()],
                api_groups: vec!["*".into()],
                resources: vec!["*".into()],
                ..Rule::default()
            },
            Rule {
                verbs: vec!["*".into()],
                non_resource_urls: vec!["*".into()],
                ..Rule::default()
            },
        ]
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// The rules of a Role or ClusterRole object.
    pub fn of_role(role: &Value) -> Vec<Rule> {
        role["rules"]
            .as_array()
            .map(|rules| rules.iter().map(Rule::from_json).collect())
            .unwrap_or_default()
    }

    /// Whether this rule allows the request (Kubernetes' `RuleAllows`).
    pub fn allows(&self, r: &RequestInfo) -> bool {
        let verb = has(&self.verbs, &r.verb);
        if r.is_resource_request {
            let combined = if r.subresource.is_empty() {
                r.resource.clone()
            } else {
                format!("{}/{}", r.resource, r.subresource)
            };
            verb && has(&self.api_groups, &r.api_group)
                && self.resources.iter().any(|res| {
                    res == "*"
                        || *res == combined
                        || (!r.subresource.is_empty()
                            && res.strip_prefix("*/") == Some(r.subresource.as_str()))
                })
                && (self.resource_names.is_empty() || self.resource_names.contains(&r.name))
        } else {
            verb && self.non_resource_urls.iter().any(|url| {
                url == "*"
                    || *url == r.path
                    || url
                        .strip_suffix('*')
                        .is_some_and(|prefix| r.path.starts_with(prefix))
            })
        }
    }
}

/// `items` holds `want` or the wildcard `*`.
fn has(items: &[String], want: &str) -> bool {
    items.iter().any(|i| i == "*" || i == want)
}

/// One subject of a binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    pub namespace: String,
}

impl Subject {
    /// Whether the subject names `user`; `binding_namespace` is a RoleBinding's namespace.
    fn applies_to(&self, user: &UserInfo, binding_namespace: &str) -> bool {
        match self.kind.as_str() {
            "User" => user.name == self.name,
            "Group" => user.in_group(&self.name),
            "ServiceAccount" => {
                let ns = if self.namespace.is_empty() {
                    binding_namespace
                } else {
                    &self.namespace
                };
                !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", self.name)
            }
            _ => false,
        }
    }

    fn describe(&self) -> String {
        if self.kind == "ServiceAccount" && !self.namespace.is_empty() {
            format!("{} \"{}/{}\"", self.kind, self.namespace, self.name)
        } else {
            format!("{} \"{}\"", self.kind, self.name)
        }
    }
}

/// A RoleBinding (with its namespace) or a ClusterRoleBinding (namespace empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub name: String,
    pub namespace: String,
    /// `Role` or `ClusterRole`.
    pub role_kind: String,
    pub role_name: String,
    pub subjects: Vec<Subject>,
}

impl Binding {
    pub fn from_json(v: &Value) -> Binding {
        let s = |p: &str| {
            v.pointer(p)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        Binding {
            name: s("/metadata/name"),
            namespace: s("/metadata/namespace"),
            role_kind: s("/roleRef/kind"),
            role_name: s("/roleRef/name"),
            subjects: v["subjects"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| Subject {
                            kind: x["kind"].as_str().unwrap_or("").into(),
                            name: x["name"].as_str().unwrap_or("").into(),
                            namespace: x["namespace"].as_str().unwrap_or("").into(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The binding as RBAC's allow reasons name it, e.g.
    /// `RoleBinding "read/dev" of Role "reader" to User "alice"`.
    fn describe(&self, subject: &Subject) -> String {
        if self.namespace.is_empty() {
            format!(
                "ClusterRoleBinding \"{}\" of {} \"{}\" to {}",
                self.name,
                self.role_kind,
                self.role_name,
                subject.describe()
            )
        } else {
            format!(
                "RoleBinding \"{}/{}\" of {} \"{}\" to {}",
                self.name,
                self.namespace,
                self.role_kind,
                self.role_name,
                subject.describe()
            )
        }
    }
}

/// Every RBAC object, parsed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// ClusterRole name → rules.
    pub cluster_roles: HashMap<String, Vec<Rule>>,
    /// (namespace, Role name) → rules.
    pub roles: HashMap<(String, String), Vec<Rule>>,
    /// ClusterRoleBindings by name.
    pub cluster_role_bindings: BTreeMap<String, Binding>,
    /// RoleBindings by (namespace, name).
    pub role_bindings: BTreeMap<(String, String), Binding>,
}

/// What RBAC says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed, with the reason naming the binding.
    Allowed(String),
    /// No rule allows it; the reason lists bindings whose roles could not be found (or is empty).
    NoOpinion(String),
}

impl Policy {
    fn rules_of(&self, binding: &Binding) -> Result<&[Rule], String> {
        let found = match binding.role_kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&binding.role_name),
            "Role" if !binding.namespace.is_empty() => self
                .roles
                .get(&(binding.namespace.clone(), binding.role_name.clone())),
            _ => None,
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.rbac.authorization.k8s.io \"{}\" not found",
                binding.role_kind.to_ascii_lowercase(),
                binding.role_name
            )
        })
    }

    /// The rules of a Role (in `namespace`) or ClusterRole, if it exists.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        match kind {
            "ClusterRole" => self.cluster_roles.get(name).cloned(),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), name.to_string()))
                .cloned(),
            _ => None,
        }
    }

    /// Every ClusterRoleBinding, then the RoleBindings of `namespace` (none when it is empty).
    fn bindings_for<'a>(&'a self, namespace: &'a str) -> impl Iterator<Item = &'a Binding> + 'a {
        let namespaced = self
            .role_bindings
            .range((namespace.to_string(), String::new())..)
            .take_while(move |((ns, _), _)| ns == namespace)
            .filter(move |_| !namespace.is_empty())
            .map(|(_, b)| b);
        self.cluster_role_bindings.values().chain(namespaced)
    }

    /// Every rule that applies to `user` in `namespace` (Kubernetes' `RulesFor`), and the
    /// errors of bindings whose roles could not be found.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        let (mut rules, mut errors) = (Vec::new(), Vec::new());
        for binding in self.bindings_for(namespace) {
            if !binding
                .subjects
                .iter()
                .any(|s| s.applies_to(user, &binding.namespace))
            {
                continue;
            }
            match self.rules_of(binding) {
                Ok(r) => rules.extend_from_slice(r),
                Err(e) => errors.push(e),
            }
        }
        (rules, errors)
    }

    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Verdict {
        let mut errors = Vec::new();
        for binding in self.bindings_for(&request.namespace) {
            let Some(subject) = binding
                .subjects
                .iter()
                .find(|s| s.applies_to(user, &binding.namespace))
            else {
                continue;
            };
            match self.rules_of(binding) {
                Ok(rules) => {
                    if rules.iter().any(|r| r.allows(request)) {
                        return Verdict::Allowed(format!(
                            "RBAC: allowed by {}",
                            binding.describe(subject)
                        ));
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        Verdict::NoOpinion(match errors.len() {
            0 => String::new(),
            1 => format!("RBAC: {}", errors[0]),
            _ => format!("RBAC: [{}]", errors.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::query::Query;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }

    fn req(method: http::Method, path: &str) -> RequestInfo {
        super::super::request_info::resolve(&method, path, &Query::default())
    }

    #[test]
    fn rules_match_verbs_groups_resources_names_and_urls() {
        let rule = Rule::from_json(&json!({
            "verbs": ["get", "update"], "apiGroups": ["apps"],
            "resources": ["deployments", "*/scale"], "resourceNames": ["web"],
        }));
        use http::Method as M;
        assert!(rule.allows(&req(M::GET, "/apis/apps/v1/namespaces/d/deployments/web")));
        assert!(rule.allows(&req(
            M::PUT,
            "/apis/apps/v1/namespaces/d/deployments/web/scale"
        )));
        assert!(!rule.allows(&req(
            M::PUT,
            "/apis/apps/v1/namespaces/d/deployments/web/status"
        )));
        assert!(!rule.allows(&req(M::GET, "/apis/apps/v1/namespaces/d/deployments/api")));
        assert!(!rule.allows(&req(M::GET, "/apis/apps/v1/namespaces/d/deployments")));
        assert!(!rule.allows(&req(
            M::DELETE,
            "/apis/apps/v1/namespaces/d/deployments/web"
        )));
        assert!(!rule.allows(&req(M::GET, "/api/v1/namespaces/d/deployments/web")));
        let urls =
            Rule::from_json(&json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        assert!(urls.allows(&req(M::GET, "/healthz")));
        assert!(urls.allows(&req(M::GET, "/apis/apps")));
        assert!(!urls.allows(&req(M::GET, "/version")));
        assert!(!urls.allows(&req(M::POST, "/healthz")));
    }

    #[test]
    fn bindings_grant_rules_to_their_subjects() {
        let mut p = Policy::default();
        p.roles.insert(
            ("dev".into(), "reader".into()),
            vec![Rule::from_json(
                &json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}),
            )],
        );
        let rb = Binding::from_json(&json!({
            "metadata": {"name": "read", "namespace": "dev"},
            "roleRef": {"kind": "Role", "name": "reader"},
            "subjects": [{"kind": "Group", "name": "team"}, {"kind": "ServiceAccount", "name": "bot"}],
        }));
        p.role_bindings.insert(("dev".into(), "read".into()), rb);
        let list = req(http::Method::GET, "/api/v1/namespaces/dev/pods");
        assert_eq!(
            p.authorize(&user("alice", &["team"]), &list),
            Verdict::Allowed(
                "RBAC: allowed by RoleBinding \"read/dev\" of Role \"reader\" to Group \"team\""
                    .into()
            )
        );
        assert!(matches!(
            p.authorize(&user("system:serviceaccount:dev:bot", &[]), &list),
            Verdict::Allowed(_)
        ));
        assert!(matches!(
            p.authorize(&user("bob", &[]), &list),
            Verdict::NoOpinion(_)
        ));
        let other_ns = req(http::Method::GET, "/api/v1/namespaces/prod/pods");
        assert!(matches!(
            p.authorize(&user("alice", &["team"]), &other_ns),
            Verdict::NoOpinion(_)
        ));
        p.cluster_role_bindings.insert(
            "dangling".into(),
            Binding::from_json(&json!({
                "metadata": {"name": "dangling"},
                "roleRef": {"kind": "ClusterRole", "name": "gone"},
                "subjects": [{"kind": "User", "name": "bob"}],
            })),
        );
        assert_eq!(
            p.authorize(&user("bob", &[]), &list),
            Verdict::NoOpinion(
                "RBAC: clusterrole.rbac.authorization.k8s.io \"gone\" not found".into()
            )
        );
    }
}

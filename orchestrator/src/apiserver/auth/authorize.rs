//! `--authorization-mode`: a comma-separated list of kube's mode names, asked in order until one
//! allows or denies (kube's union authorizer); members of `system:masters` are allowed before
//! any mode is asked. AlwaysAllow allows, AlwaysDeny denies ("Everything is forbidden."), RBAC
//! allows or has no opinion. A request nobody allowed is 403 Forbidden with kube's wording:
//! `pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the
//! namespace "default"`, `... at the cluster scope`, or `forbidden: User "alice" cannot get
//! path "/healthz"`, followed by `: <reason>` when a mode gave one.

use std::sync::Arc;

use super::super::status::ApiError;
use super::rbac::{Rule, Verdict};
use super::rbac_cache::RbacCache;
use super::request_info::RequestInfo;
use super::{UserInfo, MASTERS_GROUP};

/// One authorization mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Rbac,
}

impl Mode {
    /// Parses `--authorization-mode` (kube's names, case-sensitive, no repeats).
    pub fn parse_list(flag: &str) -> Result<Vec<Mode>, String> {
        let mut modes = Vec::new();
        for name in flag.split(',').map(str::trim) {
            let mode = match name {
                "AlwaysAllow" => Mode::AlwaysAllow,
                "AlwaysDeny" => Mode::AlwaysDeny,
                "RBAC" => Mode::Rbac,
                "Node" | "ABAC" | "Webhook" => {
                    return Err(format!(
                        "authorization-mode {name:?} is not supported by this server (supported: AlwaysAllow, AlwaysDeny, RBAC)"
                    ))
                }
                other => {
                    return Err(format!(
                        "authorization-mode {other:?} is not a valid mode"
                    ))
                }
            };
            if modes.contains(&mode) {
                return Err(format!(
                    "authorization-mode {name:?} has mode specified more than once"
                ));
            }
            modes.push(mode);
        }
        Ok(modes)
    }
}

/// A decision and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow(String),
    Deny(String),
    NoOpinion(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }

    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(r) | Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

/// The configured modes, in order.
#[derive(Clone)]
pub struct Authorizer {
    pub modes: Vec<Mode>,
    pub rbac: Option<Arc<RbacCache>>,
}

impl Authorizer {
    pub fn authorize(&self, user: &UserInfo, request: &RequestInfo) -> Decision {
        if user.in_group(MASTERS_GROUP) {
            return Decision::Allow(String::new());
        }
        let mut reasons = Vec::new();
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => return Decision::Allow(String::new()),
                Mode::AlwaysDeny => return Decision::Deny("Everything is forbidden.".into()),
                Mode::Rbac => {
                    let Some(rbac) = &self.rbac else { continue };
                    match rbac.authorize(user, request) {
                        Verdict::Allowed(reason) => return Decision::Allow(reason),
                        Verdict::NoOpinion(reason) if !reason.is_empty() => reasons.push(reason),
                        Verdict::NoOpinion(_) => {}
                    }
                }
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }
}

impl Authorizer {
    /// The rules of the role a binding names, from the RBAC cache.
    pub fn role_rules(&self, kind: &str, namespace: &str, name: &str) -> Option<Vec<Rule>> {
        self.rbac.as_ref()?.role_rules(kind, namespace, name)
    }
}

/// What a user may do in a namespace, as the modes can tell (SelfSubjectRulesReview).
#[derive(Debug, Clone, Default)]
pub struct RuleList {
    pub rules: Vec<Rule>,
    /// Some mode could not list everything it would allow (RBAC bindings to missing roles).
    pub incomplete: bool,
    pub evaluation_error: String,
}

impl Authorizer {
    /// Every rule the modes grant `user` in `namespace`, in mode order: AlwaysAllow and
    /// `system:masters` grant everything, AlwaysDeny nothing, RBAC the rules of the bindings that
    /// name the user.
    pub fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleList {
        let mut list = RuleList::default();
        if user.in_group(MASTERS_GROUP) {
            list.rules.extend(Rule::everything());
        }
        for mode in &self.modes {
            match mode {
                Mode::AlwaysAllow => list.rules.extend(Rule::everything()),
                Mode::AlwaysDeny => {}
                Mode::Rbac => {
                    let Some(rbac) = &self.rbac else { continue };
                    let (rules, errors) = rbac.rules_for(user, namespace);
                    list.rules.extend(rules);
                    if !errors.is_empty() {
                        list.incomplete = true;
                        list.evaluation_error = errors.join(", ");
                    }
                }
            }
        }
        list
    }
}

/// The 403 for a request that was not allowed (kube's `responsewriters.Forbidden`).
pub fn forbidden(user: &UserInfo, request: &RequestInfo, reason: &str) -> ApiError {
    let mut message = if !request.is_resource_request {
        format!(
            "User \"{}\" cannot {} path \"{}\"",
            user.name, request.verb, request.path
        )
    } else {
        let resource = if request.subresource.is_empty() {
            request.resource.clone()
        } else {
            format!("{}/{}", request.resource, request.subresource)
        };
        if request.namespace.is_empty() {
            format!(
                "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" at the cluster scope",
                user.name, request.verb, request.api_group
            )
        } else {
            format!(
                "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" in the namespace \"{}\"",
                user.name, request.verb, request.api_group, request.namespace
            )
        }
    };
    if !reason.is_empty() {
        message = format!("{message}: {reason}");
    }
    let resource = match (request.is_resource_request, request.api_group.as_str()) {
        (false, _) => String::new(),
        (true, "") => request.resource.clone(),
        (true, group) => format!("{}.{group}", request.resource),
    };
    ApiError::Forbidden {
        resource,
        name: request.name.clone(),
        message,
        causes: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::*;
    use crate::apiserver::auth::request_info;
    use crate::apiserver::query::Query;

    fn alice() -> UserInfo {
        UserInfo {
            name: "alice".into(),
            ..UserInfo::default()
        }
    }

    fn message(method: Method, path: &str, reason: &str) -> String {
        let info = request_info::resolve(&method, path, &Query::default());
        forbidden(&alice(), &info, reason).to_string()
    }

    #[test]
    fn forbidden_messages_use_kubernetes_wording() {
        assert_eq!(
            message(Method::GET, "/api/v1/namespaces/default/pods", ""),
            "pods is forbidden: User \"alice\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        assert_eq!(
            message(Method::GET, "/apis/rbac.authorization.k8s.io/v1/clusterroles/admin", ""),
            "clusterroles.rbac.authorization.k8s.io \"admin\" is forbidden: User \"alice\" cannot get resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope"
        );
        assert_eq!(
            message(Method::PUT, "/apis/apps/v1/namespaces/x/deployments/d/scale", ""),
            "deployments.apps \"d\" is forbidden: User \"alice\" cannot update resource \"deployments/scale\" in API group \"apps\" in the namespace \"x\""
        );
        assert_eq!(
            message(Method::GET, "/healthz", "Everything is forbidden."),
            "forbidden: User \"alice\" cannot get path \"/healthz\": Everything is forbidden."
        );
    }

    #[test]
    fn modes_parse_and_union_in_order() {
        assert_eq!(
            Mode::parse_list("RBAC,AlwaysDeny").unwrap(),
            vec![Mode::Rbac, Mode::AlwaysDeny]
        );
        assert!(Mode::parse_list("RBAC,RBAC").is_err());
        assert!(Mode::parse_list("Bogus").is_err());
        let info = request_info::resolve(&Method::GET, "/version", &Query::default());
        let deny = Authorizer {
            modes: vec![Mode::AlwaysDeny, Mode::AlwaysAllow],
            rbac: None,
        };
        assert_eq!(
            deny.authorize(&alice(), &info),
            Decision::Deny("Everything is forbidden.".into())
        );
        let master = UserInfo {
            groups: vec![MASTERS_GROUP.into()],
            ..alice()
        };
        assert!(deny.authorize(&master, &info).allowed());
    }
}

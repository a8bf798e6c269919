//! RBAC's escalation prevention, after Kubernetes' RBAC registry: a user may only write a Role
//! or ClusterRole whose rules they already hold (in the role's namespace; cluster-wide for a
//! ClusterRole), unless they may `escalate` roles/clusterroles; a ClusterRole with an
//! aggregationRule needs every permission (`*` on `*.*` and every non-resource URL); and a user
//! may only write a binding whose role's rules they hold, unless they may `bind` that role.
//! Members of `system:masters` (and so the insecure port) are exempt, and so are the in-process
//! controllers, which act for no user.
//!
//! The requesting user travels with the request as a task-local set by the server around the
//! REST call ([`with_user`]), the way kube-apiserver carries it in the request context.
//!
//! An update is checked when it changes what the object grants (a role's rules or
//! aggregationRule, a binding's roleRef or subjects); other changes (labels, finalizers) are not.

use std::future::Future;

use serde_json::Value;

use super::super::resources::ResourceDef;
use super::super::status::ApiError;
use super::authorize::Authorizer;
use super::rbac::Rule;
use super::request_info::RequestInfo;
use super::{UserInfo, MASTERS_GROUP};

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

tokio::task_local! {
    static REQUEST_USER: UserInfo;
}

/// Runs `f` (a request's REST call) as `user`.
pub async fn with_user<F: Future>(user: UserInfo, f: F) -> F::Output {
    REQUEST_USER.scope(user, f).await
}

/// Refuses the write of `obj` (replacing `old`, on update) if it grants more than its writer
/// holds.
pub fn check(
    authorizer: &Authorizer,
    def: &ResourceDef,
    namespace: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if def.group != RBAC_GROUP {
        return Ok(());
    }
    let Ok(user) = REQUEST_USER.try_with(UserInfo::clone) else {
        return Ok(());
    };
    if user.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    let namespace = namespace.unwrap_or("");
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let unchanged =
        |fields: &[&str]| old.is_some_and(|old| fields.iter().all(|f| old.get(*f) == obj.get(*f)));
    let allowed = |verb: &str, resource: &str, name: &str| {
        let info = RequestInfo {
            is_resource_request: true,
            verb: verb.into(),
            api_group: RBAC_GROUP.into(),
            namespace: namespace.into(),
            resource: resource.into(),
            name: name.into(),
            ..RequestInfo::default()
        };
        authorizer.authorize(&user, &info).allowed()
    };
    let forbid = |message: String| ApiError::Forbidden {
        resource: def.qualified(),
        name: name.into(),
        message,
        causes: Vec::new(),
    };
    match def.kind {
        "Role" | "ClusterRole" => {
            if unchanged(&["rules", "aggregationRule"]) || allowed("escalate", def.plural, name) {
                return Ok(());
            }
            confirm_no_escalation(authorizer, &user, namespace, &Rule::of_role(obj))
                .map_err(forbid)?;
            let aggregated = |o: &Value| o.get("aggregationRule").is_some_and(|a| !a.is_null());
            if aggregated(obj) || old.is_some_and(aggregated) {
                let everything = Rule::everything();
                confirm_no_escalation(authorizer, &user, namespace, &everything).map_err(|_| {
                    forbid("must have cluster-admin privileges to use the aggregationRule".into())
                })?;
            }
            Ok(())
        }
        "RoleBinding" | "ClusterRoleBinding" => {
            if unchanged(&["roleRef", "subjects"]) {
                return Ok(());
            }
            let role_kind = obj
                .pointer("/roleRef/kind")
                .and_then(Value::as_str)
                .unwrap_or("");
            let role_name = obj
                .pointer("/roleRef/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let resource = if role_kind == "Role" {
                "roles"
            } else {
                "clusterroles"
            };
            if allowed("bind", resource, role_name) {
                return Ok(());
            }
            let rules = authorizer
                .role_rules(role_kind, namespace, role_name)
                .ok_or_else(|| {
                    ApiError::not_found(format!("{resource}.{RBAC_GROUP}"), role_name)
                })?;
            confirm_no_escalation(authorizer, &user, namespace, &rules).map_err(forbid)
        }
        _ => Ok(()),
    }
}

/// Kubernetes' `ConfirmNoEscalation`: every rule of `rules` must be covered by what `user`
/// holds in `namespace`; the error lists what is missing, one compact rule a line.
fn confirm_no_escalation(
    authorizer: &Authorizer,
    user: &UserInfo,
    namespace: &str,
    rules: &[Rule],
) -> Result<(), String> {
    let owned = authorizer.rules_for(user, namespace);
    let missing = uncovered(&owned.rules, rules);
    if missing.is_empty() {
        return Ok(());
    }
    let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut msg = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        lines.join("\n")
    );
    if owned.incomplete {
        msg.push_str(&format!(
            "; resolution errors: [{}]",
            owned.evaluation_error
        ));
    }
    Err(msg)
}

fn sorted(v: &[String]) -> Vec<String> {
    let mut v = v.to_vec();
    v.sort();
    v.dedup();
    v
}

/// A rule split into one rule per (group, resource[, name]) and one per non-resource URL, each
/// with all the rule's verbs (Kubernetes' `BreakdownRule`).
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let verbs = sorted(&rule.verbs);
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            let base = Rule {
                verbs: verbs.clone(),
                api_groups: vec![group.clone()],
                resources: vec![resource.clone()],
                ..Rule::default()
            };
            if rule.resource_names.is_empty() {
                out.push(base);
            } else {
                for n in &rule.resource_names {
                    out.push(Rule {
                        resource_names: vec![n.clone()],
                        ..base.clone()
                    });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        out.push(Rule {
            verbs: verbs.clone(),
            non_resource_urls: vec![url.clone()],
            ..Rule::default()
        });
    }
    out
}

fn has_all(set: &[String], wanted: &[String]) -> bool {
    wanted.iter().all(|w| set.contains(w))
}

/// Whether `owner` grants everything `sub` (a broken-down rule) does (Kubernetes' `ruleCovers`).
fn covers(owner: &Rule, sub: &Rule) -> bool {
    let star = |v: &[String]| v.iter().any(|x| x == "*");
    let verbs = star(&owner.verbs) || has_all(&owner.verbs, &sub.verbs);
    let groups = star(&owner.api_groups) || has_all(&owner.api_groups, &sub.api_groups);
    let resources = sub.resources.iter().all(|r| {
        star(&owner.resources)
            || owner.resources.contains(r)
            || r.split_once('/')
                .is_some_and(|(_, sub)| owner.resources.contains(&format!("*/{sub}")))
    });
    let urls = sub.non_resource_urls.iter().all(|u| {
        owner.non_resource_urls.iter().any(|o| {
            o == "*"
                || o == u
                || o.strip_suffix('*')
                    .is_some_and(|prefix| u.starts_with(prefix))
        })
    });
    let names = if sub.resource_names.is_empty() {
        owner.resource_names.is_empty()
    } else {
        owner.resource_names.is_empty() || has_all(&owner.resource_names, &sub.resource_names)
    };
    verbs && groups && resources && urls && names
}

/// The broken-down rules of `servant` that no rule of `owner` covers.
fn uncovered(owner: &[Rule], servant: &[Rule]) -> Vec<Rule> {
    servant
        .iter()
        .flat_map(breakdown)
        .filter(|sub| !owner.iter().any(|o| covers(o, sub)))
        .collect()
}

/// Merges the verbs of rules on one group, one resource and at most one name (Kubernetes'
/// `CompactRules`).
fn compact(rules: Vec<Rule>) -> Vec<Rule> {
    let mut out: Vec<Rule> = Vec::new();
    let mut simple: Vec<Rule> = Vec::new();
    for rule in rules {
        let is_simple = rule.non_resource_urls.is_empty()
            && rule.api_groups.len() == 1
            && rule.resources.len() == 1
            && rule.resource_names.len() <= 1;
        if !is_simple {
            out.push(rule);
            continue;
        }
        match simple.iter_mut().find(|s| {
            s.api_groups == rule.api_groups
                && s.resources == rule.resources
                && s.resource_names == rule.resource_names
        }) {
            Some(existing) => existing.verbs.extend(rule.verbs),
            None => simple.push(rule),
        }
    }
    out.extend(simple);
    out
}

/// Kubernetes' `CompactString`: `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`.
fn compact_string(r: &Rule) -> String {
    let quoted = |v: &[String]| {
        format!(
            "[{}]",
            v.iter()
                .map(|s| format!("{s:?}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let mut parts = Vec::new();
    for (label, values) in [
        ("APIGroups", &r.api_groups),
        ("Resources", &r.resources),
        ("NonResourceURLs", &r.non_resource_urls),
        ("ResourceNames", &r.resource_names),
        ("Verbs", &r.verbs),
    ] {
        if !values.is_empty() {
            parts.push(format!("{label}:{}", quoted(values)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rule(v: Value) -> Rule {
        Rule::from_json(&v)
    }

    #[test]
    fn covering_follows_kubernetes_rule_covers() {
        let owner = vec![
            rule(
                json!({"apiGroups": [""], "resources": ["pods", "*/status"], "verbs": ["get", "list"]}),
            ),
            rule(json!({"nonResourceURLs": ["/api/*"], "verbs": ["get"]})),
        ];
        let fine = vec![
            rule(
                json!({"apiGroups": [""], "resources": ["pods", "services/status"], "verbs": ["list"]}),
            ),
            rule(json!({"nonResourceURLs": ["/api/v1"], "verbs": ["get"]})),
        ];
        assert!(uncovered(&owner, &fine).is_empty());
        let too_much = vec![
            rule(
                json!({"apiGroups": [""], "resources": ["pods", "secrets"], "verbs": ["get", "delete"]}),
            ),
            rule(json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["watch"]})),
        ];
        let missing: Vec<String> = compact(uncovered(&owner, &too_much))
            .iter()
            .map(compact_string)
            .collect();
        assert_eq!(
            missing,
            [
                "{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\" \"get\" \"watch\"]}",
                "{APIGroups:[\"\"], Resources:[\"secrets\"], Verbs:[\"delete\" \"get\"]}",
            ]
        );
    }
}

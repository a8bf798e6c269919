//! The ClusterRole aggregation controller, after kube-controller-manager's
//! `clusterrole-aggregation`: a ClusterRole with `aggregationRule.clusterRoleSelectors` gets as
//! its rules the rules of every other ClusterRole that one of the selectors matches, taken in
//! ClusterRole name order and each rule once. Only `rules` is written, and only when it changed.
//!
//! Level-triggered: [`reconcile_all`] looks at the current ClusterRoles only. [`run`] runs it
//! whenever the apiserver's RBAC cache reports a ClusterRole change (so `admin`, which
//! aggregates `edit`, follows once `edit` itself was filled), after a conflict, and every
//! [`RELIST`] as a safety net.

use std::future::Future;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use super::namespace::ClientError;
use crate::apiserver::validation::selector_matches;

/// How often every ClusterRole is looked at even without a change.
const RELIST: Duration = Duration::from_secs(30);
/// Delay before another pass after a failed one.
const RETRY: Duration = Duration::from_millis(200);

/// The API calls the controller makes.
pub trait ClusterRoleApi: Send + Sync {
    /// Every ClusterRole.
    fn list_cluster_roles(&self) -> impl Future<Output = Result<Vec<Value>, ClientError>> + Send;
    /// Replaces the rules of the ClusterRole `role` (as listed; Conflict when it is stale).
    fn update_rules(
        &self,
        role: &Value,
        rules: Vec<Value>,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

fn name_of(role: &Value) -> &str {
    role.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The rules `role` should have, or None when it is not aggregated.
pub fn aggregated_rules(role: &Value, all: &[Value]) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    let mut sorted: Vec<&Value> = all.iter().collect();
    sorted.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    let mut rules: Vec<Value> = Vec::new();
    for selector in selectors {
        for other in &sorted {
            if name_of(other) == name_of(role) {
                continue;
            }
            if !selector_matches(selector, other.pointer("/metadata/labels")) {
                continue;
            }
            for rule in other["rules"].as_array().into_iter().flatten() {
                if !rules.contains(rule) {
                    rules.push(rule.clone());
                }
            }
        }
    }
    Some(rules)
}

/// One pass over every aggregated ClusterRole; the number of roles updated.
pub async fn reconcile_all<A: ClusterRoleApi>(api: &A) -> Result<usize, ClientError> {
    let all = api.list_cluster_roles().await?;
    let mut updated = 0;
    for role in &all {
        let Some(rules) = aggregated_rules(role, &all) else {
            continue;
        };
        let current = role["rules"].as_array().cloned().unwrap_or_default();
        if current != rules {
            api.update_rules(role, rules).await?;
            tracing::debug!(role = name_of(role), "aggregated ClusterRole rules updated");
            updated += 1;
        }
    }
    Ok(updated)
}

/// Runs until `stop` fires, reconciling on every ClusterRole change.
pub async fn run<A: ClusterRoleApi>(
    api: A,
    mut changes: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let wait = match reconcile_all(&api).await {
            Ok(_) => RELIST,
            Err(e) => {
                tracing::debug!(error = %e, "ClusterRole aggregation: retrying");
                RETRY
            }
        };
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(name: &str, labels: Value, rules: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "rules": rules})
    }

    #[test]
    fn aggregates_matching_roles_in_name_order_without_repeats() {
        let pods = json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]});
        let jobs = json!({"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]});
        let mut view = role("view", json!({}), json!([]));
        view["aggregationRule"] = json!({"clusterRoleSelectors": [
            {"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}
        ]});
        let all = vec![
            view.clone(),
            role(
                "z-extra",
                json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
                json!([jobs, pods]),
            ),
            role(
                "a-base",
                json!({"rbac.authorization.k8s.io/aggregate-to-view": "true"}),
                json!([pods]),
            ),
            role("unrelated", json!({}), json!([{"verbs": ["*"]}])),
        ];
        assert_eq!(
            aggregated_rules(&view, &all),
            Some(vec![pods.clone(), jobs.clone()])
        );
        assert_eq!(aggregated_rules(&all[1], &all), None, "not aggregated");
    }
}

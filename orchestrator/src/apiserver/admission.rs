//! Mutating admission of pods, as two of kube-apiserver's default plugins do it (after
//! defaulting, before the object is stored):
//!
//! - **DefaultTolerationSeconds**: a pod created without a toleration of the
//!   `node.kubernetes.io/not-ready` or `node.kubernetes.io/unreachable` NoExecute taints gets one
//!   for 300 seconds, so a node that stops answering has its pods evicted after five minutes.
//! - **Priority**: a pod's `spec.priority` (and `preemptionPolicy`) come from its
//!   `priorityClassName`, or from the cluster's `globalDefault` PriorityClass, or are 0 and
//!   `PreemptLowerPriority`; naming a class that does not exist, or a priority that differs from
//!   the class's, is refused (403). Updates keep the priority the pod was created with.
//!
//! The system classes `system-node-critical` and `system-cluster-critical` are created at
//! startup, as kube-apiserver's bootstrap does ([`system_priority_classes`]).

use serde_json::{json, Value};

use super::object::meta_str;
use super::status::ApiError;
use super::storage::{prefix_end, StorageError};
use super::{resources, ApiServer};

/// How long pods tolerate a not-ready or unreachable node (kube-apiserver's
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`).
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

const NODE_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];

/// Priority of system-critical pods: twice the highest a user class may have.
const SYSTEM_CRITICAL_PRIORITY: i64 = 2_000_000_000;

/// The PriorityClasses every cluster has.
pub fn system_priority_classes() -> Vec<Value> {
    [
        (
            "system-node-critical",
            SYSTEM_CRITICAL_PRIORITY + 1000,
            "Used for system critical pods that must not be moved from their current node.",
        ),
        (
            "system-cluster-critical",
            SYSTEM_CRITICAL_PRIORITY,
            "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
        ),
    ]
    .into_iter()
    .map(|(name, value, description)| {
        json!({
            "apiVersion": "scheduling.k8s.io/v1",
            "kind": "PriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": description,
        })
    })
    .collect()
}

/// DefaultTolerationSeconds: the two NoExecute tolerations a pod does not already have.
fn add_default_tolerations(pod: &mut Value) {
    let tolerations = pod
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    fn str_of<'a>(t: &'a Value, field: &str) -> &'a str {
        t.get(field).and_then(Value::as_str).unwrap_or("")
    }
    let tolerated = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = str_of(t, "key");
            let effect = str_of(t, "effect");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let missing: Vec<Value> = NODE_TAINTS
        .iter()
        .filter(|taint| !tolerated(taint))
        .map(|taint| {
            json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
            })
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(items) = list.as_array_mut() {
        items.extend(missing);
    }
}

fn forbidden(pod: &Value, message: String) -> ApiError {
    ApiError::Forbidden {
        resource: "pods".into(),
        name: meta_str(pod, "name").unwrap_or("").into(),
        message,
        causes: Vec::new(),
    }
}

fn storage(e: StorageError) -> ApiError {
    ApiError::Internal(format!("reading PriorityClasses: {e}"))
}

/// The class a pod without `priorityClassName` gets: the globalDefault one of highest value
/// (name, value, preemption policy), or none.
async fn default_priority(api: &ApiServer) -> Result<(String, i64, String), ApiError> {
    let def = resources::lookup("scheduling.k8s.io", "v1", "priorityclasses")
        .expect("priorityclasses are served");
    let prefix = api.collection_prefix(def, None);
    let page = api
        .store
        .range(&prefix, &prefix_end(&prefix), 0, 0)
        .await
        .map_err(storage)?;
    let mut best: Option<(String, i64, String)> = None;
    for kv in page.kvs {
        let Ok(class) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        if class.get("globalDefault") != Some(&json!(true)) {
            continue;
        }
        let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
        if best.as_ref().is_none_or(|(_, v, _)| value > *v) {
            best = Some((
                meta_str(&class, "name").unwrap_or("").to_string(),
                value,
                policy_of(&class),
            ));
        }
    }
    Ok(best.unwrap_or_else(|| (String::new(), 0, "PreemptLowerPriority".into())))
}

fn policy_of(class: &Value) -> String {
    class
        .get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or("PreemptLowerPriority")
        .to_string()
}

/// Priority: fills `spec.priority`, `spec.preemptionPolicy` (and `priorityClassName` from a
/// global default class).
async fn set_priority(api: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    let class_name = pod
        .pointer("/spec/priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let (class_name, priority, policy) = if class_name.is_empty() {
        default_priority(api).await?
    } else {
        let def = resources::lookup("scheduling.k8s.io", "v1", "priorityclasses")
            .expect("priorityclasses are served");
        let key = api.object_key(def, None, &class_name);
        let Some(kv) = api.store.get(&key).await.map_err(storage)? else {
            return Err(forbidden(
                pod,
                format!("no PriorityClass with name {class_name} was found"),
            ));
        };
        let class: Value = serde_json::from_slice(&kv.value)
            .map_err(|e| ApiError::Internal(format!("decoding PriorityClass {class_name}: {e}")))?;
        let value = class.get("value").and_then(Value::as_i64).unwrap_or(0);
        (class_name, value, policy_of(&class))
    };
    if let Some(given) = pod.pointer("/spec/priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(forbidden(
                pod,
                format!("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"),
            ));
        }
    }
    if let Some(given) = pod
        .pointer("/spec/preemptionPolicy")
        .and_then(Value::as_str)
    {
        if given != policy {
            return Err(forbidden(
                pod,
                format!("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"),
            ));
        }
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

/// Admission of a pod being created.
pub async fn admit_pod_create(api: &ApiServer, pod: &mut Value) -> Result<(), ApiError> {
    add_default_tolerations(pod);
    set_priority(api, pod).await
}

/// Admission of a pod being replaced: a body without the priority the pod was given keeps it
/// (the Priority plugin's update rule), so the pod update rules judge only what the client
/// changed.
pub fn admit_pod_update(old: &Value, new: &mut Value) {
    let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for field in ["priority", "preemptionPolicy"] {
        if spec.get(field).is_none_or(Value::is_null) {
            if let Some(v) = old.pointer(&format!("/spec/{field}")) {
                spec.insert(field.into(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_node_tolerations_are_added_for_five_minutes() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
        // A pod's own tolerations of either taint (or of every NoExecute taint) are kept.
        let own = json!({"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 6000});
        let mut pod = json!({"spec": {"tolerations": [own.clone()]}});
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(pod["spec"]["tolerations"][0], own);
        let mut pod = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut pod);
        assert_eq!(pod["spec"]["tolerations"], json!([{"operator": "Exists"}]));
    }

    #[test]
    fn a_replaced_pod_keeps_its_priority() {
        let old = json!({"spec": {"priority": 7, "preemptionPolicy": "Never"}});
        let mut new = json!({"spec": {}});
        admit_pod_update(&old, &mut new);
        assert_eq!(new, old);
    }
}

//! Kubernetes' defaulting (`SetDefaults_*` in k8s.io/kubernetes/pkg/apis/*/v1) and the parts of
//! the registries' `PrepareForCreate` that fill fields in, for the kinds served.
//!
//! Defaulting never fails and never panics on malformed input: a field is only filled where its
//! parent is an object (or missing), and wrong-typed values are left for validation to report.
//! Defaults are applied on create and again on every update, as Kubernetes applies them when it
//! decodes a request and again when it reads an object back from etcd.

use serde_json::{json, Map, Value};

use super::clock;
use super::object::meta_str;
use super::resources::ResourceDef;

/// Labels Kubernetes puts on a Job's pod template and selector (`generateSelector`).
pub const JOB_NAME_LABELS: [&str; 2] = ["job-name", "batch.kubernetes.io/job-name"];
pub const CONTROLLER_UID_LABELS: [&str; 2] =
    ["controller-uid", "batch.kubernetes.io/controller-uid"];

/// The `status` an object of `def` starts with (Kubernetes resets status on create, then the
/// decoder's defaults and Go's non-`omitempty` zero fields make what a client reads back).
pub fn initial_status(def: &ResourceDef) -> Value {
    match (def.group, def.kind) {
        ("", "Namespace") => json!({"phase": "Active"}),
        ("", "Pod") => json!({"phase": "Pending", "qosClass": "BestEffort"}),
        ("", "Service") => json!({"loadBalancer": {}}),
        ("", "PersistentVolume") => {
            json!({"phase": "Pending", "lastPhaseTransitionTime": clock::now_rfc3339()})
        }
        ("", "PersistentVolumeClaim") => json!({"phase": "Pending"}),
        ("", "ReplicationController") | ("apps", "ReplicaSet") => json!({"replicas": 0}),
        ("apps", "StatefulSet") => json!({"replicas": 0, "availableReplicas": 0}),
        ("apps", "DaemonSet") => json!({
            "currentNumberScheduled": 0,
            "numberMisscheduled": 0,
            "desiredNumberScheduled": 0,
            "numberReady": 0,
        }),
        ("policy", "PodDisruptionBudget") => json!({
            "disruptionsAllowed": 0,
            "currentHealthy": 0,
            "desiredHealthy": 0,
            "expectedPods": 0,
        }),
        ("autoscaling", "HorizontalPodAutoscaler") => json!({"desiredReplicas": 0}),
        _ => json!({}),
    }
}

/// The object at `ptr` (JSON pointer), created as `{}` along the way where missing or null.
/// None when something on the path is present but not an object.
fn object_at<'a>(obj: &'a mut Value, ptr: &str) -> Option<&'a mut Map<String, Value>> {
    let mut cur = obj;
    for part in ptr.split('/').filter(|p| !p.is_empty()) {
        let map = cur.as_object_mut()?;
        let next = map.entry(part).or_insert(Value::Null);
        if next.is_null() {
            *next = json!({});
        }
        cur = next;
    }
    cur.as_object_mut()
}

/// Sets `ptr` (JSON pointer) to `value` when it is missing or null.
pub fn default_field(obj: &mut Value, ptr: &str, value: Value) {
    let (parent, field) = ptr.rsplit_once('/').unwrap_or(("", ptr));
    // Only create the parents when the field is actually missing, so defaulting a field of an
    // optional struct does not conjure the struct up when it was left out on purpose.
    if obj.pointer(ptr).is_some_and(|v| !v.is_null()) {
        return;
    }
    if let Some(map) = object_at(obj, parent) {
        map.insert(field.to_string(), value);
    }
}

/// Whether the JSON pointer names a present, non-null value.
fn present(obj: &Value, ptr: &str) -> bool {
    obj.pointer(ptr).is_some_and(|v| !v.is_null())
}

fn each_object(obj: &mut Value, ptr: &str, mut f: impl FnMut(&mut Value)) {
    if let Some(items) = obj.pointer_mut(ptr).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter(|i| i.is_object()) {
            f(item);
        }
    }
}

fn default_volumes(spec: &mut Value) {
    each_object(spec, "/volumes", |v| {
        if v.get("hostPath").is_some_and(Value::is_object) {
            default_field(v, "/hostPath/type", json!(""));
        }
        // 0644, as SetDefaults_{Secret,ConfigMap,DownwardAPI,Projected}VolumeSource set it.
        for source in ["secret", "configMap", "downwardAPI", "projected"] {
            if v.get(source).is_some_and(Value::is_object) {
                default_field(v, &format!("/{source}/defaultMode"), json!(0o644));
            }
        }
    });
}

fn default_container(c: &mut Value) {
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let tag = image
        .rsplit('/')
        .next()
        .and_then(|last| last.split_once(':'))
        .map(|(_, t)| t);
    let policy = if image.contains('@') || tag.is_some_and(|t| t != "latest") {
        "IfNotPresent"
    } else {
        "Always"
    };
    default_field(c, "/imagePullPolicy", json!(policy));
    default_field(c, "/terminationMessagePath", json!("/dev/termination-log"));
    default_field(c, "/terminationMessagePolicy", json!("File"));
    default_field(c, "/resources", json!({}));
    each_object(c, "/ports", |p| default_field(p, "/protocol", json!("TCP")));
}

/// `SetDefaults_PodSpec` and the container defaults inside it.
pub fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default_field(spec, "/restartPolicy", json!("Always"));
    default_field(spec, "/terminationGracePeriodSeconds", json!(30));
    default_field(spec, "/dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "/schedulerName", json!("default-scheduler"));
    default_field(spec, "/securityContext", json!({}));
    default_field(spec, "/enableServiceLinks", json!(true));
    for list in ["/containers", "/initContainers"] {
        each_object(spec, list, default_container);
    }
    default_volumes(spec);
}

fn default_template(obj: &mut Value, template: &str) {
    if let Some(spec) = obj.pointer_mut(&format!("{template}/spec")) {
        default_pod_spec(spec);
    }
}

/// `SetDefaults_PersistentVolumeClaimSpec` (also used for StatefulSet claim templates).
fn default_claim(claim: &mut Value) {
    if claim.get("spec").is_some_and(Value::is_object) {
        default_field(claim, "/spec/volumeMode", json!("Filesystem"));
    }
    default_field(claim, "/status/phase", json!("Pending"));
}

fn default_service(obj: &mut Value) {
    default_field(obj, "/spec/type", json!("ClusterIP"));
    default_field(obj, "/spec/sessionAffinity", json!("None"));
    let ty = obj
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_field(obj, "/spec/externalTrafficPolicy", json!("Cluster"));
    }
    if ty != "ExternalName" {
        default_field(obj, "/spec/internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default_field(obj, "/spec/allocateLoadBalancerNodePorts", json!(true));
    }
    each_object(obj, "/spec/ports", |p| {
        default_field(p, "/protocol", json!("TCP"));
        // A zero or empty targetPort means unset (Go clients write the zero IntOrString as
        // `0`), as in Kubernetes' SetDefaults_Service.
        if let Some(port) = p.as_object_mut() {
            if matches!(port.get("targetPort"), Some(t) if *t == json!(0) || *t == json!("")) {
                port.remove("targetPort");
            }
        }
        if let Some(port) = p.get("port").cloned() {
            default_field(p, "/targetPort", port);
        }
    });
}

fn default_job_spec(obj: &mut Value) {
    if !present(obj, "/spec/completions") && !present(obj, "/spec/parallelism") {
        default_field(obj, "/spec/completions", json!(1));
    }
    default_field(obj, "/spec/parallelism", json!(1));
    let backoff = if present(obj, "/spec/backoffLimitPerIndex") {
        i64::from(i32::MAX)
    } else {
        6
    };
    default_field(obj, "/spec/backoffLimit", json!(backoff));
    default_field(obj, "/spec/completionMode", json!("NonIndexed"));
    default_field(obj, "/spec/suspend", json!(false));
    let replacement = if present(obj, "/spec/podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    default_field(obj, "/spec/podReplacementPolicy", json!(replacement));
    if let Some(rules) = obj
        .pointer_mut("/spec/podFailurePolicy/rules")
        .and_then(Value::as_array_mut)
    {
        for rule in rules {
            each_object(rule, "/onPodConditions", |c| {
                default_field(c, "/status", json!("True"))
            });
        }
    }
    // A Job without labels takes its pod template's (SetDefaults_Job).
    let template_labels = obj
        .pointer("/spec/template/metadata/labels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
        .cloned();
    let has_labels = obj
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|m| !m.is_empty());
    if let (Some(labels), false) = (template_labels, has_labels) {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("labels".into(), labels);
        }
    }
}

fn default_hpa(obj: &mut Value) {
    default_field(obj, "/spec/minReplicas", json!(1));
    let no_metrics = obj
        .pointer("/spec/metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics && obj.get("spec").is_some_and(Value::is_object) {
        obj["spec"]["metrics"] = json!([{
            "type": "Resource",
            "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
        }]);
    }
    // A behavior that is given gets every rule it leaves out (GenerateHPAScale{Up,Down}Rules).
    if obj.pointer("/spec/behavior").is_some_and(Value::is_object) {
        let rules = [
            (
                "scaleUp",
                0,
                json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                       {"type": "Percent", "value": 100, "periodSeconds": 15}]),
            ),
            (
                "scaleDown",
                300,
                json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
            ),
        ];
        for (dir, window, policies) in rules {
            let base = format!("/spec/behavior/{dir}");
            default_field(
                obj,
                &format!("{base}/stabilizationWindowSeconds"),
                json!(window),
            );
            default_field(obj, &format!("{base}/selectPolicy"), json!("Max"));
            default_field(obj, &format!("{base}/policies"), policies);
        }
    }
}

fn default_limit_range(obj: &mut Value) {
    each_object(obj, "/spec/limits", |item| {
        if item.get("type").and_then(Value::as_str) != Some("Container") {
            return;
        }
        let get = |item: &Value, k: &str| {
            item.get(k)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        let (max, min) = (get(item, "max"), get(item, "min"));
        let mut default = get(item, "default");
        for (k, v) in &max {
            default.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut request = get(item, "defaultRequest");
        for (k, v) in default.iter().chain(min.iter()) {
            request.entry(k.clone()).or_insert_with(|| v.clone());
        }
        if let Some(m) = item.as_object_mut() {
            // Go leaves the maps it made out of the JSON when they stay empty.
            if !default.is_empty() {
                m.insert("default".into(), Value::Object(default));
            }
            if !request.is_empty() {
                m.insert("defaultRequest".into(), Value::Object(request));
            }
        }
    });
}

fn default_binding(obj: &mut Value) {
    if obj.get("roleRef").is_some_and(Value::is_object) {
        let empty = obj
            .pointer("/roleRef/apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if empty {
            obj["roleRef"]["apiGroup"] = json!("rbac.authorization.k8s.io");
        }
    }
    each_object(obj, "/subjects", |s| {
        let group = match s.get("kind").and_then(Value::as_str) {
            Some("User" | "Group") => "rbac.authorization.k8s.io",
            _ => return,
        };
        let empty = s
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if empty {
            s["apiGroup"] = json!(group);
        }
    });
}

/// Kubernetes' defaults for the fields clients commonly leave out (`SetDefaults_*`).
pub fn set_defaults(def: &ResourceDef, obj: &mut Value) {
    match (def.group, def.kind) {
        ("", "Secret") => default_field(obj, "/type", json!("Opaque")),
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                default_pod_spec(spec);
            }
        }
        ("", "Service") => default_service(obj),
        ("", "Endpoints") => {
            if let Some(subsets) = obj.get_mut("subsets").and_then(Value::as_array_mut) {
                for subset in subsets {
                    each_object(subset, "/ports", |p| {
                        default_field(p, "/protocol", json!("TCP"))
                    });
                }
            }
        }
        ("", "PersistentVolume") => {
            default_field(obj, "/spec/persistentVolumeReclaimPolicy", json!("Retain"));
            default_field(obj, "/spec/volumeMode", json!("Filesystem"));
            if obj.pointer("/spec/hostPath").is_some_and(Value::is_object) {
                default_field(obj, "/spec/hostPath/type", json!(""));
            }
            default_field(obj, "/status/phase", json!("Pending"));
        }
        ("", "PersistentVolumeClaim") => default_claim(obj),
        ("", "ReplicationController") => {
            // An RC selects, and is labelled with, its template's labels unless told otherwise.
            let labels = obj
                .pointer("/spec/template/metadata/labels")
                .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
                .cloned();
            if let Some(labels) = labels {
                let empty = |o: &Value, p: &str| {
                    o.pointer(p)
                        .and_then(Value::as_object)
                        .is_none_or(Map::is_empty)
                };
                if empty(obj, "/spec/selector") {
                    obj["spec"]["selector"] = labels.clone();
                }
                if empty(obj, "/metadata/labels") {
                    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                        meta.insert("labels".into(), labels);
                    }
                }
            }
            default_field(obj, "/spec/replicas", json!(1));
            default_template(obj, "/spec/template");
        }
        ("", "LimitRange") => default_limit_range(obj),
        ("apps", "Deployment") => {
            default_field(obj, "/spec/replicas", json!(1));
            default_field(obj, "/spec/revisionHistoryLimit", json!(10));
            default_field(obj, "/spec/progressDeadlineSeconds", json!(600));
            default_field(obj, "/spec/strategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/strategy/type") == Some(&json!("RollingUpdate")) {
                default_field(obj, "/spec/strategy/rollingUpdate/maxSurge", json!("25%"));
                default_field(
                    obj,
                    "/spec/strategy/rollingUpdate/maxUnavailable",
                    json!("25%"),
                );
            }
            default_template(obj, "/spec/template");
        }
        ("apps", "ReplicaSet") => {
            default_field(obj, "/spec/replicas", json!(1));
            default_template(obj, "/spec/template");
        }
        ("apps", "DaemonSet") => {
            default_field(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
            if obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate")) {
                default_field(
                    obj,
                    "/spec/updateStrategy/rollingUpdate/maxUnavailable",
                    json!(1),
                );
                default_field(obj, "/spec/updateStrategy/rollingUpdate/maxSurge", json!(0));
            }
            default_field(obj, "/spec/revisionHistoryLimit", json!(10));
            default_template(obj, "/spec/template");
        }
        ("apps", "StatefulSet") => {
            default_field(obj, "/spec/podManagementPolicy", json!("OrderedReady"));
            if !present(obj, "/spec/updateStrategy/type") {
                default_field(obj, "/spec/updateStrategy/type", json!("RollingUpdate"));
                default_field(obj, "/spec/updateStrategy/rollingUpdate", json!({}));
            }
            let rolling = obj.pointer("/spec/updateStrategy/type") == Some(&json!("RollingUpdate"));
            if rolling
                && obj
                    .pointer("/spec/updateStrategy/rollingUpdate")
                    .is_some_and(Value::is_object)
            {
                default_field(
                    obj,
                    "/spec/updateStrategy/rollingUpdate/partition",
                    json!(0),
                );
            }
            default_field(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy/whenDeleted",
                json!("Retain"),
            );
            default_field(
                obj,
                "/spec/persistentVolumeClaimRetentionPolicy/whenScaled",
                json!("Retain"),
            );
            default_field(obj, "/spec/replicas", json!(1));
            default_field(obj, "/spec/revisionHistoryLimit", json!(10));
            default_template(obj, "/spec/template");
            each_object(obj, "/spec/volumeClaimTemplates", default_claim);
        }
        ("batch", "Job") => {
            default_job_spec(obj);
            default_template(obj, "/spec/template");
        }
        ("batch", "CronJob") => {
            default_field(obj, "/spec/concurrencyPolicy", json!("Allow"));
            default_field(obj, "/spec/suspend", json!(false));
            default_field(obj, "/spec/successfulJobsHistoryLimit", json!(3));
            default_field(obj, "/spec/failedJobsHistoryLimit", json!(1));
            default_template(obj, "/spec/jobTemplate/spec/template");
        }
        ("autoscaling", "HorizontalPodAutoscaler") => default_hpa(obj),
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding") => default_binding(obj),
        ("scheduling.k8s.io", "PriorityClass") => {
            default_field(obj, "/preemptionPolicy", json!("PreemptLowerPriority"))
        }
        _ => {}
    }
}

/// What a kind's registry fills in on create once the object has its uid: a Namespace's
/// `kubernetes` finalizer, a Job's generated selector and the labels it selects
/// (`generateSelector`), unless `spec.manualSelector` is true.
pub fn prepare_for_create(def: &ResourceDef, obj: &mut Value) {
    if (def.group, def.kind) == ("", "Namespace") {
        // Every namespace starts with the `kubernetes` finalizer (the namespace controller's);
        // it is not a default, so it stays removed once /finalize removes it.
        if let Some(spec) = object_at(obj, "/spec") {
            let list = spec.entry("finalizers").or_insert(Value::Null);
            if list.is_null() {
                *list = json!([]);
            }
            if let Some(items) = list.as_array_mut() {
                if !items.iter().any(|f| f == "kubernetes") {
                    items.push(json!("kubernetes"));
                }
            }
        }
        return;
    }
    if (def.group, def.kind) != ("batch", "Job")
        || obj.pointer("/spec/manualSelector") == Some(&json!(true))
        || !obj.get("spec").is_some_and(Value::is_object)
    {
        return;
    }
    let name = meta_str(obj, "name").unwrap_or("").to_string();
    let uid = meta_str(obj, "uid").unwrap_or("").to_string();
    let Some(labels) = object_at(obj, "/spec/template/metadata/labels") else {
        return;
    };
    for key in JOB_NAME_LABELS {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in CONTROLLER_UID_LABELS {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    if let Some(selector) = object_at(obj, "/spec/selector/matchLabels") {
        selector
            .entry(CONTROLLER_UID_LABELS[1])
            .or_insert_with(|| json!(uid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::lookup;

    fn defaulted(group: &str, version: &str, plural: &str, mut obj: Value) -> Value {
        set_defaults(lookup(group, version, plural).unwrap(), &mut obj);
        obj
    }

    #[test]
    fn workload_defaults_match_kubernetes() {
        let template = json!({"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}});
        let sts = defaulted(
            "apps",
            "v1",
            "statefulsets",
            json!({"spec": {"template": template,
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        );
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            sts["spec"]["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            sts["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );

        let ds = defaulted(
            "apps",
            "v1",
            "daemonsets",
            json!({"spec": {"template": template}}),
        );
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);

        let rc = defaulted(
            "",
            "v1",
            "replicationcontrollers",
            json!({"metadata": {"name": "r"},
            "spec": {"template": template}}),
        );
        assert_eq!(rc["spec"]["selector"], json!({"app": "x"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "x"}));
        assert_eq!(rc["spec"]["replicas"], 1);

        // An OnDelete StatefulSet gets no rollingUpdate conjured up.
        let ondelete = defaulted(
            "apps",
            "v1",
            "statefulsets",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}}}),
        );
        assert_eq!(
            ondelete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    #[test]
    fn job_defaults_and_generated_selector() {
        let def = lookup("batch", "v1", "jobs").unwrap();
        let mut job = json!({"metadata": {"name": "pi", "uid": "u-1"},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "perl"}],
            "restartPolicy": "Never"}}}});
        prepare_for_create(def, &mut job);
        set_defaults(def, &mut job);
        let labels = json!({"job-name": "pi", "batch.kubernetes.io/job-name": "pi",
            "controller-uid": "u-1", "batch.kubernetes.io/controller-uid": "u-1"});
        assert_eq!(job["spec"]["template"]["metadata"]["labels"], labels);
        assert_eq!(job["metadata"]["labels"], labels);
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}})
        );
        for (field, want) in [
            ("completions", json!(1)),
            ("parallelism", json!(1)),
            ("backoffLimit", json!(6)),
            ("completionMode", json!("NonIndexed")),
            ("suspend", json!(false)),
            ("podReplacementPolicy", json!("TerminatingOrFailed")),
        ] {
            assert_eq!(job["spec"][field], want, "{field}");
        }
        // Parallel jobs keep completions unset.
        let parallel = defaulted("batch", "v1", "jobs", json!({"spec": {"parallelism": 3}}));
        assert!(parallel["spec"].get("completions").is_none());

        let manual =
            json!({"metadata": {"name": "m", "uid": "u"}, "spec": {"manualSelector": true}});
        let mut m = manual.clone();
        prepare_for_create(def, &mut m);
        assert_eq!(m, manual);
    }

    #[test]
    fn other_defaults() {
        let cj = defaulted(
            "batch",
            "v1",
            "cronjobs",
            json!({"spec": {"schedule": "* * * * *"}}),
        );
        assert_eq!(cj["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(cj["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(cj["spec"]["failedJobsHistoryLimit"], 1);
        assert_eq!(cj["spec"]["suspend"], false);

        let pvc = defaulted("", "v1", "persistentvolumeclaims", json!({"spec": {}}));
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        assert_eq!(pvc["status"]["phase"], "Pending");

        let hpa = defaulted(
            "autoscaling",
            "v2",
            "horizontalpodautoscalers",
            json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"selectPolicy": "Min"}}}}),
        );
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(
            hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(hpa["spec"]["behavior"]["scaleDown"]["selectPolicy"], "Min");
        assert_eq!(
            hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"],
            300
        );
        assert_eq!(
            hpa["spec"]["behavior"]["scaleUp"]["policies"][0]["value"],
            4
        );

        let rb = defaulted(
            "rbac.authorization.k8s.io",
            "v1",
            "rolebindings",
            json!({"roleRef": {"kind": "Role", "name": "r"},
                   "subjects": [{"kind": "User", "name": "u"}, {"kind": "ServiceAccount", "name": "s"}]}),
        );
        assert_eq!(rb["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
        assert_eq!(rb["subjects"][0]["apiGroup"], "rbac.authorization.k8s.io");
        assert!(rb["subjects"][1].get("apiGroup").is_none());

        let lr = defaulted(
            "",
            "v1",
            "limitranges",
            json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}}]}}),
        );
        assert_eq!(lr["spec"]["limits"][0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            lr["spec"]["limits"][0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
    }

    #[test]
    fn malformed_input_is_left_alone_never_panics() {
        for plural in [
            "pods",
            "services",
            "replicationcontrollers",
            "limitranges",
            "endpoints",
        ] {
            for body in [
                json!({"spec": "x"}),
                json!({"spec": {"containers": ["x", 1]}}),
                json!({"spec": {"ports": [null, "p"], "template": 5, "limits": [1]}}),
                json!({"subsets": [1, {"ports": "x"}], "metadata": 3}),
            ] {
                let mut o = body.clone();
                set_defaults(lookup("", "v1", plural).unwrap(), &mut o);
            }
        }
        let mut o = json!({"spec": "x"});
        default_field(&mut o, "/spec/replicas", json!(1));
        assert_eq!(o, json!({"spec": "x"}));
    }
}

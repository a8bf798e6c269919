//! Validation of stored objects: name rules and the checks of Kubernetes' `Validate<Kind>` /
//! `Validate<Kind>Update` that catch objects no controller could act on (missing containers,
//! selectors that do not select their template, RBAC references of the wrong kind, ...), with
//! Kubernetes' field paths and wording. Not every Kubernetes check is here; see
//! docs/apiserver.md.
//!
//! Values inside messages are rendered as JSON where Kubernetes prints Go values (`%#v`).

use serde_json::{json, Value};

use super::admission;
use super::names;
use super::object::meta_str;
use super::resources::ResourceDef;
use super::status::{ApiError, Cause};

/// Collected field errors of one object.
#[derive(Default)]
struct Errors(Vec<Cause>);

impl Errors {
    fn required(&mut self, field: impl Into<String>, detail: &str) {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.0.push(Cause {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        });
    }

    fn invalid(&mut self, field: impl Into<String>, value: &Value, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {}: {detail}", render(value)),
        });
    }

    fn unsupported(&mut self, field: impl Into<String>, value: &Value, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        self.0.push(Cause {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render(value),
                list.join(", ")
            ),
        });
    }

    fn forbidden(&mut self, field: impl Into<String>, detail: &str) {
        self.0.push(Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        });
    }
}

fn render(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> &'a str {
    obj.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Checks a label selector (matchLabels and matchExpressions) against a set of labels.
pub fn selector_matches(selector: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let match_labels = selector
        .get("matchLabels")
        .and_then(Value::as_object)
        .is_none_or(|m| m.iter().all(|(k, v)| label(k) == v.as_str()));
    let match_expressions = selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .is_none_or(|exprs| {
            exprs.iter().all(|e| {
                let key = e.get("key").and_then(Value::as_str).unwrap_or("");
                let values: Vec<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|vs| vs.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                match e.get("operator").and_then(Value::as_str) {
                    Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                    Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                    Some("Exists") => label(key).is_some(),
                    Some("DoesNotExist") => label(key).is_none(),
                    _ => false,
                }
            })
        });
    match_labels && match_expressions
}

fn selector_is_empty(selector: &Value) -> bool {
    let empty = |k: &str| {
        selector.get(k).is_none_or(|v| {
            v.is_null()
                || v.as_object().is_some_and(|m| m.is_empty())
                || v.as_array().is_some_and(|a| a.is_empty())
        })
    };
    empty("matchLabels") && empty("matchExpressions")
}

/// A pod template's spec: at least one container, each named and with an image.
fn pod_spec(e: &mut Errors, obj: &Value, ptr: &str, field: &str) {
    match obj
        .pointer(&format!("{ptr}/containers"))
        .and_then(Value::as_array)
    {
        Some(cs) if !cs.is_empty() => {
            for (i, c) in cs.iter().enumerate() {
                for attr in ["name", "image"] {
                    if c.get(attr)
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        e.required(format!("{field}.containers[{i}].{attr}"), "");
                    }
                }
            }
        }
        _ => e.required(format!("{field}.containers"), ""),
    }
}

/// The restart policies a controller's pod template may have.
fn restart_policy(e: &mut Errors, obj: &Value, ptr: &str, field: &str, allowed: &[&str]) {
    if let Some(p) = obj.pointer(&format!("{ptr}/restartPolicy")) {
        if !p.as_str().is_some_and(|p| allowed.contains(&p)) {
            e.unsupported(format!("{field}.restartPolicy"), p, allowed);
        }
    }
}

/// A workload's `spec.selector` (a LabelSelector) and `spec.template`.
fn selector_and_template(e: &mut Errors, obj: &Value, kind: &str) {
    let template_labels = obj.pointer("/spec/template/metadata/labels");
    match obj.pointer("/spec/selector").filter(|s| s.is_object()) {
        None => e.required("spec.selector", ""),
        Some(sel) if selector_is_empty(sel) => e.invalid(
            "spec.selector",
            sel,
            &format!("empty selector is invalid for {kind}"),
        ),
        Some(sel) if !selector_matches(sel, template_labels) => e.invalid(
            "spec.template.metadata.labels",
            template_labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        ),
        Some(_) => {}
    }
    pod_spec(e, obj, "/spec/template/spec", "spec.template.spec");
}

fn non_negative(e: &mut Errors, obj: &Value, ptr: &str, field: &str) {
    if let Some(v) = obj.pointer(ptr).filter(|v| !v.is_null()) {
        if v.as_i64().is_none_or(|n| n < 0) {
            e.invalid(field, v, "must be greater than or equal to 0");
        }
    }
}

/// Cron schedules: a descriptor (`@daily`, `@every 1h`) or five fields of cron characters,
/// optionally after `TZ=` / `CRON_TZ=` (which Kubernetes rejects in favour of `spec.timeZone`).
fn check_schedule(e: &mut Errors, schedule: &Value) {
    let Some(s) = schedule.as_str().filter(|s| !s.trim().is_empty()) else {
        e.required("spec.schedule", "");
        return;
    };
    if s.contains("TZ=") {
        e.invalid(
            "spec.schedule",
            schedule,
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        );
        return;
    }
    let descriptors = [
        "@yearly",
        "@annually",
        "@monthly",
        "@weekly",
        "@daily",
        "@midnight",
        "@hourly",
    ];
    if descriptors.contains(&s.trim()) || s.trim().starts_with("@every ") {
        return;
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        e.invalid(
            "spec.schedule",
            schedule,
            &format!("expected exactly 5 fields, found {}: {s}", fields.len()),
        );
        return;
    }
    let ok = |f: &str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*/,-?".contains(c))
    };
    if let Some(bad) = fields.iter().find(|f| !ok(f)) {
        e.invalid(
            "spec.schedule",
            schedule,
            &format!("failed to parse int from {bad}"),
        );
    }
}

fn service(e: &mut Errors, obj: &Value) {
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    let ty = obj.pointer("/spec/type").cloned().unwrap_or(Value::Null);
    let ty_str = ty.as_str().unwrap_or("");
    if !TYPES.contains(&ty_str) {
        e.unsupported("spec.type", &ty, TYPES);
    }
    let ports = obj
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let headless = str_at(obj, "/spec/clusterIP") == "None";
    if ty_str == "ExternalName" {
        if str_at(obj, "/spec/externalName").is_empty() {
            e.required("spec.externalName", "");
        }
    } else if ports.is_empty() && !headless {
        e.required("spec.ports", "");
    }
    for (i, p) in ports.iter().enumerate() {
        let port = p.get("port").cloned().unwrap_or(Value::Null);
        if !port.as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
            e.invalid(
                format!("spec.ports[{i}].port"),
                &port,
                "must be between 1 and 65535, inclusive",
            );
        }
        let proto = p.get("protocol").cloned().unwrap_or(Value::Null);
        if !matches!(proto.as_str(), Some("TCP" | "UDP" | "SCTP")) {
            e.unsupported(
                format!("spec.ports[{i}].protocol"),
                &proto,
                &["SCTP", "TCP", "UDP"],
            );
        }
        if ports.len() > 1
            && p.get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            e.required(format!("spec.ports[{i}].name"), "");
        }
    }
}

fn rbac_rules(e: &mut Errors, obj: &Value, namespaced: bool) {
    let rules = obj
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, r) in rules.iter().enumerate() {
        let list = |k: &str| {
            r.get(k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        if !list("verbs") {
            e.required(
                format!("rules[{i}].verbs"),
                "verbs must contain at least one value",
            );
        }
        if list("nonResourceURLs") {
            if namespaced {
                e.invalid(
                    format!("rules[{i}].nonResourceURLs"),
                    &r["nonResourceURLs"],
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if list("apiGroups") || list("resources") || list("resourceNames") {
                e.invalid(
                    format!("rules[{i}].nonResourceURLs"),
                    &r["nonResourceURLs"],
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
        } else {
            if !list("apiGroups") {
                e.required(
                    format!("rules[{i}].apiGroups"),
                    "resource rules must supply at least one api group",
                );
            }
            if !list("resources") {
                e.required(
                    format!("rules[{i}].resources"),
                    "resource rules must supply at least one resource",
                );
            }
        }
    }
}

fn rbac_binding(e: &mut Errors, obj: &Value, cluster: bool) {
    const GROUP: &str = "rbac.authorization.k8s.io";
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    let kind = obj.pointer("/roleRef/kind").cloned().unwrap_or(Value::Null);
    if !kind.as_str().is_some_and(|k| kinds.contains(&k)) {
        e.unsupported("roleRef.kind", &kind, kinds);
    }
    let group = obj
        .pointer("/roleRef/apiGroup")
        .cloned()
        .unwrap_or(Value::Null);
    if group.as_str() != Some(GROUP) {
        e.unsupported("roleRef.apiGroup", &group, &[GROUP]);
    }
    if str_at(obj, "/roleRef/name").is_empty() {
        e.required("roleRef.name", "");
    } else {
        let problems = names::validate(
            super::resources::NameRule::PathSegment,
            str_at(obj, "/roleRef/name"),
        );
        for p in problems {
            e.invalid("roleRef.name", &obj["roleRef"]["name"], &p);
        }
    }
    let subjects = obj
        .get("subjects")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, s) in subjects.iter().enumerate() {
        if s.get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            e.required(format!("subjects[{i}].name"), "");
        }
        let kind = s.get("kind").cloned().unwrap_or(Value::Null);
        let api_group = s.get("apiGroup").and_then(Value::as_str).unwrap_or("");
        match kind.as_str() {
            Some("ServiceAccount") => {
                if !api_group.is_empty() {
                    e.unsupported(format!("subjects[{i}].apiGroup"), &s["apiGroup"], &[""]);
                }
                if cluster
                    && s.get("namespace")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                {
                    e.required(format!("subjects[{i}].namespace"), "");
                }
            }
            Some("User" | "Group") => {
                if api_group != GROUP {
                    e.unsupported(format!("subjects[{i}].apiGroup"), &s["apiGroup"], &[GROUP]);
                }
            }
            _ => e.unsupported(
                format!("subjects[{i}].kind"),
                &kind,
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

fn hpa(e: &mut Errors, obj: &Value) {
    for attr in ["kind", "name"] {
        if str_at(obj, &format!("/spec/scaleTargetRef/{attr}")).is_empty() {
            e.required(format!("spec.scaleTargetRef.{attr}"), "");
        }
    }
    let max = obj
        .pointer("/spec/maxReplicas")
        .cloned()
        .unwrap_or(Value::Null);
    let min = obj.pointer("/spec/minReplicas").and_then(Value::as_i64);
    if let Some(m) = obj.pointer("/spec/minReplicas").filter(|v| !v.is_null()) {
        if m.as_i64().is_none_or(|n| n < 1) {
            e.invalid("spec.minReplicas", m, "must be greater than or equal to 1");
        }
    }
    match max.as_i64() {
        Some(n) if n < 1 => e.invalid("spec.maxReplicas", &max, "must be greater than 0"),
        Some(n) if min.is_some_and(|m| n < m) => e.invalid(
            "spec.maxReplicas",
            &max,
            "must be greater than or equal to `minReplicas`",
        ),
        Some(_) => {}
        None => e.invalid("spec.maxReplicas", &max, "must be greater than 0"),
    }
}

/// Name rules plus the checks of Kubernetes' validation for the kinds served.
pub fn validate(def: &ResourceDef, name: &str, obj: &Value) -> Result<(), ApiError> {
    let mut e = Errors::default();
    for m in names::validate(def.name_rule, name) {
        e.invalid("metadata.name", &Value::String(name.into()), &m);
    }
    for field in ["labels", "annotations"] {
        match obj.pointer(&format!("/metadata/{field}")) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
            Some(v) => e.invalid(
                format!("metadata.{field}"),
                v,
                "must be a map of string to string",
            ),
        }
    }
    match (def.group, def.kind) {
        ("", "Pod") => pod_spec(&mut e, obj, "/spec", "spec"),
        ("", "ConfigMap" | "Secret") => {
            for field in ["data", "stringData", "binaryData"] {
                if let Some(v) = obj.get(field) {
                    if !v.is_null()
                        && !v
                            .as_object()
                            .is_some_and(|m| m.values().all(Value::is_string))
                    {
                        return Err(ApiError::BadRequest(format!(
                            "{field}: must be a map of string to string"
                        )));
                    }
                }
            }
        }
        ("", "Service") => service(&mut e, obj),
        ("", "ReplicationController") => {
            non_negative(&mut e, obj, "/spec/replicas", "spec.replicas");
            match obj.pointer("/spec/template").filter(|t| t.is_object()) {
                None => e.required("spec.template", ""),
                Some(t) => {
                    let selector = obj.pointer("/spec/selector").and_then(Value::as_object);
                    let labels = t.pointer("/metadata/labels");
                    match selector {
                        Some(s) if !s.is_empty() => {
                            let sel = serde_json::json!({"matchLabels": s});
                            if !selector_matches(&sel, labels) {
                                e.invalid(
                                    "spec.template.metadata.labels",
                                    labels.unwrap_or(&Value::Null),
                                    "`selector` does not match template `labels`",
                                );
                            }
                        }
                        _ => e.required("spec.selector", ""),
                    }
                    pod_spec(&mut e, obj, "/spec/template/spec", "spec.template.spec");
                    restart_policy(
                        &mut e,
                        obj,
                        "/spec/template/spec",
                        "spec.template.spec",
                        &["Always"],
                    );
                }
            }
        }
        ("", "PersistentVolume") => {
            if obj
                .pointer("/spec/capacity")
                .and_then(Value::as_object)
                .is_none_or(|m| m.is_empty())
            {
                e.required("spec.capacity", "");
            }
            if obj
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                e.required("spec.accessModes", "");
            }
            const NOT_SOURCES: &[&str] = &[
                "capacity",
                "accessModes",
                "claimRef",
                "persistentVolumeReclaimPolicy",
                "storageClassName",
                "mountOptions",
                "volumeMode",
                "nodeAffinity",
                "volumeAttributesClassName",
            ];
            let has_source = obj
                .get("spec")
                .and_then(Value::as_object)
                .is_some_and(|s| s.keys().any(|k| !NOT_SOURCES.contains(&k.as_str())));
            if !has_source {
                e.required("spec", "must specify a volume type");
            }
        }
        ("", "PersistentVolumeClaim") => {
            if obj
                .pointer("/spec/accessModes")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
            {
                e.required("spec.accessModes", "at least 1 access mode is required");
            }
            if obj.pointer("/spec/resources/requests/storage").is_none() {
                e.required("spec.resources[storage]", "");
            }
        }
        ("apps", "Deployment") => {
            non_negative(&mut e, obj, "/spec/replicas", "spec.replicas");
            selector_and_template(&mut e, obj, "deployment");
            restart_policy(
                &mut e,
                obj,
                "/spec/template/spec",
                "spec.template.spec",
                &["Always"],
            );
        }
        ("apps", "ReplicaSet" | "StatefulSet" | "DaemonSet") => {
            non_negative(&mut e, obj, "/spec/replicas", "spec.replicas");
            selector_and_template(&mut e, obj, &def.kind.to_lowercase());
            restart_policy(
                &mut e,
                obj,
                "/spec/template/spec",
                "spec.template.spec",
                &["Always"],
            );
        }
        ("batch", "Job") => {
            for f in ["parallelism", "completions", "backoffLimit"] {
                non_negative(&mut e, obj, &format!("/spec/{f}"), &format!("spec.{f}"));
            }
            if obj.pointer("/spec/manualSelector") == Some(&Value::Bool(true)) {
                selector_and_template(&mut e, obj, "job");
            } else {
                pod_spec(&mut e, obj, "/spec/template/spec", "spec.template.spec");
            }
            match obj.pointer("/spec/template/spec/restartPolicy") {
                Some(p) if matches!(p.as_str(), Some("OnFailure" | "Never")) => {}
                p => e.unsupported(
                    "spec.template.spec.restartPolicy",
                    p.unwrap_or(&Value::Null),
                    &["OnFailure", "Never"],
                ),
            }
        }
        ("batch", "CronJob") => {
            if name.len() > 52 {
                e.invalid(
                    "metadata.name",
                    &Value::String(name.into()),
                    "must be no more than 52 characters",
                );
            }
            check_schedule(
                &mut e,
                obj.pointer("/spec/schedule").unwrap_or(&Value::Null),
            );
            let tmpl = "/spec/jobTemplate/spec/template/spec";
            let field = "spec.jobTemplate.spec.template.spec";
            pod_spec(&mut e, obj, tmpl, field);
            match obj.pointer(&format!("{tmpl}/restartPolicy")) {
                Some(p) if matches!(p.as_str(), Some("OnFailure" | "Never")) => {}
                p => e.unsupported(
                    format!("{field}.restartPolicy"),
                    p.unwrap_or(&Value::Null),
                    &["OnFailure", "Never"],
                ),
            }
            const POLICIES: &[&str] = &["Allow", "Forbid", "Replace"];
            if let Some(p) = obj.pointer("/spec/concurrencyPolicy") {
                if !p.as_str().is_some_and(|p| POLICIES.contains(&p)) {
                    e.unsupported("spec.concurrencyPolicy", p, POLICIES);
                }
            }
        }
        ("autoscaling", "HorizontalPodAutoscaler") => hpa(&mut e, obj),
        ("policy", "PodDisruptionBudget")
            if obj
                .pointer("/spec/minAvailable")
                .is_some_and(|v| !v.is_null())
                && obj
                    .pointer("/spec/maxUnavailable")
                    .is_some_and(|v| !v.is_null()) =>
        {
            e.invalid(
                "spec",
                obj.get("spec").unwrap_or(&Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            );
        }
        ("rbac.authorization.k8s.io", "Role") => rbac_rules(&mut e, obj, true),
        ("rbac.authorization.k8s.io", "ClusterRole") => rbac_rules(&mut e, obj, false),
        ("rbac.authorization.k8s.io", "RoleBinding") => rbac_binding(&mut e, obj, false),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => rbac_binding(&mut e, obj, true),
        ("scheduling.k8s.io", "PriorityClass") => {
            const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
            let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
            let known_system = admission::system_priority_classes().iter().any(|c| {
                meta_str(c, "name") == Some(name)
                    && c.get("value") == obj.get("value")
                    && obj.get("globalDefault") != Some(&json!(true))
            });
            if !known_system {
                if name.starts_with("system-") {
                    e.forbidden(
                        "metadata.name",
                        "priority class names with 'system-' prefix are reserved for system use only",
                    );
                } else if value > HIGHEST_USER_PRIORITY {
                    e.forbidden(
                        "value",
                        "maximum allowed value of a user defined priority is 1000000000",
                    );
                }
            }
            const POLICIES: &[&str] = &["Never", "PreemptLowerPriority"];
            if let Some(p) = obj.get("preemptionPolicy") {
                if !p.as_str().is_some_and(|p| POLICIES.contains(&p)) {
                    e.unsupported("preemptionPolicy", p, POLICIES);
                }
            }
        }
        _ => {}
    }
    into_result(def, name, e)
}

/// The fields Kubernetes does not let an update change.
/// Kubernetes' words for a pod update that changes more than it may (its diff of the two specs
/// is left out).
const POD_UPDATE_FORBIDDEN: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Whether a pod update keeps its spec but for what Kubernetes' `ValidatePodUpdate` lets change:
/// container and init container images, `activeDeadlineSeconds`, added tolerations, and a
/// negative `terminationGracePeriodSeconds` set to 1. (`spec.nodeName` is set only through the
/// binding subresource.)
fn pod_update_allowed(old: &Value, new: &Value) -> bool {
    let (old_spec, new_spec) = (&old["spec"], &new["spec"]);
    let old_tolerations = old_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let new_tolerations = new_spec["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !old_tolerations.iter().all(|t| new_tolerations.contains(t)) {
        return false;
    }
    let grace = |s: &Value| s["terminationGracePeriodSeconds"].as_i64();
    let grace_ok = grace(old_spec) == grace(new_spec)
        || (grace(old_spec).is_some_and(|g| g < 0) && grace(new_spec) == Some(1));
    if !grace_ok {
        return false;
    }
    let masked = |spec: &Value| {
        let mut spec = spec.clone();
        for list in ["containers", "initContainers"] {
            if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for c in cs.iter_mut().filter_map(Value::as_object_mut) {
                    c.remove("image");
                }
            }
        }
        if let Some(m) = spec.as_object_mut() {
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
            ] {
                m.remove(field);
            }
        }
        spec
    };
    masked(old_spec) == masked(new_spec)
}

pub fn validate_update(
    def: &ResourceDef,
    name: &str,
    old: &Value,
    new: &Value,
) -> Result<(), ApiError> {
    let mut e = Errors::default();
    let immutable = |e: &mut Errors, ptr: &str, field: &str| {
        if old.pointer(ptr) != new.pointer(ptr) {
            e.invalid(
                field,
                new.pointer(ptr).unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    };
    match (def.group, def.kind) {
        ("", "Pod") if !pod_update_allowed(old, new) => {
            e.forbidden("spec", POD_UPDATE_FORBIDDEN);
        }
        ("apps", "Deployment" | "ReplicaSet" | "DaemonSet") => {
            immutable(&mut e, "/spec/selector", "spec.selector")
        }
        ("apps", "StatefulSet") => {
            const MUTABLE: &[&str] = &[
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ];
            let rest = |o: &Value| {
                let mut spec = o.get("spec").cloned().unwrap_or(Value::Null);
                if let Some(m) = spec.as_object_mut() {
                    m.retain(|k, _| !MUTABLE.contains(&k.as_str()));
                }
                spec
            };
            if rest(old) != rest(new) {
                e.forbidden("spec", "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden");
            }
        }
        ("batch", "Job") => {
            immutable(&mut e, "/spec/selector", "spec.selector");
            immutable(&mut e, "/spec/completions", "spec.completions");
            immutable(&mut e, "/spec/completionMode", "spec.completionMode");
        }
        ("rbac.authorization.k8s.io", "RoleBinding" | "ClusterRoleBinding")
            if old.get("roleRef") != new.get("roleRef") =>
        {
            e.invalid(
                "roleRef",
                new.get("roleRef").unwrap_or(&Value::Null),
                "cannot change roleRef",
            );
        }
        ("scheduling.k8s.io", "PriorityClass") if old.get("value") != new.get("value") => {
            e.forbidden("value", "may not be changed in an update.");
        }
        _ => {}
    }
    into_result(def, name, e)
}

fn into_result(def: &ResourceDef, name: &str, e: Errors) -> Result<(), ApiError> {
    if e.0.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid {
            kind: def.qualified_kind(),
            name: name.into(),
            causes: e.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::apiserver::resources::lookup;

    fn fields(group: &str, plural: &str, name: &str, obj: Value) -> Vec<String> {
        let def = lookup(
            group,
            if group == "autoscaling" { "v2" } else { "v1" },
            plural,
        )
        .unwrap();
        match validate(def, name, &obj) {
            Ok(()) => Vec::new(),
            Err(ApiError::Invalid { causes, .. }) => causes
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect(),
            Err(other) => vec![other.to_string()],
        }
    }

    #[test]
    fn workload_selectors_must_select_their_template() {
        let tmpl = json!({"metadata": {"labels": {"app": "a", "tier": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        let ok = json!({"spec": {"selector": {"matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, "template": tmpl}});
        assert!(fields("apps", "replicasets", "rs", ok).is_empty());
        let bad = json!({"spec": {"selector": {"matchLabels": {"app": "b"}}, "template": tmpl}});
        let errs = fields("apps", "statefulsets", "s", bad);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.template.metadata.labels: Invalid value: "),
            "{errs:?}"
        );
        let none = fields(
            "apps",
            "daemonsets",
            "d",
            json!({"spec": {"template": tmpl}}),
        );
        assert_eq!(none, ["spec.selector: Required value"]);
    }

    #[test]
    fn jobs_and_cronjobs() {
        let job = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}],
            "restartPolicy": "Always"}}}});
        assert_eq!(
            fields("batch", "jobs", "j", job),
            ["spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
        let long = "c".repeat(53);
        let cj = json!({"spec": {"schedule": "*/5 * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "i"}], "restartPolicy": "OnFailure"}}}}}});
        assert_eq!(
            fields("batch", "cronjobs", &long, cj),
            [
                format!("metadata.name: Invalid value: \"{long}\": must be no more than 52 characters"),
                "spec.schedule: Invalid value: \"*/5 * * *\": expected exactly 5 fields, found 4: */5 * * *".to_string(),
            ]
        );
    }

    #[test]
    fn rbac_objects() {
        let binding = json!({"roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "sa"}, {"kind": "Robot", "name": "x"}]});
        assert_eq!(
            fields("rbac.authorization.k8s.io", "clusterrolebindings", "system:b", binding),
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[0].namespace: Required value",
                "subjects[1].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\"",
            ]
        );
        let role = json!({"rules": [{"apiGroups": [""], "resources": ["pods"]}, {"verbs": ["get"], "nonResourceURLs": ["/x"]}]});
        assert_eq!(
            fields("rbac.authorization.k8s.io", "roles", "r", role),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].nonResourceURLs: Invalid value: [\"/x\"]: namespaced rules cannot apply to non-resource URLs",
            ]
        );
    }

    #[test]
    fn storage_and_autoscaling() {
        assert_eq!(
            fields("", "persistentvolumeclaims", "c", json!({"spec": {}})),
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        assert_eq!(
            fields(
                "",
                "persistentvolumes",
                "v",
                json!({"spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}})
            ),
            ["spec: Required value: must specify a volume type"]
        );
        assert_eq!(
            fields("autoscaling", "horizontalpodautoscalers", "h", json!({"spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "d"}, "minReplicas": 3, "maxReplicas": 2}})),
            ["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
        );
    }
}

#[cfg(test)]
mod pod_update_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_updates_change_only_what_kubernetes_allows() {
        let old = json!({"spec": {
            "containers": [{"name": "c", "image": "a:1"}],
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "terminationGracePeriodSeconds": -1,
        }});
        let with = |f: &dyn Fn(&mut Value)| {
            let mut v = old.clone();
            f(&mut v);
            v
        };
        let image = with(&|v| v["spec"]["containers"][0]["image"] = json!("a:2"));
        assert!(pod_update_allowed(&old, &image));
        let added = with(&|v| {
            v["spec"]["tolerations"]
                .as_array_mut()
                .unwrap()
                .push(json!({"key": "x", "operator": "Exists"}))
        });
        assert!(pod_update_allowed(&old, &added));
        let grace = with(&|v| v["spec"]["terminationGracePeriodSeconds"] = json!(1));
        assert!(pod_update_allowed(&old, &grace));
        let removed = with(&|v| v["spec"]["tolerations"] = json!([]));
        assert!(!pod_update_allowed(&old, &removed));
        let moved = with(&|v| v["spec"]["nodeName"] = json!("n1"));
        assert!(!pod_update_allowed(&old, &moved));
        let renamed = with(&|v| v["spec"]["containers"][0]["name"] = json!("d"));
        assert!(!pod_update_allowed(&old, &renamed));
    }
}

//! The review APIs, created (POST) and answered at once, never stored:
//!
//! - authorization.k8s.io/v1 `SelfSubjectAccessReview` (`kubectl auth can-i`): may the caller do
//!   this (resourceAttributes or nonResourceAttributes)?
//! - authorization.k8s.io/v1 `SelfSubjectRulesReview` (`kubectl auth can-i --list`): what may
//!   the caller do in a namespace?
//! - authorization.k8s.io/v1 `SubjectAccessReview`: may this user/groups do it?
//! - authentication.k8s.io/v1 `SelfSubjectReview` (`kubectl auth whoami`): who am I?
//!
//! Creating a review is itself authorized like any create (system:basic-user grants the
//! self reviews to every authenticated user). Answers carry the authorizer's decision and
//! reason: `status.allowed`, `status.denied` when a mode denied, `status.reason`.

use http::{HeaderMap, Method, Response};
use serde_json::{json, Map, Value};

use super::super::http::{self as h, Body};
use super::super::status::{ApiError, Cause};
use super::authorize::{Authorizer, Decision, RuleList};
use super::request_info::RequestInfo;
use super::UserInfo;

/// A review endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReviewDef {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
}

/// Every review served, in discovery order.
pub const REVIEWS: &[ReviewDef] = &[
    ReviewDef {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "selfsubjectreviews",
        kind: "SelfSubjectReview",
    },
    ReviewDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectaccessreviews",
        kind: "SelfSubjectAccessReview",
    },
    ReviewDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "selfsubjectrulesreviews",
        kind: "SelfSubjectRulesReview",
    },
    ReviewDef {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        kind: "SubjectAccessReview",
    },
];

impl ReviewDef {
    fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }

    fn qualified_kind(&self) -> String {
        format!("{}.{}", self.kind, self.group)
    }
}

/// The review a path names (`/apis/<group>/<version>/<plural>`), if any.
pub fn lookup(path: &str) -> Option<&'static ReviewDef> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["apis", group, version, plural] => REVIEWS
            .iter()
            .find(|r| r.group == *group && r.version == *version && r.plural == *plural),
        _ => None,
    }
}

/// Answers a POST of a review by `user`.
pub async fn handle(
    review: &'static ReviewDef,
    method: &Method,
    user: &UserInfo,
    authorizer: &Authorizer,
    headers: &HeaderMap,
    body: hyper::body::Incoming,
) -> Result<Response<Body>, ApiError> {
    if *method != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = h::body_encoding(content_type)?;
    let bytes = h::read_body(body).await?;
    let mut obj = h::parse_body(encoding, &bytes, &review.api_version(), review.kind)?;
    let kind = obj["kind"].as_str().unwrap_or("");
    let api_version = obj["apiVersion"].as_str().unwrap_or("");
    if kind != review.kind || api_version != review.api_version() {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            review.api_version()
        )));
    }
    let status = match review.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info_json(user)}),
        "SelfSubjectRulesReview" => {
            let namespace = obj["spec"]["namespace"].as_str().unwrap_or("");
            if namespace.is_empty() {
                return Err(ApiError::BadRequest("no namespace on request".into()));
            }
            rules_json(&authorizer.rules_for(user, namespace))
        }
        "SelfSubjectAccessReview" => {
            let info = attributes(review, &obj["spec"])?;
            decision_json(&authorizer.authorize(user, &info))
        }
        _ => {
            let subject = subject_of(review, &obj["spec"])?;
            let info = attributes(review, &obj["spec"])?;
            decision_json(&authorizer.authorize(&subject, &info))
        }
    };
    obj["status"] = status;
    let meta = obj
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(meta) = meta {
        meta.entry("creationTimestamp").or_insert(Value::Null);
    }
    Ok(h::json(201, &obj))
}

fn user_info_json(user: &UserInfo) -> Value {
    let mut info = Map::new();
    info.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        info.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        info.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        info.insert("extra".into(), json!(user.extra));
    }
    Value::Object(info)
}

fn decision_json(d: &Decision) -> Value {
    let mut status = json!({"allowed": d.allowed()});
    if matches!(d, Decision::Deny(_)) {
        status["denied"] = json!(true);
    }
    if !d.reason().is_empty() {
        status["reason"] = json!(d.reason());
    }
    status
}

/// A SubjectRulesReviewStatus: each rule with resources as a resource rule, each with
/// nonResourceURLs as a non-resource rule.
fn rules_json(list: &RuleList) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in &list.rules {
        if !r.resources.is_empty() {
            let mut rule =
                json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
            if !r.resource_names.is_empty() {
                rule["resourceNames"] = json!(r.resource_names);
            }
            resource_rules.push(rule);
        }
        if !r.non_resource_urls.is_empty() {
            non_resource_rules
                .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": list.incomplete,
    });
    if !list.evaluation_error.is_empty() {
        status["evaluationError"] = json!(list.evaluation_error);
    }
    status
}

fn invalid(review: &ReviewDef, field: &str, value: &Value, detail: &str) -> ApiError {
    let rendered = match value {
        Value::Null => "null".to_string(),
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    ApiError::Invalid {
        kind: review.qualified_kind(),
        name: String::new(),
        causes: vec![Cause {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {rendered}: {detail}"),
        }],
    }
}

/// The request a review asks about.
fn attributes(review: &ReviewDef, spec: &Value) -> Result<RequestInfo, ApiError> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    match (resource, non_resource) {
        (Some(_), Some(nr)) => Err(invalid(
            review,
            "spec.nonResourceAttributes",
            nr,
            "cannot be specified in combination with resourceAttributes",
        )),
        (None, None) => Err(invalid(
            review,
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(r), None) => Ok(RequestInfo {
            is_resource_request: true,
            path: String::new(),
            verb: s(r, "verb"),
            api_group: s(r, "group"),
            api_version: s(r, "version"),
            namespace: s(r, "namespace"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
        }),
        (None, Some(nr)) => Ok(RequestInfo {
            is_resource_request: false,
            path: s(nr, "path"),
            verb: s(nr, "verb"),
            ..RequestInfo::default()
        }),
    }
}

/// The user a SubjectAccessReview asks about.
fn subject_of(review: &ReviewDef, spec: &Value) -> Result<UserInfo, ApiError> {
    let user = spec["user"].as_str().unwrap_or("").to_string();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if user.is_empty() && groups.is_empty() {
        return Err(invalid(
            review,
            "spec.user",
            &json!(""),
            "at least one of user or group must be specified",
        ));
    }
    let extra = spec["extra"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let vals = v
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(String::from)
                                .collect()
                        })
                        .unwrap_or_default();
                    (k.clone(), vals)
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(UserInfo {
        name: user,
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups,
        extra,
    })
}

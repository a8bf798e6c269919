//! API errors and the `Status` objects they become. ONE place maps each failure to its HTTP code,
//! Kubernetes `reason` and message wording (after apimachinery's `errors.New*` constructors), so
//! clients that switch on reason (kubectl, client-go's `IsNotFound`/`IsConflict`) behave.

use serde_json::{json, Value};

/// Causes as Kubernetes' `ErrorList.ToAggregate()` prints them: one alone, several in brackets.
fn aggregate(causes: &[Cause]) -> String {
    let all: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    match all.as_slice() {
        [one] => one.clone(),
        _ => format!("[{}]", all.join(", ")),
    }
}

/// One field-level problem inside an `Invalid` error.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

/// Every way a request can fail.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// Credentials were offered and failed, or none were and anonymous requests are disabled.
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    /// Create of a name whose object is still there, waiting for its finalizers.
    #[error("object is being deleted: {resource} \"{name}\" already exists")]
    AlreadyExistsDeleting { resource: String, name: String },
    /// Refused by authorization or admission (NamespaceLifecycle); `name` may be empty, and
    /// `resource` is empty for a non-resource path.
    #[error("{}", forbidden_message(resource, name, message))]
    Forbidden {
        resource: String,
        name: String,
        message: String,
        causes: Vec<Cause>,
    },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        resource: String,
        name: String,
        detail: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", aggregate(causes))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<Cause>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Gone(String),
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(String),
    /// No representation the client accepts (kube-apiserver's NewNotAcceptableError wording).
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(String),
    #[error("the server rejected our request because the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("{0}")]
    Unprocessable(String),
    #[error("Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: i64, current: i64 },
    #[error("Internal error occurred: {0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// A refusal relayed from a kubelet or another backend, with its code and reason (empty:
    /// kube's StatusReasonUnknown, left out of the Status).
    #[error("{message}")]
    Upstream {
        code: u16,
        reason: &'static str,
        message: String,
    },
}

impl ApiError {
    pub fn not_found(resource: impl Into<String>, name: impl Into<String>) -> Self {
        ApiError::NotFound {
            resource: resource.into(),
            name: name.into(),
        }
    }

    /// A stale resourceVersion on write: the exact text kube-apiserver returns.
    pub fn conflict_modified(resource: impl Into<String>, name: impl Into<String>) -> Self {
        ApiError::Conflict {
            resource: resource.into(),
            name: name.into(),
            detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
        }
    }

    pub fn invalid(
        kind: &str,
        name: &str,
        field: &str,
        reason: &'static str,
        message: String,
    ) -> Self {
        ApiError::Invalid {
            kind: kind.into(),
            name: name.into(),
            causes: vec![Cause {
                reason,
                field: field.into(),
                message,
            }],
        }
    }

    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::Unauthorized => 401,
            ApiError::AlreadyExists { .. }
            | ApiError::AlreadyExistsDeleting { .. }
            | ApiError::Conflict { .. } => 409,
            ApiError::Forbidden { .. } => 403,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::Gone(_) => 410,
            ApiError::MethodNotAllowed => 405,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::NotAcceptable(_) => 406,
            ApiError::TooLarge(_) => 413,
            ApiError::TooLargeResourceVersion { .. } => 504,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::Upstream { code, .. } => *code,
        }
    }

    /// Kubernetes `StatusReason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::AlreadyExists { .. } | ApiError::AlreadyExistsDeleting { .. } => {
                "AlreadyExists"
            }
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Conflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Gone(_) => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Upstream { reason, .. } => reason,
        }
    }

    /// The `Status` object sent as the response body (or inside a watch ERROR event).
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::AlreadyExistsDeleting { resource, name }
            | ApiError::Conflict { resource, name, .. } => {
                let (kind, group) = split_qualified(resource);
                Some(json!({ "name": name, "group": group, "kind": kind }))
            }
            ApiError::Forbidden {
                resource,
                name,
                causes,
                ..
            } => {
                let (kind, group) = split_qualified(resource);
                let mut d = json!({ "name": name, "group": group, "kind": kind });
                if !causes.is_empty() {
                    d["causes"] = causes
                        .iter()
                        .map(
                            |c| json!({"reason": c.reason, "message": c.message, "field": c.field}),
                        )
                        .collect();
                }
                Some(d)
            }
            ApiError::Invalid { kind, name, causes } => Some(json!({
                "name": name,
                "group": split_qualified(kind).1,
                "kind": split_qualified(kind).0,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason, "message": c.message, "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
                "retryAfterSeconds": 1,
            })),
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = strip_empty(d);
        }
        strip_empty(status)
    }
}

/// apimachinery's `NewForbidden` wording.
fn forbidden_message(resource: &str, name: &str, message: &str) -> String {
    if resource.is_empty() {
        format!("forbidden: {message}")
    } else if name.is_empty() {
        format!("{resource} is forbidden: {message}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {message}")
    }
}

/// "deployments.apps" -> ("deployments", "apps"); "Scale.autoscaling" -> ("Scale", "autoscaling").
fn split_qualified(resource: &str) -> (&str, &str) {
    resource.split_once('.').unwrap_or((resource, ""))
}

fn strip_empty(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !matches!(x, Value::String(s) if s.is_empty()));
    }
    v
}

/// The `Status` a successful delete returns for kinds that do not return the deleted object.
pub fn success(name: &str, group: &str, kind: &str, uid: Option<&str>) -> Value {
    let mut details = json!({ "name": name, "group": group, "kind": kind });
    if let Some(uid) = uid {
        details["uid"] = json!(uid);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": strip_empty(details),
    })
}

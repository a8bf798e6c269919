//! `GET .../pods/<name>/log`: a container's log, streamed from the kubelet of the pod's node
//! (`/containerLogs/<namespace>/<pod>/<container>` there), as kube-apiserver serves it:
//!
//! - the options (`container`, `follow`, `previous`, `timestamps`, `sinceSeconds`, `sinceTime`,
//!   `tailLines`, `limitBytes`) are checked as `PodLogOptions` (422 when invalid) and passed on;
//! - without `container`, a pod's only container is meant; a pod with several needs one named
//!   (400, listing them), and a name the pod does not have is a 400;
//! - a pod not yet bound to a node has an empty log;
//! - the kubelet's own refusals come back with their status and text (a 400 such as "container
//!   ... is waiting to start" stays a 400); a kubelet that cannot be reached is a 500 naming the
//!   URL tried.

use bytes::Bytes;
use http::{header, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use super::http::{self as h, Body};
use super::kubelet::Endpoint;
use super::query::Query;
use super::route::Target;
use super::status::{ApiError, Cause};
use super::{clock, resources, rest, ApiServer};

/// How much of a kubelet's error body is read into the error returned.
const MAX_ERROR_BODY: usize = 50_000;

/// The resource errors from the kubelet are reported on.
const RESOURCE: &str = "pods/log";

/// `PodLogOptions`, as far as the kubelet is told of them.
#[derive(Debug, Default, PartialEq)]
struct LogOptions {
    container: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    since_seconds: Option<i64>,
    since_time: Option<i64>,
    tail_lines: Option<i64>,
    limit_bytes: Option<i64>,
    skip_tls_verify: bool,
}

impl LogOptions {
    fn parse(q: &Query) -> Result<LogOptions, ApiError> {
        let since_time = match q.get("sinceTime") {
            None => None,
            Some(v) => Some(clock::parse_rfc3339(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid value for sinceTime: {v:?} is not an RFC 3339 time"
                ))
            })?),
        };
        Ok(LogOptions {
            container: q.get("container").map(str::to_string),
            follow: q.flag("follow"),
            previous: q.flag("previous"),
            timestamps: q.flag("timestamps"),
            since_seconds: q.int("sinceSeconds")?,
            since_time,
            tail_lines: q.int("tailLines")?,
            limit_bytes: q.int("limitBytes")?,
            skip_tls_verify: q.flag("insecureSkipTLSVerifyBackend"),
        })
    }

    /// Kubernetes' `ValidatePodLogOptions`.
    fn validate(&self, pod: &str) -> Result<(), ApiError> {
        let mut causes = Vec::new();
        let mut invalid = |field: &str, value: i64, message: &str| {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: field.into(),
                message: format!("Invalid value: {value}: {message}"),
            })
        };
        if let Some(n) = self.tail_lines.filter(|n| *n < 0) {
            invalid("tailLines", n, "must be greater than or equal to 0");
        }
        if let Some(n) = self.limit_bytes.filter(|n| *n < 1) {
            invalid("limitBytes", n, "must be greater than 0");
        }
        match (self.since_seconds, self.since_time) {
            (Some(_), Some(_)) => causes.push(Cause {
                reason: "FieldValueForbidden",
                field: String::new(),
                message: "Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified"
                    .into(),
            }),
            (Some(n), None) if n < 1 => invalid("sinceSeconds", n, "must be greater than 0"),
            _ => {}
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Invalid {
                kind: "PodLogOptions".into(),
                name: pod.into(),
                causes,
            })
        }
    }

    /// The kubelet's query string (empty, or starting with '?'), in kube's key order.
    fn kubelet_query(&self) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if self.follow {
            params.push(("follow", "true".into()));
        }
        if let Some(n) = self.limit_bytes {
            params.push(("limitBytes", n.to_string()));
        }
        if self.previous {
            params.push(("previous", "true".into()));
        }
        if let Some(n) = self.since_seconds {
            params.push(("sinceSeconds", n.to_string()));
        }
        if let Some(t) = self.since_time {
            params.push(("sinceTime", clock::format_rfc3339(t)));
        }
        if let Some(n) = self.tail_lines {
            params.push(("tailLines", n.to_string()));
        }
        if self.timestamps {
            params.push(("timestamps", "true".into()));
        }
        if params.is_empty() {
            return String::new();
        }
        let encoded: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        format!("?{}", encoded.join("&"))
    }
}

/// What stays unescaped in a path segment or query value: RFC 3986's unreserved characters.
const ESCAPED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Escaping of a path segment or query value (RFC 3339 times carry ':' and '+').
fn encode(v: &str) -> String {
    percent_encoding::utf8_percent_encode(v, ESCAPED).to_string()
}

/// Every container name of the pod: init containers, containers, ephemeral containers.
fn container_names(pod: &Value) -> Vec<&str> {
    ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .filter_map(|field| pod.pointer(&format!("/spec/{field}"))?.as_array())
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect()
}

/// Kubernetes' `validateContainer`: the container whose log is meant.
fn pick_container(pod: &Value, pod_name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    let names = container_names(pod);
    if let Some(wanted) = wanted {
        return if names.contains(&wanted) {
            Ok(wanted.to_string())
        } else {
            Err(ApiError::BadRequest(format!(
                "container {wanted} is not valid for pod {pod_name}"
            )))
        };
    }
    let regular: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    match regular.as_slice() {
        [only] => Ok(only.to_string()),
        [] => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}"
        ))),
        _ => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {pod_name}, choose one of: [{}]",
            names.join(" ")
        ))),
    }
}

fn text_stream(body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// Serves GET of `pods/<name>/log` in the namespace of `t` (the pods collection).
pub async fn serve(
    api: &ApiServer,
    t: &Target,
    name: &str,
    q: &Query,
) -> Result<Response<Body>, ApiError> {
    let opts = LogOptions::parse(q)?;
    opts.validate(name)?;
    let (pod, _) = rest::read(api, t, name).await?;
    let container = pick_container(&pod, name, opts.container.as_deref())?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node_name.is_empty() {
        // Not bound to a node yet: nothing has run, so there is nothing to show.
        return Ok(text_stream(h::full(Bytes::new())));
    }
    let nodes = Target {
        def: resources::lookup("", "v1", "nodes").expect("nodes are always served"),
        namespace: None,
        name: None,
        subresource: None,
    };
    let (node, _) = rest::read(api, &nodes, node_name).await?;
    let endpoint = api
        .kubelet
        .endpoint(&node)
        .map_err(|message| ApiError::Upstream {
            code: 500,
            reason: "",
            message,
        })?;
    let namespace = t.namespace.as_deref().unwrap_or("default");
    let path = format!(
        "/containerLogs/{}/{}/{}{}",
        encode(namespace),
        encode(name),
        encode(&container),
        opts.kubelet_query()
    );
    let response = api
        .kubelet
        .get(&endpoint, &path, opts.skip_tls_verify)
        .await
        .map_err(|e| unreachable_kubelet(&endpoint, &path, e))?;
    let status = response.status().as_u16();
    if !(200..=206).contains(&status) {
        let text = read_error_body(response.into_body()).await;
        return Err(kubelet_refusal(status, name, text));
    }
    Ok(text_stream(relay(response.into_body())))
}

/// A kubelet that could not be asked: Go's `Get "<url>": <reason>` in an unclassified 500.
fn unreachable_kubelet(
    endpoint: &Endpoint,
    path: &str,
    e: super::kubelet::KubeletError,
) -> ApiError {
    ApiError::Upstream {
        code: 500,
        reason: "",
        message: format!("Get {:?}: {e}", endpoint.url(path)),
    }
}

/// apimachinery's generic response checker: the kubelet's status and text, as kube relays them.
fn kubelet_refusal(status: u16, pod: &str, text: String) -> ApiError {
    match status {
        500 => ApiError::Internal(text),
        400 => ApiError::BadRequest(text),
        404 => ApiError::Upstream {
            code: 404,
            reason: "NotFound",
            message: format!("the server could not find the requested resource ( {RESOURCE} {pod})"),
        },
        code if code >= 500 => ApiError::Upstream {
            code,
            reason: "InternalError",
            message: format!(
                "an error on the server ({text:?}) has prevented the request from succeeding ( {RESOURCE} {pod})"
            ),
        },
        code => ApiError::Upstream {
            code,
            reason: "",
            message: format!(
                "the server responded with the status code {code} but did not return more information ( {RESOURCE} {pod})"
            ),
        },
    }
}

/// Up to [`MAX_ERROR_BODY`] bytes of an error response, as text.
async fn read_error_body(mut body: Incoming) -> String {
    let mut buf = Vec::new();
    while buf.len() < MAX_ERROR_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            _ => break,
        }
    }
    buf.truncate(MAX_ERROR_BODY);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Log chunks in flight between the kubelet and a slow client.
const RELAY_QUEUE: usize = 16;

/// The kubelet's body, passed on as it arrives; a broken kubelet connection ends the log, and a
/// client that goes away closes the kubelet connection.
fn relay(mut body: Incoming) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(RELAY_QUEUE);
    tokio::spawn(async move {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        if tx.send(data).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "kubelet log stream broke off");
                    return;
                }
            }
        }
    });
    let frames = ReceiverStream::new(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
    StreamBody::new(frames).boxed()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn opts(query: &str) -> Result<LogOptions, ApiError> {
        LogOptions::parse(&Query::parse(Some(query)))
    }

    #[test]
    fn options_travel_to_the_kubelet_in_kube_order() {
        let o = opts("timestamps=true&tailLines=5&follow=1&limitBytes=100&container=c").unwrap();
        assert_eq!(o.container.as_deref(), Some("c"));
        assert_eq!(
            o.kubelet_query(),
            "?follow=true&limitBytes=100&tailLines=5&timestamps=true"
        );
        let o = opts("sinceTime=2026-11-28T03:00:00Z").unwrap();
        assert_eq!(o.kubelet_query(), "?sinceTime=2026-11-28T03%3A00%3A00Z");
        assert_eq!(opts("").unwrap().kubelet_query(), "");
    }

    #[test]
    fn invalid_options_are_refused_as_kube_does() {
        let err = opts("tailLines=-1&limitBytes=0")
            .unwrap()
            .validate("p")
            .unwrap_err();
        assert_eq!(err.code(), 422);
        assert_eq!(
            err.to_string(),
            "PodLogOptions \"p\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, limitBytes: Invalid value: 0: must be greater than 0]"
        );
        let both = opts("sinceSeconds=5&sinceTime=2026-11-28T03:00:00Z").unwrap();
        assert!(both
            .validate("p")
            .unwrap_err()
            .to_string()
            .contains("at most one of `sinceTime` or `sinceSeconds` may be specified"));
        assert!(opts("sinceSeconds=0").unwrap().validate("p").is_err());
        assert_eq!(opts("tailLines=x").unwrap_err().code(), 400);
        assert_eq!(opts("sinceTime=yesterday").unwrap_err().code(), 400);
    }

    #[test]
    fn the_container_is_the_only_one_or_must_be_named() {
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(pick_container(&one, "p", None).unwrap(), "app");
        let two = json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}, {"name": "sidecar"}],
        }});
        assert_eq!(
            pick_container(&two, "p", None).unwrap_err().to_string(),
            "a container name must be specified for pod p, choose one of: [init app sidecar]"
        );
        assert_eq!(pick_container(&two, "p", Some("init")).unwrap(), "init");
        assert_eq!(
            pick_container(&two, "p", Some("nope"))
                .unwrap_err()
                .to_string(),
            "container nope is not valid for pod p"
        );
    }
}

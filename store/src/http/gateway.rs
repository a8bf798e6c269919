//! etcd's JSON gateway under `/v3/`: `POST /v3/kv/put {"key":"Zm9v","value":"YmFy"}` and the
//! rest of etcd's `google.api.http` bindings.
//!
//! Like etcd's grpc-gateway, which dials the member's own gRPC port, every request is turned
//! into a gRPC call and handed to this member's gRPC services in process: JSON is decoded
//! against the request's descriptor, framed, served by the very same service implementations
//! (validation, Raft, error table and gRPC metrics included), and the answer is written back
//! as JSON. Nothing here knows what a method does.
//!
//! Unary methods answer one JSON object, or `{"error","message","code"}` with the HTTP status
//! grpc-gateway maps the gRPC code to. Streaming methods (watch, lease keep-alive, snapshot,
//! election observe) read any number of JSON objects from the request body and answer a
//! chunked stream of `{"result":...}` lines; a stream that fails midway ends with an
//! `{"error":{...}}` line.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Frame;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use prost_reflect::MessageDescriptor;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::body::Body;
use tonic::{Code, Status};

use super::json;

/// Calls this member's gRPC services in process.
pub type GrpcCall = Arc<dyn Fn(Request<Body>) -> BoxFuture<'static, Response<Body>> + Send + Sync>;

/// etcd's HTTP bindings (etcd 3.5 `rpc.proto`, `v3election.proto`, `v3lock.proto`): path,
/// service, method. Methods whose service this member does not serve answer gRPC's
/// `Unimplemented` through the gateway, as etcd would for an unregistered service.
const BINDINGS: &[(&str, &str, &str)] = &[
    ("/v3/kv/range", "etcdserverpb.KV", "Range"),
    ("/v3/kv/put", "etcdserverpb.KV", "Put"),
    ("/v3/kv/deleterange", "etcdserverpb.KV", "DeleteRange"),
    ("/v3/kv/txn", "etcdserverpb.KV", "Txn"),
    ("/v3/kv/compaction", "etcdserverpb.KV", "Compact"),
    ("/v3/watch", "etcdserverpb.Watch", "Watch"),
    ("/v3/lease/grant", "etcdserverpb.Lease", "LeaseGrant"),
    ("/v3/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    ("/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"),
    (
        "/v3/lease/keepalive",
        "etcdserverpb.Lease",
        "LeaseKeepAlive",
    ),
    (
        "/v3/lease/timetolive",
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
    ),
    (
        "/v3/kv/lease/timetolive",
        "etcdserverpb.Lease",
        "LeaseTimeToLive",
    ),
    ("/v3/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    ("/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"),
    (
        "/v3/cluster/member/add",
        "etcdserverpb.Cluster",
        "MemberAdd",
    ),
    (
        "/v3/cluster/member/remove",
        "etcdserverpb.Cluster",
        "MemberRemove",
    ),
    (
        "/v3/cluster/member/update",
        "etcdserverpb.Cluster",
        "MemberUpdate",
    ),
    (
        "/v3/cluster/member/list",
        "etcdserverpb.Cluster",
        "MemberList",
    ),
    (
        "/v3/cluster/member/promote",
        "etcdserverpb.Cluster",
        "MemberPromote",
    ),
    ("/v3/maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"),
    (
        "/v3/maintenance/status",
        "etcdserverpb.Maintenance",
        "Status",
    ),
    (
        "/v3/maintenance/defragment",
        "etcdserverpb.Maintenance",
        "Defragment",
    ),
    // etcd binds both Hash and HashKV to this path; its gateway serves Hash.
    ("/v3/maintenance/hash", "etcdserverpb.Maintenance", "Hash"),
    (
        "/v3/maintenance/snapshot",
        "etcdserverpb.Maintenance",
        "Snapshot",
    ),
    (
        "/v3/maintenance/transfer-leadership",
        "etcdserverpb.Maintenance",
        "MoveLeader",
    ),
    (
        "/v3/maintenance/downgrade",
        "etcdserverpb.Maintenance",
        "Downgrade",
    ),
    ("/v3/auth/enable", "etcdserverpb.Auth", "AuthEnable"),
    ("/v3/auth/disable", "etcdserverpb.Auth", "AuthDisable"),
    ("/v3/auth/status", "etcdserverpb.Auth", "AuthStatus"),
    ("/v3/auth/authenticate", "etcdserverpb.Auth", "Authenticate"),
    ("/v3/auth/user/add", "etcdserverpb.Auth", "UserAdd"),
    ("/v3/auth/user/get", "etcdserverpb.Auth", "UserGet"),
    ("/v3/auth/user/list", "etcdserverpb.Auth", "UserList"),
    ("/v3/auth/user/delete", "etcdserverpb.Auth", "UserDelete"),
    (
        "/v3/auth/user/changepw",
        "etcdserverpb.Auth",
        "UserChangePassword",
    ),
    ("/v3/auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"),
    (
        "/v3/auth/user/revoke",
        "etcdserverpb.Auth",
        "UserRevokeRole",
    ),
    ("/v3/auth/role/add", "etcdserverpb.Auth", "RoleAdd"),
    ("/v3/auth/role/get", "etcdserverpb.Auth", "RoleGet"),
    ("/v3/auth/role/list", "etcdserverpb.Auth", "RoleList"),
    ("/v3/auth/role/delete", "etcdserverpb.Auth", "RoleDelete"),
    (
        "/v3/auth/role/grant",
        "etcdserverpb.Auth",
        "RoleGrantPermission",
    ),
    (
        "/v3/auth/role/revoke",
        "etcdserverpb.Auth",
        "RoleRevokePermission",
    ),
    ("/v3/election/campaign", "v3electionpb.Election", "Campaign"),
    ("/v3/election/proclaim", "v3electionpb.Election", "Proclaim"),
    ("/v3/election/leader", "v3electionpb.Election", "Leader"),
    ("/v3/election/observe", "v3electionpb.Election", "Observe"),
    ("/v3/election/resign", "v3electionpb.Election", "Resign"),
    ("/v3/lock/lock", "v3lockpb.Lock", "Lock"),
    ("/v3/lock/unlock", "v3lockpb.Lock", "Unlock"),
];

/// Responses buffered between the gRPC stream and a slow HTTP reader.
const STREAM_BUFFER: usize = 16;

struct Route {
    grpc_path: String,
    input: MessageDescriptor,
    output: MessageDescriptor,
    client_streaming: bool,
    server_streaming: bool,
}

fn routes() -> &'static HashMap<&'static str, Route> {
    static ROUTES: OnceLock<HashMap<&'static str, Route>> = OnceLock::new();
    ROUTES.get_or_init(|| {
        let pool = json::pool();
        BINDINGS
            .iter()
            .map(|&(path, service, method)| {
                let m = pool
                    .get_service_by_name(service)
                    .and_then(|s| s.methods().find(|m| m.name() == method))
                    .unwrap_or_else(|| panic!("{service}/{method} is in the API descriptors"));
                let route = Route {
                    grpc_path: format!("/{service}/{method}"),
                    input: m.input(),
                    output: m.output(),
                    client_streaming: m.is_client_streaming(),
                    server_streaming: m.is_server_streaming(),
                };
                (path, route)
            })
            .collect()
    })
}

/// Whether `path` is one of the gateway's bindings.
pub fn is_bound(path: &str) -> bool {
    routes().contains_key(path)
}

/// Serves one gateway request; `max_body` bounds the JSON read from the client.
pub async fn handle(req: Request<Body>, grpc: &GrpcCall, max_body: usize) -> Response<Body> {
    let Some(route) = routes().get(req.uri().path()) else {
        return super::plain(StatusCode::NOT_FOUND, "Not Found\n");
    };
    if req.method() != Method::POST {
        return super::plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    }
    let auth = req.headers().get(AUTHORIZATION).cloned();
    if route.client_streaming {
        return stream_call(route, req.into_body(), auth, grpc, max_body).await;
    }
    let body = match Limited::new(req.into_body(), max_body).collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return error_response(Code::InvalidArgument, &e.to_string()),
    };
    let pb = match json::request_from_json(&route.input, &body) {
        Ok(pb) => pb,
        Err(e) => return error_response(Code::InvalidArgument, &e),
    };
    let body = Body::new(Full::new(frame(&pb)));
    let resp = grpc(grpc_request(&route.grpc_path, auth, body)).await;
    if route.server_streaming {
        stream_response(route, resp)
    } else {
        unary_response(route, resp).await
    }
}

fn grpc_request(path: &str, auth: Option<HeaderValue>, body: Body) -> Request<Body> {
    let mut req = Request::new(body);
    *req.method_mut() = Method::POST;
    *req.version_mut() = Version::HTTP_2;
    *req.uri_mut() = path.parse().unwrap_or_default();
    let headers = req.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    // etcd's gateway passes the Authorization header on as the auth token metadata.
    if let Some(token) = auth {
        headers.insert("token", token.clone());
        headers.insert(AUTHORIZATION, token);
    }
    req
}

/// A gRPC length-prefixed message: uncompressed flag, big-endian length, payload.
fn frame(pb: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(pb.len() + 5);
    b.put_u8(0);
    b.put_u32(pb.len() as u32);
    b.put_slice(pb);
    b.freeze()
}

/// Splits a gRPC body back into its messages.
#[derive(Default)]
struct Messages {
    buf: BytesMut,
}

impl Messages {
    fn push(&mut self, data: Bytes) {
        self.buf.extend_from_slice(&data);
    }

    fn next(&mut self) -> Option<Result<Bytes, String>> {
        if self.buf.len() < 5 {
            return None;
        }
        if self.buf[0] != 0 {
            return Some(Err("compressed gRPC message from an in-process call".into()));
        }
        let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
        if self.buf.len() < 5 + len as usize {
            return None;
        }
        self.buf.advance(5);
        Some(Ok(self.buf.split_to(len as usize).freeze()))
    }
}

/// The status of a call that failed, from trailers-only headers or the trailers.
fn failure(headers: &http::HeaderMap) -> Option<Status> {
    Status::from_header_map(headers).filter(|s| s.code() != Code::Ok)
}

async fn unary_response(route: &Route, resp: Response<Body>) -> Response<Body> {
    let (parts, body) = resp.into_parts();
    if let Some(s) = failure(&parts.headers) {
        return error_response(s.code(), s.message());
    }
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(s) => return error_response(s.code(), s.message()),
    };
    if let Some(s) = collected.trailers().and_then(failure) {
        return error_response(s.code(), s.message());
    }
    let mut messages = Messages::default();
    messages.push(collected.to_bytes());
    let json = match messages.next() {
        Some(Ok(pb)) => json::response_to_json(&route.output, &pb),
        Some(Err(e)) => Err(e),
        None => Err("the call returned no message".into()),
    };
    match json {
        Ok(json) => {
            let mut resp = Response::new(Body::new(Full::new(Bytes::from(json))));
            set_json_headers(&mut resp);
            resp
        }
        Err(e) => error_response(Code::Internal, &e),
    }
}

fn set_json_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(
        "grpc-metadata-content-type",
        HeaderValue::from_static("application/grpc"),
    );
}

/// Reads the JSON values of a streaming request body one by one (concatenated or
/// newline-separated, as Go's `json.Decoder` reads them).
struct JsonValues {
    body: Body,
    buf: Vec<u8>,
    ended: bool,
    max: usize,
}

impl JsonValues {
    async fn next(&mut self) -> Result<Option<serde_json::Value>, String> {
        loop {
            let start = self
                .buf
                .iter()
                .position(|b| !b.is_ascii_whitespace())
                .unwrap_or(self.buf.len());
            self.buf.drain(..start);
            if !self.buf.is_empty() {
                let mut values = serde_json::Deserializer::from_slice(&self.buf)
                    .into_iter::<serde_json::Value>();
                match values.next() {
                    Some(Ok(v)) => {
                        let used = values.byte_offset();
                        self.buf.drain(..used);
                        return Ok(Some(v));
                    }
                    // An incomplete value at the end of what has arrived so far: read on.
                    Some(Err(e)) if !e.is_eof() || self.ended => return Err(e.to_string()),
                    _ => {}
                }
            } else if self.ended {
                return Ok(None);
            }
            if self.buf.len() > self.max {
                return Err("request body too large".into());
            }
            match self.body.frame().await {
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => self.ended = true,
            }
        }
    }
}

async fn stream_call(
    route: &Route,
    body: Body,
    auth: Option<HeaderValue>,
    grpc: &GrpcCall,
    max_body: usize,
) -> Response<Body> {
    let mut values = JsonValues {
        body,
        buf: Vec::new(),
        ended: false,
        max: max_body,
    };
    // The first request is read before the call, so that a malformed one is answered with
    // an error response rather than a stream (grpc-gateway answers it with code Unknown).
    let first = match values.next().await {
        Ok(v) => v,
        Err(e) => return error_response(Code::Unknown, &e),
    };
    let first = match first.map(|v| json::request_from_value(&route.input, v)) {
        Some(Ok(pb)) => Some(pb),
        Some(Err(e)) => return error_response(Code::Unknown, &e),
        None => None,
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_BUFFER);
    if let Some(pb) = first {
        let _ = tx.send(Ok(Frame::data(frame(&pb)))).await;
        let input = route.input.clone();
        // Later requests are forwarded as they arrive; the end of the HTTP body (or a
        // malformed request, which etcd's gateway only logs) closes the sending side.
        tokio::spawn(async move {
            while let Ok(Some(v)) = values.next().await {
                let Ok(pb) = json::request_from_value(&input, v) else {
                    return;
                };
                if tx.send(Ok(Frame::data(frame(&pb)))).await.is_err() {
                    return;
                }
            }
        });
    }
    let body = Body::new(StreamBody::new(ReceiverStream::new(rx)));
    let resp = grpc(grpc_request(&route.grpc_path, auth, body)).await;
    stream_response(route, resp)
}

fn stream_response(route: &Route, resp: Response<Body>) -> Response<Body> {
    let (parts, mut body) = resp.into_parts();
    if let Some(s) = failure(&parts.headers) {
        return error_response(s.code(), s.message());
    }
    let output = route.output.clone();
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(STREAM_BUFFER);
    tokio::spawn(async move {
        let mut messages = Messages::default();
        loop {
            // Stop as soon as the HTTP client is gone, even if the stream is idle (a watch
            // with no events): dropping the gRPC body ends the call.
            let frame = tokio::select! {
                f = body.frame() => f,
                _ = tx.closed() => return,
            };
            let chunk = match frame {
                None => return,
                Some(Err(s)) => stream_error(&s),
                Some(Ok(f)) => match f.into_data() {
                    Ok(data) => {
                        messages.push(data);
                        let mut out = Vec::new();
                        while let Some(pb) = messages.next() {
                            match pb.and_then(|pb| json::response_to_json(&output, &pb)) {
                                Ok(json) => {
                                    out.extend_from_slice(b"{\"result\":");
                                    out.extend_from_slice(&json);
                                    out.extend_from_slice(b"}\n");
                                }
                                Err(e) => out.extend(stream_error(&Status::internal(e))),
                            }
                        }
                        if out.is_empty() {
                            continue;
                        }
                        out
                    }
                    Err(f) => match f.trailers_ref().and_then(failure) {
                        Some(s) => stream_error(&s),
                        None => continue,
                    },
                },
            };
            if tx.send(Ok(Frame::data(Bytes::from(chunk)))).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(Body::new(StreamBody::new(ReceiverStream::new(rx))));
    set_json_headers(&mut resp);
    resp
}

/// grpc-gateway's mapping of gRPC codes to HTTP statuses (the version etcd vendors).
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A unary error as etcd's gateway writes it: `{"error":m,"message":m,"code":n}`.
pub fn error_response(code: Code, message: &str) -> Response<Body> {
    let m = json_string(message);
    let body = format!(r#"{{"error":{m},"message":{m},"code":{}}}"#, code as i32);
    let mut resp = Response::new(Body::new(Full::new(Bytes::from(body))));
    *resp.status_mut() = http_status(code);
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The last line of a stream that failed, as grpc-gateway writes it.
fn stream_error(s: &Status) -> Vec<u8> {
    let status = http_status(s.code());
    format!(
        r#"{{"error":{{"grpc_code":{},"http_code":{},"message":{},"http_status":{}}}}}"#,
        s.code() as i32,
        status.as_u16(),
        json_string(s.message()),
        json_string(status.canonical_reason().unwrap_or_default()),
    )
    .into_bytes()
    .into_iter()
    .chain(*b"\n")
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binding_names_a_method_of_the_api() {
        assert_eq!(routes().len(), BINDINGS.len());
        let watch = &routes()["/v3/watch"];
        assert!(watch.client_streaming && watch.server_streaming);
        assert_eq!(routes()["/v3/kv/put"].grpc_path, "/etcdserverpb.KV/Put");
    }

    #[test]
    fn messages_are_split_across_chunks() {
        let mut m = Messages::default();
        let a = frame(b"hello");
        let b = frame(b"");
        m.push(a.slice(..3));
        assert!(m.next().is_none());
        m.push(a.slice(3..));
        m.push(b);
        assert_eq!(
            m.next().and_then(Result::ok).as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(m.next().and_then(Result::ok).as_deref(), Some(&b""[..]));
        assert!(m.next().is_none());
    }

    #[test]
    fn errors_are_etcds_shape() {
        let r = error_response(
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted",
        );
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let s = String::from_utf8(stream_error(&Status::not_found("x"))).unwrap();
        assert_eq!(
            s,
            "{\"error\":{\"grpc_code\":5,\"http_code\":404,\"message\":\"x\",\"http_status\":\"Not Found\"}}\n"
        );
    }
}

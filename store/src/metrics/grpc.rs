//! gRPC server metrics as go-grpc-prometheus names them (`grpc_server_started_total`,
//! `grpc_server_handled_total`, `grpc_server_handling_seconds`), labelled by `grpc_type`,
//! `grpc_service`, `grpc_method` and `grpc_code`.
//!
//! The table of methods is built once from the API's descriptors, so recording a call is a
//! hash lookup on the request path plus atomic increments — no allocation, no lock. Paths that
//! name no method of the client API are not recorded (go-grpc-prometheus only sees registered
//! methods too), so unknown paths cannot grow the table.
//!
//! A call is "handled" when its status is known: from the headers of a trailers-only response
//! (errors), otherwise from the trailers at the end of the response body. A body dropped before
//! its trailers (the client went away) counts as `Canceled`.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::body::Body;

use super::exposition::{Exposition, Kind};
use super::histogram::{Histogram, DEFAULT_BUCKETS};

/// Packages whose services are served on the client port.
const CLIENT_PACKAGES: &[&str] = &["etcdserverpb", "v3electionpb", "v3lockpb"];

/// gRPC status code names, indexed by code, as Go's `codes.Code.String()` spells them.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

struct MethodStats {
    service: String,
    method: String,
    kind: &'static str,
    started: AtomicU64,
    handled: [AtomicU64; 17],
    handling: Histogram,
}

pub struct GrpcMetrics {
    by_path: HashMap<String, usize>,
    methods: Vec<MethodStats>,
}

impl GrpcMetrics {
    /// Every method of the client-facing services, from the API's descriptors.
    pub fn new() -> Self {
        let mut methods = Vec::new();
        for service in crate::http::json::pool().services() {
            if !CLIENT_PACKAGES.contains(&service.package_name()) {
                continue;
            }
            for m in service.methods() {
                let kind = match (m.is_client_streaming(), m.is_server_streaming()) {
                    (false, false) => "unary",
                    (true, false) => "client_stream",
                    (false, true) => "server_stream",
                    (true, true) => "bidi_stream",
                };
                methods.push(MethodStats {
                    service: service.full_name().to_string(),
                    method: m.name().to_string(),
                    kind,
                    started: AtomicU64::new(0),
                    handled: Default::default(),
                    handling: Histogram::new(DEFAULT_BUCKETS),
                });
            }
        }
        methods.sort_by(|a, b| (&a.service, &a.method).cmp(&(&b.service, &b.method)));
        let by_path = methods
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("/{}/{}", m.service, m.method), i))
            .collect();
        Self { by_path, methods }
    }

    /// Counts a call to `path` as started; the guard records how it ended.
    pub fn start(self: &Arc<Self>, path: &str) -> Option<CallGuard> {
        let index = *self.by_path.get(path)?;
        self.methods[index].started.fetch_add(1, Ordering::Relaxed);
        Some(CallGuard {
            metrics: self.clone(),
            index,
            start: Instant::now(),
            done: false,
        })
    }

    /// Handled calls of `path` that ended with `code` (for tests and diagnostics).
    pub fn handled(&self, path: &str, code: tonic::Code) -> u64 {
        self.by_path.get(path).map_or(0, |&i| {
            self.methods[i].handled[code as usize].load(Ordering::Relaxed)
        })
    }

    pub fn render(&self, e: &mut Exposition) {
        e.family(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            Kind::Counter,
        );
        for m in &self.methods {
            let labels = [
                ("grpc_method", m.method.as_str()),
                ("grpc_service", m.service.as_str()),
                ("grpc_type", m.kind),
            ];
            e.sample(
                "grpc_server_started_total",
                &labels,
                m.started.load(Ordering::Relaxed),
            );
        }
        // Every method has its OK series from the start so rates are defined; other codes
        // appear once they occur, which keeps the page small (17 codes x 60 methods otherwise).
        e.family(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            Kind::Counter,
        );
        for m in &self.methods {
            for (code, name) in CODE_NAMES.iter().enumerate() {
                let n = m.handled[code].load(Ordering::Relaxed);
                if n == 0 && code != 0 {
                    continue;
                }
                let labels = [
                    ("grpc_code", *name),
                    ("grpc_method", m.method.as_str()),
                    ("grpc_service", m.service.as_str()),
                    ("grpc_type", m.kind),
                ];
                e.sample("grpc_server_handled_total", &labels, n);
            }
        }
        e.family(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level \
             handled by the server.",
            Kind::Histogram,
        );
        for m in self.methods.iter().filter(|m| m.handling.count() > 0) {
            let labels = [
                ("grpc_method", m.method.as_str()),
                ("grpc_service", m.service.as_str()),
                ("grpc_type", m.kind),
            ];
            e.histogram("grpc_server_handling_seconds", &labels, &m.handling);
        }
    }
}

impl Default for GrpcMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// One call in flight; records its code and latency exactly once.
pub struct CallGuard {
    metrics: Arc<GrpcMetrics>,
    index: usize,
    start: Instant,
    done: bool,
}

impl CallGuard {
    fn finish(&mut self, code: usize) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let m = &self.metrics.methods[self.index];
        m.handled[code.min(CODE_NAMES.len() - 1)].fetch_add(1, Ordering::Relaxed);
        m.handling.observe(self.start.elapsed());
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.finish(CANCELED);
    }
}

fn status_code(headers: &HeaderMap) -> Option<usize> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.parse().ok())
}

/// Attaches `guard` to a gRPC response so the call is recorded when its status is known.
pub fn instrument(resp: Response<Body>, guard: Option<CallGuard>) -> Response<Body> {
    let Some(mut guard) = guard else {
        return resp;
    };
    if let Some(code) = status_code(resp.headers()) {
        guard.finish(code);
        return resp;
    }
    resp.map(|inner| {
        Body::new(Instrumented {
            inner,
            guard: Some(guard),
        })
    })
}

struct Instrumented {
    inner: Body,
    guard: Option<CallGuard>,
}

impl HttpBody for Instrumented {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(ref r) = polled {
            let code = match r {
                Some(Ok(frame)) => frame.trailers_ref().map(|t| status_code(t).unwrap_or(0)),
                Some(Err(_)) => Some(UNKNOWN),
                // A body that ends without trailers is a broken response.
                None => Some(UNKNOWN),
            };
            if let Some(code) = code {
                if let Some(mut guard) = self.guard.take() {
                    guard.finish(code);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

//! A small HTTP/1.1 client for the API server: one keep-alive connection per benchmark client
//! (as each kubectl or client-go process holds its own), JSON in and out, and a line reader for
//! watch streams.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::driver::CallError;

/// Where the API server listens: `host:port` for the socket, the authority for the
/// `Host` header.
#[derive(Debug, Clone)]
pub struct Server {
    authority: String,
}

impl Server {
    /// Parses `http://host:port` (plain HTTP: an apiserver's `--insecure-port`).
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            anyhow::anyhow!("--server must be a plain http:// URL (the --insecure-port)")
        })?;
        let authority = rest.trim_end_matches('/').to_string();
        anyhow::ensure!(!authority.is_empty(), "--server {url:?} has no host");
        Ok(Self { authority })
    }

    /// Opens a keep-alive connection.
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        let tcp = tokio::net::TcpStream::connect(&self.authority).await?;
        tcp.set_nodelay(true)?;
        let (send, conn) = http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn {
            send,
            authority: self.authority.clone(),
        })
    }
}

/// One connection; requests on it are sequential.
pub struct Conn {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

/// A failed call: the status code and Kubernetes' `reason` (or the transport error).
fn failure(status: StatusCode, body: &[u8]) -> CallError {
    let reason = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_default();
    CallError(format!("HTTP {} {reason}", status.as_u16()))
}

impl Conn {
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<hyper::Response<Incoming>, CallError> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &self.authority)
            .header(http::header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| CallError(format!("request: {e}")))?;
        self.send
            .ready()
            .await
            .map_err(|e| CallError(format!("connection: {e}")))?;
        self.send
            .send_request(req)
            .await
            .map_err(|e| CallError(format!("connection: {e}")))
    }

    /// Sends a request and reads the whole answer; a non-2xx status is an error.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Bytes, CallError> {
        let resp = self.request(method, path, body).await?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| CallError(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(failure(status, &bytes));
        }
        Ok(bytes)
    }

    /// Opens a watch (`path` carries `watch=1`); the connection is the watch's from then on.
    pub async fn watch(mut self, path: &str) -> Result<WatchLines, CallError> {
        let resp = self.request(Method::GET, path, None).await?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes());
            return Err(failure(status, &bytes.unwrap_or_default()));
        }
        Ok(WatchLines {
            body: resp.into_body(),
            buf: Vec::new(),
            _conn: self,
        })
    }
}

/// The events of a watch stream, one JSON object per line.
pub struct WatchLines {
    body: Incoming,
    buf: Vec<u8>,
    _conn: Conn,
}

impl WatchLines {
    /// The next event, `None` when the server ends the stream.
    pub async fn next(&mut self) -> Result<Option<Value>, CallError> {
        loop {
            if let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=nl).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return serde_json::from_slice(&line)
                    .map(Some)
                    .map_err(|e| CallError(format!("watch event is not JSON: {e}")));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(CallError(format!("watch stream: {e}"))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

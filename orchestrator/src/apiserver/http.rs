//! HTTP plumbing shared by the handlers: the response body type, JSON responses, reading request
//! bodies under Kubernetes' size limit in JSON or protobuf, and `Accept` negotiation for
//! server-side Tables.

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use serde_json::Value;

use super::protobuf;
use super::status::ApiError;

/// Every response body: a full buffer, or a stream for watches.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted (kube-apiserver's limit for JSON bodies is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;
/// How much of an oversized body is read and thrown away before answering 413.
pub const DRAIN_LIMIT: usize = 64 * 1024 * 1024;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json(code: u16, v: &Value) -> Response<Body> {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error(err: &ApiError) -> Response<Body> {
    json(err.code(), &err.to_status())
}

pub fn text(code: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

/// Reads the whole request body, refusing more than [`MAX_BODY`] bytes.
///
/// An oversized body is still read to its end (up to [`DRAIN_LIMIT`]) and discarded before
/// the 413 goes out: answering while the client is still sending makes the connection close
/// under it, and the client then sees a broken pipe instead of the answer.
pub async fn read_body(mut body: hyper::body::Incoming) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("reading the request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > DRAIN_LIMIT {
            break;
        }
        if total <= MAX_BODY {
            buf.extend_from_slice(&data);
        }
    }
    if total > MAX_BODY {
        return Err(ApiError::TooLarge(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// Parses a JSON object body; anything else is a 400 as kube-apiserver's decoder reports it.
pub fn parse_object(body: &[u8]) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok(v)
}

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Json,
    /// Kubernetes' protobuf envelope (`application/vnd.kubernetes.protobuf`), see `protobuf.rs`.
    Protobuf,
}

/// Bodies are JSON or Kubernetes' protobuf; CBOR and YAML are refused with 415 (client-go then
/// retries in JSON where it supports fallback).
pub fn body_encoding(content_type: &str) -> Result<BodyEncoding, ApiError> {
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if mime.is_empty() || mime == "application/json" || mime == "*/*" {
        Ok(BodyEncoding::Json)
    } else if protobuf::is_protobuf(mime) {
        Ok(BodyEncoding::Protobuf)
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "application/json, {}",
            protobuf::MEDIA_TYPE
        )))
    }
}

/// Reads an object body in either encoding as JSON. `api_version` and `kind` are the endpoint's,
/// which a protobuf envelope that leaves them empty defaults to.
pub fn parse_body(
    encoding: BodyEncoding,
    body: &[u8],
    api_version: &str,
    kind: &str,
) -> Result<Value, ApiError> {
    match encoding {
        BodyEncoding::Json => parse_object(body),
        BodyEncoding::Protobuf => {
            protobuf::decode(body, api_version, kind).map_err(|e| e.to_api_error(kind, body))
        }
    }
}

/// What the client asked the object(s) to be rendered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Render {
    /// The objects themselves.
    Object,
    /// A `meta.k8s.io/v1` Table (kubectl get's server-side printing).
    Table,
}

/// Picks Table output when the first acceptable media type asks for `as=Table` in
/// `meta.k8s.io/v1` (or v1beta1); kubectl lists the Table type first and plain JSON as fallback.
pub fn negotiate(headers: &HeaderMap) -> Render {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Render::Object;
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let mime = parts.next().unwrap_or("");
        if mime != "application/json" && mime != "*/*" {
            continue;
        }
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let get = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match get("as") {
            Some("Table")
                if get("g") == Some("meta.k8s.io")
                    && matches!(get("v"), Some("v1" | "v1beta1")) =>
            {
                return Render::Table
            }
            Some(_) => continue,
            None => return Render::Object,
        }
    }
    Render::Object
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_table() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h), Render::Table);
        h.insert(header::ACCEPT, "application/json".parse().unwrap());
        assert_eq!(negotiate(&h), Render::Object);
        h.insert(
            header::ACCEPT,
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h), Render::Object);
    }
}

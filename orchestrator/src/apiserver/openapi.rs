//! OpenAPI documents of the served API, as kube-apiserver publishes them:
//!
//! - `/openapi/v2`: one swagger 2.0 document with every served kind's definition and everything
//!   it references, as JSON or as gnostic's protobuf (`OpenAPISchema` in client-go decodes only
//!   that). It has no paths: clients that find `/openapi/v3` (kubectl does) read paths there.
//! - `/openapi/v3`: the discovery document naming one document per group-version by a
//!   content-hash URL, and those documents (paths with their parameters, components.schemas),
//!   which `kubectl explain` reads and where kubectl finds that the server validates fields
//!   itself (`fieldValidation` on PATCH operations), so it sends `fieldValidation=Strict`.
//!
//! Every document is built once, on first request, from the embedded definitions
//! ([`definitions`]), and served from memory afterwards as pre-serialized bytes.

pub mod definitions;
pub mod gnostic;
pub mod v3;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use http::{header, HeaderMap, Response, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

use super::http::{full, Body};
use super::query::Query;
use super::resources;
use super::status::ApiError;
pub use definitions::definitions;

const TITLE: &str = "Kubernetes";
/// What client-go asks for; `@` is not a token character, so answers never carry it.
const PROTOBUF_V2_ACCEPT: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
/// The Content-Type of protobuf answers (Go's mime.ParseMediaType refuses the `@` form).
const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

fn version_string() -> String {
    format!("v1.{}.0", super::discovery::KUBERNETES_MINOR)
}

fn info() -> Value {
    json!({"title": TITLE, "version": version_string()})
}

/// A served document: its bytes and their hash (kube-openapi's ETag: uppercase hex SHA-512).
#[derive(Debug)]
pub struct Served {
    pub bytes: Vec<u8>,
    pub hash: String,
}

impl Served {
    fn new(bytes: Vec<u8>) -> Served {
        let hash = Sha512::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Served { bytes, hash }
    }
}

/// The swagger 2.0 document as JSON.
pub fn v2_json() -> &'static Served {
    static DOC: OnceLock<Served> = OnceLock::new();
    DOC.get_or_init(|| {
        let defs = definitions();
        let all = defs.closure(all_roots(defs).iter().map(String::as_str));
        let definitions: serde_json::Map<String, Value> = all
            .iter()
            .filter_map(|n| Some((n.clone(), defs.get(n)?.clone())))
            .collect();
        let doc = json!({
            "swagger": "2.0",
            "info": info(),
            "paths": {},
            "definitions": definitions,
        });
        Served::new(serde_json::to_vec(&doc).unwrap_or_default())
    })
}

/// The swagger 2.0 document as gnostic protobuf.
pub fn v2_protobuf() -> &'static Served {
    static DOC: OnceLock<Served> = OnceLock::new();
    DOC.get_or_init(|| {
        let defs = definitions();
        let all = defs.closure(all_roots(defs).iter().map(String::as_str));
        let bytes = gnostic::document(
            TITLE,
            &version_string(),
            all.iter().filter_map(|n| Some((n.as_str(), defs.get(n)?))),
        );
        Served::new(bytes)
    })
}

/// Every served kind, its list, and what every group-version's operations refer to.
fn all_roots(defs: &definitions::Definitions) -> Vec<String> {
    let mut roots: Vec<String> = ["Status", "DeleteOptions", "WatchEvent", "Patch"]
        .iter()
        .map(|k| format!("io.k8s.apimachinery.pkg.apis.meta.v1.{k}"))
        .collect();
    roots.push("io.k8s.api.autoscaling.v1.Scale".into());
    for r in resources::RESOURCES {
        for kind in [r.kind.to_string(), format!("{}List", r.kind)] {
            if let Some(n) = defs.name_of(r.group, r.version, &kind) {
                roots.push(n.to_string());
            }
        }
    }
    roots
}

/// The OpenAPI v3 documents by discovery key (`api/v1`, `apis/apps/v1`).
fn v3_documents() -> &'static BTreeMap<String, Served> {
    static DOCS: OnceLock<BTreeMap<String, Served>> = OnceLock::new();
    DOCS.get_or_init(|| {
        let defs = definitions();
        resources::group_versions()
            .into_iter()
            .map(|(g, v)| {
                let doc = v3::document(defs, g, v, &info());
                let bytes = serde_json::to_vec(&doc).unwrap_or_default();
                (v3::gv_path(g, v), Served::new(bytes))
            })
            .collect()
    })
}

/// `/openapi/v3`: where each group-version's document is, by content hash.
pub fn v3_discovery() -> Value {
    let paths: serde_json::Map<String, Value> = v3_documents()
        .iter()
        .map(|(gv, doc)| {
            (
                gv.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", doc.hash)}),
            )
        })
        .collect();
    json!({ "paths": paths })
}

/// Which of `offered` media types the Accept header picks (the first acceptable clause wins,
/// `*/*` and a missing header take the first offered). None when nothing offered is acceptable.
fn pick<'a>(headers: &HeaderMap, offered: &[&'a str]) -> Option<&'a str> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if accept.is_empty() {
        return offered.first().copied();
    }
    for clause in accept.split(',') {
        let mime = clause.split(';').next().unwrap_or("").trim();
        if mime == "*/*" || mime == "application/*" {
            return offered.first().copied();
        }
        if let Some(o) = offered.iter().find(|o| **o == mime) {
            return Some(o);
        }
    }
    None
}

fn bytes_response(content_type: &str, doc: &Served, extra: &[(&str, String)]) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ETAG, format!("\"{}\"", doc.hash));
    for (k, v) in extra {
        b = b.header(*k, v);
    }
    b.body(full(doc.bytes.clone()))
        .unwrap_or_else(|_| Response::new(full(Vec::new())))
}

fn not_modified(headers: &HeaderMap, doc: &Served) -> Option<Response<Body>> {
    let tag = headers.get(header::IF_NONE_MATCH)?.to_str().ok()?;
    (tag.trim_matches('"') == doc.hash).then(|| {
        Response::builder()
            .status(StatusCode::NOT_MODIFIED)
            .header(header::ETAG, format!("\"{}\"", doc.hash))
            .body(full(Vec::new()))
            .unwrap_or_else(|_| Response::new(full(Vec::new())))
    })
}

fn not_acceptable(offered: &[&str]) -> ApiError {
    ApiError::NotAcceptable(offered.join(", "))
}

/// GET /openapi/v2.
pub fn serve_v2(headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let offered = [
        "application/json",
        PROTOBUF_V2_ACCEPT,
        PROTOBUF_V2,
        "application/vnd.kubernetes.protobuf",
    ];
    let picked = pick(headers, &offered).ok_or_else(|| not_acceptable(&offered))?;
    let (content_type, doc) = if picked == "application/json" {
        (picked, v2_json())
    } else {
        (PROTOBUF_V2, v2_protobuf())
    };
    if let Some(r) = not_modified(headers, doc) {
        return Ok(r);
    }
    Ok(bytes_response(content_type, doc, &[]))
}

/// GET /openapi/v3/<gv>: the document, or a redirect to its current hash when the URL names an
/// old one; with the current hash, cacheable for a year (kube-openapi's headers).
pub fn serve_v3(gv: &str, q: &Query, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
    let doc = v3_documents().get(gv).ok_or(ApiError::NoRoute)?;
    let offered = ["application/json"];
    let picked = pick(headers, &offered).ok_or_else(|| not_acceptable(&offered))?;
    let mut extra = Vec::new();
    if let Some(hash) = q.get("hash") {
        if hash != doc.hash {
            let location = format!("/openapi/v3/{gv}?hash={}", doc.hash);
            return Ok(Response::builder()
                .status(StatusCode::MOVED_PERMANENTLY)
                .header(header::LOCATION, location)
                .body(full(Vec::new()))
                .unwrap_or_else(|_| Response::new(full(Vec::new()))));
        }
        let year = super::clock::now_secs() + 365 * 86_400;
        extra.push(("vary", "Accept".to_string()));
        extra.push(("cache-control", "public, immutable".to_string()));
        extra.push(("expires", super::clock::format_rfc1123(year)));
    }
    if let Some(r) = not_modified(headers, doc) {
        return Ok(r);
    }
    Ok(bytes_response(picked, doc, &extra))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_first_acceptable_offer() {
        let mut h = HeaderMap::new();
        let offered = ["application/json", PROTOBUF_V2_ACCEPT];
        assert_eq!(pick(&h, &offered), Some("application/json"));
        h.insert(header::ACCEPT, PROTOBUF_V2_ACCEPT.parse().unwrap());
        assert_eq!(pick(&h, &offered), Some(PROTOBUF_V2_ACCEPT));
        h.insert(header::ACCEPT, "application/json, */*".parse().unwrap());
        assert_eq!(pick(&h, &offered), Some("application/json"));
        h.insert(header::ACCEPT, "text/html".parse().unwrap());
        assert_eq!(pick(&h, &offered), None);
    }

    #[test]
    fn v2_json_holds_every_served_definition() {
        let doc: Value = serde_json::from_slice(&v2_json().bytes).unwrap();
        let defs = doc["definitions"].as_object().unwrap();
        for name in [
            "io.k8s.api.core.v1.Pod",
            "io.k8s.api.apps.v1.Deployment",
            "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
            "io.k8s.api.rbac.v1.ClusterRole",
            "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
            "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent",
        ] {
            assert!(defs.contains_key(name), "{name}");
        }
        assert_eq!(doc["swagger"], "2.0");
    }

    #[test]
    fn protobuf_document_starts_with_swagger_version() {
        let doc = &v2_protobuf().bytes;
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert!(doc.len() > 100_000);
    }

    #[test]
    fn v3_discovery_names_every_group_version_by_hash() {
        let d = v3_discovery();
        let paths = d["paths"].as_object().unwrap();
        for (g, v) in resources::group_versions() {
            let url = paths[&v3::gv_path(g, v)]["serverRelativeURL"]
                .as_str()
                .unwrap();
            let (_, hash) = url.split_once("?hash=").unwrap();
            assert_eq!(hash.len(), 128);
            assert!(hash
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        }
    }
}

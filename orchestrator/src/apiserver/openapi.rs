//! `/openapi/v2`, the document kubectl reads before `apply`/`create` to validate objects on the
//! client side (its `--validate=strict` default), fetched as gnostic's `openapi.v2.Document`
//! protobuf (client-go's `OpenAPISchema` decodes nothing else) or as JSON.
//!
//! The document declares no paths and no definitions yet. That is truthful and sufficient:
//! kubectl finds no schema for a kind and skips client-side validation for it, and finds no
//! `fieldValidation` parameter so it does not expect server-side field validation. Adding real
//! definitions (from the k8s-openapi types) later turns client-side validation and `kubectl
//! explain` on without changing kubectl's request flow. OpenAPI v3 (`/openapi/v3`) is not
//! served, so kubectl falls back to this document.

use serde_json::{json, Value};

const TITLE: &str = "Kubernetes";

fn version_string() -> String {
    format!("v1.{}.0", super::discovery::KUBERNETES_MINOR)
}

pub fn v2_json() -> Value {
    json!({
        "swagger": "2.0",
        "info": {"title": TITLE, "version": version_string()},
        "paths": {},
        "definitions": {},
    })
}

/// Appends a length-delimited protobuf field (wire type 2): strings and sub-messages.
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field << 3 | 2));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The same document as protobuf: `Document { swagger = 1; info = 2 { title = 1; version = 2 };
/// paths = 8 {} ; definitions = 9 {} }` (field numbers from gnostic's OpenAPIv2.proto).
pub fn v2_protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    put_bytes(&mut info, 1, TITLE.as_bytes());
    put_bytes(&mut info, 2, version_string().as_bytes());
    let mut doc = Vec::new();
    put_bytes(&mut doc, 1, b"2.0");
    put_bytes(&mut doc, 2, &info);
    put_bytes(&mut doc, 8, &[]);
    put_bytes(&mut doc, 9, &[]);
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_document_is_well_formed() {
        let doc = v2_protobuf();
        // field 1 (swagger), wire type 2, length 3, "2.0"
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(doc[5], 0x12);
        assert!(doc.ends_with(&[0x42, 0, 0x4a, 0]));
    }
}

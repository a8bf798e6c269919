//! The protobuf encoding of an OpenAPI v2 document that client-go decodes
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's `openapi.v2.Document`
//! with field numbers from gnostic's `OpenAPIv2.proto`. Only what the served document holds is
//! encoded: swagger, info, paths (empty) and definitions, with every schema keyword Kubernetes'
//! definitions use. Vendor extensions and enum values travel as gnostic `Any { yaml }`; their
//! JSON text is valid YAML, which is what the decoder reads.

use serde_json::Value;

/// Appends a length-delimited field (wire type 2): strings, bytes and sub-messages.
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

/// A varint field (wire type 0): bools and int64s.
fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    put_varint(out, u64::from(field << 3));
    put_varint(out, v);
}

/// A double field (wire type 1).
fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_varint(out, u64::from(field << 3 | 1));
    out.extend_from_slice(&v.to_le_bytes());
}

/// gnostic `Any { yaml = 2 }` holding `v`.
fn any(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 2, format!("{v}\n").as_bytes());
    out
}

/// gnostic `NamedAny { name = 1; value = 2 }`.
fn named_any(name: &str, v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, name.as_bytes());
    put_bytes(&mut out, 2, &any(v));
    out
}

/// gnostic `NamedSchema { name = 1; value = 2 }`.
fn named_schema(name: &str, schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes(&mut out, 1, name.as_bytes());
    put_bytes(&mut out, 2, &schema_message(schema));
    out
}

/// gnostic `Schema`.
pub fn schema_message(schema: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(m) = schema.as_object() else {
        return out;
    };
    let string = |out: &mut Vec<u8>, field, key: &str| {
        if let Some(s) = m.get(key).and_then(Value::as_str) {
            put_bytes(out, field, s.as_bytes());
        }
    };
    let int = |out: &mut Vec<u8>, field, key: &str| {
        if let Some(n) = m.get(key).and_then(Value::as_i64) {
            put_uint(out, field, n as u64);
        }
    };
    let double = |out: &mut Vec<u8>, field, key: &str| {
        if let Some(n) = m.get(key).and_then(Value::as_f64) {
            put_double(out, field, n);
        }
    };
    let boolean = |out: &mut Vec<u8>, field, key: &str| {
        if m.get(key).and_then(Value::as_bool) == Some(true) {
            put_uint(out, field, 1);
        }
    };
    string(&mut out, 1, "$ref");
    string(&mut out, 2, "format");
    string(&mut out, 3, "title");
    string(&mut out, 4, "description");
    if let Some(d) = m.get("default") {
        put_bytes(&mut out, 5, &any(d));
    }
    double(&mut out, 6, "multipleOf");
    double(&mut out, 7, "maximum");
    boolean(&mut out, 8, "exclusiveMaximum");
    double(&mut out, 9, "minimum");
    boolean(&mut out, 10, "exclusiveMinimum");
    int(&mut out, 11, "maxLength");
    int(&mut out, 12, "minLength");
    string(&mut out, 13, "pattern");
    int(&mut out, 14, "maxItems");
    int(&mut out, 15, "minItems");
    boolean(&mut out, 16, "uniqueItems");
    int(&mut out, 17, "maxProperties");
    int(&mut out, 18, "minProperties");
    for r in m
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            put_bytes(&mut out, 19, r.as_bytes());
        }
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_bytes(&mut out, 20, &any(e));
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Vec::new();
            put_uint(&mut item, 2, u64::from(*b));
            put_bytes(&mut out, 21, &item);
        }
        Some(s @ Value::Object(_)) => {
            let mut item = Vec::new();
            put_bytes(&mut item, 1, &schema_message(s));
            put_bytes(&mut out, 21, &item);
        }
        _ => {}
    }
    match m.get("type") {
        Some(Value::String(t)) => {
            let mut item = Vec::new();
            put_bytes(&mut item, 1, t.as_bytes());
            put_bytes(&mut out, 22, &item);
        }
        Some(Value::Array(ts)) => {
            let mut item = Vec::new();
            for t in ts.iter().filter_map(Value::as_str) {
                put_bytes(&mut item, 1, t.as_bytes());
            }
            put_bytes(&mut out, 22, &item);
        }
        _ => {}
    }
    match m.get("items") {
        Some(s @ Value::Object(_)) => {
            let mut item = Vec::new();
            put_bytes(&mut item, 1, &schema_message(s));
            put_bytes(&mut out, 23, &item);
        }
        Some(Value::Array(ss)) => {
            let mut item = Vec::new();
            for s in ss {
                put_bytes(&mut item, 1, &schema_message(s));
            }
            put_bytes(&mut out, 23, &item);
        }
        _ => {}
    }
    for s in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        put_bytes(&mut out, 24, &schema_message(s));
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        let mut item = Vec::new();
        for (name, s) in props {
            put_bytes(&mut item, 1, &named_schema(name, s));
        }
        put_bytes(&mut out, 25, &item);
    }
    string(&mut out, 26, "discriminator");
    boolean(&mut out, 27, "readOnly");
    if let Some(e) = m.get("example") {
        put_bytes(&mut out, 30, &any(e));
    }
    for (k, v) in m {
        if k.starts_with("x-") {
            put_bytes(&mut out, 31, &named_any(k, v));
        }
    }
    out
}

/// gnostic `Document { swagger = 1; info = 2 { title = 1; version = 2 }; paths = 8;
/// definitions = 9 }` for a document of definitions without paths.
pub fn document<'a>(
    title: &str,
    version: &str,
    definitions: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Vec<u8> {
    let mut info = Vec::new();
    put_bytes(&mut info, 1, title.as_bytes());
    put_bytes(&mut info, 2, version.as_bytes());
    let mut defs = Vec::new();
    for (name, schema) in definitions {
        put_bytes(&mut defs, 1, &named_schema(name, schema));
    }
    let mut doc = Vec::new();
    put_bytes(&mut doc, 1, b"2.0");
    put_bytes(&mut doc, 2, &info);
    put_bytes(&mut doc, 8, &[]);
    put_bytes(&mut doc, 9, &defs);
    doc
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn document_frames_swagger_info_and_definitions() {
        let schema = json!({"type": "string"});
        let doc = document("Kubernetes", "v1.32.0", [("a.B", &schema)]);
        // field 1 (swagger), wire type 2, length 3, "2.0"
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // paths {}, then definitions: NamedSchema { name "a.B", Schema { type: TypeItem {
        // value "string" } } } (Schema.type is field 22: tag 0xb2 0x01)
        let mut tail = vec![
            0x42, 0, 0x4a, 20, 0x0a, 18, 0x0a, 3, b'a', b'.', b'B', 0x12, 11,
        ];
        tail.extend_from_slice(&[0xb2, 0x01, 8, 0x0a, 6]);
        tail.extend_from_slice(b"string");
        assert!(doc.ends_with(&tail), "{doc:?}");
    }

    #[test]
    fn schema_keeps_references_required_and_vendor_extensions() {
        let s = json!({
            "$ref": "#/definitions/x",
            "required": ["name"],
            "x-kubernetes-patch-merge-key": "name",
        });
        let m = schema_message(&s);
        assert_eq!(&m[..2], &[0x0a, 15]);
        assert!(m.windows(6).any(|w| w == [0x9a, 0x01, 4, b'n', b'a', b'm']));
        // vendor extension 31: NamedAny { name, Any { yaml: "\"name\"\n" } }
        assert!(m.windows(2).any(|w| w == [0xfa, 0x01]));
        assert!(m.ends_with(b"\"name\"\n"));
    }
}

//! Server-side field validation (`fieldValidation=Ignore|Warn|Strict`, Warn when absent, as in
//! Kubernetes 1.27+) against the OpenAPI schemas of the served kinds.
//!
//! Kubernetes decodes a request into its Go type: a field the type does not have is dropped and
//! never stored, a key given twice keeps its last value. With Warn or Strict the decoder also
//! reports them, in document order, as `unknown field "spec.replica"` and `duplicate field
//! "metadata.name"` (paths join fields with `.` and list indexes as `[0]`). This module does the
//! same walk over the schema: [`decode`] reads a JSON body (unknown fields skipped, duplicates
//! noticed while parsing, which a parsed `Value` can no longer tell), [`prune`] drops unknown
//! fields from an object built otherwise (a patch result, a protobuf body).
//!
//! The schema decides where any key is allowed: a map (`additionalProperties`) checks only its
//! values, and an object schema with neither properties nor additionalProperties (RawExtension,
//! FieldsV1) keeps whatever it holds, as Kubernetes keeps their raw JSON.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::openapi::definitions::{definitions, Definitions};
use super::query::Query;
use super::status::{ApiError, Cause};

/// What to do with unknown and duplicate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Directive {
    /// Drop unknown fields silently.
    Ignore,
    /// Drop them and answer with one `Warning` header per finding.
    Warn,
    /// Refuse the request when there is any finding.
    Strict,
}

impl Directive {
    /// The request's `fieldValidation`; `options_kind` (CreateOptions, UpdateOptions,
    /// PatchOptions) names the options in the error for a bad value, as Kubernetes does.
    pub fn from_query(q: &Query, options_kind: &str) -> Result<Directive, ApiError> {
        match q.get("fieldValidation") {
            None | Some("Warn") => Ok(Directive::Warn),
            Some("Ignore") => Ok(Directive::Ignore),
            Some("Strict") => Ok(Directive::Strict),
            Some(other) => Err(ApiError::Invalid {
                kind: format!("{options_kind}.meta.k8s.io"),
                name: String::new(),
                causes: vec![Cause {
                    reason: "FieldValueNotSupported",
                    field: "fieldValidation".into(),
                    message: format!(
                        "Unsupported value: {other:?}: supported values: \"Ignore\", \"Strict\", \"Warn\""
                    ),
                }],
            }),
        }
    }

    /// Whether findings are reported at all.
    pub fn reports(self) -> bool {
        self != Directive::Ignore
    }
}

/// `strict decoding error: unknown field "a", duplicate field "b"` (runtime.StrictDecodingError).
pub fn strict_error(findings: &[String]) -> String {
    format!("strict decoding error: {}", findings.join(", "))
}

/// The schema of a kind, by group ("" for core), version and kind.
pub fn schema_of(group: &str, version: &str, kind: &str) -> Option<&'static Value> {
    let defs = definitions();
    defs.get(defs.name_of(group, version, kind)?)
}

/// Where a key of an object leads.
enum Child<'a> {
    /// A field or map value with this schema.
    Known(&'a Value),
    /// Not a field of the schema.
    Unknown,
    /// Anything goes below (RawExtension, FieldsV1, untyped).
    Free,
}

/// Follows `$ref`s (a field's own schema may be a bare reference).
fn resolve<'a>(defs: &'a Definitions, mut schema: &'a Value) -> &'a Value {
    for _ in 0..16 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => match defs.resolve(r) {
                Some(s) => schema = s,
                None => break,
            },
            None => break,
        }
    }
    schema
}

fn child<'a>(defs: &'a Definitions, schema: &'a Value, key: &str) -> Child<'a> {
    let schema = resolve(defs, schema);
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        return match props.get(key) {
            Some(s) => Child::Known(s),
            None => Child::Unknown,
        };
    }
    match schema.get("additionalProperties") {
        Some(s @ Value::Object(_)) => Child::Known(s),
        _ => Child::Free,
    }
}

fn items<'a>(defs: &'a Definitions, schema: &'a Value) -> Option<&'a Value> {
    resolve(defs, schema).get("items").filter(|i| i.is_object())
}

/// The schema of the field `key` of an object with `schema`; None for a key the schema does not
/// type (unknown, or below a RawExtension).
pub fn field_schema(schema: &'static Value, key: &str) -> Option<&'static Value> {
    match child(definitions(), schema, key) {
        Child::Known(s) => Some(s),
        Child::Unknown | Child::Free => None,
    }
}

/// The schema of the elements of a list with `schema`.
pub fn item_schema(schema: &'static Value) -> Option<&'static Value> {
    items(definitions(), schema)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Reads a JSON object body against `schema` (None: any JSON object, duplicates still found):
/// unknown fields are left out of the result; findings are returned in document order.
pub fn decode(body: &[u8], schema: Option<&Value>) -> Result<(Value, Vec<String>), ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest("the request body is empty".into()));
    }
    let mut findings = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(body);
    let seed = Seed {
        defs: definitions(),
        schema,
        path: String::new(),
        findings: &mut findings,
    };
    let value = seed
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))?;
    if !value.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object".into(),
        ));
    }
    Ok((value, findings))
}

struct Seed<'a, 'f> {
    defs: &'a Definitions,
    /// None: untyped (every key allowed).
    schema: Option<&'a Value>,
    path: String,
    findings: &'f mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for Seed<'_, '_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let item_schema = self.schema.and_then(|s| items(self.defs, s));
        let mut out = Vec::new();
        loop {
            let seed = Seed {
                defs: self.defs,
                schema: item_schema,
                path: format!("{}[{}]", self.path, out.len()),
                findings: &mut *self.findings,
            };
            match seq.next_element_seed(seed)? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = join(&self.path, &key);
            if !seen.insert(key.clone()) {
                self.findings.push(format!("duplicate field {path:?}"));
            }
            let schema = match self.schema.map(|s| child(self.defs, s, &key)) {
                Some(Child::Known(s)) => Some(s),
                Some(Child::Unknown) => {
                    self.findings.push(format!("unknown field {path:?}"));
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Some(Child::Free) | None => None,
            };
            let seed = Seed {
                defs: self.defs,
                schema,
                path,
                findings: &mut *self.findings,
            };
            let v = map.next_value_seed(seed)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// Drops the fields `schema` does not know from `obj`; returns what was dropped, as
/// `unknown field "<path>"` findings (object keys in sorted order).
pub fn prune(obj: &mut Value, schema: &Value) -> Vec<String> {
    let mut findings = Vec::new();
    prune_at(definitions(), obj, schema, "", &mut findings);
    findings
}

fn prune_at(defs: &Definitions, v: &mut Value, schema: &Value, path: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for key in keys {
                match child(defs, schema, &key) {
                    Child::Known(s) => {
                        if let Some(c) = m.get_mut(&key) {
                            prune_at(defs, c, s, &join(path, &key), out);
                        }
                    }
                    Child::Unknown => {
                        m.remove(&key);
                        out.push(format!("unknown field {:?}", join(path, &key)));
                    }
                    Child::Free => {}
                }
            }
        }
        Value::Array(a) => {
            if let Some(item) = items(defs, schema) {
                for (i, e) in a.iter_mut().enumerate() {
                    prune_at(defs, e, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Go's `%+v` of a decoded JSON value (`map[spec:map[replica:3]]`), which is how Kubernetes
/// prints a strategic merge patch inside the error for its strict decoding failures.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => i.to_string(),
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 1e21 => format!("{f:.0}"),
            (None, Some(f)) if f.abs() >= 1e21 || (f != 0.0 && f.abs() < 1e-4) => {
                let s = format!("{f:e}");
                match s.split_once('e') {
                    Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e:0>2}"),
                    Some((m, e)) => format!("{m}e-{:0>2}", &e[1..]),
                    None => s,
                }
            }
            (None, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => format!(
            "map[{}]",
            m.iter()
                .map(|(k, v)| format!("{k}:{}", go_format(v)))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    }
}

/// The 422 Kubernetes answers a patch whose result has unknown or duplicate fields under
/// Strict: an Invalid error on the field `patch` carrying the patch as it printed it.
pub fn patch_error(printed_patch: &str, findings: &[String]) -> ApiError {
    ApiError::Invalid {
        kind: String::new(),
        name: String::new(),
        causes: vec![Cause {
            reason: "FieldValueInvalid",
            field: "patch".into(),
            message: format!(
                "Invalid value: {printed_patch:?}: {}",
                strict_error(findings)
            ),
        }],
    }
}

/// A `Warning` header value (RFC 7234 warn-code 299, agent `-`), quoted as kube-apiserver
/// quotes it: `"` and `\` escaped, nothing else.
pub fn warning_header(text: &str) -> String {
    let mut out = String::from("299 - \"");
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Adds one `Warning` header per distinct finding (Kubernetes' recorder drops repeats).
pub fn add_warnings(resp: &mut http::Response<super::http::Body>, findings: &[String]) {
    let mut seen = std::collections::HashSet::new();
    for f in findings {
        if !seen.insert(f.as_str()) {
            continue;
        }
        if let Ok(v) = http::HeaderValue::from_str(&warning_header(f)) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn deployment() -> &'static Value {
        schema_of("apps", "v1", "Deployment").unwrap()
    }

    #[test]
    fn unknown_and_duplicate_fields_in_document_order() {
        let body = br#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"a","name":"b","labels":{"any/key":"x"}},
            "spec":{"replica":3,"selector":{"matchLabels":{"a":"b"}},"template":{"spec":{"containers":[
            {"name":"c","image":"i","imagePullPolicyy":"Always","resources":{"limits":{"cpu":"1"}},"ports":[{"containerPort":80,"hostPot":1}]}]}},
            "strategy":{"rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}}},"status":{"bogus":1}}"#;
        let (obj, findings) = decode(body, Some(deployment())).unwrap();
        assert_eq!(
            findings,
            vec![
                r#"duplicate field "metadata.name""#,
                r#"unknown field "spec.replica""#,
                r#"unknown field "spec.template.spec.containers[0].imagePullPolicyy""#,
                r#"unknown field "spec.template.spec.containers[0].ports[0].hostPot""#,
                r#"unknown field "status.bogus""#,
            ]
        );
        assert_eq!(obj["metadata"]["name"], "b");
        assert_eq!(obj["metadata"]["labels"]["any/key"], "x");
        assert!(obj["spec"].get("replica").is_none());
        let c = &obj["spec"]["template"]["spec"]["containers"][0];
        assert!(c.get("imagePullPolicyy").is_none());
        assert_eq!(c["resources"]["limits"]["cpu"], "1");
        assert_eq!(c["ports"][0], json!({"containerPort": 80}));
        assert_eq!(
            obj["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
        assert_eq!(obj["status"], json!({}));
    }

    #[test]
    fn raw_extensions_keep_whatever_they_hold() {
        let schema = schema_of("apps", "v1", "ControllerRevision").unwrap();
        let body = br#"{"apiVersion":"apps/v1","kind":"ControllerRevision","metadata":{"name":"r"},"revision":1,"data":{"spec":{"anything":{"x":1}}}}"#;
        let (obj, findings) = decode(body, Some(schema)).unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(obj["data"]["spec"]["anything"]["x"], 1);
    }

    #[test]
    fn prune_drops_unknown_fields_of_built_objects() {
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "extra": 1},
            "data": {"k": "v"}, "datta": {}});
        let findings = prune(&mut obj, schema_of("", "v1", "ConfigMap").unwrap());
        assert_eq!(
            findings,
            vec![
                r#"unknown field "datta""#,
                r#"unknown field "metadata.extra""#
            ]
        );
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn untyped_decoding_still_finds_duplicates() {
        let (v, findings) = decode(br#"{"spec":{"a":1,"a":2},"b":[{"c":1,"c":2}]}"#, None).unwrap();
        assert_eq!(
            findings,
            vec![r#"duplicate field "spec.a""#, r#"duplicate field "b[0].c""#]
        );
        assert_eq!(v["spec"]["a"], 2);
    }

    #[test]
    fn directives_and_their_errors() {
        let q = Query::parse(Some("fieldValidation=Strict"));
        assert_eq!(
            Directive::from_query(&q, "CreateOptions").unwrap(),
            Directive::Strict
        );
        assert_eq!(
            Directive::from_query(&Query::parse(None), "CreateOptions").unwrap(),
            Directive::Warn
        );
        let bad = Directive::from_query(&Query::parse(Some("fieldValidation=foo")), "PatchOptions")
            .unwrap_err();
        assert_eq!(
            bad.to_string(),
            r#"PatchOptions.meta.k8s.io "" is invalid: fieldValidation: Unsupported value: "foo": supported values: "Ignore", "Strict", "Warn""#
        );
        assert_eq!(
            warning_header(r#"unknown field "spec.replica""#),
            r#"299 - "unknown field \"spec.replica\"""#
        );
        assert_eq!(
            go_format(&json!({"spec": {"replica": 3, "l": [1, "a", null, true, 1.5]}})),
            "map[spec:map[l:[1 a <nil> true 1.5] replica:3]]"
        );
        let e = patch_error(
            "map[spec:map[replica:3]]",
            &[r#"unknown field "spec.replica""#.into()],
        );
        assert_eq!(
            e.to_string(),
            r#" "" is invalid: patch: Invalid value: "map[spec:map[replica:3]]": strict decoding error: unknown field "spec.replica""#
        );
    }
}

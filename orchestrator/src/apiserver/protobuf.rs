//! Kubernetes' protobuf encoding of request bodies (`application/vnd.kubernetes.protobuf`, what
//! client-go's typed clients send, e.g. `kubectl create configmap|secret|deployment|service|...`),
//! read into exactly the JSON a JSON client would have sent for the same object, so that one path
//! (type checks, defaults, validation, storage as JSON) serves both encodings.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown`: `typeMeta` {apiVersion, kind},
//! `raw` (the object's own message from k8s.io/api), `contentEncoding`, `contentType`. The
//! object's message is looked up by group, version and kind in a descriptor pool compiled from
//! `orchestrator/proto/` (see `build.rs`) and walked generically; nothing here is per kind.
//!
//! The JSON is what Go's encoding/json makes of Kubernetes' Go types, whose declarations the
//! schema records as field options (`proto/cairn/k8s/go.proto`):
//! - scalars: a pointer field is written whenever it is present (a set zero included), a plain
//!   field only when non-zero, unless its json tag lacks `omitempty`;
//! - messages: a pointer field when present; a plain struct always (Go never omits a struct),
//!   as its zero value when absent;
//! - lists and maps: when non-empty; an empty one is `null` without `omitempty`, left out with it;
//! - `inline` fields merge their members into the enclosing object;
//! - apimachinery's own JSON forms: Time (RFC 3339, seconds) and MicroTime (microseconds), zero
//!   as `null`; Duration as Go prints it ("1h2m3.5s"); IntOrString as a number or a string;
//!   Quantity as its string; RawExtension and FieldsV1 as the JSON they carry; bytes as base64.
//!
//! Fields the schema does not know are skipped, as Kubernetes' generated decoders skip them.
//! Responses stay JSON: client-go asks for `application/vnd.kubernetes.protobuf,application/json`
//! and decodes whatever the response's Content-Type says.

use std::collections::HashMap;
use std::sync::OnceLock;

use base64::Engine as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    ReflectMessage as _, Value as PbValue,
};
use serde_json::{Map, Value};

use super::clock;
use super::status::ApiError;

/// The media type of Kubernetes' protobuf encoding.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every protobuf-encoded Kubernetes object starts with these bytes.
const MAGIC: &[u8; 4] = b"k8s\0";

/// The compiled schemas (every served API group version and what they import).
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/k8s_descriptors.bin"));

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const META_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Time";
const MICRO_TIME: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime";
const DURATION: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.Duration";
const FIELDS_V1: &str = "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1";
const RAW_EXTENSION: &str = "k8s.io.apimachinery.pkg.runtime.RawExtension";
const INT_OR_STRING: &str = "k8s.io.apimachinery.pkg.util.intstr.IntOrString";
const QUANTITY: &str = "k8s.io.apimachinery.pkg.api.resource.Quantity";

/// Unix seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z), which marshals as `null`.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// Why a protobuf body could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    /// The body does not start with the magic bytes.
    #[error(
        "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
    )]
    NotProtobuf,
    /// The `runtime.Unknown` envelope is malformed.
    #[error("{0}")]
    Envelope(String),
    /// The envelope names a kind this server has no schema for.
    #[error("no kind {kind:?} is registered for version {api_version:?}")]
    NotRegistered { api_version: String, kind: String },
    /// The object's own bytes (or a value inside them) are malformed.
    #[error("{message}")]
    Object {
        api_version: String,
        kind: String,
        message: String,
    },
    /// The built-in schema failed to load (a build defect, not bad input).
    #[error("the protobuf schemas failed to load: {0}")]
    Schema(String),
}

impl DecodeError {
    /// The 400 kube-apiserver answers when a body cannot be decoded into an object of kind
    /// `into` (its `transformDecodeError` wording).
    pub fn to_api_error(&self, into: &str, body: &[u8]) -> ApiError {
        match self {
            DecodeError::NotProtobuf | DecodeError::Envelope(_) => ApiError::BadRequest(format!(
                "the object provided is unrecognized (must be of type {into}): {self} ({})",
                summarize(body)
            )),
            DecodeError::NotRegistered { api_version, kind }
            | DecodeError::Object {
                api_version, kind, ..
            } => {
                let version = api_version.rsplit('/').next().unwrap_or("");
                ApiError::BadRequest(format!(
                    "{kind} in version {version:?} cannot be handled as a {into}: {self}"
                ))
            }
            DecodeError::Schema(_) => ApiError::Internal(self.to_string()),
        }
    }
}

/// apimachinery's `summarizeData`: the first 30 bytes, as text when they look like JSON, else hex.
fn summarize(body: &[u8]) -> String {
    const MAX: usize = 30;
    let head = &body[..body.len().min(MAX)];
    let more = if body.len() > MAX { " ..." } else { "" };
    match body.first() {
        None => "<empty>".into(),
        Some(b'{') => format!("{}{more}", String::from_utf8_lossy(head)),
        Some(_) => format!(
            "{}{more}",
            head.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// How a field is declared in Go (see `proto/cairn/k8s/go.proto`).
#[derive(Debug, Clone, Copy)]
struct GoField {
    pointer: bool,
    omitempty: bool,
    inline: bool,
}

const PLAIN_FIELD: GoField = GoField {
    pointer: false,
    omitempty: true,
    inline: false,
};

/// The descriptor pool and, for every field that is not a plain `omitempty` one, its Go facts.
struct Schema {
    pool: DescriptorPool,
    go_fields: HashMap<String, GoField>,
}

impl Schema {
    fn load() -> Result<Schema, String> {
        let pool = DescriptorPool::decode(DESCRIPTORS).map_err(|e| e.to_string())?;
        let ext = |name: &str| {
            pool.get_extension_by_name(name)
                .ok_or_else(|| format!("option {name} is not defined"))
        };
        let (pointer, omitempty, inline) = (
            ext("cairn.k8s.go_pointer")?,
            ext("cairn.k8s.go_omitempty")?,
            ext("cairn.k8s.go_inline")?,
        );
        let flag = |options: &DynamicMessage, ext, default: bool| {
            if options.has_extension(ext) {
                options.get_extension(ext).as_bool().unwrap_or(default)
            } else {
                default
            }
        };
        let mut go_fields = HashMap::new();
        for message in pool.all_messages() {
            for field in message.fields() {
                let options = field.options();
                let go = GoField {
                    pointer: flag(&options, &pointer, false),
                    omitempty: flag(&options, &omitempty, true),
                    inline: flag(&options, &inline, false),
                };
                if go.pointer || !go.omitempty || go.inline {
                    go_fields.insert(field.full_name().to_string(), go);
                }
            }
        }
        if pool.get_message_by_name(UNKNOWN).is_none() {
            return Err(format!("{UNKNOWN} is missing"));
        }
        Ok(Schema { pool, go_fields })
    }

    fn go(&self, field: &FieldDescriptor) -> GoField {
        self.go_fields
            .get(field.full_name())
            .copied()
            .unwrap_or(PLAIN_FIELD)
    }

    /// The message of `kind` in `api_version`: k8s.io/api's package for the group ("" is core,
    /// "apps" is apps, "rbac.authorization.k8s.io" is rbac), else meta/v1's (DeleteOptions and the
    /// other option kinds every group version accepts).
    fn message_for(&self, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let ident = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ident(kind) || !ident(version) {
            return None;
        }
        let package = group.split('.').next().filter(|p| !p.is_empty());
        self.pool
            .get_message_by_name(&format!(
                "k8s.io.api.{}.{version}.{kind}",
                package.unwrap_or("core")
            ))
            .or_else(|| self.pool.get_message_by_name(&format!("{META_V1}.{kind}")))
    }
}

fn schema() -> Result<&'static Schema, DecodeError> {
    static SCHEMA: OnceLock<Result<Schema, String>> = OnceLock::new();
    SCHEMA
        .get_or_init(Schema::load)
        .as_ref()
        .map_err(|e| DecodeError::Schema(e.clone()))
}

/// Whether a Content-Type names Kubernetes' protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or("").trim() == MEDIA_TYPE
}

/// Decodes a protobuf body into the JSON object a JSON client would have sent, `apiVersion` and
/// `kind` included. An envelope that leaves them empty gets the endpoint's, as kube-apiserver's
/// decoder defaults them.
pub fn decode(
    body: &[u8],
    default_api_version: &str,
    default_kind: &str,
) -> Result<Value, DecodeError> {
    let s = schema()?;
    let rest = body.strip_prefix(MAGIC).ok_or(DecodeError::NotProtobuf)?;
    let unknown_desc = s
        .pool
        .get_message_by_name(UNKNOWN)
        .ok_or_else(|| DecodeError::Schema(format!("{UNKNOWN} is missing")))?;
    let unknown = DynamicMessage::decode(unknown_desc, rest)
        .map_err(|e| DecodeError::Envelope(e.to_string()))?;
    let type_meta = unknown
        .get_field_by_name("typeMeta")
        .and_then(|v| v.as_message().cloned());
    let meta_str = |name: &str| {
        type_meta
            .as_ref()
            .and_then(|m| m.get_field_by_name(name))
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|v| !v.is_empty())
    };
    let api_version = meta_str("apiVersion").unwrap_or_else(|| default_api_version.into());
    let kind = meta_str("kind").unwrap_or_else(|| default_kind.into());
    let raw = unknown
        .get_field_by_name("raw")
        .and_then(|v| v.as_bytes().cloned())
        .unwrap_or_default();
    let desc = s
        .message_for(&api_version, &kind)
        .ok_or_else(|| DecodeError::NotRegistered {
            api_version: api_version.clone(),
            kind: kind.clone(),
        })?;
    let object_err = |message: String| DecodeError::Object {
        api_version: api_version.clone(),
        kind: kind.clone(),
        message,
    };
    let object = DynamicMessage::decode(desc, raw).map_err(|e| object_err(e.to_string()))?;
    let mut json = fields_json(s, &object).map_err(object_err)?;
    json.insert("apiVersion".into(), Value::String(api_version.clone()));
    json.insert("kind".into(), Value::String(kind.clone()));
    Ok(Value::Object(json))
}

/// A message's fields as a JSON object, by the rules in the module doc.
fn fields_json(s: &Schema, msg: &DynamicMessage) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for field in msg.descriptor().fields() {
        let go = s.go(&field);
        let present = msg.has_field(&field);
        let json = if field.is_list() || field.is_map() {
            if present {
                value_json(s, &field.kind(), &msg.get_field(&field))?
            } else if go.omitempty {
                continue;
            } else {
                Value::Null
            }
        } else if let Kind::Message(desc) = field.kind() {
            if present {
                value_json(s, &field.kind(), &msg.get_field(&field))?
            } else if go.pointer {
                continue;
            } else {
                message_json(s, &DynamicMessage::new(desc))?
            }
        } else if present {
            let value = msg.get_field(&field);
            if !go.pointer && go.omitempty && value.is_default(&field.kind()) {
                continue;
            }
            value_json(s, &field.kind(), &value)?
        } else if go.pointer || go.omitempty {
            continue;
        } else {
            value_json(s, &field.kind(), &PbValue::default_value(&field.kind()))?
        };
        if go.inline {
            match json {
                Value::Object(members) => out.extend(members),
                _ => return Err(format!("inline field {} is not an object", field.name())),
            }
        } else {
            out.insert(field.name().to_string(), json);
        }
    }
    Ok(out)
}

fn value_json(s: &Schema, kind: &Kind, value: &PbValue) -> Result<Value, String> {
    Ok(match value {
        PbValue::Bool(b) => Value::Bool(*b),
        PbValue::I32(n) => Value::from(*n),
        PbValue::I64(n) => Value::from(*n),
        PbValue::U32(n) => Value::from(*n),
        PbValue::U64(n) => Value::from(*n),
        PbValue::F32(n) => Value::from(f64::from(*n)),
        PbValue::F64(n) => Value::from(*n),
        PbValue::EnumNumber(n) => Value::from(*n),
        PbValue::String(text) => Value::String(text.clone()),
        PbValue::Bytes(b) => Value::String(base64::engine::general_purpose::STANDARD.encode(b)),
        PbValue::Message(m) => message_json(s, m)?,
        PbValue::List(items) => Value::Array(
            items
                .iter()
                .map(|item| value_json(s, kind, item))
                .collect::<Result<_, _>>()?,
        ),
        PbValue::Map(entries) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            let mut out = Map::new();
            for (key, v) in entries {
                let key = match key {
                    MapKey::String(k) => k.clone(),
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                };
                out.insert(key, value_json(s, &value_kind, v)?);
            }
            Value::Object(out)
        }
    })
}

/// A message value: apimachinery's types with their own JSON form, else its fields.
fn message_json(s: &Schema, m: &DynamicMessage) -> Result<Value, String> {
    let int = |name: &str| {
        m.get_field_by_name(name)
            .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
            .unwrap_or(0)
    };
    let has = |name: &str| {
        m.descriptor()
            .get_field_by_name(name)
            .is_some_and(|f| m.has_field(&f))
    };
    let bytes = |name: &str| {
        m.get_field_by_name(name)
            .and_then(|v| v.as_bytes().cloned())
            .unwrap_or_default()
    };
    match m.descriptor().full_name() {
        // An empty Time is Go's zero time (`null`); Time keeps whole seconds only, as
        // apimachinery's Unmarshal drops the nanoseconds.
        TIME => {
            let secs = int("seconds");
            if !has("seconds") && !has("nanos") || secs == GO_ZERO_TIME {
                return Ok(Value::Null);
            }
            check_year(secs)?;
            Ok(Value::String(clock::format_rfc3339(secs)))
        }
        MICRO_TIME => {
            let (secs, nanos) = (int("seconds"), int("nanos"));
            let secs = secs + nanos.div_euclid(1_000_000_000);
            let nanos = nanos.rem_euclid(1_000_000_000);
            if !has("seconds") && !has("nanos") || (secs == GO_ZERO_TIME && nanos == 0) {
                return Ok(Value::Null);
            }
            check_year(secs)?;
            Ok(Value::String(clock::format_rfc3339_micro(
                secs,
                (nanos / 1000) as u32,
            )))
        }
        DURATION => Ok(Value::String(go_duration(int("duration")))),
        INT_OR_STRING => Ok(if int("type") == 1 {
            Value::String(
                m.get_field_by_name("strVal")
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
            )
        } else {
            Value::from(int("intVal"))
        }),
        QUANTITY => {
            let text = m
                .get_field_by_name("string")
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            // The zero Quantity marshals as "0".
            Ok(Value::String(if text.is_empty() {
                "0".into()
            } else {
                text
            }))
        }
        RAW_EXTENSION | FIELDS_V1 => {
            let field = if m.descriptor().full_name() == FIELDS_V1 {
                "Raw"
            } else {
                "raw"
            };
            let raw = bytes(field);
            if raw.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_slice(&raw)
                .map_err(|e| format!("{} does not hold JSON: {e}", m.descriptor().name()))
        }
        // A named []string (authentication's and authorization's ExtraValue) is wrapped in a
        // message on the wire and is the bare list in JSON.
        name if name.ends_with(".ExtraValue") => Ok(Value::Array(
            m.get_field_by_name("items")
                .and_then(|v| v.as_list().map(<[_]>::to_vec))
                .unwrap_or_default()
                .iter()
                .filter_map(|v| v.as_str().map(|s| Value::String(s.to_string())))
                .collect(),
        )),
        _ => Ok(Value::Object(fields_json(s, m)?)),
    }
}

/// Go's `Time.MarshalJSON` refuses years outside 0..=9999.
fn check_year(secs: i64) -> Result<(), String> {
    const YEAR_0: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const YEAR_10000: i64 = 253_402_300_800; // 10000-01-01T00:00:00Z
    if (YEAR_0..YEAR_10000).contains(&secs) {
        Ok(())
    } else {
        Err(format!(
            "Time.MarshalJSON: year outside of range [0,9999] ({secs} seconds since the epoch)"
        ))
    }
}

/// Go's `time.Duration.String()`: "0s", "1.5µs", "300ms", "1h2m3.5s", "-4m0s".
fn go_duration(nanos: i64) -> String {
    /// Writes `v`'s last `prec` digits as a fraction (".25", trailing zeros and an empty
    /// fraction dropped) and returns `v` without them.
    fn frac(out: &mut String, v: u64, prec: u32) -> u64 {
        let scale = 10u64.pow(prec);
        let digits = v % scale;
        if digits != 0 {
            let text = format!("{digits:0width$}", width = prec as usize);
            out.push('.');
            out.push_str(text.trim_end_matches('0'));
        }
        v / scale
    }
    if nanos == 0 {
        return "0s".into();
    }
    let mut u = nanos.unsigned_abs();
    let sign = if nanos < 0 { "-" } else { "" };
    if u < 1_000_000_000 {
        let (prec, unit) = match u {
            0..1_000 => (0, "ns"),
            1_000..1_000_000 => (3, "µs"),
            _ => (6, "ms"),
        };
        let mut fraction = String::new();
        let whole = frac(&mut fraction, u, prec);
        return format!("{sign}{whole}{fraction}{unit}");
    }
    let mut fraction = String::new();
    u = frac(&mut fraction, u, 9);
    let secs = u % 60;
    let mins = u / 60;
    let mut out = format!("{secs}{fraction}s");
    if mins > 0 {
        out = format!("{}m{out}", mins % 60);
        let hours = mins / 60;
        if hours > 0 {
            out = format!("{hours}h{out}");
        }
    }
    format!("{sign}{out}")
}

#[cfg(test)]
mod tests;

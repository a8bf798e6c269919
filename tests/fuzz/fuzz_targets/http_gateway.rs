//! Fuzz target `http_gateway`: the JSON gateway's request parsing (`cairn_wire::json`, used
//! by cairn-store's `http::gateway` for every `/v3/...` call) on hostile bodies.
//!
//! A body is read as JSON against the input message of one of the gateway's methods (every
//! method of every service in the API's descriptor set, so all of etcd's bindings are covered)
//! and turned into that message's protobuf encoding, which the gateway then hands to the gRPC
//! service. Bodies are raw bytes, or JSON built from structure with the field names, value
//! kinds and nesting of the real messages, so the decoder is reached past `serde_json`.
//!
//! Checks: never a panic; an accepted body yields protobuf that decodes as the message (with
//! prost, for etcd's KV and lease requests); and the gateway agrees with itself — written back
//! as JSON the way etcd's gateway writes (`response_to_json`), it reads back to the very same
//! protobuf.

#![no_main]

use arbitrary::Arbitrary;
use cairn_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, TxnRequest,
};
use cairn_wire::json;
use libfuzzer_sys::fuzz_target;
use prost::Message;

#[derive(Arbitrary, Debug)]
enum Body {
    Raw(Vec<u8>),
    Built(Value),
}

/// A JSON value, with names drawn from the message's own fields so objects get deep.
#[derive(Arbitrary, Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A number written as a string, as the gateway writes 64-bit integers.
    IntString(i64),
    Text(String),
    /// Base64 of these bytes, as bytes fields are written.
    Base64(Vec<u8>),
    Array(Vec<Value>),
    /// Fields by index into the message's field names (`None`: an unknown name).
    Object(Vec<(Option<u8>, Value)>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u16,
    body: Body,
}

fuzz_target!(|input: Input| run(input));

fn run(input: Input) {
    let pool = json::pool();
    let methods: Vec<_> = pool
        .services()
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .collect();
    let method = &methods[usize::from(input.method) % methods.len()];
    let desc = method.input();
    let body = match &input.body {
        Body::Raw(bytes) => bytes.clone(),
        Body::Built(value) => {
            let mut names: Vec<String> = Vec::new();
            for f in desc.fields() {
                names.push(f.name().to_string());
                names.push(f.json_name().to_string());
            }
            for m in pool.all_messages() {
                for f in m.fields() {
                    names.push(f.name().to_string());
                }
            }
            let mut out = String::new();
            write_json(value, &names, &mut out, 0);
            out.into_bytes()
        }
    };
    let Ok(pb) = json::request_from_json(&desc, &body) else {
        return;
    };
    match desc.full_name() {
        "etcdserverpb.RangeRequest" => drop(RangeRequest::decode(&*pb).expect("decodes")),
        "etcdserverpb.PutRequest" => drop(PutRequest::decode(&*pb).expect("decodes")),
        "etcdserverpb.DeleteRangeRequest" => {
            drop(DeleteRangeRequest::decode(&*pb).expect("decodes"))
        }
        "etcdserverpb.TxnRequest" => drop(TxnRequest::decode(&*pb).expect("decodes")),
        "etcdserverpb.CompactionRequest" => drop(CompactionRequest::decode(&*pb).expect("decodes")),
        "etcdserverpb.LeaseGrantRequest" => drop(LeaseGrantRequest::decode(&*pb).expect("decodes")),
        _ => {}
    }
    let written = json::response_to_json(&desc, &pb).expect("accepted protobuf is written back");
    let again = json::request_from_json(&desc, &written).unwrap_or_else(|e| {
        panic!(
            "{}: the gateway cannot read what it writes: {e}\n{}",
            desc.full_name(),
            String::from_utf8_lossy(&written)
        )
    });
    assert_eq!(
        again,
        pb,
        "{}: JSON round trip changed the message: {}",
        desc.full_name(),
        String::from_utf8_lossy(&written)
    );
}

fn write_json(value: &Value, names: &[String], out: &mut String, depth: usize) {
    use std::fmt::Write as _;
    if depth > 12 {
        out.push_str("null");
        return;
    }
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => write!(out, "{b}").unwrap(),
        Value::Int(i) => write!(out, "{i}").unwrap(),
        Value::Float(f) if f.is_finite() => write!(out, "{f}").unwrap(),
        Value::Float(_) => out.push_str("1e400"),
        Value::IntString(i) => write!(out, "\"{i}\"").unwrap(),
        Value::Text(s) => write!(out, "{}", quote(s)).unwrap(),
        Value::Base64(bytes) => write!(out, "\"{}\"", base64(bytes)).unwrap(),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, names, out, depth + 1);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            out.push('{');
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let name = match name {
                    Some(n) if !names.is_empty() => names[usize::from(*n) % names.len()].as_str(),
                    _ => "unknown_field",
                };
                write!(out, "{}:", quote(name)).unwrap();
                write_json(item, names, out, depth + 1);
            }
            out.push('}');
        }
    }
}

fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            c if (c as u32) < 0x20 => q.push_str(&format!("\\u{:04x}", c as u32)),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

//! etcd's JSON gateway (`/v3/...` over plain HTTP/1.1) against real etcd and cairn-store: the
//! same requests, the HTTP statuses and JSON bodies compared after removing what legitimately
//! differs between two clusters (cluster/member ids, raft terms, lease TTLs that tick).

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{have, Cairn, Etcd};

/// POSTs `body` to `path` over HTTP/1.1 and returns the status and the body, de-chunked.
async fn post(endpoint: &str, path: &str, body: &str) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .expect("reply in time")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").expect("headers");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let mut body = String::new();
    if chunked {
        let mut rest = rest;
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            body.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
    } else {
        body.push_str(rest);
    }
    (status, body)
}

/// Clears what differs between two clusters, everywhere in a JSON document.
fn normalize(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in ["cluster_id", "member_id", "raft_term"] {
                m.remove(k);
            }
            // Remaining TTLs tick with the clock; the granted TTL does not.
            if m.contains_key("grantedTTL") {
                m.remove("TTL");
            }
            m.values_mut().for_each(normalize);
        }
        Value::Array(a) => a.iter_mut().for_each(normalize),
        _ => {}
    }
}

/// Each response body is one JSON document or, for streams, one per line.
fn canonical(status: u16, body: &str) -> String {
    let docs: Vec<String> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or(Value::String(l.into()));
            normalize(&mut v);
            v.to_string()
        })
        .collect();
    format!("{status} {}", docs.join(" | "))
}

const STEPS: &[(&str, &str)] = &[
    ("/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prev_kv":true}"#,
    ),
    (
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prevKv":true,"ignored":1}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],"success":[{"request_put":{"key":"Zm9v","value":"cXV4"}},{"request_range":{"key":"Zm9v"}},{"request_txn":{}}],"failure":[{"request_range":{"key":"Zm9v"}}]}"#,
    ),
    (
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":1,"target":3,"value":"bm8="}],"failure":[{"requestRange":{"key":"Zm9v"}},{"request_delete_range":{"key":"eA=="}}]}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","count_only":true}"#,
    ),
    (
        "/v3/kv/range",
        r#"{"key":"AA==","range_end":"AA==","keys_only":true,"sort_order":"DESCEND","sort_target":"KEY"}"#,
    ),
    ("/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#),
    ("/v3/kv/deleterange", r#"{"key":"Zm9v"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
    ("/v3/kv/compaction", r#"{"revision":"3"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v","revision":2}"#),
    ("/v3/kv/compaction", r#"{"revision":100}"#),
    ("/v3/kv/range", "{}"),
    ("/v3/kv/put", r#"{"value":"YmFy"}"#),
    ("/v3/kv/put", ""),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":"7"}"#),
    ("/v3/lease/grant", r#"{"TTL":30,"ID":"7"}"#),
    ("/v3/lease/timetolive", r#"{"ID":"7"}"#),
    ("/v3/lease/timetolive", r#"{"ID":"99"}"#),
    ("/v3/kv/lease/leases", "{}"),
    ("/v3/lease/keepalive", r#"{"ID":"7"}"#),
    ("/v3/lease/keepalive", r#"{"ID":"99"}"#),
    ("/v3/lease/revoke", r#"{"ID":"7"}"#),
    ("/v3/kv/lease/revoke", r#"{"ID":"7"}"#),
    ("/v3/kv/range", r#"{"key":"Zm9v"}"#),
];

async fn scenario(endpoint: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (path, body) in STEPS {
        let (status, reply) = post(endpoint, path, body).await;
        out.push(format!("{path} {body} -> {}", canonical(status, &reply)));
    }
    out
}

#[tokio::test]
async fn gateway_json_matches_etcd() {
    if !have("etcd") {
        return;
    }
    let etcd = Etcd::start().await;
    let cairn = Cairn::start().await;
    let expected = scenario(&etcd.endpoint).await;
    let got = scenario(&cairn.endpoint).await;
    assert!(
        expected[0].contains("\"revision\":\"2\""),
        "{}",
        expected[0]
    );
    let mismatches: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(e, g)| e != g)
        .map(|(e, g)| format!("etcd:  {e}\ncairn: {g}"))
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} gateway steps differ from etcd:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches.join("\n\n")
    );
}

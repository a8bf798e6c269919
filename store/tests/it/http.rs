//! The HTTP side of the client port, spoken to as curl speaks to it: plain HTTP/1.1 over a
//! TCP socket, no gRPC client. Covers etcd's `/health` JSON, the 3.5 probes, the Prometheus
//! page (parsed line by line, counters moving after writes) and the JSON gateway with
//! base64 bytes (`curl -L http://127.0.0.1:2379/v3/kv/put -X POST -d '{"key":"Zm9v",...}'`).
//! The JSON shapes asserted here are the ones a real etcd 3.4 gateway returns; the
//! `cairn-tests` compat suite checks them side by side against etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{free_port, Solo};

fn phase(what: &str) {
    eprintln!("--- {what}");
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = std::str::from_utf8(&raw[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 {
            return out;
        }
        raw = &raw[eol + 2..];
        out.extend_from_slice(&raw[..size.min(raw.len())]);
        raw = &raw[(size + 2).min(raw.len())..];
    }
}

pub(crate) fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[split + 4..];
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|v| v == "chunked")
    {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("utf-8 body"),
    }
}

fn request_text(addr: &str, method: &str, path: &str, body: &str, close: bool) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n{}\r\n{body}",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    )
}

/// One HTTP/1.1 request on a fresh connection, read to the end, as `curl` does it.
async fn call(addr: &str, method: &str, path: &str, body: &str) -> Reply {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request_text(addr, method, path, body, true).as_bytes())
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut raw))
        .await
        .expect("reply in time")
        .expect("read");
    parse_reply(&raw)
}

async fn post(addr: &str, path: &str, body: &str) -> Value {
    let r = call(addr, "POST", path, body).await;
    assert_eq!(r.status, 200, "{path} {body}: {}", r.body);
    r.json()
}

/// A scraped page: family -> TYPE, and every sample `name{labels}` -> value.
struct Scrape {
    types: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        *self
            .samples
            .get(series)
            .unwrap_or_else(|| panic!("no sample {series}"))
    }
}

/// Parses the Prometheus text format strictly: HELP and TYPE before each family's samples,
/// every other line `name{labels} value` with a numeric value and a known family.
fn parse_metrics(page: &str) -> Scrape {
    let mut helped = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in page.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().expect("HELP name");
            assert!(helped.insert(name.to_string()), "HELP twice for {name}");
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (name, kind) = (it.next().expect("name"), it.next().expect("kind"));
            assert!(helped.contains(name), "TYPE before HELP for {name}");
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            assert!(types.insert(name.to_string(), kind.to_string()).is_none());
            continue;
        }
        assert!(
            !line.starts_with('#') && !line.is_empty(),
            "stray line {line:?}"
        );
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name = series.split('{').next().expect("name");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "{line}"
            );
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample before its TYPE: {line}");
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        samples.insert(series.to_string(), v);
    }
    Scrape { types, samples }
}

async fn scrape(addr: &str) -> Scrape {
    let r = call(addr, "GET", "/metrics", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").map(String::as_str),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_metrics(&r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_probes_answer_like_etcd() {
    let s = Solo::start(&[]).await;

    phase("/health: etcd 3.5's JSON verdict, plain text like Go's handler");
    let r = call(&s.http, "GET", "/health", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"health":"true","reason":""}"#);
    let r = call(&s.http, "GET", "/health?serializable=true", "").await;
    assert_eq!((r.status, r.json()["health"].as_str()), (200, Some("true")));
    let r = call(&s.http, "POST", "/health", "").await;
    assert_eq!(r.status, 405);

    phase("/livez and /readyz, their per-check paths and ?verbose / ?exclude");
    let r = call(&s.http, "GET", "/livez", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = call(&s.http, "GET", "/readyz?verbose", "").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        "[+]data_corruption ok\n[+]linearizable_read ok\n[+]serializable_read ok\nok\n"
    );
    let r = call(
        &s.http,
        "GET",
        "/readyz?verbose&exclude=linearizable_read",
        "",
    )
    .await;
    assert!(!r.body.contains("linearizable_read"), "{}", r.body);
    let r = call(&s.http, "GET", "/readyz/linearizable_read", "").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = call(&s.http, "GET", "/readyz/nonsense", "").await;
    assert_eq!(r.status, 404);

    phase("the version document and an unknown path");
    let r = call(&s.http, "GET", "/version", "").await;
    assert_eq!(r.json()["etcdserver"], "3.5.0");
    assert_eq!(call(&s.http, "GET", "/nothing", "").await.status, 404);
    s.stop().await;
}

/// A single member that has served nothing for a while still has a leader: itself. Its
/// quorum (itself) acknowledges nothing while idle, which once made an idle single-member
/// `/health` answer "RAFT NO LEADER" a few seconds after the last write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_single_member_stays_healthy() {
    let s = Solo::start(&[]).await;
    phase("idle for longer than two election timeouts (500 ms min, 1 s max)");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = call(&s.http, "GET", "/health", "").await;
    assert_eq!(
        (r.status, r.body.as_str()),
        (200, r#"{"health":"true","reason":""}"#)
    );
    assert_eq!(scrape(&s.http).await.get("etcd_server_has_leader"), 1.0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_page_parses_and_counters_move_with_writes() {
    let s = Solo::start(&[]).await;
    let put_ok = r#"grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#;

    phase("every family operators alert on is there, under etcd's name and type");
    let before = scrape(&s.http).await;
    for (family, kind) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_is_leader", "gauge"),
        ("etcd_server_leader_changes_seen_total", "counter"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_server_proposals_applied_total", "gauge"),
        ("etcd_server_proposals_pending", "gauge"),
        ("etcd_server_proposals_failed_total", "counter"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_disk_backend_commit_duration_seconds", "histogram"),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
        ("etcd_debugging_mvcc_keys_total", "gauge"),
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_handling_seconds", "histogram"),
    ] {
        assert_eq!(
            before.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    assert_eq!(before.get("etcd_server_has_leader"), 1.0);
    assert_eq!(before.get("etcd_server_is_leader"), 1.0);
    assert!(before.get("etcd_server_leader_changes_seen_total") >= 1.0);
    assert!(before.get("etcd_mvcc_db_total_size_in_bytes") > 0.0);

    phase("five writes through the gateway (which counts as gRPC, as etcd's loopback does)");
    // base64 of key0 .. key4.
    for key in ["a2V5MA==", "a2V5MQ==", "a2V5Mg==", "a2V5Mw==", "a2V5NA=="] {
        post(
            &s.http,
            "/v3/kv/put",
            &format!(r#"{{"key":"{key}","value":"dg=="}}"#),
        )
        .await;
    }
    let after = scrape(&s.http).await;
    let grew = |series: &str, by: f64| {
        let (a, b) = (before.get(series), after.get(series));
        assert!(b >= a + by, "{series}: {a} -> {b}");
    };
    grew("etcd_server_proposals_committed_total", 5.0);
    grew("etcd_server_proposals_applied_total", 5.0);
    grew("etcd_disk_wal_fsync_duration_seconds_count", 1.0);
    grew("etcd_disk_backend_commit_duration_seconds_count", 1.0);
    grew("etcd_debugging_mvcc_current_revision", 5.0);
    grew("etcd_debugging_mvcc_keys_total", 5.0);
    assert_eq!(after.get(put_ok), before.get(put_ok) + 5.0);
    // Background proposals (the member publishing itself, lease upkeep) may be in flight at
    // any one scrape; the gauge must come back to zero.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while scrape(&s.http).await.get("etcd_server_proposals_pending") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "proposals stay pending"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        after.get("etcd_disk_wal_fsync_duration_seconds_count"),
        after.get(r#"etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"}"#)
    );

    phase("a refused request is counted under its gRPC code");
    let r = call(&s.http, "POST", "/v3/kv/put", r#"{"value":"dg=="}"#).await;
    assert_eq!(r.status, 400);
    let page = scrape(&s.http).await;
    assert_eq!(
        page.get(r#"grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}"#),
        1.0
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_round_trips_base64_json_like_etcd() {
    let s = Solo::start(&[]).await;
    let a = s.http.as_str();

    phase("put and range: base64 bytes, int64 as strings, etcd's field names");
    let put = post(a, "/v3/kv/put", r#"{"key":"Zm9v","value":"YmFy"}"#).await;
    let rev: i64 = put["header"]["revision"]
        .as_str()
        .expect("string")
        .parse()
        .unwrap();
    assert!(put["header"]["cluster_id"].is_string());
    let got = post(a, "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(got["count"], "1");
    let kv = &got["kvs"][0];
    assert_eq!(
        (kv["key"].as_str(), kv["value"].as_str()),
        (Some("Zm9v"), Some("YmFy"))
    );
    assert_eq!(kv["create_revision"], rev.to_string());
    assert_eq!(kv["version"], "1");
    assert!(kv.get("lease").is_none(), "zero fields are left out: {kv}");
    let put = post(
        a,
        "/v3/kv/put",
        r#"{"key":"Zm9v","value":"YmF6","prevKv":true}"#,
    )
    .await;
    assert_eq!(
        put["prev_kv"]["value"], "YmFy",
        "camelCase input, proto-name output"
    );

    phase("txn: compare by enum name, nested responses");
    let txn = post(
        a,
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"YmF6"}],
            "success":[{"request_put":{"key":"Zm9v","value":"cXV4"}},{"request_range":{"key":"Zm9v"}}],
            "failure":[{"request_range":{"key":"Zm9v"}}]}"#,
    )
    .await;
    assert_eq!(txn["succeeded"], true);
    assert!(txn["responses"][0]["response_put"]["header"]["revision"].is_string());
    assert_eq!(
        txn["responses"][1]["response_range"]["kvs"][0]["value"],
        "cXV4"
    );
    let txn = post(
        a,
        "/v3/kv/txn",
        r#"{"compare":[{"key":"Zm9v","result":"EQUAL","target":"VALUE","value":"bm8="}]}"#,
    )
    .await;
    assert!(txn.get("succeeded").is_none(), "false is left out: {txn}");

    phase("deleterange with prev_kv, then the key is gone");
    let del = post(a, "/v3/kv/deleterange", r#"{"key":"Zm9v","prev_kv":true}"#).await;
    assert_eq!(del["deleted"], "1");
    assert_eq!(del["prev_kvs"][0]["value"], "cXV4");
    let got = post(a, "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert!(
        got.get("kvs").is_none() && got.get("count").is_none(),
        "{got}"
    );

    phase("compaction, and etcd's errors with grpc-gateway's HTTP statuses");
    post(
        a,
        "/v3/kv/compaction",
        &format!(r#"{{"revision":"{rev}"}}"#),
    )
    .await;
    let r = call(
        a,
        "POST",
        "/v3/kv/range",
        &format!(r#"{{"key":"Zm9v","revision":{}}}"#, rev - 1),
    )
    .await;
    assert_eq!(r.status, 400);
    let msg = "etcdserver: mvcc: required revision has been compacted";
    assert_eq!(
        r.json(),
        serde_json::json!({"error": msg, "message": msg, "code": 11})
    );
    let r = call(a, "POST", "/v3/kv/range", "{}").await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(3)));
    let r = call(a, "POST", "/v3/kv/put", "{bad json").await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(3)));
    assert_eq!(call(a, "GET", "/v3/kv/put", "").await.status, 405);
    assert_eq!(call(a, "POST", "/v3/kv/nothing", "{}").await.status, 404);

    phase("leases: grant, time-to-live, keep-alive stream, revoke");
    let g = post(a, "/v3/lease/grant", r#"{"TTL":30,"ID":"4242"}"#).await;
    assert_eq!(
        (g["ID"].as_str(), g["TTL"].as_str()),
        (Some("4242"), Some("30"))
    );
    let ttl = post(a, "/v3/lease/timetolive", r#"{"ID":"4242"}"#).await;
    assert_eq!(ttl["grantedTTL"], "30");
    let r = call(
        a,
        "POST",
        "/v3/lease/keepalive",
        "{\"ID\":\"4242\"}\n{\"ID\":\"4242\"}",
    )
    .await;
    let lines: Vec<Value> = r
        .body
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2, "{}", r.body);
    assert_eq!(lines[1]["result"]["TTL"], "30");
    let leases = post(a, "/v3/kv/lease/leases", "{}").await;
    assert_eq!(leases["leases"][0]["ID"], "4242");
    post(a, "/v3/lease/revoke", r#"{"ID":"4242"}"#).await;
    let r = call(a, "POST", "/v3/lease/revoke", r#"{"ID":"4242"}"#).await;
    assert_eq!((r.status, r.json()["code"].as_i64()), (404, Some(5)));

    phase("cluster and maintenance");
    let members = post(a, "/v3/cluster/member/list", "{}").await;
    assert!(members["members"][0]["peerURLs"].is_array());
    let status = post(a, "/v3/maintenance/status", "{}").await;
    assert!(status["dbSize"].is_string() && status["leader"].is_string());

    phase("watch: a chunked stream of {\"result\":...} lines that stays open");
    let mut w = TcpStream::connect(a).await.expect("connect");
    let create = r#"{"create_request":{"key":"d2F0Y2hlZA=="}}"#;
    w.write_all(request_text(a, "POST", "/v3/watch", create, false).as_bytes())
        .await
        .expect("send");
    let mut seen = Vec::new();
    read_until(&mut w, &mut seen, "\"created\":true").await;
    post(a, "/v3/kv/put", r#"{"key":"d2F0Y2hlZA==","value":"MQ=="}"#).await;
    read_until(&mut w, &mut seen, "\"value\":\"MQ==\"").await;
    drop(w);
    s.stop().await;
}

async fn read_until(s: &mut TcpStream, seen: &mut Vec<u8>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout_at(deadline.into(), s.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{needle} not seen in {}", String::from_utf8_lossy(seen)))
            .expect("read");
        assert!(n > 0, "stream ended before {needle}");
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_metrics_urls_serves_health_and_metrics_only() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let s = Solo::start(&["--listen-metrics-urls", &url]).await;
    let m = format!("127.0.0.1:{port}");
    let r = call(&m, "GET", "/health", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(scrape(&m).await.get("etcd_server_has_leader") == 1.0);
    let r = call(&m, "POST", "/v3/kv/range", r#"{"key":"Zm9v"}"#).await;
    assert_eq!(r.status, 404, "no gateway on the metrics listener");
    s.stop().await;
}

/// Polls `/metrics` until `series` has `want`; panics after 10 s.
async fn scrape_until(addr: &str, series: &str, want: f64) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let page = scrape(addr).await;
        if page.get(series) == want {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "{series} stays {} (want {want})",
            page.get(series)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// etcd's watcher gauges, lease counters and defragmentation families: same names and types
/// as etcd 3.4's `/metrics`, and they follow what clients do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_lease_and_defrag_metrics_move() {
    use cairn_proto::etcdserverpb::lease_client::LeaseClient;
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::watch_client::WatchClient;
    use cairn_proto::etcdserverpb::watch_request::RequestUnion;
    use cairn_proto::etcdserverpb::{
        request_op, DefragmentRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
        LeaseRevokeRequest, PutRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
    };
    use tokio_stream::wrappers::ReceiverStream;

    let s = Solo::start(&["--max-txn-ops", "1000"]).await;
    let a = s.http.as_str();
    let ch = crate::harness::channel(&s.endpoint).await.expect("connect");

    phase("the families exist with etcd 3.4's types, at zero");
    let page = scrape(a).await;
    for (family, kind) in [
        ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
        ("etcd_debugging_mvcc_watcher_total", "gauge"),
        ("etcd_debugging_mvcc_slow_watcher_total", "gauge"),
        ("etcd_debugging_lease_granted_total", "counter"),
        ("etcd_debugging_lease_revoked_total", "counter"),
        ("etcd_debugging_lease_renewed_total", "counter"),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
        ("etcd_disk_backend_defrag_duration_seconds", "histogram"),
        ("etcd_disk_defrag_inflight", "gauge"),
    ] {
        assert_eq!(
            page.types.get(family).map(String::as_str),
            Some(kind),
            "{family}"
        );
    }
    for series in [
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_watcher_total",
        "etcd_debugging_mvcc_slow_watcher_total",
        "etcd_debugging_lease_granted_total",
        "etcd_debugging_lease_revoked_total",
        "etcd_debugging_lease_renewed_total",
        "etcd_disk_backend_defrag_duration_seconds_count",
        "etcd_disk_defrag_inflight",
    ] {
        assert_eq!(page.get(series), 0.0, "{series}");
    }

    phase("two leases granted, one kept alive once, one revoked");
    let mut leases = LeaseClient::new(ch.clone());
    for id in [1, 2] {
        leases
            .lease_grant(LeaseGrantRequest { ttl: 60, id })
            .await
            .expect("grant");
    }
    let (ka_tx, ka_rx) = tokio::sync::mpsc::channel(1);
    let mut answers = leases
        .lease_keep_alive(ReceiverStream::new(ka_rx))
        .await
        .expect("keep-alive stream")
        .into_inner();
    ka_tx
        .send(LeaseKeepAliveRequest { id: 1 })
        .await
        .expect("send");
    assert_eq!(
        answers.message().await.expect("answer").expect("one").ttl,
        60
    );
    leases
        .lease_revoke(LeaseRevokeRequest { id: 2 })
        .await
        .expect("revoke");
    let page = scrape(a).await;
    assert_eq!(page.get("etcd_debugging_lease_granted_total"), 2.0);
    assert_eq!(page.get("etcd_debugging_lease_renewed_total"), 1.0);
    assert_eq!(page.get("etcd_debugging_lease_revoked_total"), 1.0);

    phase("history of ~3 MB: more than a stream buffers for a client that does not read");
    let mut kv = crate::harness::kv(&s.endpoint).await;
    for t in 0..20 {
        let success = (0..1000)
            .map(|i| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: format!("h/{t:02}/{i:04}").into_bytes(),
                    value: vec![b'x'; 100],
                    ..Default::default()
                })),
            })
            .collect();
        kv.txn(TxnRequest {
            success,
            ..Default::default()
        })
        .await
        .expect("txn");
    }

    phase("a stream with a watcher replaying all of it, not read: one slow watcher");
    let (w_tx, w_rx) = tokio::sync::mpsc::channel(4);
    let mut responses = WatchClient::new(ch.clone())
        .watch(ReceiverStream::new(w_rx))
        .await
        .expect("watch stream")
        .into_inner();
    w_tx.send(WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: b"h/".to_vec(),
            range_end: b"h0".to_vec(),
            start_revision: 1,
            ..Default::default()
        })),
    })
    .await
    .expect("create");
    let page = scrape_until(a, "etcd_debugging_mvcc_watch_stream_total", 1.0).await;
    assert!(page.get("etcd_debugging_mvcc_watcher_total") <= 1.0);
    let page = scrape_until(a, "etcd_debugging_mvcc_slow_watcher_total", 1.0).await;
    assert_eq!(page.get("etcd_debugging_mvcc_watcher_total"), 1.0);

    phase("the client reads everything: the watcher is synced, then the stream closes");
    let mut events = 0;
    while events < 20_000 {
        let r = responses.message().await.expect("watch").expect("response");
        events += r.events.len();
    }
    scrape_until(a, "etcd_debugging_mvcc_slow_watcher_total", 0.0).await;
    assert_eq!(
        scrape(a).await.get("etcd_debugging_mvcc_watcher_total"),
        1.0
    );
    drop(w_tx);
    drop(responses);
    scrape_until(a, "etcd_debugging_mvcc_watch_stream_total", 0.0).await;
    assert_eq!(
        scrape(a).await.get("etcd_debugging_mvcc_watcher_total"),
        0.0
    );

    phase("a defragmentation is timed, and in-use never exceeds the file");
    MaintenanceClient::new(ch)
        .defragment(DefragmentRequest {})
        .await
        .expect("defragment");
    let page = scrape(a).await;
    assert_eq!(
        page.get("etcd_disk_backend_defrag_duration_seconds_count"),
        1.0
    );
    assert_eq!(page.get("etcd_disk_defrag_inflight"), 0.0);
    let in_use = page.get("etcd_mvcc_db_total_size_in_use_in_bytes");
    assert!(in_use > 0.0 && in_use <= page.get("etcd_mvcc_db_total_size_in_bytes"));
    s.stop().await;
}

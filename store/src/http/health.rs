//! `/health` (etcd 3.5's JSON verdict) and the `/livez` and `/readyz` probes.
//!
//! `/health` is unhealthy while an alarm is raised (unless `?exclude=NOSPACE` and the like),
//! when no leader is known, or when a linearizable read does not complete within
//! [`HEALTH_READ_TIMEOUT`]; `?serializable=true` skips the leader check and reads locally, so
//! a probe can tell "this process works" from "the cluster serves". `/livez` runs
//! `serializable_read`; `/readyz` runs `data_corruption`, `serializable_read` and
//! `linearizable_read`; each check also has its own path (`/readyz/linearizable_read`), and
//! `?exclude=NAME` and `?verbose` work as in etcd.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_proto::etcdserverpb::{AlarmType, RangeRequest};
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;
use tonic::body::Body;

use super::HttpState;
use crate::server::errors::EtcdError;

/// How long a health check may wait for its read; a probe must answer promptly, and a member
/// that cannot serve a read in this time is not healthy for its clients either (etcd 3.4's
/// v2 health read used the same bound).
pub const HEALTH_READ_TIMEOUT: Duration = Duration::from_secs(1);

const LIVEZ_CHECKS: &[&str] = &["serializable_read"];
const READYZ_CHECKS: &[&str] = &["data_corruption", "linearizable_read", "serializable_read"];

fn query_values<'a>(req: &'a Parts, name: &'a str) -> impl Iterator<Item = &'a str> {
    req.uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(move |kv| match kv.split_once('=') {
            Some((k, v)) if k == name => Some(v),
            None if kv == name => Some(""),
            _ => None,
        })
}

/// A local read of one key, optionally behind a linearizable read barrier.
async fn read(state: &HttpState, serializable: bool) -> Result<(), EtcdError> {
    let node = &state.node;
    let work = async {
        if !serializable {
            node.read_barrier().await?;
        }
        let probe = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            limit: 1,
            keys_only: true,
            serializable: true,
            ..Default::default()
        };
        node.mvcc.range(&probe).map(|_| ()).map_err(EtcdError::from)
    };
    match tokio::time::timeout(HEALTH_READ_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(EtcdError::Timeout),
    }
}

async fn verdict(state: &HttpState, excluded: &[&str], serializable: bool) -> Result<(), String> {
    for alarm in state.node.alarms.list() {
        let kind = AlarmType::try_from(alarm.alarm).unwrap_or(AlarmType::None);
        if excluded.contains(&kind.as_str_name()) {
            continue;
        }
        return Err(match kind {
            AlarmType::Nospace => "ALARM NOSPACE",
            AlarmType::Corrupt => "ALARM CORRUPT",
            AlarmType::None => "ALARM UNKNOWN",
        }
        .into());
    }
    if !serializable && !state.node.has_leader() {
        return Err("RAFT NO LEADER".into());
    }
    read(state, serializable)
        .await
        .map_err(|e| format!("RANGE ERROR:{e}"))
}

fn method_not_allowed() -> Response<Body> {
    let mut resp = super::plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n");
    resp.headers_mut()
        .insert("allow", HeaderValue::from_static("GET"));
    resp
}

pub async fn health(state: &HttpState, req: &Parts) -> Response<Body> {
    if req.method != Method::GET {
        return method_not_allowed();
    }
    let serializable = query_values(req, "serializable").any(|v| v == "true");
    let excluded: Vec<&str> = query_values(req, "exclude").collect();
    let result = verdict(state, &excluded, serializable).await;
    let (counter, health, reason) = match &result {
        Ok(()) => (&state.metrics.health_success, "true", ""),
        Err(reason) => (&state.metrics.health_failures, "false", reason.as_str()),
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let body = format!(
        r#"{{"health":"{health}","reason":{}}}"#,
        serde_json::Value::from(reason)
    );
    match result {
        Ok(()) => super::plain(StatusCode::OK, body),
        // Go's http.Error: the text plus a newline, and nosniff.
        Err(_) => super::plain(StatusCode::SERVICE_UNAVAILABLE, body + "\n"),
    }
}

/// `/livez`, `/readyz` and their per-check subpaths.
pub async fn probe(state: &HttpState, req: &Parts) -> Response<Body> {
    if req.method != Method::GET {
        return method_not_allowed();
    }
    let path = req.uri.path().trim_end_matches('/');
    let (root, only) = match path.split_once('/').map(|(_, p)| p.split_once('/')) {
        Some(Some((root, check))) => (root, Some(check)),
        _ => (path.trim_start_matches('/'), None),
    };
    let all = if root == "livez" {
        LIVEZ_CHECKS
    } else {
        READYZ_CHECKS
    };
    let checks: Vec<&str> = match only {
        Some(check) if all.contains(&check) => vec![check],
        Some(_) => return super::plain(StatusCode::NOT_FOUND, "404 page not found\n"),
        None => {
            let excluded: Vec<&str> = query_values(req, "exclude").collect();
            all.iter()
                .copied()
                .filter(|c| !excluded.contains(c))
                .collect()
        }
    };
    let mut report = String::new();
    let mut failed = false;
    for check in checks {
        let r = match check {
            "data_corruption" if state.node.alarms.is_raised(AlarmType::Corrupt) => {
                Err("alarm activated: CORRUPT".to_string())
            }
            "data_corruption" => Ok(()),
            _ => read(state, check == "serializable_read")
                .await
                .map_err(|e| e.to_string()),
        };
        match r {
            Ok(()) => report.push_str(&format!("[+]{check} ok\n")),
            Err(e) => {
                failed = true;
                report.push_str(&format!("[-]{check} failed: {e}\n"));
            }
        }
    }
    if failed {
        return super::plain(StatusCode::SERVICE_UNAVAILABLE, report + "\n");
    }
    let verbose = query_values(req, "verbose").next().is_some();
    let body = if verbose {
        report + "ok\n"
    } else {
        "ok\n".into()
    };
    let mut resp = Response::new(Body::new(Full::new(bytes::Bytes::from(body))));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

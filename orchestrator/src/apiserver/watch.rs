//! `?watch=1`: a chunked stream of JSON watch events (`{"type": ..., "object": ...}` per line)
//! fed by one etcd watch on the collection's key prefix.
//!
//! resourceVersion semantics (Kubernetes API concepts, "Semantics for watch"):
//! - unset or "0": the current state first, as synthetic ADDED events, then changes after it;
//! - "N": changes after revision N (the etcd watch starts at N+1);
//! - N already compacted: one ERROR event carrying a 410 `Expired` Status, then the end.
//!
//! Selectors are applied to both the new and the previous object, so an object leaving the
//! selection is delivered as DELETED and one entering it as ADDED, as kube-apiserver does.

use std::time::Duration;

use bytes::Bytes;
use cairn_proto::mvccpb::event::EventType;
use futures::StreamExt;
use http::{header, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::http::{Body, Render};
use super::query::{parse_resource_version, Query};
use super::rest::{list_objects, selectors};
use super::route::Target;
use super::selector::Selectors;
use super::status::ApiError;
use super::storage::{Versioned, WatchStream};
use super::table;
use super::ApiServer;
use super::{conversion, object};

/// Longest a watch stays open without `timeoutSeconds` (kube-apiserver's --min-request-timeout
/// is 30 minutes); clients re-establish from their last resourceVersion.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub async fn serve(
    api: &ApiServer,
    t: &Target,
    q: &Query,
    render: Render,
) -> Result<Response<Body>, ApiError> {
    let sel = selectors(t.def, q)?;
    let timeout = q
        .int("timeoutSeconds")?
        .filter(|s| *s > 0)
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(DEFAULT_TIMEOUT);
    let rv = q
        .get("resourceVersion")
        .map(parse_resource_version)
        .transpose()?
        .unwrap_or(0);

    // Initial state for rv unset/0: a consistent list, then changes after its revision.
    let (initial, start_after) = if rv == 0 {
        let listed = list_objects(
            api,
            &Target {
                def: t.def,
                namespace: t.namespace.clone(),
                name: None,
                subresource: None,
            },
            &Query::default(),
            &sel,
        )
        .await?;
        (listed.items, listed.revision)
    } else {
        (Vec::new(), rv)
    };
    let prefix = api.collection_prefix(t.def, t.namespace.as_deref());
    let stream = api
        .store
        .watch(&prefix, start_after + 1)
        .await
        .map_err(|e| ApiError::Internal(format!("starting the etcd watch: {e}")))?;

    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let kind = t.def.kind;
    let q_table = Query::parse(
        q.get("includeObject")
            .map(|v| format!("includeObject={v}"))
            .as_deref(),
    );
    let view = t.def;
    let encoder = move |event: &str, obj: Value| -> Bytes {
        let obj = match render {
            Render::Table if event != "ERROR" => table::to_table(kind, &[obj], json!({}), &q_table),
            _ if event != "ERROR" => conversion::to_version(view, obj),
            _ => obj,
        };
        let mut line =
            serde_json::to_vec(&json!({"type": event, "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    tokio::spawn(pump(stream, initial, sel, rv, timeout, tx, encoder));

    let body = StreamBody::new(
        ReceiverStream::new(rx).map(|b| Ok::<_, std::convert::Infallible>(Frame::data(b))),
    );
    Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(BodyExt::boxed(body))
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// Copies events from etcd to the HTTP stream until the client leaves, the timeout passes or
/// the etcd watch ends.
async fn pump(
    mut stream: WatchStream,
    initial: Vec<Value>,
    sel: Selectors,
    requested_rv: i64,
    timeout: Duration,
    tx: mpsc::Sender<Bytes>,
    encode: impl Fn(&str, Value) -> Bytes,
) {
    for obj in initial {
        if tx.send(encode("ADDED", obj)).await.is_err() {
            return;
        }
    }
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        let resp = tokio::select! {
            r = stream.next() => r,
            _ = &mut deadline => return,
            _ = tx.closed() => return,
        };
        let resp = match resp {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(e) => {
                let _ = tx
                    .send(encode(
                        "ERROR",
                        ApiError::Internal(format!("etcd watch: {e}")).to_status(),
                    ))
                    .await;
                return;
            }
        };
        if resp.compact_revision > 0 {
            let err = ApiError::Gone(format!(
                "too old resource version: {requested_rv} ({})",
                resp.compact_revision
            ));
            let _ = tx.send(encode("ERROR", err.to_status())).await;
            return;
        }
        if resp.canceled {
            let err =
                ApiError::Internal(format!("etcd cancelled the watch: {}", resp.cancel_reason));
            let _ = tx.send(encode("ERROR", err.to_status())).await;
            return;
        }
        for ev in resp.events {
            let Some(event) = translate(&ev, &sel) else {
                continue;
            };
            match event {
                Ok((ty, obj)) => {
                    if tx.send(encode(ty, obj)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(encode("ERROR", e.to_status())).await;
                    return;
                }
            }
        }
    }
}

/// One etcd event as a Kubernetes watch event, or None when neither the old nor the new object
/// is selected.
fn translate(
    ev: &cairn_proto::mvccpb::Event,
    sel: &Selectors,
) -> Option<Result<(&'static str, Value), ApiError>> {
    let decode = |kv: &cairn_proto::mvccpb::KeyValue| -> Result<Value, ApiError> {
        object::decode(&Versioned {
            key: kv.key.clone(),
            value: kv.value.clone(),
            mod_revision: kv.mod_revision,
        })
    };
    let kv = ev.kv.as_ref()?;
    let prev = match ev.prev_kv.as_ref().map(decode).transpose() {
        Ok(p) => p,
        Err(e) => return Some(Err(e)),
    };
    let was = prev.as_ref().is_some_and(|p| sel.matches(p));
    if ev.r#type == EventType::Delete as i32 {
        // The deleted object is the previous value, stamped with the deletion's revision.
        let mut obj = prev?;
        if !was {
            return None;
        }
        object::set_resource_version(&mut obj, kv.mod_revision);
        return Some(Ok(("DELETED", obj)));
    }
    let obj = match decode(kv) {
        Ok(o) => o,
        Err(e) => return Some(Err(e)),
    };
    let is = sel.matches(&obj);
    match (was, is) {
        (_, true) if kv.create_revision == kv.mod_revision || prev.is_none() => {
            Some(Ok(("ADDED", obj)))
        }
        (true, true) => Some(Ok(("MODIFIED", obj))),
        (false, true) => Some(Ok(("ADDED", obj))),
        (true, false) => Some(Ok(("DELETED", obj))),
        (false, false) => None,
    }
}

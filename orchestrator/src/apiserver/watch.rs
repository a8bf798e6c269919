//! `?watch=1`: a chunked stream of JSON watch events (`{"type": ..., "object": ...}` per line)
//! served from the resource's watch cache (`watch_cache.rs`), never from an etcd watch of its own.
//!
//! resourceVersion semantics (Kubernetes API concepts, "Semantics for watch"):
//! - unset: the current state (consistent: the cache first catches up with etcd's revision) as
//!   synthetic ADDED events, then changes after it;
//! - "0": the cache's current state as ADDED events, then changes;
//! - "N": changes after revision N, replayed from the cache's window; N older than the window is
//!   one ERROR event carrying a 410 `Expired` Status (`too old resource version: N (floor)`),
//!   N newer than the cache waits up to 3 s, then 504 `Too large resource version`.
//! - `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`, as kube requires): the
//!   state at least as new as rv (unset: consistent; "0": any) as ADDED events, then a BOOKMARK
//!   annotated `k8s.io/initial-events-end: "true"`; `sendInitialEvents=false`: no initial events
//!   for rv unset/"0" either.
//!
//! With `allowWatchBookmarks=true`, a BOOKMARK carrying only `metadata.resourceVersion` is sent
//! about every bookmark interval (a minute by default) and 2 s before `timeoutSeconds` closes the
//! stream, as kube-apiserver's cacher does; its revision comes from an etcd progress
//! notification, so it is current even when the resource had no events.
//!
//! Selectors are applied to both the new and the previous object, so an object leaving the
//! selection is delivered as DELETED and one entering it as ADDED, as kube-apiserver does.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use super::conversion;
use super::http::{Body, Render};
use super::query::{parse_resource_version, Query};
use super::resources::ResourceDef;
use super::rest::selectors;
use super::route::Target;
use super::selector::Selectors;
use super::status::{ApiError, Cause};
use super::table;
use super::watch_cache::{CacheEvent, CachedObject, Message, Start, Subscription};
use super::ApiServer;

/// Longest a watch stays open without `timeoutSeconds` (kube-apiserver's --min-request-timeout
/// is 30 minutes); clients re-establish from their last resourceVersion.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A bookmark is sent this long before the watch's timeout (kube's cacher: 2 s).
const BOOKMARK_BEFORE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a watcher waits for an asked-for progress notification before asking again.
const PROGRESS_RETRY: Duration = Duration::from_secs(1);

/// Frames queued for the HTTP body before the pump waits for the client.
const BODY_QUEUE: usize = 64;

/// The annotation on the bookmark that ends a streaming list's initial events.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// What the query asks of a watch.
struct WatchOptions {
    /// None: unset.
    rv: Option<i64>,
    /// `sendInitialEvents`, when given.
    send_initial_events: Option<bool>,
    bookmarks: bool,
    timeout: Duration,
}

impl WatchOptions {
    /// Reads and validates the watch's query as kube-apiserver's `ValidateListOptions` does.
    fn parse(q: &Query) -> Result<WatchOptions, ApiError> {
        let timeout = q
            .int("timeoutSeconds")?
            .filter(|s| *s > 0)
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(DEFAULT_TIMEOUT);
        let rv = q
            .get("resourceVersion")
            .map(parse_resource_version)
            .transpose()?;
        let send_initial_events = match q.get("sendInitialEvents") {
            None => None,
            Some("true" | "1") => Some(true),
            Some("false" | "0") => Some(false),
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "invalid value for sendInitialEvents: {v:?}"
                )))
            }
        };
        let mut causes = Vec::new();
        let forbidden = |field: &str, detail: &str| Cause {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        };
        let matching = q.get("resourceVersionMatch");
        if send_initial_events.is_some() && matching != Some("NotOlderThan") {
            causes.push(forbidden(
                "resourceVersionMatch",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if let Some(m) = matching {
            if send_initial_events.is_none() {
                causes.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if m != "NotOlderThan" {
                causes.push(Cause {
                    reason: "FieldValueNotSupported",
                    field: "resourceVersionMatch".into(),
                    message: format!(
                        "Unsupported value: {m:?}: supported values: \"NotOlderThan\""
                    ),
                });
            }
            if q.get("continue").is_some() {
                causes.push(forbidden(
                    "resourceVersionMatch",
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::Invalid {
                kind: "ListOptions.meta.k8s.io".into(),
                name: String::new(),
                causes,
            });
        }
        Ok(WatchOptions {
            rv,
            send_initial_events,
            bookmarks: q.flag("allowWatchBookmarks"),
            timeout,
        })
    }
}

pub async fn serve(
    api: &ApiServer,
    t: &Target,
    q: &Query,
    render: Render,
) -> Result<Response<Body>, ApiError> {
    let sel = selectors(t.def, q)?;
    let opts = WatchOptions::parse(q)?;
    let cache = api
        .watch_cache
        .resource(&api.collection_prefix(t.def, None));
    let prefix = api.collection_prefix(t.def, t.namespace.as_deref());

    let (tx, rx) = mpsc::channel::<Bytes>(BODY_QUEUE);
    let q_table = Query::parse(
        q.get("includeObject")
            .map(|v| format!("includeObject={v}"))
            .as_deref(),
    );
    let encoder = Encoder {
        def: t.def,
        render,
        table_query: q_table,
    };

    // Where the watcher starts, and whether the cache must first catch up with a revision
    // (a consistent read for rv unset, at-least-N for rv N).
    let initial = opts
        .send_initial_events
        .unwrap_or(opts.rv.is_none_or(|rv| rv == 0));
    let subscribed = async {
        let wanted = match opts.rv {
            None => api
                .store
                .current_revision()
                .await
                .map_err(|e| ApiError::Internal(format!("reading etcd's revision: {e}")))?,
            Some(rv) => rv,
        };
        cache.wait_fresh(wanted).await?;
        let start = match (initial, opts.rv) {
            (true, _) => Start::Snapshot,
            (false, Some(rv)) if rv > 0 => Start::After(rv),
            // No initial events from "now" (rv unset) or "any" ("0"): the cache's revision.
            (false, _) => Start::After(cache.revision_now()),
        };
        cache.subscribe(&prefix, start)
    }
    .await;

    match subscribed {
        Ok(sub) => {
            let pump = Pump {
                sel,
                encoder,
                tx,
                bookmarks: opts.bookmarks,
                initial_events_end: opts.send_initial_events == Some(true),
                bookmark_interval: api.watch_cache.config().bookmark_interval,
            };
            tokio::spawn(pump.run(sub, opts.timeout));
        }
        // As kube's watch cache: the stream opens and carries one ERROR event.
        Err(e) => {
            let line = encoder.event("ERROR", e.to_status());
            tokio::spawn(async move {
                let _ = tx.send(line).await;
            });
        }
    }

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

/// Encodes watch events as JSON lines (Tables for `kubectl get -w`).
struct Encoder {
    def: &'static ResourceDef,
    render: Render,
    table_query: Query,
}

impl Encoder {
    fn event(&self, ty: &str, obj: Value) -> Bytes {
        let obj = match self.render {
            Render::Table if ty == "BOOKMARK" => {
                let rv = obj["metadata"]["resourceVersion"].clone();
                table::to_table(
                    self.def.kind,
                    &[],
                    json!({"resourceVersion": rv}),
                    &self.table_query,
                )
            }
            Render::Table if ty != "ERROR" => table::to_table(
                self.def.kind,
                &[conversion::to_version(self.def, obj)],
                json!({}),
                &self.table_query,
            ),
            // Objects are cached as stored; a watch of another version gets them converted.
            _ if ty != "ERROR" && ty != "BOOKMARK" => conversion::to_version(self.def, obj),
            _ => obj,
        };
        let mut line = serde_json::to_vec(&json!({"type": ty, "object": obj})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    /// An event about a cached object: its JSON is reused, not re-encoded, unless it becomes a
    /// Table.
    fn cached(&self, ty: &str, obj: &CachedObject) -> Bytes {
        if self.render == Render::Table
            || !std::ptr::eq(conversion::storage_def(self.def), self.def)
        {
            return self.event(ty, obj.value.clone());
        }
        let json = obj.json();
        let mut line = Vec::with_capacity(json.len() + ty.len() + 24);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(ty.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(json);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    /// A BOOKMARK: only the kind, apiVersion and resourceVersion mean anything.
    fn bookmark(&self, revision: i64, initial_events_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            meta["annotations"] = json!({ INITIAL_EVENTS_END: "true" });
        }
        self.event(
            "BOOKMARK",
            json!({"kind": self.def.kind, "apiVersion": self.def.api_version(), "metadata": meta}),
        )
    }
}

/// Copies one watcher's events from the cache to its HTTP stream.
struct Pump {
    sel: Selectors,
    encoder: Encoder,
    tx: mpsc::Sender<Bytes>,
    bookmarks: bool,
    initial_events_end: bool,
    bookmark_interval: Duration,
}

impl Pump {
    /// Runs until the client leaves, the timeout passes or the cache terminates the watcher.
    async fn run(self, mut sub: Subscription, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for obj in std::mem::take(&mut sub.initial) {
            if self.sel.matches(&obj) && !self.send_cached("ADDED", &obj).await {
                return;
            }
        }
        let mut last_rv = sub.revision;
        if self.initial_events_end && self.bookmarks {
            let line = self.encoder.bookmark(sub.revision, true);
            if self.tx.send(line).await.is_err() {
                return;
            }
        }
        for ev in std::mem::take(&mut sub.replay) {
            last_rv = last_rv.max(ev.revision);
            if !self.forward(&ev).await {
                return;
            }
        }

        // Bookmarks: when one is due, ask the cache for etcd progress and send the revision it
        // reports (it arrives in order with the events, so nothing older can follow it).
        let mut due = self.next_bookmark(Instant::now(), deadline);
        let mut asked = false;
        let bookmark_timer = tokio::time::sleep_until(due.unwrap_or(deadline));
        tokio::pin!(bookmark_timer);
        let end = tokio::time::sleep_until(deadline);
        tokio::pin!(end);
        loop {
            tokio::select! {
                msg = sub.events.recv() => match msg {
                    // Terminated by the cache (too slow, or relisted): the stream ends and the
                    // client re-watches from its last resourceVersion.
                    None => return,
                    Some(Message::Event(ev)) => {
                        last_rv = last_rv.max(ev.revision);
                        if !self.forward(&ev).await {
                            return;
                        }
                    }
                    Some(Message::Progress(rev)) => {
                        last_rv = last_rv.max(rev);
                        if asked {
                            asked = false;
                            if !self.send_bytes(self.encoder.bookmark(last_rv, false)).await {
                                return;
                            }
                            due = self.next_bookmark(Instant::now(), deadline);
                            bookmark_timer.as_mut().reset(due.unwrap_or(deadline));
                        }
                    }
                },
                _ = &mut bookmark_timer, if due.is_some() => {
                    sub.request_progress();
                    asked = true;
                    let retry = (Instant::now() + PROGRESS_RETRY).min(deadline);
                    bookmark_timer.as_mut().reset(retry);
                }
                _ = &mut end => return,
                _ = self.tx.closed() => return,
            }
        }
    }

    /// When the next bookmark is due (kube's cacher: every interval, and 2 s before the
    /// deadline), or None when bookmarks were not asked for or the deadline is too close.
    fn next_bookmark(&self, now: Instant, deadline: Instant) -> Option<Instant> {
        if !self.bookmarks {
            return None;
        }
        let heartbeat = now + self.bookmark_interval;
        let before_timeout = deadline.checked_sub(BOOKMARK_BEFORE_TIMEOUT)?;
        let at = heartbeat.min(before_timeout);
        (at >= now).then_some(at)
    }

    async fn forward(&self, ev: &CacheEvent) -> bool {
        match translate(ev, &self.sel) {
            Some((ty, obj)) => self.send_cached(ty, obj).await,
            None => true,
        }
    }

    async fn send_cached(&self, ty: &str, obj: &CachedObject) -> bool {
        self.send_bytes(self.encoder.cached(ty, obj)).await
    }

    async fn send_bytes(&self, line: Bytes) -> bool {
        self.tx.send(line).await.is_ok()
    }
}

/// One cache event as a Kubernetes watch event for a watcher with `sel`, or None when neither
/// the old nor the new object is selected.
fn translate<'e>(ev: &'e CacheEvent, sel: &Selectors) -> Option<(&'static str, &'e CachedObject)> {
    let was = ev.prev.as_deref().is_some_and(|p| sel.matches(p));
    if ev.deleted {
        return was.then_some(("DELETED", &*ev.object));
    }
    let is = sel.matches(&ev.object);
    let ty = match (ev.prev.is_some(), was, is) {
        (false, _, true) => "ADDED",
        (true, true, true) => "MODIFIED",
        (true, false, true) => "ADDED",
        (true, true, false) => "DELETED",
        (_, _, false) => return None,
    };
    Some((ty, &*ev.object))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::apiserver::resources;
    use crate::apiserver::selector::{FieldSelector, LabelSelector};

    fn def() -> &'static ResourceDef {
        resources::lookup("", "v1", "configmaps").unwrap()
    }

    fn team(t: &str) -> Arc<CachedObject> {
        Arc::new(CachedObject::new(
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "labels": {"team": t}, "resourceVersion": "7"}}),
        ))
    }

    fn event(prev: Option<&str>, now: &str, deleted: bool) -> CacheEvent {
        CacheEvent {
            revision: 7,
            key: b"/registry/configmaps/default/a".to_vec(),
            object: team(now),
            prev: prev.map(team),
            deleted,
        }
    }

    #[test]
    fn selected_objects_enter_as_added_and_leave_as_deleted() {
        let sel = Selectors {
            labels: LabelSelector::parse("team=x").unwrap(),
            fields: FieldSelector::parse("", def()).unwrap(),
        };
        let ty = |e: &CacheEvent| translate(e, &sel).map(|(ty, _)| ty);
        assert_eq!(ty(&event(None, "x", false)), Some("ADDED"));
        assert_eq!(ty(&event(Some("x"), "x", false)), Some("MODIFIED"));
        assert_eq!(ty(&event(Some("y"), "x", false)), Some("ADDED"));
        assert_eq!(ty(&event(Some("x"), "y", false)), Some("DELETED"));
        assert_eq!(ty(&event(Some("y"), "y", false)), None);
        assert_eq!(ty(&event(Some("x"), "x", true)), Some("DELETED"));
        assert_eq!(ty(&event(Some("y"), "y", true)), None);
    }

    #[test]
    fn an_event_reusing_the_cached_json_is_the_event_encoded_afresh() {
        let encoder = Encoder {
            def: def(),
            render: Render::Object,
            table_query: Query::default(),
        };
        let obj = team("x");
        let reused: Value = serde_json::from_slice(&encoder.cached("MODIFIED", &obj)).unwrap();
        let fresh: Value =
            serde_json::from_slice(&encoder.event("MODIFIED", obj.value.clone())).unwrap();
        assert_eq!(reused, fresh);
        assert!(encoder.cached("ADDED", &obj).ends_with(b"}\n"));
    }

    #[test]
    fn a_bookmark_carries_only_kind_api_version_and_resource_version() {
        let encoder = Encoder {
            def: def(),
            render: Render::Object,
            table_query: Query::default(),
        };
        let line: Value = serde_json::from_slice(&encoder.bookmark(42, true)).unwrap();
        assert_eq!(
            line,
            json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
                "metadata": {"resourceVersion": "42",
                    "annotations": {"k8s.io/initial-events-end": "true"}}}})
        );
    }
}

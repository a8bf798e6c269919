//! The watch cache: one etcd watch per resource type feeding every HTTP watcher of that type, as
//! kube-apiserver's cacher does, so N watchers cost the store one watch.
//!
//! Each [`ResourceCache`] is started with the apiserver and lives as long as it. Its
//! reflector task lists the resource's key prefix, then watches it (with `prev_kv`) from the
//! list's revision, keeping:
//! - the current objects (for the initial ADDED events of a watch from rv unset/"0");
//! - a bounded window of the most recent events, by revision (for a watch from an exact rv);
//! - the registered watchers, each behind a bounded channel.
//!
//! Invariants:
//! - `floor <= revision`; every event with a revision above `floor` is in the window, in order.
//!   A watch from an rv below `floor` is answered as kube's watch cache answers it: 410 Expired,
//!   `too old resource version: <rv> (<floor>)`.
//! - An event is put in a watcher's channel only after every earlier event was, and a watcher
//!   registered at revision R receives exactly the events above R.
//! - A watcher whose channel stays full for longer than the dispatch budget is terminated (its
//!   channel is closed, so its HTTP stream ends and the client re-watches or relists); nothing
//!   queues without bound and one slow client never holds up the others for long.
//! - The etcd watch is re-established from `revision + 1` after the store goes away (restart,
//!   leader change). If that revision was compacted meanwhile, the cache is reset: every watcher
//!   is terminated and the reflector relists.
//! - No lock is held across an await point.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use cairn_proto::etcdserverpb::WatchResponse;
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::KeyValue;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::object;
use super::status::ApiError;
use super::storage::{prefix_end, StorageError, Store, Versioned, WatchStream};

/// Keys read per Range while (re)listing a resource.
const LIST_PAGE: i64 = 500;

/// Longest the reflector waits before reconnecting to a store that went away.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Longest a watch waits for the cache to catch up with a requested revision before answering
/// `Too large resource version` (kube-apiserver's watch cache blocks for 3 s).
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Longest a watch waits for its resource's cache to finish its first list.
const READY_WAIT: Duration = Duration::from_secs(60);

/// How long a progress notification waits before it is believed. etcd releases without the fix
/// for etcd issue 15220 (3.4.23 among them) answer a WatchProgressRequest on a control channel
/// that can overtake events already queued for the stream, so a notification's revision may
/// arrive just before events at or below it; those are already in flight and arrive within this
/// time (the cache's watch starts at its own revision, so it has little history to catch up).
const PROGRESS_SETTLE: Duration = Duration::from_millis(50);

/// How the caches are sized and timed (`--watch-cache-*` flags; tests shorten the intervals).
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Events kept per resource for watches from an exact resourceVersion.
    pub window: usize,
    /// Events queued per watcher before it counts as slow.
    pub watcher_queue: usize,
    /// How long dispatch may wait, in total per event, for slow watchers to make room before it
    /// terminates them.
    pub dispatch_budget: Duration,
    /// How often a watcher that allows bookmarks gets one (kube-apiserver: about a minute).
    pub bookmark_interval: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            window: 1024,
            watcher_queue: 256,
            dispatch_budget: Duration::from_millis(100),
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// An object as the cache holds it: decoded once, and encoded as JSON at most once however many
/// watchers it is sent to (kube-apiserver's `cachingObject` does the same).
#[derive(Debug)]
pub struct CachedObject {
    pub value: Value,
    json: OnceLock<Bytes>,
}

impl CachedObject {
    pub fn new(value: Value) -> CachedObject {
        CachedObject {
            value,
            json: OnceLock::new(),
        }
    }

    /// The object as JSON.
    pub fn json(&self) -> &Bytes {
        self.json
            .get_or_init(|| Bytes::from(serde_json::to_vec(&self.value).unwrap_or_default()))
    }
}

impl std::ops::Deref for CachedObject {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// One change to an object of the cached resource, decoded once for every watcher.
#[derive(Debug)]
pub struct CacheEvent {
    pub revision: i64,
    pub key: Vec<u8>,
    /// The object after the change; for a deletion, the last state stamped with the deletion's
    /// revision.
    pub object: Arc<CachedObject>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<CachedObject>>,
    pub deleted: bool,
}

/// What a watcher's channel carries.
#[derive(Debug, Clone)]
pub enum Message {
    Event(Arc<CacheEvent>),
    /// Every event up to this revision has been delivered to the channel.
    Progress(i64),
}

/// Where a new watcher starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The cache's current objects (as initial ADDED events), then changes after them.
    Snapshot,
    /// Changes after this revision.
    After(i64),
}

/// A registered watcher: what to send first, then the live channel.
pub struct Subscription {
    /// Objects of the snapshot (for [`Start::Snapshot`]), by key.
    pub initial: Vec<Arc<CachedObject>>,
    /// Events after the requested revision already in the window (for [`Start::After`]).
    pub replay: Vec<Arc<CacheEvent>>,
    /// The revision the snapshot or replay brings the watcher to.
    pub revision: i64,
    pub events: mpsc::Receiver<Message>,
    id: u64,
    cache: Arc<ResourceCache>,
}

impl Subscription {
    /// Asks for a progress notification, which arrives as [`Message::Progress`].
    pub fn request_progress(&self) {
        let _ = self.cache.progress.try_send(());
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cache.lock().watchers.remove(&self.id);
        self.cache.watchers_gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The apiserver's caches, one per resource key prefix.
pub struct WatchCache {
    store: Store,
    config: CacheConfig,
    caches: Mutex<HashMap<Vec<u8>, Arc<ResourceCache>>>,
    stop: watch::Sender<bool>,
    /// etcd watches open right now (one per started cache, while connected).
    etcd_watches: Arc<AtomicI64>,
    /// HTTP watchers registered right now, over all caches.
    watchers: Arc<AtomicI64>,
}

impl WatchCache {
    pub fn new(store: Store, config: CacheConfig) -> WatchCache {
        WatchCache {
            store,
            config,
            caches: Mutex::new(HashMap::new()),
            stop: watch::channel(false).0,
            etcd_watches: Arc::new(AtomicI64::new(0)),
            watchers: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// The cache of the resource stored under `prefix`, started if it is not yet.
    pub fn resource(&self, prefix: &[u8]) -> Arc<ResourceCache> {
        let mut caches = self.caches.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = caches.get(prefix) {
            return c.clone();
        }
        let (progress, progress_rx) = mpsc::channel(1);
        let cache = Arc::new(ResourceCache {
            prefix: prefix.to_vec(),
            config: self.config.clone(),
            state: Mutex::new(CacheState::default()),
            revision: watch::channel(0).0,
            progress,
            next_id: AtomicU64::new(1),
            watchers_gauge: self.watchers.clone(),
        });
        caches.insert(prefix.to_vec(), cache.clone());
        tokio::spawn(reflect(
            cache.clone(),
            self.store.clone(),
            progress_rx,
            self.stop.subscribe(),
            self.etcd_watches.clone(),
        ));
        cache
    }

    /// Caches started (one per resource type).
    pub fn caches(&self) -> i64 {
        self.caches.lock().unwrap_or_else(|e| e.into_inner()).len() as i64
    }

    /// etcd watches currently open by the caches.
    pub fn etcd_watches(&self) -> i64 {
        self.etcd_watches.load(Ordering::Relaxed)
    }

    /// HTTP watchers currently served by the caches.
    pub fn watchers(&self) -> i64 {
        self.watchers.load(Ordering::Relaxed)
    }

    /// Stops every reflector (their etcd watches close; their watchers' streams end).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// The cache of one resource type.
pub struct ResourceCache {
    prefix: Vec<u8>,
    config: CacheConfig,
    state: Mutex<CacheState>,
    /// The cache's revision, published after the events up to it were dispatched; 0 until the
    /// first list.
    revision: watch::Sender<i64>,
    /// Asks the reflector for an etcd progress notification (capacity 1: requests coalesce).
    progress: mpsc::Sender<()>,
    next_id: AtomicU64,
    watchers_gauge: Arc<AtomicI64>,
}

#[derive(Default)]
struct CacheState {
    objects: BTreeMap<Vec<u8>, Arc<CachedObject>>,
    window: VecDeque<Arc<CacheEvent>>,
    floor: i64,
    revision: i64,
    watchers: HashMap<u64, Watcher>,
}

struct Watcher {
    /// Only keys under this prefix (a namespace, or the whole resource) are sent.
    prefix: Vec<u8>,
    tx: mpsc::Sender<Message>,
}

impl ResourceCache {
    fn lock(&self) -> MutexGuard<'_, CacheState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until the cache has seen every change up to `revision` (0: the first list), asking
    /// etcd for progress meanwhile; a cache still behind after [`FRESHNESS_WAIT`] is kube's
    /// `Too large resource version` (504, retry after 1 s).
    pub async fn wait_fresh(&self, revision: i64) -> Result<(), ApiError> {
        let mut rx = self.revision.subscribe();
        // The first list may take a while on a large resource; only then does freshness count.
        let ready = matches!(
            tokio::time::timeout(READY_WAIT, rx.wait_for(|r| *r > 0)).await,
            Ok(Ok(_))
        );
        if !ready {
            return Err(ApiError::Unavailable(
                "the watch cache is not initialized yet; retry".into(),
            ));
        }
        let deadline = Instant::now() + FRESHNESS_WAIT;
        loop {
            let current = *rx.borrow_and_update();
            if current > 0 && current >= revision {
                return Ok(());
            }
            if current > 0 {
                let _ = self.progress.try_send(());
            }
            let wait = tokio::time::timeout_at(deadline, rx.changed()).await;
            match wait {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(ApiError::Internal("the watch cache stopped".into())),
                Err(_) => {
                    return Err(ApiError::TooLargeResourceVersion {
                        requested: revision,
                        current: *rx.borrow(),
                    })
                }
            }
        }
    }

    /// Registers a watcher of the keys under `prefix` starting at `start`.
    pub fn subscribe(
        self: &Arc<Self>,
        prefix: &[u8],
        start: Start,
    ) -> Result<Subscription, ApiError> {
        let (tx, events) = mpsc::channel(self.config.watcher_queue);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut state = self.lock();
        let (initial, replay, revision) = match start {
            Start::Snapshot => {
                let initial = state
                    .objects
                    .range(prefix.to_vec()..prefix_end(prefix))
                    .map(|(_, o)| o.clone())
                    .collect();
                (initial, Vec::new(), state.revision)
            }
            Start::After(rv) => {
                if rv < state.floor {
                    return Err(ApiError::Gone(format!(
                        "too old resource version: {rv} ({})",
                        state.floor
                    )));
                }
                let replay = state
                    .window
                    .iter()
                    .filter(|e| e.revision > rv && e.key.starts_with(prefix))
                    .cloned()
                    .collect();
                (Vec::new(), replay, state.revision.max(rv))
            }
        };
        state.watchers.insert(
            id,
            Watcher {
                prefix: prefix.to_vec(),
                tx,
            },
        );
        drop(state);
        self.watchers_gauge.fetch_add(1, Ordering::Relaxed);
        Ok(Subscription {
            initial,
            replay,
            revision,
            events,
            id,
            cache: self.clone(),
        })
    }

    /// Replaces the cache's contents with a fresh list at `revision`, terminating every watcher
    /// (they cannot be told what changed in between).
    fn reset(&self, objects: BTreeMap<Vec<u8>, Arc<CachedObject>>, revision: i64) {
        let mut state = self.lock();
        let terminated = state.watchers.len();
        state.watchers.clear();
        state.objects = objects;
        state.window.clear();
        state.floor = revision;
        state.revision = revision;
        drop(state);
        if terminated > 0 {
            tracing::info!(
                prefix = %String::from_utf8_lossy(&self.prefix),
                terminated,
                "watch cache relisted; watchers terminated so they relist"
            );
        }
        self.revision.send_replace(revision);
    }

    /// Applies one etcd watch response's events: updates the objects and the window, then hands
    /// each event to the watchers of its key, waiting (within the dispatch budget) for full
    /// channels and terminating the watchers that stay full.
    async fn apply(&self, events: Vec<cairn_proto::mvccpb::Event>) {
        let mut last = None;
        for ev in events {
            // Recorded and offered under one lock: a watcher registering meanwhile gets the
            // event either in its snapshot or replay, or through its channel, never both.
            let recorded = {
                let mut state = self.lock();
                self.record(&mut state, ev).map(|event| {
                    let blocked = offer(&mut state, &Message::Event(event.clone()), &event.key);
                    (event, blocked)
                })
            };
            let Some((event, blocked)) = recorded else {
                continue;
            };
            last = Some(event.revision);
            if !blocked.is_empty() {
                self.wait_for_room(blocked, Message::Event(event)).await;
            }
        }
        if let Some(rev) = last {
            self.revision.send_if_modified(|r| {
                let moved = rev > *r;
                *r = (*r).max(rev);
                moved
            });
        }
    }

    /// Turns an etcd event into a cache event and records it (objects, window, revision).
    fn record(
        &self,
        state: &mut CacheState,
        ev: cairn_proto::mvccpb::Event,
    ) -> Option<Arc<CacheEvent>> {
        let kv = ev.kv?;
        let deleted = ev.r#type == EventType::Delete as i32;
        let prev = match state.objects.get(&kv.key) {
            Some(p) => Some(p.clone()),
            None => ev
                .prev_kv
                .as_ref()
                .and_then(decode)
                .map(|v| Arc::new(CachedObject::new(v))),
        };
        let event = if deleted {
            state.objects.remove(&kv.key);
            let mut obj = prev.as_deref()?.value.clone();
            object::set_resource_version(&mut obj, kv.mod_revision);
            CacheEvent {
                revision: kv.mod_revision,
                object: Arc::new(CachedObject::new(obj)),
                prev,
                deleted: true,
                key: kv.key,
            }
        } else {
            let obj = Arc::new(CachedObject::new(decode(&kv)?));
            state.objects.insert(kv.key.clone(), obj.clone());
            CacheEvent {
                revision: kv.mod_revision,
                object: obj,
                prev,
                deleted: false,
                key: kv.key,
            }
        };
        let event = Arc::new(event);
        state.revision = state.revision.max(event.revision);
        state.window.push_back(event.clone());
        while state.window.len() > self.config.window {
            if let Some(old) = state.window.pop_front() {
                state.floor = old.revision;
            }
        }
        Some(event)
    }

    /// Waits up to the dispatch budget, in total, for the blocked watchers to take `msg`;
    /// terminates those that do not (kube: "Forcing watcher close due to unresponsiveness").
    async fn wait_for_room(&self, blocked: Vec<(u64, mpsc::Sender<Message>)>, msg: Message) {
        let deadline = Instant::now() + self.config.dispatch_budget;
        let mut slow = Vec::new();
        for (id, tx) in blocked {
            let left = deadline.saturating_duration_since(Instant::now());
            if tx.send_timeout(msg.clone(), left).await.is_err() {
                slow.push(id);
            }
        }
        if slow.is_empty() {
            return;
        }
        {
            let mut state = self.lock();
            for id in &slow {
                state.watchers.remove(id);
            }
        }
        tracing::warn!(
            prefix = %String::from_utf8_lossy(&self.prefix),
            watchers = slow.len(),
            "forcing watcher close due to unresponsiveness"
        );
    }

    /// A progress notification from etcd: nothing below `revision` is still to come.
    fn progress(&self, revision: i64) {
        let mut state = self.lock();
        if revision < state.revision {
            return;
        }
        state.revision = revision;
        // Progress is advisory: a watcher with a full channel simply misses this one.
        let _ = offer(&mut state, &Message::Progress(revision), b"");
        drop(state);
        self.revision.send_if_modified(|r| {
            let moved = revision > *r;
            *r = (*r).max(revision);
            moved
        });
    }

    /// Whether no key of this resource was created or changed between the cache's revision and
    /// `revision` without the cache having its event: a progress notification's revision is
    /// believed only then. etcd 3.4 can send a notification ahead of events at or below its
    /// revision (see [`PROGRESS_SETTLE`]); under load they may trail it by more than the
    /// settling time, and a watch served from the cache at that revision would miss them.
    /// (A deletion overtaken that way is not seen by this check; the settling time covers it.)
    async fn seen_every_change_up_to(&self, store: &Store, revision: i64) -> bool {
        let since = self.revision_now();
        if revision <= since {
            return true;
        }
        match store
            .last_modified(&self.prefix, &prefix_end(&self.prefix), revision)
            .await
        {
            Ok(last) if last <= since => true,
            Ok(last) => {
                tracing::debug!(
                    prefix = %String::from_utf8_lossy(&self.prefix),
                    revision,
                    last,
                    "a progress notification came ahead of events; waiting for them"
                );
                false
            }
            Err(_) => false,
        }
    }

    /// The revision every event up to which has been dispatched.
    pub fn revision_now(&self) -> i64 {
        self.lock().revision
    }
}

/// Offers `msg` to every watcher of `key` (every watcher when `key` is empty) without waiting;
/// returns the watchers whose channels were full. Closed channels are forgotten.
fn offer(state: &mut CacheState, msg: &Message, key: &[u8]) -> Vec<(u64, mpsc::Sender<Message>)> {
    let mut blocked = Vec::new();
    let mut gone = Vec::new();
    for (id, w) in &state.watchers {
        if !key.is_empty() && !key.starts_with(&w.prefix) {
            continue;
        }
        match w.tx.try_send(msg.clone()) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => blocked.push((*id, w.tx.clone())),
            Err(mpsc::error::TrySendError::Closed(_)) => gone.push(*id),
        }
    }
    for id in gone {
        state.watchers.remove(&id);
    }
    blocked
}

fn decode(kv: &KeyValue) -> Option<Value> {
    match object::decode(&Versioned {
        key: kv.key.clone(),
        value: kv.value.clone(),
        mod_revision: kv.mod_revision,
    }) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "undecodable object skipped by the watch cache");
            None
        }
    }
}

/// Counts an open etcd watch for as long as it lives.
struct OpenWatch {
    stream: WatchStream,
    gauge: Arc<AtomicI64>,
}

impl OpenWatch {
    fn new(stream: WatchStream, gauge: Arc<AtomicI64>) -> OpenWatch {
        gauge.fetch_add(1, Ordering::Relaxed);
        OpenWatch { stream, gauge }
    }
}

impl Drop for OpenWatch {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Why a watch session ended.
enum Ended {
    /// The store went away or the stream broke: reconnect from the last revision.
    Reconnect,
    /// The last revision was compacted: relist.
    Relist,
    Stopped,
}

/// The reflector: list, watch, and keep the cache current until the apiserver stops.
async fn reflect(
    cache: Arc<ResourceCache>,
    store: Store,
    mut progress: mpsc::Receiver<()>,
    mut stop: watch::Receiver<bool>,
    gauge: Arc<AtomicI64>,
) {
    let mut backoff = Duration::from_millis(100);
    'relist: loop {
        let listed = tokio::select! {
            l = list(&store, &cache.prefix) => l,
            _ = stop.changed() => return,
        };
        let (objects, revision) = match listed {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&cache.prefix), error = %e, "watch cache list failed; retrying");
                if sleep_or_stop(&mut stop, &mut backoff).await {
                    return;
                }
                continue;
            }
        };
        cache.reset(objects, revision);
        loop {
            let from = cache.revision_now() + 1;
            let opened = tokio::select! {
                w = store.watch(&cache.prefix, from) => w,
                _ = stop.changed() => return,
            };
            let stream = match opened {
                Ok(s) => OpenWatch::new(s, gauge.clone()),
                Err(e) => {
                    tracing::warn!(prefix = %String::from_utf8_lossy(&cache.prefix), error = %e, "watch cache cannot watch; retrying");
                    if sleep_or_stop(&mut stop, &mut backoff).await {
                        return;
                    }
                    continue;
                }
            };
            match follow(
                &cache,
                &store,
                stream,
                &mut progress,
                &mut stop,
                &mut backoff,
            )
            .await
            {
                Ended::Reconnect => {
                    if sleep_or_stop(&mut stop, &mut backoff).await {
                        return;
                    }
                }
                Ended::Relist => continue 'relist,
                Ended::Stopped => return,
            }
        }
    }
}

/// Follows one etcd watch until it ends.
async fn follow(
    cache: &ResourceCache,
    store: &Store,
    mut watch: OpenWatch,
    progress: &mut mpsc::Receiver<()>,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Duration,
) -> Ended {
    // A progress notification is applied only after it has settled (see PROGRESS_SETTLE).
    let mut settling: Option<i64> = None;
    let settle = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(settle);
    loop {
        let resp = tokio::select! {
            r = watch.stream.next() => r,
            Some(()) = progress.recv() => {
                watch.stream.request_progress();
                continue;
            }
            _ = &mut settle, if settling.is_some() => {
                if let Some(rev) = settling.take() {
                    if cache.seen_every_change_up_to(store, rev).await {
                        cache.progress(rev);
                    }
                }
                continue;
            }
            _ = stop.changed() => return Ended::Stopped,
        };
        let resp: WatchResponse = match resp {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&cache.prefix), "etcd closed the watch; reconnecting");
                return Ended::Reconnect;
            }
            Err(e) => {
                tracing::warn!(prefix = %String::from_utf8_lossy(&cache.prefix), error = %e, "etcd watch failed; reconnecting");
                return Ended::Reconnect;
            }
        };
        *backoff = Duration::from_millis(100);
        if resp.compact_revision > 0 {
            tracing::warn!(
                prefix = %String::from_utf8_lossy(&cache.prefix),
                compacted = resp.compact_revision,
                "the watch cache's revision was compacted; relisting"
            );
            return Ended::Relist;
        }
        if resp.canceled {
            tracing::warn!(prefix = %String::from_utf8_lossy(&cache.prefix), reason = %resp.cancel_reason, "etcd cancelled the watch; reconnecting");
            return Ended::Reconnect;
        }
        if resp.created {
            continue;
        }
        if resp.events.is_empty() {
            if let Some(h) = resp.header {
                if settling.is_none() {
                    settle.as_mut().reset(Instant::now() + PROGRESS_SETTLE);
                }
                settling = Some(settling.unwrap_or(0).max(h.revision));
            }
            continue;
        }
        cache.apply(resp.events).await;
    }
}

/// Sleeps for the back-off (doubling it up to [`MAX_BACKOFF`]); true if stopped meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, backoff: &mut Duration) -> bool {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(MAX_BACKOFF);
    tokio::select! {
        _ = tokio::time::sleep(wait) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}

/// Every object under `prefix` at one revision, read in pages.
async fn list(
    store: &Store,
    prefix: &[u8],
) -> Result<(BTreeMap<Vec<u8>, Arc<CachedObject>>, i64), StorageError> {
    let end = prefix_end(prefix);
    let mut start = prefix.to_vec();
    let mut revision = 0;
    let mut objects = BTreeMap::new();
    loop {
        let page = store.range(&start, &end, LIST_PAGE, revision).await?;
        if revision == 0 {
            revision = page.revision;
        }
        for kv in &page.kvs {
            match object::decode(kv) {
                Ok(obj) => {
                    objects.insert(kv.key.clone(), Arc::new(CachedObject::new(obj)));
                }
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e, "undecodable object skipped by the watch cache");
                }
            }
        }
        match page.kvs.last() {
            Some(last) if page.more => {
                start = last.key.clone();
                start.push(0);
            }
            _ => return Ok((objects, revision)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache(window: usize, queue: usize) -> Arc<ResourceCache> {
        Arc::new(ResourceCache {
            prefix: b"/registry/configmaps/".to_vec(),
            config: CacheConfig {
                window,
                watcher_queue: queue,
                dispatch_budget: Duration::from_millis(20),
                bookmark_interval: Duration::from_secs(60),
            },
            state: Mutex::new(CacheState::default()),
            revision: watch::channel(0).0,
            progress: mpsc::channel(1).0,
            next_id: AtomicU64::new(1),
            watchers_gauge: Arc::new(AtomicI64::new(0)),
        })
    }

    fn put(ns: &str, name: &str, rev: i64, create: i64) -> cairn_proto::mvccpb::Event {
        let obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns}});
        cairn_proto::mvccpb::Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue {
                key: format!("/registry/configmaps/{ns}/{name}").into_bytes(),
                value: serde_json::to_vec(&obj).unwrap(),
                mod_revision: rev,
                create_revision: create,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn delete(ns: &str, name: &str, rev: i64) -> cairn_proto::mvccpb::Event {
        cairn_proto::mvccpb::Event {
            r#type: EventType::Delete as i32,
            kv: Some(KeyValue {
                key: format!("/registry/configmaps/{ns}/{name}").into_bytes(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn rv(v: &Value) -> &str {
        v["metadata"]["resourceVersion"].as_str().unwrap()
    }

    #[tokio::test]
    async fn a_watch_from_inside_the_window_replays_and_one_below_it_is_too_old() {
        let c = cache(2, 8);
        c.reset(BTreeMap::new(), 10);
        c.apply(vec![put("a", "x", 11, 11)]).await;
        c.apply(vec![put("a", "x", 12, 11)]).await;
        c.apply(vec![delete("a", "x", 13)]).await;
        // The window holds two events (12, 13): it is complete above 11.
        let sub = c
            .subscribe(b"/registry/configmaps/", Start::After(11))
            .unwrap();
        let replay: Vec<(i64, bool)> = sub.replay.iter().map(|e| (e.revision, e.deleted)).collect();
        assert_eq!(replay, [(12, false), (13, true)]);
        assert_eq!(
            rv(&sub.replay[1].object),
            "13",
            "a deletion carries its own revision"
        );
        let err = c
            .subscribe(b"/registry/configmaps/", Start::After(10))
            .err()
            .expect("below the window");
        assert_eq!(err.code(), 410);
        assert_eq!(err.to_string(), "too old resource version: 10 (11)");
    }

    #[tokio::test]
    async fn a_snapshot_holds_the_namespace_objects_and_live_events_follow_it() {
        let c = cache(16, 8);
        c.reset(BTreeMap::new(), 1);
        c.apply(vec![put("a", "x", 2, 2), put("b", "y", 2, 2)])
            .await;
        let mut sub = c
            .subscribe(b"/registry/configmaps/a/", Start::Snapshot)
            .unwrap();
        assert_eq!(sub.initial.len(), 1);
        assert_eq!(sub.revision, 2);
        c.apply(vec![put("b", "z", 3, 3)]).await;
        c.apply(vec![put("a", "w", 4, 4)]).await;
        match sub.events.try_recv() {
            Ok(Message::Event(e)) => assert_eq!(e.revision, 4, "other namespaces are not sent"),
            other => panic!("expected the event at 4, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_watcher_that_does_not_keep_up_is_terminated_without_holding_up_the_others() {
        let c = cache(64, 2);
        c.reset(BTreeMap::new(), 1);
        let mut slow = c
            .subscribe(b"/registry/configmaps/", Start::Snapshot)
            .unwrap();
        let mut fast = c
            .subscribe(b"/registry/configmaps/", Start::Snapshot)
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut seen = 0;
            while let Some(Message::Event(_)) = fast.events.recv().await {
                seen += 1;
                if seen == 10 {
                    break;
                }
            }
            seen
        });
        for rev in 2..12 {
            c.apply(vec![put("a", &format!("o{rev}"), rev, rev)]).await;
        }
        assert_eq!(
            reader.await.unwrap(),
            10,
            "the reading watcher got every event"
        );
        let mut got = 0;
        while let Some(Message::Event(_)) = slow.events.recv().await {
            got += 1;
        }
        assert_eq!(
            got, 2,
            "the slow watcher got what fitted, then its channel closed"
        );
    }

    #[tokio::test]
    async fn a_relist_terminates_every_watcher() {
        let c = cache(16, 8);
        c.reset(BTreeMap::new(), 1);
        let mut sub = c
            .subscribe(b"/registry/configmaps/", Start::Snapshot)
            .unwrap();
        c.reset(BTreeMap::new(), 50);
        assert!(sub.events.recv().await.is_none());
        let err = c
            .subscribe(b"/registry/configmaps/", Start::After(1))
            .err()
            .expect("history before the relist is gone");
        assert_eq!(err.code(), 410);
    }
}

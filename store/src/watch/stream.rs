//! One client watch stream: a single task serves every watcher the client creates on it.
//!
//! The task keeps a `cursor`: every event up to `cursor` has been routed to every watcher of
//! the **synced** group. It moves forward in chunks of whole revisions read from the hub's
//! ring, or from redb when the ring no longer holds them (the stream was slow), so one read
//! serves all synced watchers. Watchers that start in the past form the **unsynced** group
//! and catch up (again one read for the group) until they reach the cursor, then join the
//! synced group — etcd's synced / unsynced split.
//!
//! Guarantees, per watcher: events in revision order, each exactly once, none missing since
//! its start revision; the events of one revision in one response (unless the watcher asked
//! for `fragment`); a watcher whose history is compacted away is canceled with
//! `compact_revision` after its created response, as etcd does.
//!
//! Invariants:
//! - `cursor <= hub.head()`;
//! - an unsynced watcher has `next_rev <= cursor`; a synced one has effectively
//!   `next_rev > cursor` (see [`Watcher::next_rev`]);
//! - responses leave through one bounded queue in the order they are produced; while the
//!   client does not read, the task waits on that queue and holds at most one chunk, so a
//!   slow client costs a bounded amount of memory and never delays the apply loop, other
//!   streams or writes — it just falls behind the ring and later catches up from redb.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use cairn_mvcc::{KeyRange, MvccError};
use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{interval_at, Instant, MissedTickBehavior};
use tonic::Status;

use super::event::WatchEvent;
use super::hub::{event_revision, Chunk, ReadLimit, WatchHub};
use super::response::{self, EncodedHeader, Outgoing, Refusal, STREAM_WIDE};
use super::watcher::{CreateWatch, Watcher};
use super::watcher_group::{Routes, WatcherGroup, WatcherMap};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::server::errors::EtcdError;

/// Most events (and encoded bytes) one read hands to the stream: bounds the memory a stream
/// holds while it waits for a slow client, and the size of one response.
const READ_LIMIT: ReadLimit = ReadLimit {
    max_events: 512,
    max_bytes: 4 * 1024 * 1024,
};

/// A request of the client, validated at the edge (`cairn_wire::watch_request`).
pub use cairn_wire::watch_request::Request;

/// Per-stream settings, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Period of progress notifications to idle watchers that asked for them.
    pub progress_interval: Duration,
    /// Responses of watchers that allow fragmentation are split at this size.
    pub fragment_bytes: usize,
}

/// Responses handed to the transport at once, in order; an error ends the stream.
pub type Batch = Vec<Result<Outgoing, Status>>;

/// Where responses go: a bounded queue of batches drained by the gRPC transport.
pub type Responses = mpsc::Sender<Batch>;

/// A batch goes to the transport once it holds this many responses or this many encoded
/// bytes, and whenever the task is about to wait. Batches keep a put seen by a hundred
/// watchers of a stream from waking the transport a hundred times, while the queue's bound
/// still bounds memory: a batch refers to the events of at most one chunk (plus control
/// responses), and the events themselves are shared, not copied, between its responses.
const BATCH_RESPONSES: usize = 64;
const BATCH_BYTES: usize = 1024 * 1024;

/// How long the status that ends a stream waits for room in the queue.
pub const LAST_WORDS: Duration = Duration::from_secs(1);

/// Why the task stops.
enum Stop {
    /// The client went away; nothing more to send.
    Gone,
    /// End the stream with this status.
    Fail(Status),
}

enum ReadError {
    Compacted(i64),
    Failed(String),
}

/// Serves one watch stream until the client goes away, its request stream fails, or the
/// member stops (`stop` turns true).
pub async fn serve<S>(
    node: Arc<Node>,
    options: StreamOptions,
    requests: S,
    out: Responses,
    stop: watch::Receiver<bool>,
) where
    S: Stream<Item = Result<Request, Status>> + Unpin + Send,
{
    let hub = node.watch_hub.clone();
    let cursor = hub.head();
    let mut stream = WatchStream {
        gauges: Gauges::new(node.metrics.clone()),
        node,
        hub,
        options,
        out: out.clone(),
        stop,
        batch: Vec::new(),
        batch_bytes: 0,
        watchers: WatcherMap::default(),
        compacted: HashSet::new(),
        next_id: 0,
        cursor,
        synced: WatcherGroup::default(),
        unsynced: WatcherGroup::default(),
        progress_wanted: None,
    };
    if let Err(Stop::Fail(status)) = stream.run(requests).await {
        // After what was already produced. A client that does not read within a second
        // will not see it, and must not hold the task longer.
        let mut batch = std::mem::take(&mut stream.batch);
        batch.push(Err(status));
        let _ = tokio::time::timeout(LAST_WORDS, out.send(batch)).await;
    }
}

struct WatchStream {
    node: Arc<Node>,
    hub: Arc<WatchHub>,
    options: StreamOptions,
    out: Responses,
    stop: watch::Receiver<bool>,
    /// Responses produced but not yet handed to `out`, and their encoded size.
    batch: Batch,
    batch_bytes: usize,
    watchers: WatcherMap,
    /// Ids of watchers canceled by compaction. As in etcd they stay registered (a create
    /// cannot reuse the id) until the client cancels them.
    compacted: HashSet<i64>,
    /// Next id to try for a create without an id.
    next_id: i64,
    cursor: i64,
    synced: WatcherGroup,
    unsynced: WatcherGroup,
    /// A progress request is pending; answer once every watcher has been served up to this
    /// head revision (taken when the request arrived).
    progress_wanted: Option<i64>,
    gauges: Gauges,
}

/// This stream's share of the member's watch gauges (etcd's `watch_stream_total`,
/// `watcher_total`, `slow_watcher_total`), given back when the stream ends.
struct Gauges {
    metrics: Arc<Metrics>,
    watchers: i64,
    slow: i64,
}

impl Gauges {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.watch_streams.fetch_add(1, Ordering::Relaxed);
        Gauges {
            metrics,
            watchers: 0,
            slow: 0,
        }
    }

    /// The stream now has `watchers` watchers, `slow` of them catching up on history.
    fn set(&mut self, watchers: usize, slow: usize) {
        let (watchers, slow) = (watchers as i64, slow as i64);
        if watchers != self.watchers {
            self.metrics
                .watchers
                .fetch_add(watchers - self.watchers, Ordering::Relaxed);
            self.watchers = watchers;
        }
        if slow != self.slow {
            self.metrics
                .slow_watchers
                .fetch_add(slow - self.slow, Ordering::Relaxed);
            self.slow = slow;
        }
    }
}

impl Drop for Gauges {
    fn drop(&mut self) {
        self.set(0, 0);
        self.metrics.watch_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

impl WatchStream {
    async fn run<S>(&mut self, mut requests: S) -> Result<(), Stop>
    where
        S: Stream<Item = Result<Request, Status>> + Unpin + Send,
    {
        let mut head = self.hub.subscribe();
        let period = self.options.progress_interval;
        let mut ticker = interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let out = self.out.clone();
        let mut stop = self.stop.clone();
        // The client may close its sending side and keep reading; etcd keeps serving then.
        let mut inbound_open = true;
        loop {
            // Requests already received go first, so a cancel takes effect before more events.
            while inbound_open {
                match requests.next().now_or_never() {
                    Some(Some(Ok(req))) => self.handle(req).await?,
                    Some(Some(Err(_))) => return Err(Stop::Gone),
                    Some(None) => inbound_open = false,
                    None => break,
                }
            }
            head.borrow_and_update();
            self.gauges.set(self.watchers.len(), self.unsynced.len());
            if self.step().await? {
                // Busy catching up: still notice a stopping member and due progress ticks.
                if *stop.borrow() {
                    return Err(Stop::Fail(EtcdError::Stopped.into()));
                }
                if ticker.tick().now_or_never().is_some() {
                    self.progress_tick().await?;
                }
                // Let other streams run between chunks even when the queue never fills.
                self.flush().await?;
                tokio::task::yield_now().await;
                continue;
            }
            self.gauges.set(self.watchers.len(), self.unsynced.len());
            self.flush().await?;
            tokio::select! {
                req = requests.next(), if inbound_open => match req {
                    Some(Ok(req)) => self.handle(req).await?,
                    Some(Err(_)) => return Err(Stop::Gone),
                    None => inbound_open = false,
                },
                changed = head.changed() => if changed.is_err() {
                    return Err(Stop::Fail(EtcdError::Stopped.into()));
                },
                _ = ticker.tick() => self.progress_tick().await?,
                _ = out.closed() => return Err(Stop::Gone),
                _ = stopping(&mut stop) => return Err(Stop::Fail(EtcdError::Stopped.into())),
            }
        }
    }

    /// Queues a response behind those already produced.
    async fn send(&mut self, resp: impl Into<Outgoing>) -> Result<(), Stop> {
        let resp = resp.into();
        self.batch_bytes += resp.encoded_len();
        self.batch.push(Ok(resp));
        if self.batch.len() >= BATCH_RESPONSES || self.batch_bytes >= BATCH_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Hands the queued responses to the transport.
    async fn flush(&mut self) -> Result<(), Stop> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        // A client that does not read blocks this send, but not the member's shutdown.
        tokio::select! {
            sent = self.out.send(batch) => sent.map_err(|_| Stop::Gone),
            _ = stopping(&mut self.stop) => Err(Stop::Fail(EtcdError::Stopped.into())),
        }
    }

    /// Takes `w` out of whichever group holds it.
    fn forget(&mut self, w: &Watcher) {
        if !self.synced.remove(w) {
            self.unsynced.remove(w);
        }
    }

    fn reserved(&self, id: i64) -> bool {
        self.watchers.contains_key(&id) || self.compacted.contains(&id)
    }

    async fn handle(&mut self, req: Request) -> Result<(), Stop> {
        match req {
            Request::Create(c) => self.create(c).await,
            Request::Refuse(why) => {
                let header = self.node.header(self.hub.head());
                self.send(response::refused(header, why)).await
            }
            Request::Cancel(id) => {
                let known = match self.watchers.remove(&id) {
                    Some(w) => {
                        self.forget(&w);
                        true
                    }
                    None => self.compacted.remove(&id),
                };
                // etcd answers nothing for an unknown id.
                if known {
                    let header = self.node.header(self.hub.head());
                    self.send(response::canceled(header, id)).await?;
                }
                Ok(())
            }
            Request::Progress => {
                let head = self.hub.head();
                self.progress_wanted = Some(self.progress_wanted.map_or(head, |h| h.max(head)));
                self.answer_progress_request().await
            }
        }
    }

    async fn create(&mut self, c: CreateWatch) -> Result<(), Stop> {
        let head = self.hub.head();
        let id = match c.watch_id {
            0 => {
                while self.reserved(self.next_id) {
                    self.next_id += 1;
                }
                self.next_id += 1;
                self.next_id - 1
            }
            id if self.reserved(id) => {
                let header = self.node.header(head);
                return self
                    .send(response::refused(header, Refusal::DuplicateId))
                    .await;
            }
            id => id,
        };
        self.send(response::created(self.node.header(head), id))
            .await?;
        let next_rev = if c.start_revision == 0 {
            head + 1
        } else {
            c.start_revision
        };
        let w = Watcher::new(id, c, next_rev);
        if next_rev > self.cursor {
            self.synced.insert(&w);
        } else {
            self.unsynced.insert(&w);
        }
        self.watchers.insert(id, w);
        Ok(())
    }

    /// Does one bounded unit of work; false when there was nothing to do.
    async fn step(&mut self) -> Result<bool, Stop> {
        let head = self.hub.head();
        let mut worked = false;
        if self.cursor < head {
            if self.synced.is_empty() {
                self.cursor = head;
            } else {
                self.advance_synced(head).await?;
                worked = true;
            }
        }
        if !self.unsynced.is_empty() {
            self.catch_up_unsynced().await?;
            worked = true;
        }
        self.answer_progress_request().await?;
        Ok(worked)
    }

    /// Routes the next chunk after the cursor to the synced group.
    async fn advance_synced(&mut self, head: i64) -> Result<(), Stop> {
        let from = self.cursor + 1;
        let chunk = match self.read(from, head, &self.synced).await {
            Ok(chunk) => chunk,
            Err(ReadError::Compacted(compact)) => {
                // The stream fell behind the ring and then behind a compaction: the watchers
                // that lost events are canceled, as etcd cancels slow watchers then.
                let cursor = self.cursor;
                for id in self.synced.ids() {
                    let lost = self
                        .watchers
                        .get(&id)
                        .is_some_and(|w| w.next_rev.max(cursor + 1) < compact);
                    if lost {
                        self.cancel_compacted(id, compact).await?;
                    }
                }
                self.cursor = self.cursor.max(compact - 1);
                return Ok(());
            }
            Err(ReadError::Failed(e)) => return Err(Stop::Fail(EtcdError::Internal(e).into())),
        };
        let routes = self.synced.route(&self.watchers, &chunk.events);
        self.cursor = chunk.through;
        self.deliver(routes, &chunk).await
    }

    /// Brings the unsynced group one chunk closer to the cursor.
    async fn catch_up_unsynced(&mut self) -> Result<(), Stop> {
        let compact = self.node.mvcc.compact_revision();
        self.cancel_unsynced_below(compact).await?;
        let Some(from) = self
            .unsynced
            .ids()
            .iter()
            .filter_map(|id| self.watchers.get(id).map(|w| w.next_rev))
            .min()
        else {
            return Ok(());
        };
        let chunk = match self.read(from, self.cursor, &self.unsynced).await {
            Ok(chunk) => chunk,
            // A compaction ran since the check above.
            Err(ReadError::Compacted(compact)) => return self.cancel_unsynced_below(compact).await,
            Err(ReadError::Failed(e)) => return Err(Stop::Fail(EtcdError::Internal(e).into())),
        };
        let routes = self.unsynced.route(&self.watchers, &chunk.events);
        self.deliver(routes, &chunk).await?;
        // The chunk held every event of the group's keys in [from, through]: every member
        // is now served through `through`.
        for id in self.unsynced.ids() {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            w.next_rev = w.next_rev.max(chunk.through + 1);
            if w.next_rev > self.cursor {
                self.unsynced.remove(w);
                self.synced.insert(w);
            }
        }
        Ok(())
    }

    /// etcd: an unsynced watcher whose next revision was compacted is canceled with the
    /// compact revision (negative start revisions count as compacted).
    async fn cancel_unsynced_below(&mut self, compact: i64) -> Result<(), Stop> {
        for id in self.unsynced.ids() {
            let lost = self
                .watchers
                .get(&id)
                .is_some_and(|w| w.next_rev < 0 || w.next_rev < compact);
            if lost {
                self.cancel_compacted(id, compact).await?;
            }
        }
        Ok(())
    }

    async fn cancel_compacted(&mut self, id: i64, compact: i64) -> Result<(), Stop> {
        if let Some(w) = self.watchers.remove(&id) {
            self.forget(&w);
            self.compacted.insert(id);
            let header = self.node.header(0);
            self.send(response::compacted(header, id, compact)).await?;
        }
        Ok(())
    }

    /// Sends each routed watcher its events of `chunk`, in one response (or its fragments).
    async fn deliver(&mut self, routes: Routes, chunk: &Chunk) -> Result<(), Stop> {
        let header = EncodedHeader::from(self.node.header(chunk.through));
        for (id, indexes) in routes {
            let Some(w) = self.watchers.get_mut(&id) else {
                continue;
            };
            let events = indexes
                .iter()
                .map(|&i| w.wire_event(&chunk.events[i]))
                .collect();
            w.sent_events = true;
            let resp = response::events(header.clone(), id, events);
            if w.fragment {
                for piece in resp.fragments(self.options.fragment_bytes) {
                    self.send(piece).await?;
                }
            } else {
                self.send(resp).await?;
            }
        }
        Ok(())
    }

    /// Events of `group`'s keys in `[from, through]`: from the ring, else from redb.
    async fn read(
        &self,
        from: i64,
        through: i64,
        group: &WatcherGroup,
    ) -> Result<Chunk, ReadError> {
        let (key, range_end) = group.read_range();
        if let Some(chunk) =
            self.hub
                .read(from, through, KeyRange::new(&key, &range_end), READ_LIMIT)
        {
            return Ok(chunk);
        }
        let mvcc = self.node.mvcc.clone();
        let batch = tokio::task::spawn_blocking(move || {
            mvcc.events(from, &key, &range_end, READ_LIMIT.max_events)
        })
        .await
        .map_err(|e| ReadError::Failed(e.to_string()))?;
        match batch {
            Ok(batch) => {
                // redb may already hold commits the hub has not published: stop at `through`
                // so the cursor never passes the head. Batches end on revision boundaries,
                // so what is kept is whole revisions.
                let through = through.min(batch.next_revision - 1);
                let events = batch
                    .events
                    .into_iter()
                    .filter(|e| event_revision(e) <= through)
                    .map(|e| Arc::new(WatchEvent::from(e)))
                    .collect();
                Ok(Chunk { events, through })
            }
            Err(MvccError::Compacted) => {
                Err(ReadError::Compacted(self.node.mvcc.compact_revision()))
            }
            Err(e) => Err(ReadError::Failed(e.to_string())),
        }
    }

    /// Answers a pending progress request once no watcher is behind the revision it asked
    /// about (etcd 3.5 answers only when every watcher is synced).
    async fn answer_progress_request(&mut self) -> Result<(), Stop> {
        let Some(wanted) = self.progress_wanted else {
            return Ok(());
        };
        if self.unsynced.is_empty() && self.cursor >= wanted {
            self.progress_wanted = None;
            let header = self.node.header(self.cursor);
            self.send(response::progress(header, STREAM_WIDE)).await?;
        }
        Ok(())
    }

    /// Periodic progress: each synced watcher that asked for it and got no events since the
    /// last tick hears the revision it has been served through.
    async fn progress_tick(&mut self) -> Result<(), Stop> {
        let mut due: Vec<i64> = self
            .watchers
            .values()
            .filter(|w| w.progress_notify && !w.sent_events && self.synced.contains(w))
            .map(|w| w.id)
            .collect();
        due.sort_unstable();
        for w in self.watchers.values_mut() {
            w.sent_events = false;
        }
        for id in due {
            let header = self.node.header(self.cursor);
            self.send(response::progress(header, id)).await?;
        }
        Ok(())
    }
}

/// Resolves once the member stops (or is gone). Holds no borrow of the flag when it returns,
/// so the stream's future stays `Send`.
async fn stopping(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await.map(|_| ());
}

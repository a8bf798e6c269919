//! The watch hub: the member's bounded in-memory window of recent events, fed by the apply
//! loop, and the revision the member has published so far.
//!
//! Invariants:
//! - [`WatchHub::publish`] and [`WatchHub::reset`] never wait on a watcher: they take a mutex
//!   held only for in-memory copies of at most one read's worth of `Arc`s, push, evict and
//!   publish the new head revision through a `tokio::sync::watch` (which overwrites, never
//!   queues). A slow watcher therefore can never slow down the apply loop.
//! - The ring holds EVERY event with a revision in `(floor, head]`, in revision order, and
//!   nothing else. Eviction drops whole revisions from the front, so the window never starts
//!   in the middle of a revision.
//! - After every publish the ring holds at most [`RingBounds::max_events`] events and
//!   [`RingBounds::max_bytes`] bytes of events (a single revision larger than that is not kept
//!   at all: its events are read back from redb by whoever needs them).
//! - Every event in the ring is already committed to redb, so a reader that finds its start
//!   revision evicted (`rev <= floor`) can read the same events from `Mvcc::events`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use cairn_mvcc::KeyRange;
use cairn_proto::mvccpb::Event;
use tokio::sync::watch;

use super::event::WatchEvent;

/// How much history the hub keeps in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingBounds {
    /// Most events held at once.
    pub max_events: usize,
    /// Most bytes of events held at once, each event counted by its
    /// [`WatchEvent::footprint`]: its decoded form and the wire encodings it may cache.
    pub max_bytes: usize,
}

impl Default for RingBounds {
    /// Enough for watchers to ride out a burst of a few seconds of writes without touching
    /// redb, small enough to be irrelevant next to redb's own cache.
    fn default() -> Self {
        RingBounds {
            max_events: 16 * 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// The most a single read hands out: it stops after the revision at which either is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimit {
    pub max_events: usize,
    pub max_bytes: usize,
}

/// Events of a range of whole revisions, read from the ring or from redb.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// Matching events, ascending by revision (and sub revision within one).
    pub events: Vec<Arc<WatchEvent>>,
    /// Every matching event with a revision up to and including this one is in `events`
    /// (or in an earlier chunk); the next read starts at `through + 1`.
    pub through: i64,
}

/// The revision an event belongs to: its `mod_revision` (delete events carry the delete
/// revision there, as etcd patches it).
pub fn event_revision(ev: &Event) -> i64 {
    ev.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

struct Entry {
    rev: i64,
    bytes: usize,
    event: Arc<WatchEvent>,
}

struct Ring {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Every event with a revision above `floor` (and up to `head`) is in `entries`.
    floor: i64,
    head: i64,
}

/// One member's watch hub. Shared (`Arc`) by the state machine, which feeds it, and by every
/// watch stream, which reads from it.
pub struct WatchHub {
    ring: Mutex<Ring>,
    head_tx: watch::Sender<i64>,
    bounds: RingBounds,
}

impl std::fmt::Debug for WatchHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.lock();
        f.debug_struct("WatchHub")
            .field("floor", &ring.floor)
            .field("head", &ring.head)
            .field("events", &ring.entries.len())
            .field("bytes", &ring.bytes)
            .finish()
    }
}

impl WatchHub {
    /// A hub for a store at `revision`, with the default bounds.
    pub fn new(revision: i64) -> Self {
        Self::with_bounds(revision, RingBounds::default())
    }

    /// A hub for a store at `revision` that keeps at most `bounds` in memory.
    pub fn with_bounds(revision: i64, bounds: RingBounds) -> Self {
        WatchHub {
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                bytes: 0,
                floor: revision,
                head: revision,
            }),
            head_tx: watch::channel(revision).0,
            bounds,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ring> {
        // The ring is consistent after every statement that can panic, so a poisoned lock
        // holds a usable ring.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the events of a commit that left the store at `revision`. `events` are in
    /// revision order, all above the previous head. Called by the apply loop right after
    /// the redb commit, before any client hears of the writes.
    pub fn publish(&self, revision: i64, events: Vec<Event>) {
        if events.is_empty() && revision <= self.head() {
            return;
        }
        let head = {
            let mut ring = self.lock();
            for event in events {
                let event = WatchEvent::from(event);
                let (rev, bytes) = (event.revision(), event.footprint());
                ring.bytes += bytes;
                ring.entries.push_back(Entry {
                    rev,
                    bytes,
                    event: Arc::new(event),
                });
            }
            ring.head = ring.head.max(revision);
            let ring = &mut *ring;
            while ring.entries.len() > self.bounds.max_events || ring.bytes > self.bounds.max_bytes
            {
                let Some(rev) = ring.entries.front().map(|e| e.rev) else {
                    break;
                };
                while ring.entries.front().is_some_and(|e| e.rev == rev) {
                    if let Some(e) = ring.entries.pop_front() {
                        ring.bytes -= e.bytes;
                    }
                }
                ring.floor = rev;
            }
            ring.head
        };
        self.head_tx.send_replace(head);
    }

    /// Forgets every buffered event after the store was replaced wholesale (a Raft snapshot
    /// was installed) and now stands at `revision`: readers find their next revision at or
    /// below the new floor and read from redb, which holds the snapshot's history.
    pub fn reset(&self, revision: i64) {
        let head = {
            let mut ring = self.lock();
            ring.entries.clear();
            ring.bytes = 0;
            ring.head = ring.head.max(revision);
            ring.floor = ring.head;
            ring.head
        };
        self.head_tx.send_replace(head);
    }

    /// The revision of the last published commit.
    pub fn head(&self) -> i64 {
        self.lock().head
    }

    /// Every event with a revision above this one (up to the head) is held in memory; older
    /// ones must be read from redb.
    pub fn floor(&self) -> i64 {
        self.lock().floor
    }

    /// Wakes up whoever holds it each time the head revision moves.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.head_tx.subscribe()
    }

    /// The ring's bounds.
    pub fn bounds(&self) -> RingBounds {
        self.bounds
    }

    /// Events held in memory right now (never above `bounds().max_events`).
    pub fn buffered_events(&self) -> usize {
        self.lock().entries.len()
    }

    /// Bytes of events held in memory right now, by footprint (never above `bounds().max_bytes`).
    pub fn buffered_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Events whose key is in `keys` with revisions in `[from, through]`, whole revisions
    /// only, stopping after the revision at which `limit` is reached. `None` when the ring
    /// no longer holds revision `from` (the caller reads redb instead). `through` is clamped
    /// to the head.
    pub fn read(
        &self,
        from: i64,
        through: i64,
        keys: KeyRange<'_>,
        limit: ReadLimit,
    ) -> Option<Chunk> {
        let ring = self.lock();
        if from <= ring.floor {
            return None;
        }
        let through = through.min(ring.head);
        let mut chunk = Chunk {
            events: Vec::new(),
            through,
        };
        let mut bytes = 0usize;
        let start = ring.entries.partition_point(|e| e.rev < from);
        let mut last_rev = None;
        for e in ring.entries.range(start..) {
            if e.rev > through {
                break;
            }
            if last_rev != Some(e.rev) {
                // A revision boundary: stop here if the previous revisions filled the chunk.
                if let Some(prev) = last_rev {
                    if chunk.events.len() >= limit.max_events || bytes >= limit.max_bytes {
                        chunk.through = prev;
                        break;
                    }
                }
                last_rev = Some(e.rev);
            }
            if keys.contains(e.event.key()) {
                bytes += e.bytes;
                chunk.events.push(e.event.clone());
            }
        }
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::mvccpb::KeyValue;

    fn put(key: &str, rev: i64) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                create_revision: rev,
                version: 1,
                value: vec![b'v'; 10],
                lease: 0,
            }),
            prev_kv: None,
        }
    }

    const ALL: KeyRange<'static> = KeyRange::From(b"");
    const NO_LIMIT: ReadLimit = ReadLimit {
        max_events: usize::MAX,
        max_bytes: usize::MAX,
    };

    fn revs(c: &Chunk) -> Vec<i64> {
        c.events.iter().map(|e| e.revision()).collect()
    }

    #[test]
    fn reads_whole_revisions_from_the_window() {
        let hub = WatchHub::new(1);
        hub.publish(2, vec![put("a", 2)]);
        hub.publish(3, vec![put("a", 3), put("b", 3), put("c", 3)]);
        hub.publish(4, vec![put("b", 4)]);
        assert_eq!(hub.head(), 4);

        let all = hub.read(2, 4, ALL, NO_LIMIT).expect("in the window");
        assert_eq!((revs(&all), all.through), (vec![2, 3, 3, 3, 4], 4));

        // The limit is reached inside revision 3; the chunk still ends on its boundary.
        let limit = ReadLimit {
            max_events: 2,
            max_bytes: usize::MAX,
        };
        let first = hub.read(2, 4, ALL, limit).expect("in the window");
        assert_eq!((revs(&first), first.through), (vec![2, 3, 3, 3], 3));
        let rest = hub.read(first.through + 1, 4, ALL, limit).expect("window");
        assert_eq!((revs(&rest), rest.through), (vec![4], 4));

        let only_b = hub
            .read(2, 4, KeyRange::Single(b"b"), NO_LIMIT)
            .expect("window");
        assert_eq!((revs(&only_b), only_b.through), (vec![3, 4], 4));
        let upto3 = hub.read(2, 3, ALL, NO_LIMIT).expect("window");
        assert_eq!((revs(&upto3), upto3.through), (vec![2, 3, 3, 3], 3));
        let nothing_new = hub.read(5, 9, ALL, NO_LIMIT).expect("window");
        assert_eq!((revs(&nothing_new), nothing_new.through), (vec![], 4));
    }

    #[test]
    fn eviction_keeps_the_bounds_and_drops_whole_revisions() {
        let hub = WatchHub::with_bounds(
            1,
            RingBounds {
                max_events: 4,
                max_bytes: usize::MAX,
            },
        );
        hub.publish(2, vec![put("a", 2), put("b", 2)]);
        hub.publish(3, vec![put("a", 3), put("b", 3)]);
        assert_eq!(hub.buffered_events(), 4);
        hub.publish(4, vec![put("a", 4)]);
        // Revision 2 went as a whole: 3 events left, the window starts after 2.
        assert_eq!(hub.buffered_events(), 3);
        assert!(
            hub.read(2, 4, ALL, NO_LIMIT).is_none(),
            "revision 2 evicted"
        );
        let c = hub.read(3, 4, ALL, NO_LIMIT).expect("revision 3 kept");
        assert_eq!(revs(&c), vec![3, 3, 4]);

        // A revision larger than the whole ring is not kept at all.
        hub.publish(5, (0..5).map(|i| put(&format!("k{i}"), 5)).collect());
        assert_eq!(hub.buffered_events(), 0);
        assert!(hub.read(5, 5, ALL, NO_LIMIT).is_none());
        let c = hub.read(6, 6, ALL, NO_LIMIT).expect("after the head");
        assert_eq!((revs(&c), c.through), (vec![], 5));
    }

    #[test]
    fn byte_bound_is_kept() {
        let one = WatchEvent::from(put("a", 2)).footprint();
        let hub = WatchHub::with_bounds(
            1,
            RingBounds {
                max_events: usize::MAX,
                max_bytes: 3 * one,
            },
        );
        for rev in 2..10 {
            hub.publish(rev, vec![put("a", rev)]);
            assert!(hub.buffered_bytes() <= 3 * one);
        }
        assert_eq!(hub.buffered_events(), 3);
    }

    #[test]
    fn reset_after_a_snapshot_sends_readers_to_storage() {
        let hub = WatchHub::new(1);
        hub.publish(2, vec![put("a", 2)]);
        let mut rx = hub.subscribe();
        rx.borrow_and_update();
        hub.reset(40);
        assert!(rx.has_changed().expect("hub alive"));
        assert_eq!(hub.head(), 40);
        assert_eq!(hub.buffered_events(), 0);
        assert!(
            hub.read(3, 40, ALL, NO_LIMIT).is_none(),
            "history is in redb"
        );
        hub.publish(41, vec![put("a", 41)]);
        let c = hub.read(41, 41, ALL, NO_LIMIT).expect("new events");
        assert_eq!(revs(&c), vec![41]);
    }
}

//! One watcher: the keys it watches, its options, and how far it has been served.
//!
//! Invariant: every event of the watched keys (that its filters let through) with a revision
//! below `next_rev` and at or above its start revision has been handed to the client's
//! response queue exactly once, in revision order; none at or above `next_rev` has.

use cairn_mvcc::KeyRange;
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::Event;

use bytes::Bytes;

use super::event::WatchEvent;
use super::hub::event_revision;

/// A validated create request (`cairn_wire::watch_request`).
pub use cairn_wire::watch_request::CreateWatch;

/// A watcher of a stream.
#[derive(Debug, Clone)]
pub struct Watcher {
    pub id: i64,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
    /// First revision not yet served. For a watcher in the stream's synced group the
    /// effective value is `max(next_rev, cursor + 1)`: it is not advanced per revision.
    pub next_rev: i64,
    pub no_put: bool,
    pub no_delete: bool,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    /// Events were sent since the last progress tick (etcd then skips one notification).
    pub sent_events: bool,
}

impl Watcher {
    pub fn new(id: i64, req: CreateWatch, next_rev: i64) -> Self {
        Watcher {
            id,
            key: req.key,
            range_end: req.range_end,
            next_rev,
            no_put: req.no_put,
            no_delete: req.no_delete,
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            fragment: req.fragment,
            sent_events: false,
        }
    }

    pub fn keys(&self) -> KeyRange<'_> {
        KeyRange::new(&self.key, &self.range_end)
    }

    /// The one key watched, for a single-key watcher.
    pub fn single_key(&self) -> Option<&[u8]> {
        self.range_end.is_empty().then_some(self.key.as_slice())
    }

    /// True if `ev` is for this watcher: its key is watched, its revision not yet served and
    /// no filter drops it (etcd's NOPUT / NODELETE).
    pub fn accepts(&self, ev: &Event) -> bool {
        let Some(kv) = &ev.kv else {
            return false;
        };
        if event_revision(ev) < self.next_rev || !self.keys().contains(&kv.key) {
            return false;
        }
        let delete = ev.r#type == EventType::Delete as i32;
        !(delete && self.no_delete || !delete && self.no_put)
    }

    /// The encoded event as this watcher's client gets it: `prev_kv` only when asked for.
    pub fn wire_event(&self, ev: &WatchEvent) -> Bytes {
        ev.encoded(self.prev_kv).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::mvccpb::KeyValue;
    use prost::Message;

    fn ev(key: &str, rev: i64, delete: bool) -> Event {
        Event {
            r#type: if delete {
                EventType::Delete as i32
            } else {
                EventType::Put as i32
            },
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: Some(KeyValue {
                key: key.into(),
                ..Default::default()
            }),
        }
    }

    fn watcher(key: &str, end: &[u8], next_rev: i64) -> Watcher {
        Watcher::new(
            1,
            CreateWatch {
                watch_id: 0,
                key: key.into(),
                range_end: end.to_vec(),
                start_revision: 0,
                no_put: false,
                no_delete: false,
                prev_kv: false,
                progress_notify: false,
                fragment: false,
            },
            next_rev,
        )
    }

    #[test]
    fn keys_revisions_and_filters() {
        let w = watcher("a", b"", 5);
        assert!(w.accepts(&ev("a", 5, false)));
        assert!(!w.accepts(&ev("a", 4, false)), "already served");
        assert!(!w.accepts(&ev("ab", 6, false)), "single key only");

        let prefix = watcher("a", b"b", 1);
        assert!(prefix.accepts(&ev("ab", 6, true)));
        assert!(!prefix.accepts(&ev("b", 6, true)));
        let from = watcher("b", b"\0", 1);
        assert!(from.accepts(&ev("zz", 2, false)) && !from.accepts(&ev("a", 2, false)));

        let mut no_put = watcher("a", b"", 1);
        no_put.no_put = true;
        assert!(!no_put.accepts(&ev("a", 2, false)) && no_put.accepts(&ev("a", 2, true)));
        let mut no_delete = watcher("a", b"", 1);
        no_delete.no_delete = true;
        assert!(no_delete.accepts(&ev("a", 2, false)) && !no_delete.accepts(&ev("a", 2, true)));
    }

    #[test]
    fn prev_kv_only_when_asked() {
        let mut w = watcher("a", b"", 1);
        let event = WatchEvent::from(ev("a", 2, false));
        let sent = |w: &Watcher| Event::decode(w.wire_event(&event)).expect("an event");
        assert_eq!(sent(&w).prev_kv, None);
        w.prev_kv = true;
        assert!(sent(&w).prev_kv.is_some());
    }
}

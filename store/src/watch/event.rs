//! An event as the watch machinery holds it: the decoded event, for routing, and its wire
//! encoding, made once and shared by every watcher that receives it.
//!
//! A put watched by a thousand watchers used to be copied and encoded a thousand times; now
//! each response carries the same reference-counted bytes, and the transport copies them into
//! its buffer once per response. Two encodings exist because etcd sends `prev_kv` only to the
//! watchers that asked for it; both are made on first use, by whichever stream needs them
//! first, so the apply loop that publishes events never pays for them.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use cairn_proto::mvccpb::{Event, KeyValue};
use prost::Message;

/// Field numbers of `mvccpb.Event`.
const EVENT_TYPE: u32 = 1;
const EVENT_KV: u32 = 2;

#[derive(Debug)]
pub struct WatchEvent {
    event: Event,
    /// The event as stored: with its `prev_kv`, when it has one.
    full: OnceLock<Bytes>,
    /// The event without `prev_kv` (unused when the event has none: `full` serves both).
    bare: OnceLock<Bytes>,
}

impl PartialEq for WatchEvent {
    fn eq(&self, other: &Self) -> bool {
        self.event == other.event
    }
}

impl From<Event> for WatchEvent {
    fn from(event: Event) -> Self {
        WatchEvent {
            event,
            full: OnceLock::new(),
            bare: OnceLock::new(),
        }
    }
}

impl WatchEvent {
    pub fn event(&self) -> &Event {
        &self.event
    }

    /// The key-value the event is about (etcd always sets it).
    pub fn kv(&self) -> Option<&KeyValue> {
        self.event.kv.as_ref()
    }

    /// The event's key, empty if it has no key-value.
    pub fn key(&self) -> &[u8] {
        self.kv().map_or(&[][..], |kv| kv.key.as_slice())
    }

    /// The revision the event belongs to: its `mod_revision` (delete events carry the delete
    /// revision there, as etcd patches it).
    pub fn revision(&self) -> i64 {
        super::hub::event_revision(&self.event)
    }

    /// The most memory the event's payload can come to: its decoded form plus the wire
    /// encodings it may cache (one, or two when it carries a previous value), each counted
    /// at its encoded size. The hub's byte bound counts this, so it holds whichever
    /// encodings watchers have asked for.
    pub fn footprint(&self) -> usize {
        let full = self.event.encoded_len();
        match &self.event.prev_kv {
            None => 2 * full,
            Some(prev) => 2 * full + full - prost::encoding::message::encoded_len(3, prev),
        }
    }

    /// The encoded `mvccpb.Event` a watcher gets: with `prev_kv` only if it asked for it.
    pub fn encoded(&self, with_prev_kv: bool) -> &Bytes {
        if with_prev_kv || self.event.prev_kv.is_none() {
            self.full
                .get_or_init(|| Bytes::from(self.event.encode_to_vec()))
        } else {
            self.bare.get_or_init(|| self.encode_bare())
        }
    }

    /// The event's encoding with `prev_kv` left out: exactly what prost writes for the same
    /// event with `prev_kv: None` (fields in number order, defaults omitted).
    fn encode_bare(&self) -> Bytes {
        let ev = &self.event;
        let kv_len = ev
            .kv
            .as_ref()
            .map(|kv| prost::encoding::message::encoded_len(EVENT_KV, kv));
        let mut buf = BytesMut::with_capacity(
            prost::encoding::int32::encoded_len(EVENT_TYPE, &ev.r#type) + kv_len.unwrap_or(0),
        );
        if ev.r#type != 0 {
            prost::encoding::int32::encode(EVENT_TYPE, &ev.r#type, &mut buf);
        }
        if let Some(kv) = &ev.kv {
            prost::encoding::message::encode(EVENT_KV, kv, &mut buf);
        }
        buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::mvccpb::event::EventType;

    fn kv(key: &str, value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.into(),
            create_revision: 2,
            mod_revision: rev,
            version: rev - 1,
            lease: 0,
        }
    }

    #[test]
    fn encodings_match_what_prost_writes_for_the_sent_event() {
        let cases = [
            Event {
                r#type: EventType::Put as i32,
                kv: Some(kv("a", "1", 5)),
                prev_kv: Some(kv("a", "0", 4)),
            },
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv("b", "", 6)),
                prev_kv: Some(kv("b", "x", 3)),
            },
            Event {
                r#type: EventType::Delete as i32,
                kv: Some(kv("c", "", 7)),
                prev_kv: None,
            },
            Event {
                r#type: EventType::Put as i32,
                kv: Some(kv("", "", 8)),
                prev_kv: None,
            },
        ];
        for ev in cases {
            let w = WatchEvent::from(ev.clone());
            assert_eq!(w.encoded(true)[..], ev.encode_to_vec()[..]);
            let bare = Event {
                prev_kv: None,
                ..ev.clone()
            };
            assert_eq!(w.encoded(false)[..], bare.encode_to_vec()[..]);
            assert_eq!(Event::decode(w.encoded(false).clone()).unwrap(), bare);
            assert_eq!(
                (w.key(), w.revision()),
                (
                    ev.kv.as_ref().unwrap().key.as_slice(),
                    ev.kv.as_ref().unwrap().mod_revision
                )
            );
        }
    }
}

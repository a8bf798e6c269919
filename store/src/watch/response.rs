//! Every `WatchResponse` a stream sends, shaped exactly as etcd 3.4/3.5 sends it
//! (`server/etcdserver/api/v3rpc/watch.go`), and etcd's fragmentation of large responses.
//!
//! Checked against a real etcd 3.4 (see `tests/compat/watch_side_by_side.rs`):
//! - created: header at the store revision, the watcher's id, `created`;
//! - refused create: `watch_id` -1, `created` AND `canceled`, the reason as text;
//! - canceled on request: header at the store revision, `canceled`, no reason;
//! - compacted: header revision 0 (etcd leaves it unset), `canceled`, `compact_revision`;
//! - progress: no events, header at the revision every event up to which was sent;
//!   `watch_id` -1 when answering a progress request for the whole stream.

use bytes::{BufMut, Bytes, BytesMut};
use cairn_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use prost::Message;

/// The `watch_id` of responses that speak for every watcher of a stream (clientv3's
/// `InvalidWatchID`), also used for refused creates.
pub const STREAM_WIDE: i64 = -1;

/// Why a create request was refused, with etcd's text.
pub use cairn_wire::watch_request::Refusal;

pub fn created(header: ResponseHeader, watch_id: i64) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        created: true,
        ..Default::default()
    }
}

pub fn refused(header: ResponseHeader, why: Refusal) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id: STREAM_WIDE,
        created: true,
        canceled: true,
        cancel_reason: why.to_string(),
        ..Default::default()
    }
}

pub fn canceled(header: ResponseHeader, watch_id: i64) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        canceled: true,
        ..Default::default()
    }
}

/// `header` should carry revision 0, as etcd's does.
pub fn compacted(header: ResponseHeader, watch_id: i64, compact_revision: i64) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        canceled: true,
        compact_revision,
        ..Default::default()
    }
}

pub fn progress(header: ResponseHeader, watch_id: i64) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        ..Default::default()
    }
}

/// What a stream sends: a response built as a message, or one whose events are already
/// encoded (see [`super::event`]). The transport encodes both into the same wire message.
#[derive(Debug, Clone, PartialEq)]
pub enum Outgoing {
    Message(WatchResponse),
    Events(EventsResponse),
}

impl From<WatchResponse> for Outgoing {
    fn from(resp: WatchResponse) -> Self {
        Outgoing::Message(resp)
    }
}

impl From<EventsResponse> for Outgoing {
    fn from(resp: EventsResponse) -> Self {
        Outgoing::Events(resp)
    }
}

impl Outgoing {
    pub fn encoded_len(&self) -> usize {
        match self {
            Outgoing::Message(m) => m.encoded_len(),
            Outgoing::Events(e) => e.encoded_len(),
        }
    }

    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Outgoing::Message(m) => {
                // A BufMut that cannot grow is the only failure; the transport's can.
                let _ = m.encode(buf);
            }
            Outgoing::Events(e) => e.encode(buf),
        }
    }
}

/// Field numbers of `etcdserverpb.WatchResponse` that an events response sets.
const HEADER: u32 = 1;
const WATCH_ID: u32 = 2;
const FRAGMENT: u32 = 7;
const EVENTS: u32 = 11;

/// A watcher's events: a `WatchResponse` with `header`, `watch_id`, `fragment` and `events`,
/// each event an encoded `mvccpb.Event`. Encodes to exactly the bytes prost writes for the
/// same response (fields in number order, defaults left out).
#[derive(Debug, Clone, PartialEq)]
pub struct EventsResponse {
    pub header: EncodedHeader,
    pub watch_id: i64,
    pub fragment: bool,
    pub events: Vec<Bytes>,
}

/// A response header encoded once, with its field tag, for every response of a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedHeader(Bytes);

impl From<ResponseHeader> for EncodedHeader {
    fn from(header: ResponseHeader) -> Self {
        let mut buf =
            BytesMut::with_capacity(prost::encoding::message::encoded_len(HEADER, &header));
        prost::encoding::message::encode(HEADER, &header, &mut buf);
        EncodedHeader(buf.freeze())
    }
}

pub fn events(header: EncodedHeader, watch_id: i64, events: Vec<Bytes>) -> EventsResponse {
    EventsResponse {
        header,
        watch_id,
        fragment: false,
        events,
    }
}

impl EventsResponse {
    /// The encoded size of everything but the events.
    fn base_len(&self) -> usize {
        let mut len = self.header.0.len();
        if self.watch_id != 0 {
            len += prost::encoding::int64::encoded_len(WATCH_ID, &self.watch_id);
        }
        if self.fragment {
            len += prost::encoding::bool::encoded_len(FRAGMENT, &self.fragment);
        }
        len
    }

    fn event_len(event: &Bytes) -> usize {
        prost::encoding::bytes::encoded_len(EVENTS, event)
    }

    pub fn encoded_len(&self) -> usize {
        self.base_len() + self.events.iter().map(Self::event_len).sum::<usize>()
    }

    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_slice(&self.header.0);
        if self.watch_id != 0 {
            prost::encoding::int64::encode(WATCH_ID, &self.watch_id, buf);
        }
        if self.fragment {
            prost::encoding::bool::encode(FRAGMENT, &self.fragment, buf);
        }
        // A repeated message field is a sequence of length-delimited fields, the same on the
        // wire as repeated bytes.
        for event in &self.events {
            prost::encoding::bytes::encode(EVENTS, event, buf);
        }
    }

    /// etcd's `sendFragments`: a response of at least two events whose encoding reaches
    /// `max_bytes` is split into pieces flagged `fragment`, each as large as fits under
    /// `max_bytes` but with at least one event; the last piece is not flagged. Every piece
    /// repeats the header and watch id.
    pub fn fragments(self, max_bytes: usize) -> Vec<EventsResponse> {
        if self.events.len() < 2 || self.encoded_len() < max_bytes {
            return vec![self];
        }
        let mut rest = self;
        let events = std::mem::take(&mut rest.events);
        rest.fragment = true;
        let base = rest.base_len();
        let mut pieces = Vec::new();
        let mut cur = rest.clone();
        let mut size = base;
        for ev in events {
            let add = Self::event_len(&ev);
            if !cur.events.is_empty() && size + add >= max_bytes {
                pieces.push(std::mem::replace(&mut cur, rest.clone()));
                size = base;
            }
            size += add;
            cur.events.push(ev);
        }
        cur.fragment = false;
        pieces.push(cur);
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::mvccpb::{Event, KeyValue};

    fn ev(n: usize) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: format!("k{n}").into_bytes(),
                value: vec![b'x'; 100],
                mod_revision: 7,
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn encoded(events: &[Event]) -> Vec<Bytes> {
        events
            .iter()
            .map(|e| Bytes::from(e.encode_to_vec()))
            .collect()
    }

    fn header() -> ResponseHeader {
        ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 7,
            raft_term: 3,
        }
    }

    /// The response as a client decodes it.
    fn decoded(r: &EventsResponse) -> WatchResponse {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf.len(), r.encoded_len());
        WatchResponse::decode(&buf[..]).expect("a WatchResponse")
    }

    #[test]
    fn events_responses_encode_as_prost_encodes_the_same_response() {
        let all: Vec<Event> = (0..3).map(ev).collect();
        for (watch_id, fragment, n) in [(4, false, 3), (0, true, 1), (-1, false, 0), (9, true, 2)] {
            let r = EventsResponse {
                header: header().into(),
                watch_id,
                fragment,
                events: encoded(&all[..n]),
            };
            let message = WatchResponse {
                header: Some(header()),
                watch_id,
                fragment,
                events: all[..n].to_vec(),
                ..Default::default()
            };
            let mut ours = Vec::new();
            Outgoing::from(r.clone()).encode(&mut ours);
            assert_eq!(ours, message.encode_to_vec());
            assert_eq!(Outgoing::from(r).encoded_len(), message.encoded_len());
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        let r = events(header().into(), 4, encoded(&[ev(0), ev(1), ev(2)]));
        assert_eq!(r.clone().fragments(10_000), vec![r.clone()]);
        let one = events(header().into(), 4, encoded(&[ev(0)]));
        assert_eq!(one.clone().fragments(10), vec![one]);
    }

    #[test]
    fn large_responses_split_as_etcd_does() {
        let all: Vec<Event> = (0..10).map(ev).collect();
        let r = events(header().into(), 4, encoded(&all));
        let max = 400;
        let pieces: Vec<WatchResponse> = r.fragments(max).iter().map(decoded).collect();
        assert!(pieces.len() > 1);
        for (i, p) in pieces.iter().enumerate() {
            assert_eq!(
                p.fragment,
                i + 1 < pieces.len(),
                "only the last is unflagged"
            );
            assert_eq!((p.watch_id, p.header), (4, Some(header())));
            assert!(!p.events.is_empty());
            // As in etcd, a piece stays under the limit unless it holds a single event.
            assert!(
                p.events.len() == 1 || p.encoded_len() < max,
                "{}",
                p.encoded_len()
            );
            if i + 1 < pieces.len() {
                // ...and is as full as it can be: the next event would have reached it.
                let mut more = p.clone();
                more.events.push(pieces[i + 1].events[0].clone());
                assert!(more.encoded_len() >= max);
            }
        }
        let joined: Vec<Event> = pieces.into_iter().flat_map(|p| p.events).collect();
        assert_eq!(joined, all);
    }
}

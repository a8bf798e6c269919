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

use cairn_proto::etcdserverpb::{ResponseHeader, WatchResponse};
use cairn_proto::mvccpb::Event;
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

pub fn events(header: ResponseHeader, watch_id: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse {
        header: Some(header),
        watch_id,
        events,
        ..Default::default()
    }
}

/// etcd's `sendFragments`: a response of at least two events whose encoding reaches
/// `max_bytes` is split into pieces flagged `fragment`, each as large as fits under
/// `max_bytes` but with at least one event; the last piece is not flagged. Every piece
/// repeats the header and watch id.
pub fn fragments(resp: WatchResponse, max_bytes: usize) -> Vec<WatchResponse> {
    if resp.encoded_len() < max_bytes || resp.events.len() < 2 {
        return vec![resp];
    }
    let mut rest = resp;
    let events = std::mem::take(&mut rest.events);
    rest.fragment = true;
    // Field 11 (events) is a repeated message, so each event adds exactly its own
    // length-delimited encoding to the response's size.
    let base = rest.encoded_len();
    let mut pieces = Vec::new();
    let mut cur = rest.clone();
    let mut size = base;
    for ev in events {
        let add = prost::encoding::message::encoded_len(11, &ev);
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

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::mvccpb::KeyValue;

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

    fn header() -> ResponseHeader {
        ResponseHeader {
            cluster_id: 1,
            member_id: 2,
            revision: 7,
            raft_term: 3,
        }
    }

    #[test]
    fn small_or_single_event_responses_are_not_split() {
        let r = events(header(), 4, (0..3).map(ev).collect());
        assert_eq!(fragments(r.clone(), 10_000), vec![r.clone()]);
        let one = events(header(), 4, vec![ev(0)]);
        assert_eq!(fragments(one.clone(), 10), vec![one]);
    }

    #[test]
    fn large_responses_split_as_etcd_does() {
        let all: Vec<Event> = (0..10).map(ev).collect();
        let r = events(header(), 4, all.clone());
        let max = 400;
        let pieces = fragments(r, max);
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

//! Replays retained history as watch events, for watchers catching up from an old revision.
//!
//! Events are exactly those the apply path produced (etcd's `kvsToEvents`): a PUT carries the
//! stored `KeyValue`; a DELETE carries a tombstone `KeyValue` with only the key and
//! `mod_revision` = the delete revision. `prev_kv` is filled as etcd's watch server fills it:
//! the key's `KeyValue` at `mod_revision - 1`, absent for creations (version 1) and when that
//! revision is compacted.

use cairn_proto::mvccpb::{event::EventType, Event, KeyValue};
use redb::ReadableTable;

use crate::error::MvccError;
use crate::format::{decode_kv, peek_key, split_change, Bytes, IndexKey, RevKey, KIND_TOMBSTONE};
use crate::key_range::KeyRange;
use crate::revision::{from_key, to_key};
use crate::view::{KvRead, KvView};

/// A slice of history, in revision order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBatch {
    /// Events of the requested keys, ascending by (revision, sub revision). A main revision is
    /// never split: the batch ends on a revision boundary.
    pub events: Vec<Event>,
    /// The first revision NOT covered by this batch: resume the replay here.
    pub next_revision: i64,
    /// The store revision the replay read at; `next_revision == current_revision + 1` means the
    /// replay has caught up.
    pub current_revision: i64,
}

/// Reads events of `keys` from revision `start` on, stopping after the main revision at which
/// `limit` events (0 = unlimited) have been gathered.
pub(crate) fn read_events<L, I, H>(
    view: &KvView<'_, L, I, H>,
    start: i64,
    keys: KeyRange<'_>,
    limit: usize,
) -> Result<EventBatch, MvccError>
where
    L: ReadableTable<Bytes, Bytes>,
    I: ReadableTable<IndexKey, u8>,
    H: ReadableTable<RevKey, Bytes>,
{
    let current = view.current;
    let start = start.max(1);
    if start < view.compact {
        return Err(MvccError::Compacted);
    }
    let mut batch = EventBatch {
        events: Vec::new(),
        next_revision: current + 1,
        current_revision: current,
    };
    if start > current {
        batch.next_revision = start;
        return Ok(batch);
    }
    let range = (to_key(start), 0)..=(to_key(current), u64::MAX);
    for entry in view.history.range::<(u64, u64)>(range)? {
        let (at, value) = entry?;
        let (main, _) = at.value();
        let (kind, encoded) = split_change(value.value())?;
        if peek_key(encoded).is_some_and(|key| !keys.contains(key)) {
            continue;
        }
        let mut kv = decode_kv(encoded)?;
        if !keys.contains(&kv.key) {
            continue;
        }
        let rev = from_key(main);
        if limit > 0 && batch.events.len() >= limit {
            if let Some(last) = batch.events.last().and_then(|e| e.kv.as_ref()) {
                if last.mod_revision != rev {
                    batch.next_revision = rev;
                    break;
                }
            }
        }
        let event_type = if kind == KIND_TOMBSTONE {
            kv.mod_revision = rev;
            EventType::Delete
        } else {
            EventType::Put
        };
        let prev_kv = prev_kv(view, &kv, event_type)?;
        batch.events.push(Event {
            r#type: event_type as i32,
            kv: Some(kv),
            prev_kv,
        });
    }
    Ok(batch)
}

fn prev_kv<R: KvRead>(
    view: &R,
    kv: &KeyValue,
    event_type: EventType,
) -> Result<Option<KeyValue>, MvccError> {
    let before = kv.mod_revision - 1;
    if event_type == EventType::Put && kv.version == 1 || before < view.compact() || before < 1 {
        return Ok(None);
    }
    view.get(&kv.key, before)
}

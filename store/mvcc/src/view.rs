//! A read view of the key space at any retained revision, over either a redb read transaction
//! (client reads) or the write transaction of the batch being applied (reads inside a Txn see the
//! earlier writes of the same Txn, as in etcd).
//!
//! Reads at the view's current revision use `LIVE` only, the common case. Reads at older
//! revisions walk `INDEX` to find, per key, the newest change at or below the revision, and load
//! puts from `HISTORY`. Results are always in ascending key order.

use std::ops::Bound;

use cairn_proto::mvccpb::KeyValue;
use redb::ReadableTable;

use crate::error::MvccError;
use crate::format::{decode_kv, split_change, Bytes, IndexKey, RevKey, KIND_PUT};
use crate::key_range::KeyRange;
use crate::revision::to_key;

/// Where the value of a key visible at some revision can be loaded from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Loc<'g> {
    /// The encoded `KeyValue` from `LIVE`.
    Live(&'g [u8]),
    /// The `HISTORY` entry at this revision.
    At(RevKey),
}

/// Scan callback: gets each visible key and where its value is; returns `false` to stop.
pub(crate) type Visit<'f> = dyn FnMut(&[u8], Loc<'_>) -> Result<bool, MvccError> + 'f;

/// The reads every consumer of the key space needs.
pub(crate) trait KvRead {
    /// Revision of the newest change visible through this view.
    fn current(&self) -> i64;
    /// Compact revision as of this view; reads below it fail with `Compacted`.
    fn compact(&self) -> i64;
    /// Calls `visit(key, loc)` for each key of `keys` that exists at `rev`, in ascending key
    /// order, until `visit` returns `false`. `rev` must be a retained revision `<= current`.
    fn scan(&self, keys: KeyRange<'_>, rev: i64, visit: &mut Visit<'_>) -> Result<(), MvccError>;
    /// Loads the `KeyValue` a scan located.
    fn load(&self, loc: Loc<'_>) -> Result<KeyValue, MvccError>;

    /// The key's `KeyValue` at `rev`, if it existed then.
    fn get(&self, key: &[u8], rev: i64) -> Result<Option<KeyValue>, MvccError> {
        let mut found = None;
        self.scan(KeyRange::Single(key), rev, &mut |_, loc| {
            found = Some(self.load(loc)?);
            Ok(false)
        })?;
        Ok(found)
    }

    /// Up to `limit` `KeyValue`s of `keys` at `rev`, plus the number of keys in the range
    /// regardless of the limit (etcd's `count`).
    fn collect(
        &self,
        keys: KeyRange<'_>,
        rev: i64,
        limit: usize,
    ) -> Result<(Vec<KeyValue>, i64), MvccError> {
        let mut kvs = Vec::new();
        let mut count = 0i64;
        self.scan(keys, rev, &mut |_, loc| {
            count += 1;
            if kvs.len() < limit {
                kvs.push(self.load(loc)?);
            }
            Ok(true)
        })?;
        Ok((kvs, count))
    }

    /// Number of keys of `keys` at `rev`.
    fn count(&self, keys: KeyRange<'_>, rev: i64) -> Result<i64, MvccError> {
        let mut count = 0i64;
        self.scan(keys, rev, &mut |_, _| {
            count += 1;
            Ok(true)
        })?;
        Ok(count)
    }
}

/// [`KvRead`] over borrowed `LIVE`, `INDEX` and `HISTORY` tables of one redb transaction.
pub(crate) struct KvView<'v, L, I, H> {
    pub(crate) live: &'v L,
    pub(crate) index: &'v I,
    pub(crate) history: &'v H,
    pub(crate) current: i64,
    pub(crate) compact: i64,
}

impl<L, I, H> KvRead for KvView<'_, L, I, H>
where
    L: ReadableTable<Bytes, Bytes>,
    I: ReadableTable<IndexKey, u8>,
    H: ReadableTable<RevKey, Bytes>,
{
    fn current(&self) -> i64 {
        self.current
    }

    fn compact(&self) -> i64 {
        self.compact
    }

    fn scan(&self, keys: KeyRange<'_>, rev: i64, visit: &mut Visit<'_>) -> Result<(), MvccError> {
        if rev >= self.current {
            self.scan_live(keys, visit)
        } else {
            self.scan_index(keys, to_key(rev), visit)
        }
    }

    fn load(&self, loc: Loc<'_>) -> Result<KeyValue, MvccError> {
        match loc {
            Loc::Live(bytes) => decode_kv(bytes),
            Loc::At(at) => {
                let guard = self.history.get(at)?.ok_or_else(|| {
                    MvccError::Corrupted(format!("index names missing history entry {at:?}"))
                })?;
                let (_, kv) = split_change(guard.value())?;
                decode_kv(kv)
            }
        }
    }
}

impl<L, I, H> KvView<'_, L, I, H>
where
    L: ReadableTable<Bytes, Bytes>,
    I: ReadableTable<IndexKey, u8>,
    H: ReadableTable<RevKey, Bytes>,
{
    fn scan_live(&self, keys: KeyRange<'_>, visit: &mut Visit<'_>) -> Result<(), MvccError> {
        let Some((start, end)) = keys.bounds() else {
            return Ok(());
        };
        if let KeyRange::Single(key) = keys {
            if let Some(value) = self.live.get(key)? {
                visit(key, Loc::Live(value.value()))?;
            }
            return Ok(());
        }
        for entry in self.live.range::<&[u8]>((Bound::Included(start), end))? {
            let (key, value) = entry?;
            if !visit(key.value(), Loc::Live(value.value()))? {
                break;
            }
        }
        Ok(())
    }

    fn scan_index(
        &self,
        keys: KeyRange<'_>,
        rev: u64,
        visit: &mut Visit<'_>,
    ) -> Result<(), MvccError> {
        let Some((start, end)) = keys.bounds() else {
            return Ok(());
        };
        if let KeyRange::Single(key) = keys {
            let newest = self
                .index
                .range::<(&[u8], u64, u64)>((key, 0, 0)..=(key, rev, u64::MAX))?
                .next_back();
            if let Some(entry) = newest {
                let (at, kind) = entry?;
                if kind.value() == KIND_PUT {
                    let (_, main, sub) = at.value();
                    visit(key, Loc::At((main, sub)))?;
                }
            }
            return Ok(());
        }
        let upper = match end {
            Bound::Included(k) => Bound::Included((k, u64::MAX, u64::MAX)),
            Bound::Excluded(k) => Bound::Excluded((k, 0, 0)),
            Bound::Unbounded => Bound::Unbounded,
        };
        // Entries come grouped by key, oldest first; remember the newest one at or below `rev`
        // of the key being walked and report it when the next key starts.
        let mut key_buf: Vec<u8> = Vec::new();
        let mut newest: Option<(u64, u64, u8)> = None;
        let mut have_key = false;
        for entry in self
            .index
            .range::<(&[u8], u64, u64)>((Bound::Included((start, 0, 0)), upper))?
        {
            let (at, kind) = entry?;
            let (key, main, sub) = at.value();
            if !have_key || key != key_buf.as_slice() {
                if let Some((m, s, KIND_PUT)) = newest {
                    if !visit(&key_buf, Loc::At((m, s)))? {
                        return Ok(());
                    }
                }
                key_buf.clear();
                key_buf.extend_from_slice(key);
                have_key = true;
                newest = None;
            }
            if main <= rev {
                newest = Some((main, sub, kind.value()));
            }
        }
        if let Some((m, s, KIND_PUT)) = newest {
            visit(&key_buf, Loc::At((m, s)))?;
        }
        Ok(())
    }
}

//! The in-memory view of the log: where every live entry sits on disk, plus a cache of the most
//! recent entries' bytes.
//!
//! Invariants:
//! * `locs` holds the live entries `first ..= first + locs.len() - 1`, contiguous.
//! * `cache` holds the bytes of a suffix of those entries: `cache[k]` is entry
//!   `last + 1 - cache.len() + k`. Entries enter the cache when appended, so an entry that has not
//!   been written yet is always cached; eviction from the front only drops entries whose append
//!   (sequence number) the writer has reported written.
//! * `purged` only grows; no live entry has an index `<= purged`.
//! * When `locs` is empty, `empty_next` is the index the next append must carry (`None`: any),
//!   and `purged` is below it.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::Bytes;

/// Where an entry's record starts, and its payload length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Segment id (= the first index in its header and file name).
    pub segment: u64,
    /// Byte offset of the record frame in the segment.
    pub offset: u64,
    /// Entry payload length.
    pub len: u32,
}

struct Cached {
    data: Bytes,
    /// Sequence number of the append command that wrote it.
    seq: u64,
}

/// How to get one entry's bytes.
pub(crate) enum Lookup {
    Cached(Bytes),
    Disk(Loc),
}

pub(crate) struct EntryIndex {
    first: u64,
    locs: VecDeque<Loc>,
    cache: VecDeque<Cached>,
    cache_bytes: usize,
    cache_budget: usize,
    purged: Option<u64>,
    empty_next: Option<u64>,
}

impl EntryIndex {
    /// An index over recovered entries `first ..`, none of them cached; `empty_next` applies
    /// when `locs` is empty.
    pub(crate) fn new(
        first: u64,
        locs: Vec<Loc>,
        purged: Option<u64>,
        empty_next: Option<u64>,
        budget: usize,
    ) -> Self {
        Self {
            empty_next,
            first,
            locs: locs.into(),
            cache: VecDeque::new(),
            cache_bytes: 0,
            cache_budget: budget,
            purged,
        }
    }

    pub(crate) fn first_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then_some(self.first)
    }

    pub(crate) fn last_index(&self) -> Option<u64> {
        (!self.locs.is_empty()).then(|| self.first + self.locs.len() as u64 - 1)
    }

    pub(crate) fn purged(&self) -> Option<u64> {
        self.purged
    }

    /// The index the next append must start at; `None` when the log has never held or purged
    /// anything, in which case any index may start it.
    pub(crate) fn next_index(&self) -> Option<u64> {
        match self.last_index() {
            Some(last) => last.checked_add(1),
            None => self.empty_next,
        }
    }

    /// Adds the entry following the last one. The caller has checked contiguity.
    pub(crate) fn push(&mut self, index: u64, loc: Loc, data: Bytes, seq: u64) {
        if self.locs.is_empty() {
            self.first = index;
        }
        debug_assert_eq!(
            Some(index),
            self.last_index().map_or(Some(index), |l| l.checked_add(1))
        );
        self.locs.push_back(loc);
        self.cache_bytes += data.len();
        self.cache.push_back(Cached { data, seq });
    }

    /// Drops entries `>= index`.
    pub(crate) fn truncate_from(&mut self, index: u64) {
        let keep = index.saturating_sub(self.first).min(self.locs.len() as u64) as usize;
        if keep == 0 && !self.locs.is_empty() {
            self.empty_next = Some(self.first);
        }
        let removed = self.locs.len() - keep;
        self.locs.truncate(keep);
        for _ in 0..removed.min(self.cache.len()) {
            if let Some(c) = self.cache.pop_back() {
                self.cache_bytes -= c.data.len();
            }
        }
    }

    /// Drops entries `<= index` and moves the purge point there (never backwards). A point below
    /// the first live entry (or below the next index of an empty log) is raised to just before
    /// it: nothing earlier exists either, and the recorded point must not leave a gap before the
    /// log's start (recovery rejects gaps).
    pub(crate) fn purge_to(&mut self, index: u64) {
        let start = self.first_index().or(self.empty_next);
        let index = match start {
            Some(start) if start > 0 => index.max(start - 1),
            _ => index,
        };
        if self.purged.is_some_and(|p| p >= index) {
            return;
        }
        self.purged = Some(index);
        let drop = index
            .checked_add(1)
            .map_or(u64::MAX, |end| end.saturating_sub(self.first))
            .min(self.locs.len() as u64) as usize;
        let uncached = self.locs.len() - self.cache.len();
        self.locs.drain(..drop);
        for _ in 0..drop.saturating_sub(uncached) {
            if let Some(c) = self.cache.pop_front() {
                self.cache_bytes -= c.data.len();
            }
        }
        if self.locs.is_empty() {
            self.first = index.saturating_add(1);
            self.empty_next = index.checked_add(1);
        } else {
            self.first += drop as u64;
        }
    }

    /// Drops cached bytes, oldest first, while over budget, stopping at the first entry the writer
    /// has not written yet (its bytes exist nowhere else).
    pub(crate) fn evict(&mut self, written_seq: u64) {
        while self.cache_bytes > self.cache_budget {
            match self.cache.front() {
                Some(c) if c.seq <= written_seq => {
                    self.cache_bytes -= c.data.len();
                    self.cache.pop_front();
                }
                _ => break,
            }
        }
    }

    /// Live indexes within `range` (clamped to the log).
    pub(crate) fn clamp(&self, range: Range<u64>) -> Range<u64> {
        match self.last_index() {
            Some(last) => range.start.max(self.first)..range.end.min(last.saturating_add(1)),
            None => 0..0,
        }
    }

    /// Location of live entry `index`.
    pub(crate) fn loc(&self, index: u64) -> Option<Loc> {
        let pos = index.checked_sub(self.first)?;
        self.locs.get(usize::try_from(pos).ok()?).copied()
    }

    /// How to read entry `index`, which the caller has clamped into the log.
    pub(crate) fn lookup(&self, index: u64) -> Lookup {
        let pos = (index - self.first) as usize;
        let uncached = self.locs.len() - self.cache.len();
        match pos.checked_sub(uncached) {
            Some(k) => Lookup::Cached(self.cache[k].data.clone()),
            None => Lookup::Disk(self.locs[pos]),
        }
    }

    #[cfg(test)]
    pub(crate) fn cached_len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(i: u64) -> Loc {
        Loc {
            segment: 1,
            offset: i * 100,
            len: 4,
        }
    }

    fn filled(budget: usize) -> EntryIndex {
        let mut index = EntryIndex::new(0, Vec::new(), None, None, budget);
        for i in 1..=10 {
            index.push(i, loc(i), Bytes::from(vec![i as u8; 4]), i);
        }
        index
    }

    #[test]
    fn eviction_stops_at_unwritten_entries() {
        let mut index = filled(8);
        index.evict(5);
        assert_eq!(index.cached_len(), 5, "entries 6..=10 are not written yet");
        index.evict(10);
        assert_eq!(index.cached_len(), 2);
        assert!(matches!(index.lookup(8), Lookup::Disk(l) if l == loc(8)));
        assert!(matches!(index.lookup(9), Lookup::Cached(b) if b[0] == 9));
    }

    #[test]
    fn truncate_and_purge_keep_cache_aligned() {
        let mut index = filled(8);
        index.evict(10);
        index.truncate_from(10);
        assert_eq!(index.last_index(), Some(9));
        assert_eq!(index.cached_len(), 1);
        assert!(matches!(index.lookup(9), Lookup::Cached(b) if b[0] == 9));
        index.purge_to(4);
        assert_eq!(index.first_index(), Some(5));
        assert!(matches!(index.lookup(5), Lookup::Disk(l) if l == loc(5)));
        index.purge_to(20);
        assert_eq!((index.first_index(), index.last_index()), (None, None));
        assert_eq!(index.next_index(), Some(21));
        assert_eq!(index.cached_len(), 0);
        index.purge_to(3);
        assert_eq!(index.purged(), Some(20), "the purge point never moves back");
    }
}

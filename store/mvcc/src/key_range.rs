//! etcd's `key` / `range_end` pair, decoded once into the set of keys it names.
//!
//! etcd's rule (`mkGteRange` plus the index's range walk): an empty `range_end` names the single
//! key `key`; a `range_end` of exactly `[0]` names every key `>= key`; anything else names the
//! half-open interval `[key, range_end)`, which is empty when `range_end <= key`.

use std::ops::Bound;

/// The keys named by a request's `key` and `range_end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// Exactly one key.
    Single(&'a [u8]),
    /// Every key `>= start`.
    From(&'a [u8]),
    /// Every key in `[start, end)`; `start < end` always holds.
    Between(&'a [u8], &'a [u8]),
    /// No key at all (`range_end <= key`).
    Empty,
}

impl<'a> KeyRange<'a> {
    /// Decodes etcd's `key` / `range_end` pair.
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        if range_end.is_empty() {
            KeyRange::Single(key)
        } else if range_end == [0] {
            KeyRange::From(key)
        } else if key < range_end {
            KeyRange::Between(key, range_end)
        } else {
            KeyRange::Empty
        }
    }

    /// True if `key` is one of the named keys.
    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Single(k) => key == k,
            KeyRange::From(start) => key >= start,
            KeyRange::Between(start, end) => key >= start && key < end,
            KeyRange::Empty => false,
        }
    }

    /// Lower and upper bound on user keys, for table scans; `None` if the range is empty.
    pub(crate) fn bounds(&self) -> Option<(&'a [u8], Bound<&'a [u8]>)> {
        match *self {
            KeyRange::Single(k) => Some((k, Bound::Included(k))),
            KeyRange::From(start) => Some((start, Bound::Unbounded)),
            KeyRange::Between(start, end) => Some((start, Bound::Excluded(end))),
            KeyRange::Empty => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::KeyRange;

    #[test]
    fn decodes_etcd_range_end_conventions() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a"));
        assert_eq!(KeyRange::new(b"a", b"\0"), KeyRange::From(b"a"));
        assert_eq!(KeyRange::new(b"\0", b"\0"), KeyRange::From(b"\0"));
        assert_eq!(KeyRange::new(b"a", b"c"), KeyRange::Between(b"a", b"c"));
        assert_eq!(KeyRange::new(b"c", b"a"), KeyRange::Empty);
        assert_eq!(KeyRange::new(b"a", b"a"), KeyRange::Empty);
        assert!(KeyRange::new(b"a", b"c").contains(b"b"));
        assert!(!KeyRange::new(b"a", b"c").contains(b"c"));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
    }
}

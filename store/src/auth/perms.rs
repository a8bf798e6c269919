//! Key-range permissions, with etcd's semantics (`auth/range_perm_cache.go` and the
//! `adt` interval tree it uses).
//!
//! A granted permission is a half-open interval of keys: a single key `k` is `[k, k\0)`, a
//! range is `[key, range_end)`, and a `range_end` of `"\0"` is open-ended. Bounds compare as
//! etcd's "bytes affine" values: plain byte order, except that an EMPTY bound is greater than
//! every other one (it stands for +infinity). That is why an open-ended grant stores an empty
//! end, and also why a grant whose key is empty covers nothing (clients send `"\0"` for "every
//! key", as etcdctl 3.5 does).
//!
//! A request on one key is allowed when any granted interval of the right kind contains it; a
//! request on a range is allowed only when the union of the granted intervals that overlap it
//! covers it without a gap (touching intervals join: `[a, b)` and `[b, c)` cover `[a, c)`).

use std::cmp::Ordering;

use cairn_proto::authpb::permission::Type as PermType;
use cairn_proto::authpb::Permission;

/// Compares two bounds, an empty bound being +infinity.
fn cmp_bound(a: &[u8], b: &[u8]) -> Ordering {
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.cmp(b),
    }
}

/// A half-open key interval `[begin, end)`; an empty bound is +infinity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interval {
    begin: Vec<u8>,
    end: Vec<u8>,
}

impl Interval {
    /// The single key `key`: `[key, key\0)`.
    pub fn point(key: &[u8]) -> Self {
        let mut end = key.to_vec();
        end.push(0);
        Self {
            begin: key.to_vec(),
            end,
        }
    }

    /// A request's key range: a single key when `range_end` is empty, open-ended when it is
    /// `"\0"`.
    pub fn of_request(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => Self::point(key),
            [0] => Self {
                begin: key.to_vec(),
                end: Vec::new(),
            },
            end => Self {
                begin: key.to_vec(),
                end: end.to_vec(),
            },
        }
    }

    /// Whether the two intervals overlap (etcd's `Interval.Compare == 0`).
    fn overlaps(&self, other: &Interval) -> bool {
        let left_of = cmp_bound(&self.begin, &other.begin) == Ordering::Less
            && cmp_bound(&self.end, &other.begin) != Ordering::Greater;
        let right_of = cmp_bound(&self.begin, &other.end) != Ordering::Less;
        !left_of && !right_of
    }
}

/// The intervals one user may read and write, merged over all of the user's roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserPerms {
    read: Vec<Interval>,
    write: Vec<Interval>,
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

impl UserPerms {
    /// Merges the permissions of several roles. Unknown permission types grant nothing, as
    /// in etcd.
    pub fn merge<'a>(perms: impl IntoIterator<Item = &'a Permission>) -> Self {
        let mut out = UserPerms::default();
        for p in perms {
            let ivl = Interval::of_request(&p.key, &p.range_end);
            match PermType::try_from(p.perm_type) {
                Ok(PermType::Read) => out.read.push(ivl),
                Ok(PermType::Write) => out.write.push(ivl),
                Ok(PermType::Readwrite) => {
                    out.read.push(ivl.clone());
                    out.write.push(ivl);
                }
                Err(_) => {}
            }
        }
        for list in [&mut out.read, &mut out.write] {
            list.sort_by(|a, b| cmp_bound(&a.begin, &b.begin).then(cmp_bound(&a.end, &b.end)));
        }
        out
    }

    /// Whether `access` to `key` (a single key when `range_end` is empty, else the range) is
    /// granted.
    pub fn allows(&self, access: Access, key: &[u8], range_end: &[u8]) -> bool {
        let granted = match access {
            Access::Read => &self.read,
            Access::Write => &self.write,
        };
        let wanted = Interval::of_request(key, range_end);
        if range_end.is_empty() {
            return granted.iter().any(|g| g.overlaps(&wanted));
        }
        covers(granted, &wanted)
    }
}

/// Whether the union of the `granted` intervals (sorted by begin) that overlap `wanted` covers
/// it contiguously (etcd's `IntervalTree.Contains`).
fn covers(granted: &[Interval], wanted: &Interval) -> bool {
    let mut overlapping = granted.iter().filter(|g| g.overlaps(wanted));
    let Some(first) = overlapping.next() else {
        return false;
    };
    let min_begin = &first.begin;
    let mut max_end = &first.end;
    for g in overlapping {
        if cmp_bound(max_end, &g.begin) == Ordering::Less {
            return false;
        }
        if cmp_bound(&g.end, max_end) == Ordering::Greater {
            max_end = &g.end;
        }
    }
    cmp_bound(max_end, &wanted.end) != Ordering::Less
        && cmp_bound(min_begin, &wanted.begin) != Ordering::Greater
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &str, end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.into(),
            range_end: end.to_vec(),
        }
    }

    /// The grants of the side-by-side etcdctl scenario: `read /a`, `readwrite /p/ --prefix`,
    /// `write /w /x`, `readwrite /from --from-key`.
    fn scenario() -> UserPerms {
        UserPerms::merge(&[
            perm(PermType::Read, "/a", b""),
            perm(PermType::Readwrite, "/p/", b"/p0"),
            perm(PermType::Write, "/w", b"/x"),
            perm(PermType::Readwrite, "/from", b"\0"),
        ])
    }

    #[test]
    fn single_keys_prefixes_and_open_ended_grants_match_etcd() {
        let p = scenario();
        assert!(p.allows(Access::Read, b"/a", b""));
        assert!(!p.allows(Access::Write, b"/a", b""));
        assert!(
            !p.allows(Access::Read, b"/a0", b""),
            "a single key, not a prefix"
        );
        assert!(p.allows(Access::Write, b"/p/1", b""));
        assert!(p.allows(Access::Read, b"/p/", b"/p0"));
        // [/p/, /p1) reaches past /p0 but /from is open-ended and starts before /p0.
        assert!(p.allows(Access::Read, b"/p/", b"/p1"));
        assert!(p.allows(Access::Write, b"/w1", b""));
        assert!(p.allows(Access::Read, b"/w1", b""), "/w1 sorts after /from");
        assert!(!p.allows(Access::Read, b"/b", b""), "nothing grants /b");
        assert!(p.allows(Access::Write, b"/x", b""), "/x is past /from");
        assert!(p.allows(Access::Read, b"/zzz", b""));
        assert!(p.allows(Access::Read, b"/from", b"\0"));
        assert!(
            !p.allows(Access::Read, b"/fro", b"\0"),
            "starts before the grant"
        );
        assert!(!p.allows(Access::Read, b"\0", b"\0"), "every key");
    }

    #[test]
    fn ranges_need_contiguous_cover() {
        let p = UserPerms::merge(&[
            perm(PermType::Read, "a", b"c"),
            perm(PermType::Read, "c", b"e"),
            perm(PermType::Read, "f", b"h"),
        ]);
        assert!(p.allows(Access::Read, b"a", b"e"), "touching grants join");
        assert!(p.allows(Access::Read, b"b", b"d"));
        assert!(!p.allows(Access::Read, b"a", b"g"), "gap between e and f");
        assert!(!p.allows(Access::Read, b"a", b"\0"));
        assert!(p.allows(Access::Read, b"g", b""));
        assert!(!p.allows(Access::Read, b"e", b""));
        assert!(!p.allows(Access::Write, b"a", b""));
    }

    #[test]
    fn empty_key_grant_covers_nothing_but_nul_key_covers_everything() {
        let empty = UserPerms::merge(&[perm(PermType::Readwrite, "", b"\0")]);
        assert!(!empty.allows(Access::Read, b"a", b""));
        let all = UserPerms::merge(&[perm(PermType::Readwrite, "\0", b"\0")]);
        assert!(all.allows(Access::Read, b"a", b""));
        assert!(all.allows(Access::Write, b"\0", b"\0"));
        assert!(all.allows(Access::Read, b"zzz", b"zzzz"));
    }

    #[test]
    fn unknown_permission_types_grant_nothing() {
        let p = UserPerms::merge(&[Permission {
            perm_type: 7,
            key: b"a".to_vec(),
            range_end: vec![],
        }]);
        assert!(!p.allows(Access::Read, b"a", b""));
        assert!(!p.allows(Access::Write, b"a", b""));
    }
}

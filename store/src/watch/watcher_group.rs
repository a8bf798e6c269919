//! A set of a stream's watchers indexed by key, so that a chunk of events is routed to the
//! watchers it concerns without testing every watcher against every event (etcd's
//! `watcherGroup`: single keys in a map, ranges apart).
//!
//! The group holds ids; the watchers themselves live in the stream's map, which the caller
//! passes in. A watcher is in at most one group at a time.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use super::event::WatchEvent;
use super::watcher::Watcher;

/// Watched keys as the client named them (`key`, `range_end`), etcd's convention.
type Range = (Vec<u8>, Vec<u8>);

#[derive(Debug, Default)]
pub struct WatcherGroup {
    /// Single-key watchers by key.
    single: HashMap<Vec<u8>, Vec<i64>>,
    /// Range and from-key watchers.
    ranged: BTreeSet<i64>,
    /// How many members watch each distinct range: when there is only one, a read from
    /// storage can ask for just those keys.
    ranges: HashMap<Range, usize>,
    len: usize,
}

impl WatcherGroup {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, w: &Watcher) {
        match w.single_key() {
            Some(k) => self.single.entry(k.to_vec()).or_default().push(w.id),
            None => {
                self.ranged.insert(w.id);
            }
        }
        *self
            .ranges
            .entry((w.key.clone(), w.range_end.clone()))
            .or_default() += 1;
        self.len += 1;
    }

    /// Removes `w`; false if it was not a member.
    pub fn remove(&mut self, w: &Watcher) -> bool {
        let removed = match w.single_key() {
            Some(k) => match self.single.get_mut(k) {
                Some(ids) => {
                    let before = ids.len();
                    ids.retain(|id| *id != w.id);
                    let removed = ids.len() < before;
                    if ids.is_empty() {
                        self.single.remove(k);
                    }
                    removed
                }
                None => false,
            },
            None => self.ranged.remove(&w.id),
        };
        if removed {
            let range = (w.key.clone(), w.range_end.clone());
            if let Some(n) = self.ranges.get_mut(&range) {
                *n -= 1;
                if *n == 0 {
                    self.ranges.remove(&range);
                }
            }
            self.len -= 1;
        }
        removed
    }

    pub fn contains(&self, w: &Watcher) -> bool {
        match w.single_key() {
            Some(k) => self.single.get(k).is_some_and(|ids| ids.contains(&w.id)),
            None => self.ranged.contains(&w.id),
        }
    }

    /// Every member id (order unspecified).
    pub fn ids(&self) -> Vec<i64> {
        self.single
            .values()
            .flatten()
            .chain(self.ranged.iter())
            .copied()
            .collect()
    }

    /// The one range every member watches, if they all watch the same; otherwise every key.
    pub fn read_range(&self) -> Range {
        match (self.ranges.len(), self.ranges.keys().next()) {
            (1, Some(r)) => r.clone(),
            _ => (Vec::new(), vec![0]),
        }
    }

    /// For each member that `events` concern (see [`Watcher::accepts`]), the indexes of its
    /// events, ascending; members ordered by id.
    pub fn route(&self, watchers: &WatcherMap, events: &[Arc<WatchEvent>]) -> Routes {
        let mut out: Routes = Vec::new();
        // Where each member's entry is in `out`, once a second event could route to it.
        let mut slot: HashMap<i64, usize, BuildHasherDefault<IdHasher>> = HashMap::default();
        for (i, ev) in events.iter().enumerate() {
            let singles = self.single.get(ev.key()).into_iter().flatten();
            for id in singles.chain(self.ranged.iter()) {
                if !watchers.get(id).is_some_and(|w| w.accepts(ev.event())) {
                    continue;
                }
                if events.len() == 1 {
                    // Each member appears once: no need to look for its entry.
                    out.push((*id, vec![i]));
                    continue;
                }
                match slot.get(id) {
                    Some(&at) => out[at].1.push(i),
                    None => {
                        slot.insert(*id, out.len());
                        out.push((*id, vec![i]));
                    }
                }
            }
        }
        out.sort_unstable_by_key(|(id, _)| *id);
        out
    }
}

/// Each routed member's id and the indexes of its events (see [`WatcherGroup::route`]).
pub type Routes = Vec<(i64, Vec<usize>)>;

/// A stream's watchers by id.
pub type WatcherMap = HashMap<i64, Watcher, BuildHasherDefault<IdHasher>>;

/// Hashes watcher ids, which are small integers a stream picks itself (so not chosen to
/// collide): one multiplication spreads them over the table instead of SipHash's rounds.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_i64(&mut self, id: i64) {
        self.0 = (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::watcher::CreateWatch;
    use cairn_proto::mvccpb::{Event, KeyValue};

    fn w(id: i64, key: &str, end: &[u8]) -> Watcher {
        Watcher::new(
            id,
            CreateWatch {
                watch_id: id,
                key: key.into(),
                range_end: end.to_vec(),
                start_revision: 0,
                no_put: false,
                no_delete: false,
                prev_kv: false,
                progress_notify: false,
                fragment: false,
            },
            1,
        )
    }

    fn put(key: &str, rev: i64) -> Arc<WatchEvent> {
        Arc::new(WatchEvent::from(Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.into(),
                mod_revision: rev,
                ..Default::default()
            }),
            prev_kv: None,
        }))
    }

    #[test]
    fn routes_each_event_to_the_watchers_of_its_key() {
        let all = [
            w(1, "a", b""),
            w(2, "a", b""),
            w(3, "b", b""),
            w(4, "a", b"c"),
            w(5, "b", b"\0"),
        ];
        let watchers: WatcherMap = all.iter().map(|w| (w.id, w.clone())).collect();
        let mut g = WatcherGroup::default();
        for w in &all {
            g.insert(w);
        }
        assert_eq!(g.len(), 5);
        assert_eq!(
            g.read_range(),
            (vec![], vec![0]),
            "mixed ranges read all keys"
        );
        let events = [put("a", 2), put("b", 3), put("z", 4)];
        let routes = g.route(&watchers, &events);
        let expect: Routes = vec![
            (1, vec![0]),
            (2, vec![0]),
            (3, vec![1]),
            (4, vec![0, 1]),
            (5, vec![1, 2]),
        ];
        assert_eq!(routes, expect);
        let only_a = g.route(&watchers, &events[..1]);
        assert_eq!(only_a, vec![(1, vec![0]), (2, vec![0]), (4, vec![0])]);

        for w in &all[2..] {
            assert!(g.remove(w));
        }
        assert!(!g.remove(&all[4]), "already gone");
        assert!(g.contains(&all[0]) && !g.contains(&all[3]));
        assert_eq!(g.len(), 2);
        assert_eq!(g.read_range(), (b"a".to_vec(), vec![]), "one range left");
        let mut ids = g.ids();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
    }
}

//! Checking a list-append history (Jepsen's append workload): transactions append one unique
//! element to one or two per-key lists, guarded by each key's mod_revision.
//!
//! What a correct store guarantees, and what is checked:
//! - **no duplicates**: an element appears at most once in any observed list;
//! - **no phantoms**: every element in a list belongs to a transaction that committed or whose
//!   outcome is unknown — never to one whose compare failed, never to one never attempted;
//! - **no lost writes**: every committed transaction's element is in the final list of each
//!   of its keys;
//! - **atomicity**: a transaction's element is in the final lists of all its keys or of none;
//! - **one history per key**: every observed list is a prefix of that key's final list (no
//!   reordering, no divergent branch);
//! - **real time**: a committed transaction is visible to every read invoked after it
//!   completed, and two committed appends that did not overlap in time are in that order.

use std::collections::{BTreeMap, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOutcome {
    /// The compares held; the store answered with this revision.
    Committed { revision: i64 },
    /// A compare failed: nothing was written.
    Rejected,
    /// Timeout, Unavailable, connection lost: it may or may not have happened.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendTxn {
    pub client: usize,
    pub element: u64,
    pub keys: Vec<usize>,
    pub call: u64,
    pub ret: Option<u64>,
    pub outcome: TxnOutcome,
}

/// A list as the store returned it, at some instant within `call..ret`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRead {
    pub client: usize,
    pub key: usize,
    pub list: Vec<u64>,
    pub call: u64,
    pub ret: u64,
}

/// Every anomaly found, one readable line each (empty: the history is fine).
pub fn check(
    txns: &[AppendTxn],
    reads: &[ListRead],
    finals: &BTreeMap<usize, Vec<u64>>,
) -> Vec<String> {
    let mut anomalies = Vec::new();
    let by_element: HashMap<u64, &AppendTxn> = txns.iter().map(|t| (t.element, t)).collect();
    let empty = Vec::new();
    let final_of = |k: usize| finals.get(&k).unwrap_or(&empty);

    for r in reads {
        let mut seen = HashSet::new();
        for e in &r.list {
            if !seen.insert(*e) {
                anomalies.push(format!(
                    "duplicate: key {} read by client {} at {}ms holds element {} twice: {:?}",
                    r.key,
                    r.client,
                    r.call / 1_000_000,
                    show(*e),
                    r.list
                ));
            }
        }
        let fin = final_of(r.key);
        if !fin.starts_with(&r.list) {
            anomalies.push(format!(
                "divergence: key {} read by client {} at {}..{}ms is not a prefix of the final \
                 list\n    read:  {}\n    final: {}",
                r.key,
                r.client,
                r.call / 1_000_000,
                r.ret / 1_000_000,
                show_list(&r.list),
                show_list(fin)
            ));
        }
    }

    for (key, list) in finals {
        let mut seen = HashSet::new();
        for e in list {
            if !seen.insert(*e) {
                anomalies.push(format!(
                    "duplicate: final list of key {key} holds {} twice",
                    show(*e)
                ));
            }
            match by_element.get(e) {
                None => anomalies.push(format!(
                    "phantom: final list of key {key} holds {}, which no transaction appended",
                    show(*e)
                )),
                Some(t) if t.outcome == TxnOutcome::Rejected => anomalies.push(format!(
                    "phantom: final list of key {key} holds {} from a transaction whose compare \
                     failed (client {}, {}ms)",
                    show(*e),
                    t.client,
                    t.call / 1_000_000
                )),
                Some(t) if !t.keys.contains(key) => anomalies.push(format!(
                    "phantom: final list of key {key} holds {}, appended only to keys {:?}",
                    show(*e),
                    t.keys
                )),
                Some(_) => {}
            }
        }
    }

    for t in txns {
        let present: Vec<bool> = t
            .keys
            .iter()
            .map(|k| final_of(*k).contains(&t.element))
            .collect();
        if matches!(t.outcome, TxnOutcome::Committed { .. }) && present.iter().any(|p| !p) {
            anomalies.push(format!(
                "lost write: committed append of {} to keys {:?} (client {}, {}..{}ms) missing \
                 from the final lists of {:?}",
                show(t.element),
                t.keys,
                t.client,
                t.call / 1_000_000,
                t.ret.unwrap_or(0) / 1_000_000,
                t.keys
                    .iter()
                    .zip(&present)
                    .filter(|(_, p)| !**p)
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
            ));
        } else if present.iter().any(|p| *p) && present.iter().any(|p| !p) {
            anomalies.push(format!(
                "non-atomic: element {} of a transaction on keys {:?} is in only some of them \
                 ({present:?})",
                show(t.element),
                t.keys
            ));
        }
    }

    // Real time, per key, over committed appends.
    let mut committed: BTreeMap<usize, Vec<&AppendTxn>> = BTreeMap::new();
    for t in txns {
        if matches!(t.outcome, TxnOutcome::Committed { .. }) {
            for k in &t.keys {
                committed.entry(*k).or_default().push(t);
            }
        }
    }
    for r in reads {
        for t in committed.get(&r.key).into_iter().flatten() {
            if t.ret.is_some_and(|done| done < r.call) && !r.list.contains(&t.element) {
                anomalies.push(format!(
                    "stale read: client {} read key {} at {}ms without {}, committed by client \
                     {} at {}ms",
                    r.client,
                    r.key,
                    r.call / 1_000_000,
                    show(t.element),
                    t.client,
                    t.ret.unwrap_or(0) / 1_000_000
                ));
            }
        }
    }
    for (key, ts) in &committed {
        let fin = final_of(*key);
        let pos: HashMap<u64, usize> = fin.iter().enumerate().map(|(i, e)| (*e, i)).collect();
        for a in ts {
            for b in ts {
                let (Some(pa), Some(pb)) = (pos.get(&a.element), pos.get(&b.element)) else {
                    continue; // reported as lost above
                };
                if a.ret.is_some_and(|done| done < b.call) && pa > pb {
                    anomalies.push(format!(
                        "reorder: on key {key}, {} (done at {}ms) comes after {} (started at \
                         {}ms) in the final list",
                        show(a.element),
                        a.ret.unwrap_or(0) / 1_000_000,
                        show(b.element),
                        b.call / 1_000_000
                    ));
                }
            }
        }
    }
    anomalies
}

fn show(e: u64) -> String {
    format!("c{}#{}", e >> 32, e & 0xffff_ffff)
}

fn show_list(l: &[u64]) -> String {
    let items: Vec<String> = l.iter().map(|e| show(*e)).collect();
    format!("[{}]", items.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(element: u64, keys: &[usize], call: u64, ret: u64, outcome: TxnOutcome) -> AppendTxn {
        AppendTxn {
            client: 0,
            element,
            keys: keys.to_vec(),
            call,
            ret: Some(ret),
            outcome,
        }
    }

    fn read(key: usize, list: &[u64], call: u64, ret: u64) -> ListRead {
        ListRead {
            client: 1,
            key,
            list: list.to_vec(),
            call,
            ret,
        }
    }

    const OK: TxnOutcome = TxnOutcome::Committed { revision: 1 };

    #[test]
    fn a_clean_history_has_no_anomalies() {
        let txns = [
            txn(1, &[0], 0, 10, OK),
            txn(2, &[0, 1], 20, 30, OK),
            txn(3, &[1], 20, 30, TxnOutcome::Rejected),
            txn(4, &[1], 40, 50, TxnOutcome::Unknown),
        ];
        let reads = [read(0, &[1], 11, 12), read(1, &[2], 31, 32)];
        let finals = BTreeMap::from([(0, vec![1, 2]), (1, vec![2])]);
        assert_eq!(check(&txns, &reads, &finals), Vec::<String>::new());
    }

    #[test]
    fn lost_duplicated_phantom_and_partial_appends_are_reported() {
        let txns = [
            txn(1, &[0], 0, 10, OK),
            txn(2, &[0, 1], 20, 30, TxnOutcome::Unknown),
            txn(3, &[0], 40, 50, TxnOutcome::Rejected),
            txn(4, &[1], 60, 70, OK),
        ];
        let finals = BTreeMap::from([(0, vec![2, 3, 2]), (1, vec![4])]);
        let found = check(&txns, &[], &finals).join("\n");
        assert!(found.contains("lost write"), "{found}");
        assert!(found.contains("duplicate"), "{found}");
        assert!(found.contains("phantom"), "{found}");
        assert!(found.contains("non-atomic"), "{found}");
    }

    #[test]
    fn stale_reads_divergence_and_reordering_are_reported() {
        let txns = [txn(1, &[0], 0, 10, OK), txn(2, &[0], 20, 30, OK)];
        let finals = BTreeMap::from([(0, vec![2, 1])]);
        let reads = [read(0, &[], 15, 16), read(0, &[1], 17, 18)];
        let found = check(&txns, &reads, &finals).join("\n");
        assert!(found.contains("stale read"), "{found}");
        assert!(found.contains("divergence"), "{found}");
        assert!(found.contains("reorder"), "{found}");
    }
}

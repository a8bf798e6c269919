//! The watch workload: watchers on the whole key space from revision 1, each starting on its
//! own member and moving to another one whenever its stream breaks or goes quiet, resuming
//! from the revision after the last one it saw (as etcd's clients resume).
//!
//! Checks, with the cluster healed and the final revision known:
//! - each watcher saw every revision once, in order, with no gaps (every revision of this
//!   workload is a write, so the revisions `2..=final` must all appear);
//! - all watchers saw the same events in the same order;
//! - replaying the events gives exactly the final state read at the final revision;
//! - every acknowledged write appears at the revision that acknowledged it.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{RangeRequest, WatchCreateRequest, WatchRequest};
use cairn_proto::mvccpb::event::EventType;
use tokio::sync::watch;
use tokio_stream::StreamExt;

use crate::cluster::lazy_channel;

/// A stream that has said nothing for this long is presumed stuck on a lost member.
const QUIET: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenEvent {
    pub revision: i64,
    pub key: Vec<u8>,
    /// None for a delete.
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
pub struct WatchLog {
    pub watcher: usize,
    pub events: Vec<SeenEvent>,
    pub reconnects: usize,
    /// Things the stream itself reported that a clean history never has (a compaction cancel,
    /// a revision going backwards).
    pub problems: Vec<String>,
}

/// Watches everything from revision 1 until `target` holds a revision this watcher has seen
/// (or `give_up` passes: the check then reports what is missing).
pub async fn watcher(
    id: usize,
    endpoints: Arc<Vec<String>>,
    mut target: watch::Receiver<i64>,
    give_up: watch::Receiver<bool>,
) -> WatchLog {
    let mut log = WatchLog {
        watcher: id,
        ..Default::default()
    };
    let mut member = id % endpoints.len();
    let mut last_rev = 1;
    'streams: loop {
        let done = |last: i64, target: &watch::Receiver<i64>| {
            let t = *target.borrow();
            t > 0 && last >= t
        };
        if done(last_rev, &target) || *give_up.borrow() {
            return log;
        }
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let create = WatchCreateRequest {
            key: vec![0],
            range_end: vec![0],
            start_revision: last_rev + 1,
            ..Default::default()
        };
        let _ = tx
            .send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(create)),
            })
            .await;
        let mut client = WatchClient::new(lazy_channel(&endpoints[member]));
        let opened = tokio::time::timeout(
            QUIET,
            client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(s)) => s.into_inner(),
            _ => {
                member = (member + 1) % endpoints.len();
                log.reconnects += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                r = tokio::time::timeout(QUIET, stream.next()) => r,
                changed = target.changed() => {
                    if changed.is_err() || done(last_rev, &target) {
                        return log;
                    }
                    continue;
                }
            };
            let resp = match next {
                Ok(Some(Ok(resp))) => resp,
                // Broken, ended or quiet: resume on the next member.
                _ => {
                    if done(last_rev, &target) || *give_up.borrow() {
                        return log;
                    }
                    member = (member + 1) % endpoints.len();
                    log.reconnects += 1;
                    drop(tx);
                    continue 'streams;
                }
            };
            if resp.canceled {
                log.problems.push(format!(
                    "watcher {id}: stream cancelled (compact_revision {}, reason {:?}) while \
                     resuming from {}",
                    resp.compact_revision,
                    resp.cancel_reason,
                    last_rev + 1
                ));
                member = (member + 1) % endpoints.len();
                continue 'streams;
            }
            for ev in resp.events {
                let Some(kv) = ev.kv else { continue };
                if kv.mod_revision < last_rev {
                    log.problems.push(format!(
                        "watcher {id}: revision went back from {last_rev} to {}",
                        kv.mod_revision
                    ));
                }
                last_rev = last_rev.max(kv.mod_revision);
                let value = (ev.r#type != EventType::Delete as i32).then_some(kv.value);
                log.events.push(SeenEvent {
                    revision: kv.mod_revision,
                    key: kv.key,
                    value,
                });
            }
            if done(last_rev, &target) {
                return log;
            }
        }
    }
}

/// Every key and value at `revision`, read from `endpoint` (retried until `within`).
pub async fn state_at(
    endpoint: &str,
    revision: i64,
    within: Duration,
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut kv = KvClient::new(lazy_channel(endpoint));
    loop {
        let req = RangeRequest {
            key: vec![0],
            range_end: vec![0],
            revision,
            ..Default::default()
        };
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(5), kv.range(req)).await {
            return r
                .into_inner()
                .kvs
                .into_iter()
                .map(|kv| (kv.key, kv.value))
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "reading the final state never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A write some client saw acknowledged: `key` holds `value` from `revision`.
#[derive(Debug, Clone)]
pub struct AckedWrite {
    pub revision: i64,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

pub fn check(
    logs: &[WatchLog],
    final_revision: i64,
    final_state: &BTreeMap<Vec<u8>, Vec<u8>>,
    acked: &[AckedWrite],
) -> Vec<String> {
    let mut anomalies: Vec<String> = logs.iter().flat_map(|l| l.problems.clone()).collect();
    let upto = |l: &WatchLog| -> Vec<SeenEvent> {
        l.events
            .iter()
            .filter(|e| e.revision <= final_revision)
            .cloned()
            .collect()
    };
    let Some(first) = logs.first() else {
        return anomalies;
    };
    let reference = upto(first);

    for log in logs {
        let events = upto(log);
        let mut seen = HashSet::new();
        for e in &events {
            if !seen.insert((e.revision, e.key.clone())) {
                anomalies.push(format!(
                    "watcher {}: {} at revision {} delivered twice",
                    log.watcher,
                    show(&e.key),
                    e.revision
                ));
            }
        }
        let revisions: Vec<i64> = events.iter().map(|e| e.revision).collect();
        let mut expected = 2;
        for r in dedup(&revisions) {
            if r != expected {
                anomalies.push(format!(
                    "watcher {}: revisions {expected}..{} missing (next seen: {r})",
                    log.watcher,
                    r - 1
                ));
            }
            expected = r + 1;
        }
        if expected <= final_revision {
            anomalies.push(format!(
                "watcher {}: saw up to revision {} of {final_revision} ({} reconnects)",
                log.watcher,
                expected - 1,
                log.reconnects
            ));
        }
        if log.watcher != first.watcher {
            if let Some(i) =
                (0..events.len().max(reference.len())).find(|&i| events.get(i) != reference.get(i))
            {
                anomalies.push(format!(
                    "watchers {} and {} diverge at event #{i}: {:?} vs {:?}",
                    first.watcher,
                    log.watcher,
                    reference.get(i).map(describe),
                    events.get(i).map(describe)
                ));
            }
        }
    }

    let mut replayed = BTreeMap::new();
    for e in &reference {
        match &e.value {
            Some(v) => replayed.insert(e.key.clone(), v.clone()),
            None => replayed.remove(&e.key),
        };
    }
    if &replayed != final_state {
        let keys: Vec<_> = replayed
            .keys()
            .chain(final_state.keys())
            .filter(|k| replayed.get(*k) != final_state.get(*k))
            .map(|k| show(k))
            .collect();
        anomalies.push(format!(
            "replaying watcher {}'s events does not give the state at revision \
             {final_revision}; keys that differ: {keys:?}",
            first.watcher
        ));
    }

    let at: HashSet<(i64, &[u8], &[u8])> = reference
        .iter()
        .filter_map(|e| Some((e.revision, &e.key[..], e.value.as_deref()?)))
        .collect();
    for w in acked.iter().filter(|w| w.revision <= final_revision) {
        if !at.contains(&(w.revision, &w.key[..], &w.value[..])) {
            anomalies.push(format!(
                "acknowledged write of {} = {} at revision {} never reached the watchers",
                show(&w.key),
                show(&w.value),
                w.revision
            ));
        }
    }
    anomalies
}

fn dedup(revs: &[i64]) -> Vec<i64> {
    let mut out: Vec<i64> = Vec::with_capacity(revs.len());
    for &r in revs {
        if out.last() != Some(&r) {
            out.push(r);
        }
    }
    out
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(e: &SeenEvent) -> String {
    match &e.value {
        Some(v) => format!("put {}={} @{}", show(&e.key), show(v), e.revision),
        None => format!("delete {} @{}", show(&e.key), e.revision),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: i64, k: &str, v: &str) -> SeenEvent {
        SeenEvent {
            revision: rev,
            key: k.into(),
            value: Some(v.into()),
        }
    }

    fn log(id: usize, events: Vec<SeenEvent>) -> WatchLog {
        WatchLog {
            watcher: id,
            events,
            ..Default::default()
        }
    }

    #[test]
    fn clean_history_passes_and_each_fault_is_named() {
        let good = vec![put(2, "a", "1"), put(3, "b", "2"), put(3, "c", "3")];
        let state: BTreeMap<Vec<u8>, Vec<u8>> = [("a", "1"), ("b", "2"), ("c", "3")]
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        let acked = vec![AckedWrite {
            revision: 2,
            key: b"a".to_vec(),
            value: b"1".to_vec(),
        }];
        let clean = [log(0, good.clone()), log(1, good.clone())];
        assert!(check(&clean, 3, &state, &acked).is_empty());

        let gap = [log(0, good.clone()), log(1, good[1..].to_vec())];
        let found = check(&gap, 3, &state, &acked).join("\n");
        assert!(
            found.contains("watcher 1: revisions 2..2 missing"),
            "{found}"
        );
        assert!(found.contains("diverge"), "{found}");

        let mut twice = good.clone();
        twice.push(put(3, "c", "3"));
        let found = check(&[log(0, twice)], 3, &state, &acked).join("\n");
        assert!(found.contains("delivered twice"), "{found}");

        let found = check(&clean, 4, &state, &acked).join("\n");
        assert!(found.contains("saw up to revision 3 of 4"), "{found}");

        let lost = vec![AckedWrite {
            revision: 3,
            key: b"b".to_vec(),
            value: b"9".to_vec(),
        }];
        let found = check(&clean, 3, &state, &lost).join("\n");
        assert!(found.contains("never reached the watchers"), "{found}");

        let mut other = state.clone();
        other.insert(b"z".to_vec(), b"0".to_vec());
        let found = check(&clean, 3, &other, &acked).join("\n");
        assert!(found.contains("keys that differ: [\"z\"]"), "{found}");
    }
}

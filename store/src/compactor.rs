//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), with etcd's
//! meaning. Runs on every member but acts only on the leader, which proposes an ordinary
//! Compact through the log, so every member compacts at the same point.
//!
//! - periodic: keep `retention` of history. The current revision is sampled every tenth of
//!   the compaction period (the retention, or one hour if the retention is longer), and every
//!   period the store is compacted to the newest sample at least `retention` old.
//! - revision: keep the last `retention` revisions, checked every five minutes.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::CompactionRequest;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::node::Node;
use crate::raft::Command;

/// How often revision mode checks (etcd's fixed interval).
const REVISION_CHECK: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Periodic(Duration),
    Revision(i64),
}

/// Parses the retention flag for a mode; `Ok(None)` means auto compaction is off.
pub fn policy(mode: &str, retention: &str) -> Result<Option<Policy>, String> {
    match mode {
        "periodic" => {
            // A bare number is hours, as in etcd; otherwise a Go duration.
            let d = match retention.parse::<u64>() {
                Ok(hours) => Duration::from_secs(hours * 3600),
                Err(_) => crate::config::parse_go_duration(retention)?,
            };
            Ok((!d.is_zero()).then_some(Policy::Periodic(d)))
        }
        "revision" => {
            let n: i64 = retention
                .parse()
                .map_err(|_| format!("invalid revision retention {retention:?}"))?;
            if n < 0 {
                return Err(format!("invalid revision retention {retention:?}"));
            }
            Ok((n > 0).then_some(Policy::Revision(n)))
        }
        other => Err(format!(
            "unknown auto-compaction-mode {other:?} (periodic or revision)"
        )),
    }
}

pub fn spawn(node: Arc<Node>, policy: Policy, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let (tick, period) = match policy {
            Policy::Periodic(retention) => {
                let period = retention.min(Duration::from_secs(3600));
                ((period / 10).max(Duration::from_millis(100)), period)
            }
            Policy::Revision(_) => (REVISION_CHECK, REVISION_CHECK),
        };
        let mut samples: VecDeque<(Instant, i64)> = VecDeque::new();
        let mut last_run = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let now = Instant::now();
            let current = node.mvcc.current_revision();
            samples.push_back((now, current));
            if now.duration_since(last_run) < period {
                continue;
            }
            last_run = now;
            let target = match policy {
                Policy::Periodic(retention) => {
                    // Newest sample at least `retention` old; older ones are no longer needed.
                    let mut target = None;
                    while let Some(&(at, rev)) = samples.front() {
                        if now.duration_since(at) < retention {
                            break;
                        }
                        target = Some(rev);
                        samples.pop_front();
                    }
                    target
                }
                Policy::Revision(keep) => {
                    samples.clear();
                    Some(current - keep)
                }
            };
            let Some(target) = target else { continue };
            if target <= node.mvcc.compact_revision().max(0) || node.raft.as_leader().is_err() {
                continue;
            }
            let cmd = Command::Kv(cairn_mvcc::Command::Compact(CompactionRequest {
                revision: target,
                physical: false,
            }));
            match node.propose(cmd).await {
                Ok(_) => tracing::info!(revision = target, "auto compaction"),
                Err(e) => tracing::debug!(revision = target, "auto compaction skipped: {e}"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_flags_parse_as_etcd() {
        assert_eq!(policy("periodic", "0"), Ok(None));
        assert_eq!(
            policy("periodic", "72"),
            Ok(Some(Policy::Periodic(Duration::from_secs(72 * 3600))))
        );
        assert_eq!(
            policy("periodic", "30m"),
            Ok(Some(Policy::Periodic(Duration::from_secs(1800))))
        );
        assert_eq!(policy("revision", "1000"), Ok(Some(Policy::Revision(1000))));
        assert!(policy("revision", "1h").is_err());
        assert!(policy("weekly", "1").is_err());
    }
}

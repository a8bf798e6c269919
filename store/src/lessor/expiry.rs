//! The leader's expiry loop: follows this member's leadership (promoting and demoting the
//! lessor) and proposes `LeaseRevoke` through Raft for leases whose time is up.
//!
//! Revocations are paced to [`REVOKES_PER_SECOND`] on average (bursts of at most half of it), as
//! etcd's lessor does, so a mass expiry is spread out instead of flooding the log and stalling
//! every other write. Each batch first re-confirms leadership; each revoke is proposed on this
//! member only — never forwarded — so a leader that has just been deposed does not hand its
//! revokes to the new leader, whose lessor has just given every lease a full TTL. A revoke that
//! does not land is offered again after [`RETRY_INTERVAL`] if this member still leads.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use openraft::async_runtime::WatchReceiver;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::schedule::REVOKES_PER_SECOND;
use super::{LeaseChange, Lessor};
use crate::raft::{Command, CommandResult, LeaderId, Raft};
use crate::server::errors::EtcdError;

/// Largest batch of revocations handed out at once (etcd: half the per-second rate, per 500 ms).
const BATCH: usize = REVOKES_PER_SECOND / 2;
/// Revocations in flight at once (etcd's `maxPendingRevokes`).
const MAX_PENDING_REVOKES: usize = 16;
/// An expired lease whose revoke has not been applied by then is offered again (etcd's
/// `expiredLeaseRetryInterval`).
pub const RETRY_INTERVAL: Duration = Duration::from_secs(3);

/// Starts following leadership and expiring leases; runs until `stop` turns true.
///
/// Started right after Raft, before this member can have been elected, and it looks at the
/// current state first, so no promotion is missed.
pub fn spawn(
    lessor: Arc<Lessor>,
    raft: Raft,
    request_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        tokio::select! {
            _ = follow_leadership(&lessor, &raft) => {}
            _ = expire(&lessor, &raft, request_timeout) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
        lessor.demote();
    })
}

/// Promotes the lessor when this member becomes leader (its vote is committed: a quorum
/// granted it), demotes it when that leadership ends — also between two consecutive terms of
/// its own, so every leadership starts from a fresh promotion.
async fn follow_leadership(lessor: &Lessor, raft: &Raft) {
    let mut metrics = raft.server_metrics();
    let mut leading: Option<LeaderId> = None;
    loop {
        let now_leading = {
            let m = metrics.borrow_watched();
            (m.state.is_leader() && m.vote.is_committed()).then(|| *m.vote.leader_id())
        };
        if now_leading != leading {
            if leading.is_some() {
                lessor.demote();
            }
            if now_leading.is_some() {
                lessor.promote();
            }
            leading = now_leading;
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

async fn expire(lessor: &Lessor, raft: &Raft, request_timeout: Duration) {
    let mut changed = lessor.subscribe();
    // Pacing: each revocation handed out uses up 1/REVOKES_PER_SECOND of a second.
    let mut next_allowed = Instant::now();
    loop {
        tokio::time::sleep_until(next_allowed).await;
        let now = Instant::now();
        let expired = lessor.with_schedule(|s| s.take_expired(now, BATCH, RETRY_INTERVAL));
        if !expired.is_empty() {
            next_allowed =
                now + Duration::from_secs(1) * expired.len() as u32 / REVOKES_PER_SECOND as u32;
            tracing::debug!(count = expired.len(), "revoking expired leases");
            revoke(lessor, raft, request_timeout, expired).await;
            continue;
        }
        let wake = lessor
            .with_schedule(|s| s.next_due())
            .unwrap_or(now + Duration::from_secs(3600));
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            r = changed.changed() => if r.is_err() { return },
        }
    }
}

async fn revoke(lessor: &Lessor, raft: &Raft, request_timeout: Duration, ids: Vec<i64>) {
    if let Err(e) = raft
        .ensure_linearizable(openraft::LinearizerOption::new(None, true))
        .await
    {
        // Not (or no longer surely) the leader: nothing is revoked. If this member still leads
        // later, the leases come back after the retry interval; if not, demotion drops them.
        tracing::debug!("not revoking expired leases: leadership unconfirmed: {e}");
        return;
    }
    futures::stream::iter(ids)
        .for_each_concurrent(MAX_PENDING_REVOKES, |id| async move {
            let cmd = Command::Kv(cairn_mvcc::Command::LeaseRevoke { id });
            let write = tokio::time::timeout(request_timeout, raft.client_write(cmd));
            match write.await {
                Ok(Ok(resp)) => {
                    if let CommandResult::Err(EtcdError::LeaseNotFound) = resp.data {
                        // Already gone from the table: forget it here too.
                        lessor.applied(&[LeaseChange::Revoked { id }]);
                    }
                }
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                    tracing::debug!(lease = %format!("{id:016x}"), "not the leader any more; revoke dropped");
                }
                Ok(Err(e)) => tracing::warn!(lease = %format!("{id:016x}"), "revoking an expired lease: {e}"),
                Err(_) => tracing::warn!(lease = %format!("{id:016x}"), "revoking an expired lease timed out"),
            }
        })
        .await;
}

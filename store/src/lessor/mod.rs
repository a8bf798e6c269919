//! The lessor: every member's view of the granted leases, and — on the leader only — when each
//! one expires (etcd's `lease.Lessor`).
//!
//! - [`schedule`]: the bookkeeping (lease set, expiry instants, revocation queue), no I/O;
//! - [`leader`]: keep-alives and time-to-live questions, answered by the leader's lessor —
//!   locally when this member leads, forwarded to the leader over the peer `Forward` RPC
//!   otherwise;
//! - [`expiry`]: the leader's loop that proposes `LeaseRevoke` for expired leases through Raft.
//!
//! Invariants:
//! - the lease set mirrors the MVCC lease table: loaded when the member starts and after a
//!   snapshot is installed, then updated by the state machine after each committed batch and
//!   before the batch's clients get their responses, so a keep-alive that follows a grant finds
//!   the lease;
//! - only the primary (the member that is the Raft leader) tracks expiry instants; on other
//!   members leases never expire, so no lease ends on a follower's clock or because of an
//!   election: on promotion every lease gets its full TTL plus an election timeout, as etcd's
//!   `Promote`, and on demotion all timing is dropped;
//! - a lease ends only through a `LeaseRevoke` committed in the log, proposed by the leader
//!   after it re-confirmed its leadership, at most `REVOKES_PER_SECOND`.

pub mod expiry;
pub mod leader;
pub mod schedule;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use cairn_mvcc::Mvcc;
use tokio::sync::watch;
use tokio::time::Instant;

use schedule::Schedule;

pub use cairn_wire::validate::MAX_LEASE_TTL;

/// etcd's minimum lease TTL: 1.5 election timeouts (counted in heartbeat ticks, as etcd does),
/// rounded up to whole seconds, so a lease cannot expire during the election that follows a
/// leader's loss. 2 s with the default 100 ms heartbeat and 1000 ms election timeout.
pub fn min_lease_ttl(heartbeat_ms: u64, election_ms: u64) -> i64 {
    let heartbeat_ms = heartbeat_ms.max(1);
    let election_ticks = election_ms / heartbeat_ms;
    let min_ms = (3 * election_ticks / 2) * heartbeat_ms;
    min_ms.div_ceil(1000) as i64
}

/// A committed change to the lease table, reported by the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseChange {
    Granted { id: i64, ttl: i64 },
    Revoked { id: i64 },
}

impl LeaseChange {
    /// The lease change made by an applied command, if it succeeded and touched a lease.
    pub fn of(cmd: &cairn_mvcc::Command, result: &cairn_mvcc::CommandResult) -> Option<Self> {
        match (cmd, result) {
            (cairn_mvcc::Command::LeaseGrant { id, ttl }, Ok(_)) => {
                Some(LeaseChange::Granted { id: *id, ttl: *ttl })
            }
            (cairn_mvcc::Command::LeaseRevoke { id }, Ok(_)) => {
                Some(LeaseChange::Revoked { id: *id })
            }
            _ => None,
        }
    }
}

pub struct Lessor {
    mvcc: Arc<Mvcc>,
    schedule: Mutex<Schedule>,
    /// Bumped whenever a lease appears or disappears or leadership changes: wakes keep-alives
    /// waiting on an expired lease and the expiry loop waiting for the next deadline.
    generation: watch::Sender<u64>,
    /// TTLs below this are raised to it at grant.
    pub min_ttl: i64,
    /// Added to every TTL on promotion: the election timeout.
    promote_extend: Duration,
}

impl Lessor {
    /// A lessor holding the leases of the store's lease table; not primary.
    pub fn new(mvcc: Arc<Mvcc>, min_ttl: i64, election_timeout: Duration) -> anyhow::Result<Self> {
        let lessor = Self {
            mvcc,
            schedule: Mutex::new(Schedule::default()),
            generation: watch::channel(0).0,
            min_ttl,
            promote_extend: election_timeout,
        };
        lessor.reload()?;
        Ok(lessor)
    }

    fn lock(&self) -> MutexGuard<'_, Schedule> {
        self.schedule.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// Re-reads the lease table (after a snapshot install, or on promotion).
    ///
    /// The table is read while the schedule is locked, so a change committed concurrently is
    /// either in the read or reported afterwards through [`Self::applied`] (which is idempotent).
    pub fn reload(&self) -> Result<(), cairn_mvcc::MvccError> {
        {
            let mut s = self.lock();
            let table: Vec<(i64, i64)> = self
                .mvcc
                .leases()?
                .into_iter()
                .map(|l| (l.id, l.ttl))
                .collect();
            s.reload(&table, Instant::now());
        }
        self.bump();
        Ok(())
    }

    /// Called by the state machine with the lease changes of a committed batch.
    pub fn applied(&self, changes: &[LeaseChange]) {
        if changes.is_empty() {
            return;
        }
        {
            let now = Instant::now();
            let mut s = self.lock();
            for c in changes {
                match *c {
                    LeaseChange::Granted { id, ttl } => {
                        if !s.contains(id) {
                            s.grant(id, ttl, now);
                        }
                    }
                    LeaseChange::Revoked { id } => {
                        s.revoke(id);
                    }
                }
            }
        }
        self.bump();
    }

    /// This member became the leader.
    pub fn promote(&self) {
        {
            let mut s = self.lock();
            match self.mvcc.leases() {
                Ok(table) => {
                    let table: Vec<(i64, i64)> = table.into_iter().map(|l| (l.id, l.ttl)).collect();
                    s.reload(&table, Instant::now());
                }
                // The set kept from applied commands is still right; only a snapshot
                // install could have made it stale, and that reloads by itself.
                Err(e) => tracing::warn!("reloading leases on promotion: {e}"),
            }
            s.promote(Instant::now(), self.promote_extend);
            tracing::info!(leases = s.len(), "lessor promoted: leases refreshed");
        }
        self.bump();
    }

    /// This member stopped being the leader.
    pub fn demote(&self) {
        self.lock().demote();
        tracing::info!("lessor demoted: lease expiry stopped");
        self.bump();
    }

    pub fn is_primary(&self) -> bool {
        self.lock().is_primary()
    }

    /// Every live lease id (etcd's `Leases`: by expiry on the leader).
    pub fn ids(&self) -> Vec<i64> {
        self.lock().ids()
    }

    pub(crate) fn with_schedule<R>(&self, f: impl FnOnce(&mut Schedule) -> R) -> R {
        f(&mut self.lock())
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    pub(crate) fn mvcc(&self) -> &Mvcc {
        &self.mvcc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_ttl_is_etcds() {
        // etcd defaults: 100 ms heartbeat, 1000 ms election: 15 ticks of 100 ms = 1.5 s -> 2 s.
        assert_eq!(min_lease_ttl(100, 1000), 2);
        assert_eq!(min_lease_ttl(50, 500), 1);
        assert_eq!(min_lease_ttl(100, 5000), 8);
    }
}

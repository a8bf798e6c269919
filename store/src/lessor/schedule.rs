//! The lessor's bookkeeping, with no I/O and no clock of its own: every method that needs the
//! time is given `now`, so the expiry rules are tested with made-up instants.
//!
//! Invariants:
//! - `leases` mirrors the MVCC lease table (the caller feeds it every applied grant / revoke);
//! - while not primary, no lease has an expiry and `queue` is empty: a follower's clock never
//!   ends a lease;
//! - while primary, every lease has an expiry, and `queue` holds exactly one `(due, id)` per
//!   lease, `due` being its expiry, or — once it was handed out for revocation — the instant at
//!   which the revocation is retried if it has not landed by then.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;

/// etcd's revocation budget (`leaseRevokeRate`): leases per second the leader may revoke.
pub const REVOKES_PER_SECOND: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    /// Granted TTL in seconds (already raised to the minimum).
    ttl: i64,
    /// When the lease ends; `None` when this lessor is not primary.
    expiry: Option<Instant>,
    /// Its key in `queue`, if queued.
    due: Option<Instant>,
}

/// Why a renewal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenewRefusal {
    /// This member is not (yet, or no longer) the primary; ask the leader.
    NotPrimary,
    /// No such lease.
    NotFound,
    /// The lease has expired and its revocation is on its way: as etcd, the renewal must wait
    /// for the revoke (then: not found) or a demotion (then: ask the new leader).
    Expired,
}

/// What a lookup on the primary reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTimes {
    /// Granted TTL in seconds.
    pub granted: i64,
    /// Time left, `None` if this lessor is not primary (no expiry is tracked); zero once expired.
    pub remaining: Option<Duration>,
    /// Signed seconds left, truncated toward zero as etcd's `int64(Remaining().Seconds())`;
    /// negative while an expired lease waits for its revoke.
    pub remaining_secs: i64,
}

#[derive(Debug, Default)]
pub struct Schedule {
    leases: HashMap<i64, Entry>,
    queue: BTreeSet<(Instant, i64)>,
    primary: bool,
}

impl Schedule {
    pub fn is_primary(&self) -> bool {
        self.primary
    }

    pub fn len(&self) -> usize {
        self.leases.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// A lease was granted (applied). On the primary it starts its TTL now, as etcd's
    /// `refresh(0)` in `Grant`.
    pub fn grant(&mut self, id: i64, ttl: i64, now: Instant) {
        self.remove(id);
        let expiry = self.primary.then(|| now + secs(ttl));
        self.leases.insert(
            id,
            Entry {
                ttl,
                expiry,
                due: None,
            },
        );
        if let Some(at) = expiry {
            self.enqueue(id, at);
        }
    }

    /// A lease was revoked (applied). Returns whether it was known.
    pub fn revoke(&mut self, id: i64) -> bool {
        self.remove(id).is_some()
    }

    /// Makes the lease set exactly `table` (the MVCC lease table), keeping the timing of leases
    /// already known; new ones start their TTL now if primary.
    pub fn reload(&mut self, table: &[(i64, i64)], now: Instant) {
        let wanted: HashMap<i64, i64> = table.iter().copied().collect();
        let stale: Vec<i64> = self
            .leases
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in stale {
            self.remove(id);
        }
        for (&id, &ttl) in &wanted {
            match self.leases.get_mut(&id) {
                Some(e) => e.ttl = ttl,
                None => self.grant(id, ttl, now),
            }
        }
    }

    /// Becomes primary: every lease gets its full TTL plus `extend` from now (etcd's `Promote`,
    /// where `extend` is the election timeout), so no lease ends because leadership moved.
    ///
    /// When a mass of leases would then expire together, those beyond 3/4 of the revocation
    /// budget per second are pushed back (etcd's pile-up spreading), so their revocations never
    /// take the whole budget and a keep-alive that arrives late still finds its lease.
    pub fn promote(&mut self, now: Instant, extend: Duration) {
        self.primary = true;
        self.queue.clear();
        for e in self.leases.values_mut() {
            e.expiry = Some(now + extend + secs(e.ttl));
            e.due = None;
        }
        if self.leases.len() >= REVOKES_PER_SECOND {
            self.spread_pile_up(now, extend);
        }
        let ids: Vec<(i64, Instant)> = self
            .leases
            .iter()
            .filter_map(|(id, e)| e.expiry.map(|at| (*id, at)))
            .collect();
        for (id, at) in ids {
            self.enqueue(id, at);
        }
    }

    fn spread_pile_up(&mut self, now: Instant, extend: Duration) {
        let mut order: Vec<(Instant, i64)> = self
            .leases
            .iter()
            .filter_map(|(id, e)| e.expiry.map(|at| (at, *id)))
            .collect();
        order.sort();
        let Some(&(first, _)) = order.first() else {
            return;
        };
        let target_per_second = (3 * REVOKES_PER_SECOND / 4) as f64;
        let mut base = first.saturating_duration_since(now);
        let mut next_window = base + Duration::from_secs(1);
        let mut expires = 0usize;
        for (at, id) in order {
            let remaining = at.saturating_duration_since(now);
            if remaining > next_window {
                base = remaining;
                next_window = base + Duration::from_secs(1);
                expires = 1;
                continue;
            }
            expires += 1;
            if expires as f64 <= target_per_second {
                continue;
            }
            // Delay this lease so that at most `target_per_second` expire per second of the
            // window; leases already later than the window's start need less delay.
            let rate_delay = Duration::from_secs_f64(expires as f64 / target_per_second)
                .saturating_sub(remaining.saturating_sub(base));
            next_window = base + rate_delay;
            if let Some(e) = self.leases.get_mut(&id) {
                e.expiry = Some(now + rate_delay + extend + secs(e.ttl));
            }
        }
    }

    /// Stops being primary: no lease expires on this member any more (etcd's `Demote`).
    pub fn demote(&mut self) {
        self.primary = false;
        self.queue.clear();
        for e in self.leases.values_mut() {
            e.expiry = None;
            e.due = None;
        }
    }

    /// A keep-alive: the lease lives a full TTL from now. Returns the granted TTL.
    pub fn renew(&mut self, id: i64, now: Instant) -> Result<i64, RenewRefusal> {
        if !self.primary {
            return Err(RenewRefusal::NotPrimary);
        }
        let e = *self.leases.get(&id).ok_or(RenewRefusal::NotFound)?;
        if e.expiry.is_some_and(|at| at <= now) {
            return Err(RenewRefusal::Expired);
        }
        self.dequeue(id);
        let at = now + secs(e.ttl);
        if let Some(e) = self.leases.get_mut(&id) {
            e.expiry = Some(at);
        }
        self.enqueue(id, at);
        Ok(e.ttl)
    }

    pub fn lookup(&self, id: i64, now: Instant) -> Option<LeaseTimes> {
        let e = self.leases.get(&id)?;
        let remaining = e.expiry.map(|at| at.saturating_duration_since(now));
        let remaining_secs = match e.expiry {
            Some(at) if at >= now => (at - now).as_secs() as i64,
            Some(at) => -((now - at).as_secs() as i64),
            None => i64::MAX,
        };
        Some(LeaseTimes {
            granted: e.ttl,
            remaining,
            remaining_secs,
        })
    }

    /// Lease ids: by expiry on the primary (as etcd lists them), by id elsewhere.
    pub fn ids(&self) -> Vec<i64> {
        let mut all: Vec<(Option<Instant>, i64)> =
            self.leases.iter().map(|(id, e)| (e.expiry, *id)).collect();
        all.sort();
        all.into_iter().map(|(_, id)| id).collect()
    }

    /// The earliest instant at which [`Self::take_expired`] has something to hand out.
    pub fn next_due(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Hands out up to `limit` leases whose expiry (or retry instant) has passed, and queues
    /// each again at `now + retry` in case its revocation does not land (etcd's
    /// `expiredLeaseRetryInterval`).
    pub fn take_expired(&mut self, now: Instant, limit: usize, retry: Duration) -> Vec<i64> {
        if !self.primary {
            return Vec::new();
        }
        let mut out = Vec::new();
        while out.len() < limit {
            match self.queue.first() {
                Some(&(at, id)) if at <= now => {
                    self.dequeue(id);
                    self.enqueue(id, now + retry);
                    out.push(id);
                }
                _ => break,
            }
        }
        out
    }

    fn remove(&mut self, id: i64) -> Option<Entry> {
        self.dequeue(id);
        self.leases.remove(&id)
    }

    fn enqueue(&mut self, id: i64, at: Instant) {
        if let Some(e) = self.leases.get_mut(&id) {
            e.due = Some(at);
            self.queue.insert((at, id));
        }
    }

    fn dequeue(&mut self, id: i64) {
        if let Some(e) = self.leases.get_mut(&id) {
            if let Some(at) = e.due.take() {
                self.queue.remove(&(at, id));
            }
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const RETRY: Duration = Duration::from_secs(3);

    fn primary(now: Instant) -> Schedule {
        let mut s = Schedule::default();
        s.promote(now, Duration::ZERO);
        s
    }

    #[test]
    fn followers_never_expire_anything() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.grant(1, 1, t0);
        assert!(s.take_expired(t0 + 100 * S, 10, RETRY).is_empty());
        assert_eq!(s.renew(1, t0), Err(RenewRefusal::NotPrimary));
        assert_eq!(s.lookup(1, t0).unwrap().remaining, None);
    }

    #[test]
    fn a_lease_expires_after_its_ttl_unless_renewed() {
        let t0 = Instant::now();
        let mut s = primary(t0);
        s.grant(7, 5, t0);
        assert!(s.take_expired(t0 + 4 * S, 10, RETRY).is_empty());
        assert_eq!(s.renew(7, t0 + 4 * S), Ok(5));
        assert!(s.take_expired(t0 + 8 * S, 10, RETRY).is_empty());
        assert_eq!(s.lookup(7, t0 + 8 * S).unwrap().remaining_secs, 1);
        assert_eq!(s.take_expired(t0 + 9 * S, 10, RETRY), vec![7]);
        // Handed out once; offered again only after the retry interval.
        assert!(s.take_expired(t0 + 10 * S, 10, RETRY).is_empty());
        assert_eq!(s.renew(7, t0 + 10 * S), Err(RenewRefusal::Expired));
        assert_eq!(s.take_expired(t0 + 12 * S, 10, RETRY), vec![7]);
        assert!(s.revoke(7));
        assert!(s.take_expired(t0 + 100 * S, 10, RETRY).is_empty());
        assert_eq!(s.renew(7, t0), Err(RenewRefusal::NotFound));
    }

    #[test]
    fn promotion_gives_every_lease_its_full_ttl_plus_the_election_timeout() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.grant(1, 10, t0);
        s.grant(2, 3, t0);
        let t1 = t0 + 60 * S;
        s.promote(t1, S);
        assert!(s.take_expired(t1 + 3 * S, 10, RETRY).is_empty());
        assert_eq!(s.take_expired(t1 + 4 * S, 10, RETRY), vec![2]);
        // 2's revoke has not landed: it is offered again (at t1+7) before 1 expires.
        assert_eq!(s.take_expired(t1 + 11 * S, 10, RETRY), vec![2, 1]);
        s.demote();
        assert!(s.take_expired(t1 + 100 * S, 10, RETRY).is_empty());
        assert_eq!(s.renew(1, t1), Err(RenewRefusal::NotPrimary));
    }

    #[test]
    fn revocations_are_handed_out_within_the_limit() {
        let t0 = Instant::now();
        let mut s = primary(t0);
        for id in 1..=25 {
            s.grant(id, 1, t0);
        }
        let first = s.take_expired(t0 + 2 * S, 10, RETRY);
        let second = s.take_expired(t0 + 2 * S, 10, RETRY);
        let third = s.take_expired(t0 + 2 * S, 10, RETRY);
        assert_eq!((first.len(), second.len(), third.len()), (10, 10, 5));
    }

    #[test]
    fn a_pile_up_is_spread_over_time_on_promotion() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        let n = 3000;
        for id in 1..=n {
            s.grant(id, 10, t0);
        }
        s.promote(t0, Duration::ZERO);
        let mut per_second = Vec::new();
        for sec in 10..20u64 {
            per_second.push(
                s.take_expired(t0 + Duration::from_secs(sec), usize::MAX, 1000 * S)
                    .len(),
            );
        }
        assert_eq!(per_second.iter().sum::<usize>(), n as usize);
        assert!(
            per_second
                .iter()
                .all(|&k| k <= 3 * REVOKES_PER_SECOND / 4 + 1),
            "{per_second:?}"
        );
    }

    #[test]
    fn reload_keeps_known_timing_and_mirrors_the_table() {
        let t0 = Instant::now();
        let mut s = primary(t0);
        s.grant(1, 5, t0);
        s.grant(2, 5, t0);
        s.reload(&[(1, 5), (3, 5)], t0 + 2 * S);
        assert!(!s.contains(2));
        assert_eq!(s.lookup(1, t0 + 2 * S).unwrap().remaining_secs, 3);
        assert_eq!(s.lookup(3, t0 + 2 * S).unwrap().remaining_secs, 5);
        assert_eq!(s.ids(), vec![1, 3]);
    }
}

//! What a member counts about itself, for `/metrics`.
//!
//! - `histogram`: fixed-bucket latency histograms recorded with atomics;
//! - `exposition`: the Prometheus text format writer;
//! - `grpc`: per-method gRPC counters and latencies (go-grpc-prometheus names);
//! - `timed_fs`: the filesystem wrapper that times the Raft log's fdatasyncs.
//!
//! [`Metrics`] holds only what must be counted as it happens (events, latencies). Values that
//! mirror state — leader, indexes, revisions, database size — are read from the member when
//! a scrape renders them (`crate::http::scrape`), so they can never drift from the truth.
//! Recording never locks and never allocates.

pub mod exposition;
pub mod grpc;
pub mod histogram;
pub mod timed_fs;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use grpc::GrpcMetrics;
use histogram::{Histogram, DEFRAG_BUCKETS, DISK_BUCKETS};

use crate::lessor::LeaseChange;

pub struct Metrics {
    /// Proposals submitted through `Node::propose` and not yet answered.
    pub proposals_pending: AtomicI64,
    /// Proposals that ended in an error (timeout, lost leadership, ...), as etcd counts them.
    pub proposals_failed: AtomicU64,
    /// Times this member saw a new leader (etcd: a change to a leader other than none).
    pub leader_changes: AtomicU64,
    pub health_success: AtomicU64,
    pub health_failures: AtomicU64,
    /// Each fdatasync of the Raft log (one per group commit).
    pub wal_fsync: Arc<Histogram>,
    /// Each redb commit of an applied batch.
    pub backend_commit: Histogram,
    /// Each defragmentation of the backend, and whether one is running (0 or 1).
    pub defrag_duration: Histogram,
    pub defrag_inflight: AtomicI64,
    /// Open watch streams, the watchers on them, and those of the watchers that are catching
    /// up on history (etcd's unsynced watchers) — gauges kept by the streams themselves.
    pub watch_streams: AtomicI64,
    pub watchers: AtomicI64,
    pub slow_watchers: AtomicI64,
    /// Leases granted and revoked by applied commands (on every member, as etcd counts them),
    /// and keep-alives this member renewed as the leader.
    pub leases_granted: AtomicU64,
    pub leases_revoked: AtomicU64,
    pub leases_renewed: AtomicU64,
    pub grpc: Arc<GrpcMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            proposals_pending: AtomicI64::new(0),
            proposals_failed: AtomicU64::new(0),
            leader_changes: AtomicU64::new(0),
            health_success: AtomicU64::new(0),
            health_failures: AtomicU64::new(0),
            wal_fsync: Arc::new(Histogram::new(DISK_BUCKETS)),
            backend_commit: Histogram::new(DISK_BUCKETS),
            defrag_duration: Histogram::new(DEFRAG_BUCKETS),
            defrag_inflight: AtomicI64::new(0),
            watch_streams: AtomicI64::new(0),
            watchers: AtomicI64::new(0),
            slow_watchers: AtomicI64::new(0),
            leases_granted: AtomicU64::new(0),
            leases_revoked: AtomicU64::new(0),
            leases_renewed: AtomicU64::new(0),
            grpc: Arc::new(GrpcMetrics::new()),
        }
    }
}

impl Metrics {
    /// Marks a proposal in flight until the returned guard is dropped; `failed` on the guard
    /// counts it as failed.
    pub fn proposal(&self) -> ProposalGuard<'_> {
        self.proposals_pending.fetch_add(1, Ordering::Relaxed);
        ProposalGuard { metrics: self }
    }

    /// Counts the lease grants and revokes of a committed batch.
    pub fn lease_changes(&self, changes: &[LeaseChange]) {
        for c in changes {
            let counter = match c {
                LeaseChange::Granted { .. } => &self.leases_granted,
                LeaseChange::Revoked { .. } => &self.leases_revoked,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

pub struct ProposalGuard<'a> {
    metrics: &'a Metrics,
}

impl ProposalGuard<'_> {
    pub fn failed(&self) {
        self.metrics
            .proposals_failed
            .fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for ProposalGuard<'_> {
    fn drop(&mut self) {
        self.metrics
            .proposals_pending
            .fetch_sub(1, Ordering::Relaxed);
    }
}

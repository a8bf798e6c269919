//! `/metrics`: every family under the name etcd gives it, in Prometheus text format.
//!
//! Counters, histograms and the watch gauges come from [`crate::metrics::Metrics`]; gauges that
//! mirror the member's state (leader, Raft indexes, revisions, database size) are read here, at
//! scrape time. Process metrics come from `/proc/self` where it exists.

use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_proto::etcdserverpb::RangeRequest;
use tokio::sync::watch;

use super::HttpState;
use crate::metrics::exposition::{Exposition, Kind};
use crate::metrics::Metrics;
use crate::node::Node;
use crate::server::maintenance::ETCD_VERSION;

/// How old a measurement of the bytes in use may be when a scrape reports it.
const IN_USE_MAX_AGE: Duration = Duration::from_secs(5);

pub fn render(state: &HttpState) -> String {
    let node = &state.node;
    let m = &state.metrics;
    let mut e = Exposition::default();

    let (leader, committed, raft_applied, is_learner) = node.with_metrics(|r| {
        (
            r.current_leader,
            r.cluster_committed.as_ref().map_or(0, |l| l.index),
            r.last_applied.as_ref().map_or(0, |l| l.index),
            r.membership_config
                .membership()
                .learner_ids()
                .any(|id| id == node.id),
        )
    });
    // The state machine publishes its applied index before answering clients; openraft's
    // metric follows a moment later. The larger of the two is never behind an answer.
    let applied = raft_applied.max(*node.applied.borrow());
    let committed = committed.max(applied);
    e.single(
        "etcd_server_has_leader",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        Kind::Gauge,
        u8::from(leader.is_some()),
    );
    e.single(
        "etcd_server_is_leader",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        Kind::Gauge,
        u8::from(leader == Some(node.id)),
    );
    e.single(
        "etcd_server_is_learner",
        "Whether or not this member is a learner. 1 if is, 0 otherwise.",
        Kind::Gauge,
        u8::from(is_learner),
    );
    e.single(
        "etcd_server_leader_changes_seen_total",
        "The number of leader changes seen.",
        Kind::Counter,
        m.leader_changes.load(Ordering::Relaxed),
    );
    // etcd exports the committed and applied Raft indexes under these names, as gauges.
    e.single(
        "etcd_server_proposals_committed_total",
        "The total number of consensus proposals committed.",
        Kind::Gauge,
        committed,
    );
    e.single(
        "etcd_server_proposals_applied_total",
        "The total number of consensus proposals applied.",
        Kind::Gauge,
        applied,
    );
    e.single(
        "etcd_server_proposals_pending",
        "The current number of pending proposals to commit.",
        Kind::Gauge,
        m.proposals_pending.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_server_proposals_failed_total",
        "The total number of failed proposals seen.",
        Kind::Counter,
        m.proposals_failed.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_server_health_success",
        "The total number of successful health checks",
        Kind::Counter,
        m.health_success.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_server_health_failures",
        "The total number of failed health checks",
        Kind::Counter,
        m.health_failures.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_server_quota_backend_bytes",
        "Current backend storage quota size in bytes.",
        Kind::Gauge,
        state.quota_bytes,
    );
    e.family(
        "etcd_server_id",
        "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
        Kind::Gauge,
    );
    e.sample(
        "etcd_server_id",
        &[("server_id", &format!("{:x}", node.id))],
        1,
    );
    e.family(
        "etcd_server_version",
        "Which version is running. 1 for 'server_version' label with current version.",
        Kind::Gauge,
    );
    e.sample(
        "etcd_server_version",
        &[("server_version", ETCD_VERSION)],
        1,
    );

    e.family(
        "etcd_disk_wal_fsync_duration_seconds",
        "The latency distributions of fsync called by WAL.",
        Kind::Histogram,
    );
    e.histogram("etcd_disk_wal_fsync_duration_seconds", &[], &m.wal_fsync);
    e.family(
        "etcd_disk_backend_commit_duration_seconds",
        "The latency distributions of commit called by backend.",
        Kind::Histogram,
    );
    e.histogram(
        "etcd_disk_backend_commit_duration_seconds",
        &[],
        &m.backend_commit,
    );
    e.family(
        "etcd_disk_backend_defrag_duration_seconds",
        "The latency distribution of backend defragmentation.",
        Kind::Histogram,
    );
    e.histogram(
        "etcd_disk_backend_defrag_duration_seconds",
        &[],
        &m.defrag_duration,
    );
    e.single(
        "etcd_disk_defrag_inflight",
        "Whether or not defrag is active on the member. 1 means active, 0 means not.",
        Kind::Gauge,
        m.defrag_inflight.load(Ordering::Relaxed),
    );

    let size = node.mvcc.size_bytes().unwrap_or(0);
    for name in [
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_db_total_size_in_bytes",
    ] {
        e.single(
            name,
            "Total size of the underlying database physically allocated in bytes.",
            Kind::Gauge,
            size,
        );
    }
    // Measuring walks the pages of the last commit; scrapes closer together share one walk.
    let in_use = node.mvcc.size_in_use(IN_USE_MAX_AGE).unwrap_or(size);
    e.single(
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "Total size of the underlying database logically in use in bytes.",
        Kind::Gauge,
        in_use,
    );
    e.single(
        "etcd_debugging_mvcc_keys_total",
        "Total number of keys.",
        Kind::Gauge,
        live_keys(node),
    );
    e.single(
        "etcd_debugging_mvcc_current_revision",
        "The current revision of store.",
        Kind::Gauge,
        node.mvcc.current_revision(),
    );
    e.single(
        "etcd_debugging_mvcc_compact_revision",
        "The revision of the last compaction in store.",
        Kind::Gauge,
        node.mvcc.compact_revision(),
    );

    watch_and_lease(&mut e, m);
    m.grpc.render(&mut e);
    process(&mut e);
    e.into_string()
}

/// etcd's watcher gauges (`mvcc/metrics.go`) and lease counters (`lease/metrics.go`).
fn watch_and_lease(e: &mut Exposition, m: &Metrics) {
    e.single(
        "etcd_debugging_mvcc_watch_stream_total",
        "Total number of watch streams.",
        Kind::Gauge,
        m.watch_streams.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_debugging_mvcc_watcher_total",
        "Total number of watchers.",
        Kind::Gauge,
        m.watchers.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_debugging_mvcc_slow_watcher_total",
        "Total number of unsynced slow watchers.",
        Kind::Gauge,
        m.slow_watchers.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_debugging_lease_granted_total",
        "The total number of granted leases.",
        Kind::Counter,
        m.leases_granted.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_debugging_lease_revoked_total",
        "The total number of revoked leases.",
        Kind::Counter,
        m.leases_revoked.load(Ordering::Relaxed),
    );
    e.single(
        "etcd_debugging_lease_renewed_total",
        "The number of renewed leases seen by the leader.",
        Kind::Counter,
        m.leases_renewed.load(Ordering::Relaxed),
    );
}

/// Live keys at the current revision: a local count-only range over the whole keyspace.
fn live_keys(node: &Node) -> i64 {
    let all = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        count_only: true,
        serializable: true,
        ..Default::default()
    };
    node.mvcc.range(&all).map_or(0, |r| r.count)
}

/// The standard `process_*` families, from `/proc/self` (skipped where it does not exist).
fn process(e: &mut Exposition) {
    // USER_HZ is 100 on every Linux ABI.
    const TICKS_PER_SECOND: f64 = 100.0;
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    // Fields after the parenthesised command name, which may itself contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| -> f64 {
        // `n` is the 1-based field number of proc(5); the slice starts at field 3.
        fields
            .get(n - 3)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    e.single(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        Kind::Counter,
        (field(14) + field(15)) / TICKS_PER_SECOND,
    );
    e.single(
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        Kind::Gauge,
        field(23),
    );
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    e.single(
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        Kind::Gauge,
        rss_kib * 1024.0,
    );
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    e.single(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        Kind::Gauge,
        boot_time + field(22) / TICKS_PER_SECOND,
    );
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        e.single(
            "process_open_fds",
            "Number of open file descriptors.",
            Kind::Gauge,
            fds.count(),
        );
    }
}

/// Counts leader changes as etcd does: each time the known leader becomes a member other than
/// the last one known (a spell without a leader in between counts as a change back).
pub async fn count_leader_changes(
    node: std::sync::Arc<Node>,
    metrics: std::sync::Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) {
    use openraft::async_runtime::WatchReceiver;
    let mut rx = node.raft.metrics();
    let mut last = None;
    loop {
        let leader = rx.borrow_watched().current_leader;
        if leader.is_some() && leader != last {
            metrics.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        last = leader;
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

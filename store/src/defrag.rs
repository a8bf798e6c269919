//! Defragmenting this member's backend (etcd's `Maintenance.Defragment`) while it serves.
//!
//! `Mvcc::defragment` rewrites the store into a packed file while reads go on from the old one;
//! only commits must wait. The state machine applies every batch (and builds or installs
//! snapshots) under the shared side of the member's [`ApplyGate`]; a defragmentation takes the
//! exclusive side, so it starts between two batches and the apply task *awaits* its end
//! instead of blocking a runtime thread on redb's writer lock. Meanwhile Raft keeps
//! replicating and committing; entries committed during the pause are applied right after it,
//! in log order, so clients see their writes delayed, never failed, lost or reordered — the
//! same pause etcd's defragmentation imposes on its apply loop. Watchers get those events
//! once they are applied.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

use crate::metrics::Metrics;
use crate::server::errors::EtcdError;

/// Keeps the state machine's writes and a defragmentation apart (see the module doc).
#[derive(Debug, Default, Clone)]
pub struct ApplyGate {
    lock: Arc<RwLock<()>>,
}

impl ApplyGate {
    /// Waits until no defragmentation runs; the store may be written while the guard lives.
    pub async fn writing(&self) -> OwnedRwLockReadGuard<()> {
        self.lock.clone().read_owned().await
    }

    /// Waits for the batch being applied, if any, then keeps the next one waiting while the
    /// guard lives. Fair: a pause asked for is not starved by a stream of batches.
    async fn pause(&self) -> OwnedRwLockWriteGuard<()> {
        self.lock.clone().write_owned().await
    }
}

/// Defragments `mvcc` with the state machine's writes paused by `gate`. Runs to the end even if
/// the caller goes away (the pause is released by the blocking task, never earlier).
pub async fn defragment(
    gate: &ApplyGate,
    mvcc: Arc<cairn_mvcc::Mvcc>,
    metrics: Arc<Metrics>,
) -> Result<(), EtcdError> {
    let paused = gate.pause().await;
    tokio::task::spawn_blocking(move || {
        let _paused = paused;
        metrics.defrag_inflight.store(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = mvcc.defragment();
        metrics.defrag_duration.observe(started.elapsed());
        metrics.defrag_inflight.store(0, Ordering::Relaxed);
        match result {
            Ok(report) => {
                tracing::info!(
                    size_before = report.size_before,
                    size_after = report.size_after,
                    took = ?started.elapsed(),
                    "defragmented the backend"
                );
                Ok(())
            }
            Err(e) => {
                tracing::warn!("defragmentation failed, the backend is unchanged: {e}");
                Err(EtcdError::from(e))
            }
        }
    })
    .await
    .map_err(|e| EtcdError::Internal(format!("defragmentation task: {e}")))?
}

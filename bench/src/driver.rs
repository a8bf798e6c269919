//! The closed-loop runner behind every request/response workload.
//!
//! `--clients` tasks share one counter of issued request numbers; each takes the next number,
//! waits for the rate limiter, sends one request, records its latency in its own
//! [`Recorder`], and repeats until `--total` numbers are taken. Exactly `total` requests are
//! issued, whatever the number of clients; the per-client state (gRPC client, buffers,
//! counters) is handed back to the caller with the merged measurements.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::progress::Progress;
use crate::rate::RateLimiter;
use crate::report::Recorder;

/// Why one request failed, as the error tally names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError(pub String);

impl From<tonic::Status> for CallError {
    fn from(s: tonic::Status) -> Self {
        CallError(format!("{:?}: {}", s.code(), s.message()))
    }
}

/// One client's request loop body. `seq` is the request's number in `0..total`.
pub trait Worker: Send + 'static {
    fn call(&mut self, seq: u64) -> impl Future<Output = Result<(), CallError>> + Send;
}

/// What [`run`] measured, and the workers, for workload-specific totals.
#[derive(Debug)]
pub struct Outcome<W> {
    pub rec: Recorder,
    pub ok: u64,
    pub elapsed: Duration,
    pub workers: Vec<W>,
}

/// Runs `total` requests over `workers`, at most `rate` per second (0: unlimited).
pub async fn run<W: Worker>(
    workers: Vec<W>,
    total: u64,
    rate: u64,
    progress: &Progress,
) -> Outcome<W> {
    let issued = Arc::new(AtomicU64::new(0));
    let limiter = RateLimiter::per_second(rate).map(Arc::new);
    let start = Instant::now();
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut w| {
            let issued = issued.clone();
            let limiter = limiter.clone();
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut rec = Recorder::new();
                let mut ok = 0u64;
                loop {
                    let seq = issued.fetch_add(1, Ordering::Relaxed);
                    if seq >= total {
                        break;
                    }
                    if let Some(l) = &limiter {
                        l.acquire().await;
                    }
                    let t = Instant::now();
                    match w.call(seq).await {
                        Ok(()) => {
                            rec.record(t.elapsed());
                            ok += 1;
                        }
                        Err(e) => rec.error(e.0),
                    }
                    progress.inc();
                }
                (rec, ok, w)
            })
        })
        .collect();
    let mut rec = Recorder::new();
    let mut ok = 0;
    let mut workers = Vec::with_capacity(tasks.len());
    for t in tasks {
        let (r, n, w) = t.await.expect("benchmark client task panicked");
        rec.merge(&r);
        ok += n;
        workers.push(w);
    }
    Outcome {
        rec,
        ok,
        elapsed: start.elapsed(),
        workers,
    }
}

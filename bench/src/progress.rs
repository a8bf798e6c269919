//! A single progress line on stderr while a workload runs — only when stderr is a terminal,
//! so logs and `--json` pipelines stay clean. Clients bump an atomic; a ticker task redraws.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

#[derive(Debug, Clone, Default)]
pub struct Progress {
    done: Arc<AtomicU64>,
}

impl Progress {
    pub fn inc(&self) {
        self.done.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// Draws `label done/total pct rate` every 200 ms until dropped.
#[derive(Debug)]
pub struct ProgressLine {
    ticker: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Starts drawing if `enabled` and stderr is a terminal.
    pub fn start(label: String, total: u64, progress: Progress, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Self { ticker: None };
        }
        let ticker = tokio::spawn(async move {
            let start = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let done = progress.get();
                let secs = start.elapsed().as_secs_f64().max(1e-9);
                let pct = (done * 100).checked_div(total).unwrap_or(0);
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\r\x1b[2K{label} {done}/{total} {pct:>3}% {:.0}/s",
                    done as f64 / secs
                );
                let _ = err.flush();
            }
        });
        Self {
            ticker: Some(ticker),
        }
    }
}

impl Drop for ProgressLine {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

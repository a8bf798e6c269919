//! What a run measured: a latency histogram, counts, errors and workload-specific extras,
//! rendered as etcd's tool does (text) or as one JSON object (`--json`) for scripts.
//!
//! Latencies are recorded in microseconds into an HDR histogram with 3 significant digits
//! (1 µs .. 1 h), one per client task, merged once at the end: recording never allocates
//! and never crosses tasks.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

const MAX_MICROS: u64 = 3_600_000_000;

/// One client's measurements; merged into a [`Report`].
#[derive(Debug, Clone)]
pub struct Recorder {
    pub hist: Histogram<u64>,
    /// Error text -> count. Only the failure path allocates.
    pub errors: BTreeMap<String, u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            hist: Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds"),
            errors: BTreeMap::new(),
        }
    }

    pub fn record(&mut self, latency: Duration) {
        self.hist
            .saturating_record((latency.as_micros() as u64).clamp(1, MAX_MICROS));
    }

    pub fn error(&mut self, what: impl std::fmt::Display) {
        *self.errors.entry(what.to_string()).or_default() += 1;
    }

    pub fn merge(&mut self, other: &Recorder) {
        self.hist.add(&other.hist).expect("same histogram bounds");
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Latency {
    pub avg: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(hist: &Histogram<u64>) -> Self {
        if hist.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            avg: hist.mean() / 1000.0,
            p50: ms(hist.value_at_quantile(0.50)),
            p90: ms(hist.value_at_quantile(0.90)),
            p99: ms(hist.value_at_quantile(0.99)),
            p999: ms(hist.value_at_quantile(0.999)),
            max: ms(hist.max()),
        }
    }
}

/// The result of one workload run.
#[derive(Debug, Clone)]
pub struct Report {
    /// Subcommand name, e.g. `put`.
    pub workload: String,
    /// What `count` counts: "requests", "events", "increments".
    pub unit: &'static str,
    /// Successful operations.
    pub count: u64,
    /// Wall time the throughput is computed over.
    pub elapsed: Duration,
    pub rec: Recorder,
    /// Workload-specific figures (retries, lost events, ...), in insertion order of keys.
    pub extra: Map<String, Value>,
    /// Correctness problems found; a non-empty list makes the run fail.
    pub violations: Vec<String>,
}

impl Report {
    pub fn new(
        workload: &str,
        unit: &'static str,
        count: u64,
        elapsed: Duration,
        rec: Recorder,
    ) -> Self {
        Self {
            workload: workload.to_string(),
            unit,
            count,
            elapsed,
            rec,
            extra: Map::new(),
            violations: Vec::new(),
        }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// Operations per second over the run's wall time.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.count as f64 / secs
        } else {
            0.0
        }
    }

    pub fn latency(&self) -> Latency {
        Latency::of(&self.rec.hist)
    }

    pub fn errors(&self) -> u64 {
        self.rec.error_count()
    }

    pub fn to_json(&self) -> Value {
        let l = self.latency();
        json!({
            "workload": self.workload,
            "unit": self.unit,
            "count": self.count,
            "errors": self.errors(),
            "error_kinds": self.rec.errors,
            "total_secs": self.elapsed.as_secs_f64(),
            "per_sec": self.rate(),
            "latency_ms": {
                "avg": l.avg, "p50": l.p50, "p90": l.p90, "p99": l.p99, "p99_9": l.p999, "max": l.max,
            },
            "extra": self.extra,
            "violations": self.violations,
        })
    }

    /// etcd-style summary; `precise` prints full float precision (etcd's `--precise`).
    pub fn to_text(&self, precise: bool) -> String {
        let f = |v: f64| {
            if precise {
                format!("{v}")
            } else {
                format!("{v:.4}")
            }
        };
        let l = self.latency();
        let mut s = String::new();
        let _ = writeln!(s, "Summary ({}):", self.workload);
        let _ = writeln!(s, "  Total:\t{} secs.", f(self.elapsed.as_secs_f64()));
        let _ = writeln!(
            s,
            "  {}:\t{} ({} errors)",
            capitalize(self.unit),
            self.count,
            self.errors()
        );
        let _ = writeln!(s, "  {}/sec:\t{}", capitalize(self.unit), f(self.rate()));
        let _ = writeln!(s, "\nLatency (ms):");
        for (name, v) in [
            ("avg", l.avg),
            ("p50", l.p50),
            ("p90", l.p90),
            ("p99", l.p99),
            ("p99.9", l.p999),
            ("max", l.max),
        ] {
            let _ = writeln!(s, "  {name}:\t{}", f(v));
        }
        if !self.extra.is_empty() {
            let _ = writeln!(s);
            for (k, v) in &self.extra {
                let _ = writeln!(s, "  {k}:\t{v}");
            }
        }
        if !self.rec.errors.is_empty() {
            let _ = writeln!(s, "\nErrors:");
            for (e, n) in &self.rec.errors {
                let _ = writeln!(s, "  {n}\t{e}");
            }
        }
        if !self.violations.is_empty() {
            let _ = writeln!(s, "\nCORRECTNESS VIOLATIONS:");
            for v in &self.violations {
                let _ = writeln!(s, "  {v}");
            }
        }
        s
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_recorders_sum_counts_and_errors() {
        let mut a = Recorder::new();
        let mut b = Recorder::new();
        for ms in 1..=100 {
            a.record(Duration::from_millis(ms));
        }
        b.record(Duration::from_millis(500));
        b.error("Unavailable: no leader");
        a.merge(&b);
        assert_eq!(a.hist.len(), 101);
        assert_eq!(a.error_count(), 1);
        let l = Latency::of(&a.hist);
        assert!((l.p50 - 51.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 500.0).abs() < 1.0, "{l:?}");
        let r = Report::new("put", "requests", 101, Duration::from_secs(1), a);
        assert_eq!(r.to_json()["errors"], 1);
        assert!(r.to_text(false).contains("Requests/sec:\t101.0000"));
    }
}

//! Prometheus text exposition format (version 0.0.4): `# HELP` and `# TYPE` once per family,
//! then one `name{label="value",...} value` line per sample.
//!
//! Invariant: a family's samples are written right after its header and nowhere else, which
//! the format requires; label values are escaped (`\\`, `\"`, `\n`).

use std::fmt::{Display, Write};

use super::histogram::Histogram;

/// The Content-Type Prometheus scrapers expect for this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn into_string(self) -> String {
        self.out
    }

    pub fn family(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        self.labels(labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// A whole family with one unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, kind: Kind, value: impl Display) {
        self.family(name, help, kind);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram series.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram) {
        let s = h.snapshot();
        for (bound, count) in &s.buckets {
            let _ = write!(self.out, "{name}_bucket");
            self.labels(labels, Some(&bound.to_string()));
            let _ = writeln!(self.out, " {count}");
        }
        let _ = write!(self.out, "{name}_bucket");
        self.labels(labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", s.count);
        let _ = write!(self.out, "{name}_sum");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", s.sum_seconds);
        let _ = write!(self.out, "{name}_count");
        self.labels(labels, None);
        let _ = writeln!(self.out, " {}", s.count);
    }

    fn labels(&mut self, labels: &[(&str, &str)], le: Option<&str>) {
        if labels.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.out.push_str(k);
            self.out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => self.out.push_str("\\\\"),
                    '"' => self.out.push_str("\\\""),
                    '\n' => self.out.push_str("\\n"),
                    c => self.out.push(c),
                }
            }
            self.out.push('"');
        }
        self.out.push('}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::histogram::DISK_BUCKETS;

    #[test]
    fn families_samples_and_escaping() {
        let mut e = Exposition::default();
        e.single("a_total", "A thing.", Kind::Counter, 3);
        e.family("b", "B.", Kind::Gauge);
        e.sample("b", &[("x", "q\"\\\n")], 1.5);
        let h = Histogram::new(DISK_BUCKETS);
        h.observe(std::time::Duration::from_millis(1));
        e.family("c_seconds", "C.", Kind::Histogram);
        e.histogram("c_seconds", &[("m", "Put")], &h);
        let s = e.into_string();
        assert!(s.starts_with("# HELP a_total A thing.\n# TYPE a_total counter\na_total 3\n"));
        assert!(s.contains("b{x=\"q\\\"\\\\\\n\"} 1.5\n"));
        assert!(s.contains("c_seconds_bucket{m=\"Put\",le=\"0.001\"} 1\n"));
        assert!(s.contains("c_seconds_bucket{m=\"Put\",le=\"+Inf\"} 1\n"));
        assert!(s.contains("c_seconds_count{m=\"Put\"} 1\n"));
    }
}

//! Randomised model test: appends, truncations, purges, flushes, clean reopens and crashes at
//! random points, checked against a plain `Vec` model.
//!
//! After a crash the recovered log must be a state the call sequence passed through no earlier
//! than the last acknowledged operation: exactly a state after some operation, or a state
//! between an operation and the next one (a prefix of an append's entries; a truncation that
//! got only part of the way, which is a prefix of the log before it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use cairn_log::{Log, LogOptions, MemFs};

use crate::{all_entries, open_mem};

/// splitmix64: enough randomness for a test, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Debug)]
struct Model {
    purged: Option<u64>,
    entries: Vec<(u64, Bytes)>,
    /// Where an empty log continues; `None`: anywhere.
    empty_next: Option<u64>,
}

impl PartialEq for Model {
    fn eq(&self, other: &Self) -> bool {
        (self.purged, &self.entries, self.next()) == (other.purged, &other.entries, other.next())
    }
}

impl Model {
    fn first(&self) -> Option<u64> {
        self.entries.first().map(|e| e.0)
    }

    fn last(&self) -> Option<u64> {
        self.entries.last().map(|e| e.0)
    }

    /// What `Log::next_index` must say.
    fn next(&self) -> Option<u64> {
        match self.last() {
            Some(last) => Some(last + 1),
            None => self.empty_next,
        }
    }

    fn next_index(&self) -> u64 {
        self.next().unwrap_or(1)
    }

    fn truncate(&mut self, index: u64) {
        if let Some(first) = self.first() {
            let keep = index.max(first) - first;
            self.entries.truncate(keep as usize);
            if keep == 0 {
                self.empty_next = Some(first);
            }
        }
    }

    fn purge(&mut self, index: u64) {
        let index = match self.first().or(self.empty_next) {
            Some(start) if start > 0 => index.max(start - 1),
            _ => index,
        };
        if self.purged.is_some_and(|p| p >= index) {
            return;
        }
        self.purged = Some(index);
        self.entries.retain(|e| e.0 > index);
        if self.entries.is_empty() {
            self.empty_next = Some(index + 1);
        }
    }

    fn summary(&self) -> String {
        format!(
            "purged {:?} entries {:?}..={:?} next {:?}",
            self.purged,
            self.first(),
            self.last(),
            self.next()
        )
    }

    fn observe(log: &Log) -> Model {
        let entries = all_entries(log);
        Model {
            purged: log.purged(),
            empty_next: if entries.is_empty() {
                log.next_index()
            } else {
                None
            },
            entries,
        }
    }
}

enum Step {
    Append,
    Truncate,
    Other,
}

/// States since the last point known durable: `(step that led to it, state after it)`.
struct History {
    states: Vec<(Step, Model)>,
    /// Operation number of `states[0]`.
    base: u64,
}

impl History {
    fn new(model: Model, op: u64) -> Self {
        Self {
            states: vec![(Step::Other, model)],
            base: op,
        }
    }

    fn push(&mut self, step: Step, model: Model) {
        self.states.push((step, model));
    }

    /// Forgets states older than operation `op`, which is known durable.
    fn durable_up_to(&mut self, op: u64) {
        if op > self.base {
            let drop = ((op - self.base) as usize).min(self.states.len() - 1);
            self.states.drain(..drop);
            self.base += drop as u64;
        }
    }

    fn summary(&self) -> String {
        let steps: Vec<String> = self
            .states
            .iter()
            .map(|(step, state)| {
                let kind = match step {
                    Step::Append => "append",
                    Step::Truncate => "truncate",
                    Step::Other => "other",
                };
                format!("{kind} -> {}", state.summary())
            })
            .collect();
        format!("from op {}: [{}]", self.base, steps.join("; "))
    }

    fn allows(&self, seen: &Model) -> bool {
        self.states.iter().enumerate().any(|(k, (_, state))| {
            if state == seen {
                return true;
            }
            let Some((step, next)) = self.states.get(k + 1) else {
                return false;
            };
            let n = seen.entries.len();
            match step {
                Step::Append => {
                    seen.purged == state.purged
                        && (state.entries.len()..=next.entries.len()).contains(&n)
                        && next.entries[..n] == seen.entries[..]
                }
                Step::Truncate => {
                    seen.purged == state.purged
                        && (next.entries.len()..=state.entries.len()).contains(&n)
                        && state.entries[..n] == seen.entries[..]
                }
                Step::Other => false,
            }
        })
    }
}

fn context(seed: u64, step: usize, trace: &[String]) -> String {
    format!("seed {seed} step {step}; recent: {}", trace.join(", "))
}

fn run(seed: u64, steps: usize) {
    let mut rng = Rng(seed);
    let options = LogOptions {
        segment_size: 512,
        cache_size: if seed.is_multiple_of(2) { 0 } else { 600 },
        queue_depth: 16,
    };
    let mut fs = MemFs::new();
    let mut log = open_mem(&fs, options.clone()).unwrap();
    let mut model = Model {
        purged: None,
        entries: Vec::new(),
        empty_next: None,
    };
    let mut op = 0u64;
    let mut acked = Arc::new(AtomicU64::new(0));
    let mut history = History::new(model.clone(), op);
    let mut trace: Vec<String> = Vec::new();

    for step in 0..steps {
        if trace.len() > 40 {
            trace.remove(0);
        }
        trace.push(format!("[{}]", model.summary()));
        let roll = rng.below(100);
        match roll {
            0..=49 => {
                let start = model.next_index();
                let count = 1 + rng.below(4);
                let version = rng.next() as u8;
                let entries: Vec<(u64, Bytes)> = (start..start + count)
                    .map(|i| {
                        let len = rng.below(200) as usize;
                        (i, Bytes::from(vec![version ^ i as u8; len]))
                    })
                    .collect();
                op += 1;
                let (done_op, acked) = (op, Arc::clone(&acked));
                log.append(entries.clone(), move |r| {
                    if r.is_ok() {
                        acked.fetch_max(done_op, Ordering::SeqCst);
                    }
                })
                .unwrap_or_else(|e| panic!("{}: append: {e}", context(seed, step, &trace)));
                trace.push(format!("append {start}+{count}"));
                model.entries.extend(entries);
                history.push(Step::Append, model.clone());
            }
            50..=59 => {
                let (lo, hi) = match (model.first(), model.last()) {
                    (Some(f), Some(l)) => (f.saturating_sub(1), l + 1),
                    _ => (0, model.next_index()),
                };
                let index = lo + rng.below(hi - lo + 1);
                op += 1;
                trace.push(format!("truncate {index}"));
                log.truncate(index).unwrap();
                model.truncate(index);
                history.push(Step::Truncate, model.clone());
            }
            60..=67 => {
                let base = model
                    .first()
                    .unwrap_or(model.next_index())
                    .saturating_sub(1);
                let span = model.entries.len() as u64 + 3;
                let index = base + rng.below(span);
                op += 1;
                trace.push(format!("purge {index}"));
                log.purge(index).unwrap();
                model.purge(index);
                history.push(Step::Other, model.clone());
            }
            68..=72 => {
                op += 1;
                log.sync().unwrap();
                history.push(Step::Other, model.clone());
                history.durable_up_to(op);
            }
            73..=76 => {
                trace.push("reopen".into());
                drop(log);
                log = open_mem(&fs, options.clone()).unwrap();
                let seen = Model::observe(&log);
                assert!(
                    seen == model,
                    "{}: clean reopen: {} expected {}",
                    context(seed, step, &trace),
                    seen.summary(),
                    model.summary()
                );
                acked = Arc::new(AtomicU64::new(0));
                history = History::new(model.clone(), op);
            }
            77..=81 => {
                history.durable_up_to(acked.load(Ordering::SeqCst));
                let keep = rng.below(fs.pending_ops() as u64 + 1) as usize;
                let crashed = fs.crash_keeping(keep, rng.below(300) as usize);
                trace.push(format!("crash keep {keep}"));
                drop(log);
                fs = crashed;
                log = open_mem(&fs, options.clone()).unwrap_or_else(|e| {
                    panic!("{}: reopen after crash: {e}", context(seed, step, &trace))
                });
                let seen = Model::observe(&log);
                assert!(
                    history.allows(&seen),
                    "{}: recovered {}, not a state since the last acknowledged op; candidates: {}",
                    context(seed, step, &trace),
                    seen.summary(),
                    history.summary(),
                );
                model = seen;
                acked = Arc::new(AtomicU64::new(0));
                history = History::new(model.clone(), op);
            }
            _ => {
                let start = model.first().unwrap_or(0);
                let end = model.next_index() + 2;
                let a = start + rng.below(end - start);
                let b = a + rng.below(end - a + 1);
                let expected: Vec<(u64, Bytes)> = model
                    .entries
                    .iter()
                    .filter(|e| (a..b).contains(&e.0))
                    .cloned()
                    .collect();
                assert_eq!(
                    log.read(a..b).unwrap(),
                    expected,
                    "{}: read {a}..{b}",
                    context(seed, step, &trace)
                );
            }
        }
        assert_eq!(
            (
                log.first_index(),
                log.last_index(),
                log.purged(),
                log.next_index()
            ),
            (model.first(), model.last(), model.purged, model.next()),
            "{}",
            context(seed, step, &trace)
        );
    }
    drop(log);
    let log = open_mem(&fs, options).unwrap();
    assert_eq!(Model::observe(&log), model, "seed {seed}: final reopen");
}

/// `CAIRN_LOG_MODEL_SEEDS=N` runs N seeds instead of the quick default, for soak runs.
#[test]
fn random_operations_and_crashes_match_the_model() {
    let seeds = std::env::var("CAIRN_LOG_MODEL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for seed in 1..=seeds {
        run(seed, 1500);
    }
}

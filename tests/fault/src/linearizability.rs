//! A linearizability checker for register histories (Wing & Gong's search with Lowe's
//! memoization, as in porcupine / Knossos), partitioned per key.
//!
//! The model is one register per key holding `Option<u64>` (`None`: absent), with reads,
//! blind writes and compare-and-swap. Written values are unique per history, which lets the
//! workload express "CAS on mod_revision" as "CAS on the value that revision carries".
//!
//! Operations whose outcome is unknown (timeout, Unavailable, member killed) never return:
//! they may take effect at any point after their invocation, or never — "never" is the same
//! as "last", since nothing follows it. Before searching, an unknown read is dropped (it has no
//! effect) and so is an unknown write whose value nobody observed (it can always go last);
//! both are exact, not heuristics.
//!
//! On a violation the history of the offending key is shrunk greedily to a minimal
//! non-linearizable core: an operation is removed only while no remaining operation observes
//! the value it wrote, so the core is still a faithful story, not an artefact of shrinking.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

/// A register value: `None` when the key does not exist.
pub type Value = Option<u64>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    Read,
    Write(u64),
    /// Set to `new` if the register holds `expect`.
    Cas {
        expect: Value,
        new: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Read(Value),
    Written,
    Swapped,
    /// The compare failed; `Some(v)` when the failure branch also read the register.
    NotSwapped(Option<Value>),
    Unknown,
}

/// One completed (or abandoned) operation on one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: usize,
    pub input: Input,
    pub output: Output,
    /// Invocation time (ns since the run started).
    pub call: u64,
    /// Completion time; `None` for an unknown outcome (it never returns).
    pub ret: Option<u64>,
}

impl Operation {
    fn writes(&self) -> Option<u64> {
        match self.input {
            Input::Write(v) | Input::Cas { new: v, .. } => Some(v),
            Input::Read => None,
        }
    }

    fn observes(&self, v: u64) -> bool {
        let seen = |x: &Value| *x == Some(v);
        match (&self.input, &self.output) {
            (_, Output::Read(x)) | (_, Output::NotSwapped(Some(x))) if seen(x) => true,
            (Input::Cas { expect, .. }, _) => seen(expect),
            _ => false,
        }
    }
}

/// The register's transition: the state after `op` if `output` is possible from `state`.
fn step(state: Value, input: Input, output: Output) -> Option<Value> {
    match (input, output) {
        (Input::Read, Output::Read(v)) => (v == state).then_some(state),
        (Input::Write(v), Output::Written | Output::Unknown) => Some(Some(v)),
        (Input::Cas { expect, new }, Output::Swapped) => (state == expect).then_some(Some(new)),
        (Input::Cas { expect, .. }, Output::NotSwapped(seen)) => {
            (state != expect && seen.is_none_or(|s| s == state)).then_some(state)
        }
        (Input::Cas { expect, new }, Output::Unknown) => {
            Some(if state == expect { Some(new) } else { state })
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// A minimal non-linearizable sub-history of one key.
    Violation {
        key: usize,
        core: Vec<Operation>,
    },
    /// The search budget ran out for this key; nothing is claimed.
    Inconclusive {
        key: usize,
        ops: usize,
    },
}

/// Search steps allowed per key before giving up as inconclusive.
const BUDGET: u64 = 20_000_000;

/// Checks a whole history (every key starts absent).
pub fn check(history: &[Operation]) -> Vec<Verdict> {
    let mut by_key: BTreeMap<usize, Vec<Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(op.key).or_default().push(op.clone());
    }
    let mut verdicts = Vec::new();
    for (key, ops) in by_key {
        let ops = prune(ops);
        match search(&ops, BUDGET) {
            Some(true) => {}
            Some(false) => verdicts.push(Verdict::Violation {
                key,
                core: shrink(ops),
            }),
            None => verdicts.push(Verdict::Inconclusive {
                key,
                ops: ops.len(),
            }),
        }
    }
    verdicts
}

/// Drops operations that cannot constrain the search (see the module docs).
fn prune(ops: Vec<Operation>) -> Vec<Operation> {
    let ops: Vec<Operation> = ops
        .into_iter()
        .filter(|o| !(o.input == Input::Read && o.output == Output::Unknown))
        .collect();
    let observed: HashSet<u64> = ops
        .iter()
        .flat_map(|o| {
            let mut v = Vec::new();
            if let Output::Read(Some(x)) | Output::NotSwapped(Some(Some(x))) = o.output {
                v.push(x);
            }
            if let Input::Cas {
                expect: Some(x), ..
            } = o.input
            {
                v.push(x);
            }
            v
        })
        .collect();
    ops.into_iter()
        .filter(|o| {
            o.output != Output::Unknown || o.writes().is_some_and(|v| observed.contains(&v))
        })
        .collect()
}

const NIL: usize = usize::MAX;

struct Node {
    op: usize,
    is_call: bool,
    /// For a call: the node of its return.
    ret: usize,
    prev: usize,
    next: usize,
}

/// Wing & Gong with memoization. `Some(true)`: linearizable; `None`: budget exhausted.
fn search(ops: &[Operation], budget: u64) -> Option<bool> {
    // Events: calls before returns at equal times (overlap is the lenient reading).
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, o) in ops.iter().enumerate() {
        events.push((o.call, false, i));
        events.push((o.ret.unwrap_or(u64::MAX), true, i));
    }
    events.sort();
    // Node 0 is the head sentinel.
    let mut nodes = vec![Node {
        op: NIL,
        is_call: false,
        ret: NIL,
        prev: NIL,
        next: NIL,
    }];
    let mut ret_node = vec![NIL; ops.len()];
    for (_, is_ret, op) in &events {
        let idx = nodes.len();
        let prev = idx - 1;
        nodes[prev].next = idx;
        nodes.push(Node {
            op: *op,
            is_call: !is_ret,
            ret: NIL,
            prev,
            next: NIL,
        });
        if *is_ret {
            ret_node[*op] = idx;
        }
    }
    for n in nodes.iter_mut().skip(1) {
        if n.is_call {
            n.ret = ret_node[n.op];
        }
    }

    fn unlink(nodes: &mut [Node], i: usize) {
        let (p, n) = (nodes[i].prev, nodes[i].next);
        nodes[p].next = n;
        if n != NIL {
            nodes[n].prev = p;
        }
    }
    fn relink(nodes: &mut [Node], i: usize) {
        let (p, n) = (nodes[i].prev, nodes[i].next);
        nodes[p].next = i;
        if n != NIL {
            nodes[n].prev = i;
        }
    }

    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Value)> = HashSet::new();
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state: Value = None;
    let mut entry = nodes[0].next;
    let mut steps = 0u64;
    while nodes[0].next != NIL {
        steps += 1;
        if steps > budget {
            return None;
        }
        let node = &nodes[entry];
        if node.is_call {
            let op = &ops[node.op];
            if let Some(next_state) = step(state, op.input, op.output) {
                let (w, b) = (node.op / 64, 1u64 << (node.op % 64));
                linearized[w] |= b;
                if cache.insert((linearized.clone(), next_state)) {
                    stack.push((entry, state));
                    state = next_state;
                    let ret = node.ret;
                    unlink(&mut nodes, entry);
                    unlink(&mut nodes, ret);
                    entry = nodes[0].next;
                    continue;
                }
                linearized[w] &= !b;
            }
            entry = nodes[entry].next;
        } else {
            // A return whose call could not be linearized before it: undo the last choice.
            let Some((call, prev_state)) = stack.pop() else {
                return Some(false);
            };
            let op = nodes[call].op;
            linearized[op / 64] &= !(1u64 << (op % 64));
            state = prev_state;
            let ret = nodes[call].ret;
            relink(&mut nodes, ret);
            relink(&mut nodes, call);
            entry = nodes[call].next;
        }
    }
    Some(true)
}

/// Greedily removes operations while the rest stays non-linearizable, never removing the
/// writer of a value a remaining operation observes.
fn shrink(mut ops: Vec<Operation>) -> Vec<Operation> {
    let mut checks = 0;
    loop {
        let mut removed_any = false;
        let mut i = ops.len();
        while i > 0 && checks < 5_000 {
            i -= 1;
            if let Some(v) = ops[i].writes() {
                if ops.iter().enumerate().any(|(j, o)| j != i && o.observes(v)) {
                    continue;
                }
            }
            let mut fewer = ops.clone();
            fewer.remove(i);
            checks += 1;
            if search(&fewer, BUDGET / 10) == Some(false) {
                ops = fewer;
                removed_any = true;
            }
        }
        if !removed_any || checks >= 5_000 {
            return ops;
        }
    }
}

/// A readable rendering of values: `c<client>#<seq>` as the workload encodes them.
pub fn show_value(v: Value) -> String {
    match v {
        None => "∅".to_string(),
        Some(x) => format!("c{}#{}", x >> 32, x & 0xffff_ffff),
    }
}

/// One line per operation, ordered by invocation.
pub fn render(ops: &[Operation]) -> String {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.call);
    let ms = |t: u64| format!("{:>10.3}ms", t as f64 / 1e6);
    let mut out = String::new();
    for o in &ops {
        let input = match o.input {
            Input::Read => "read".to_string(),
            Input::Write(v) => format!("write({})", show_value(Some(v))),
            Input::Cas { expect, new } => {
                format!("cas({} -> {})", show_value(expect), show_value(Some(new)))
            }
        };
        let output = match o.output {
            Output::Read(v) => show_value(v),
            Output::Written => "ok".into(),
            Output::Swapped => "swapped".into(),
            Output::NotSwapped(None) => "not swapped".into(),
            Output::NotSwapped(Some(v)) => format!("not swapped, saw {}", show_value(v)),
            Output::Unknown => "UNKNOWN (timeout/unavailable)".into(),
        };
        let ret = o.ret.map_or_else(|| format!("{:>12}", "never"), ms);
        let _ = writeln!(
            out,
            "  client {:>2}  key {:>2}  {} .. {}  {:<28} -> {}",
            o.client,
            o.key,
            ms(o.call),
            ret,
            input,
            output
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(client: u64, seq: u64) -> u64 {
        (client << 32) | seq
    }

    fn op(client: usize, input: Input, output: Output, call: u64, ret: Option<u64>) -> Operation {
        Operation {
            client,
            key: 0,
            input,
            output,
            call,
            ret,
        }
    }

    fn linearizable(h: &[Operation]) -> bool {
        check(h).is_empty()
    }

    #[test]
    fn sequential_history_is_linearizable() {
        let a = v(1, 1);
        let h = [
            op(1, Input::Read, Output::Read(None), 0, Some(1)),
            op(1, Input::Write(a), Output::Written, 2, Some(3)),
            op(2, Input::Read, Output::Read(Some(a)), 4, Some(5)),
            op(
                2,
                Input::Cas {
                    expect: Some(a),
                    new: v(2, 1),
                },
                Output::Swapped,
                6,
                Some(7),
            ),
            op(
                1,
                Input::Cas {
                    expect: Some(a),
                    new: v(1, 2),
                },
                Output::NotSwapped(Some(Some(v(2, 1)))),
                8,
                Some(9),
            ),
        ];
        assert!(linearizable(&h));
    }

    #[test]
    fn concurrent_read_may_see_old_or_new_value() {
        let a = v(1, 1);
        for seen in [None, Some(a)] {
            let h = [
                op(1, Input::Write(a), Output::Written, 0, Some(10)),
                op(2, Input::Read, Output::Read(seen), 5, Some(6)),
            ];
            assert!(linearizable(&h), "read of {seen:?} during the write");
        }
    }

    /// The classic stale read: a read that starts after a write completed sees the old value.
    #[test]
    fn stale_read_after_acknowledged_write_is_a_violation() {
        let a = v(1, 1);
        let h = [
            op(1, Input::Write(a), Output::Written, 0, Some(1)),
            op(2, Input::Read, Output::Read(None), 2, Some(3)),
        ];
        let verdicts = check(&h);
        let [Verdict::Violation { core, .. }] = verdicts.as_slice() else {
            panic!("expected one violation, got {verdicts:?}");
        };
        assert_eq!(core.len(), 2);
    }

    /// Two reads that disagree on the order of two writes (no single order explains both).
    #[test]
    fn reads_observing_writes_in_opposite_orders_are_a_violation() {
        let (a, b) = (v(1, 1), v(2, 1));
        let h = [
            op(1, Input::Write(a), Output::Written, 0, Some(100)),
            op(2, Input::Write(b), Output::Written, 0, Some(100)),
            op(3, Input::Read, Output::Read(Some(a)), 10, Some(20)),
            op(3, Input::Read, Output::Read(Some(b)), 30, Some(40)),
            op(4, Input::Read, Output::Read(Some(b)), 10, Some(20)),
            op(4, Input::Read, Output::Read(Some(a)), 30, Some(40)),
        ];
        assert!(!linearizable(&h));
        // Dropping client 4's reads makes it fine again.
        assert!(linearizable(&h[..4]));
    }

    /// Two CASes from the same expected value cannot both succeed.
    #[test]
    fn double_successful_cas_is_a_violation() {
        let a = v(1, 1);
        let h = [
            op(1, Input::Write(a), Output::Written, 0, Some(1)),
            op(
                2,
                Input::Cas {
                    expect: Some(a),
                    new: v(2, 1),
                },
                Output::Swapped,
                2,
                Some(10),
            ),
            op(
                3,
                Input::Cas {
                    expect: Some(a),
                    new: v(3, 1),
                },
                Output::Swapped,
                2,
                Some(10),
            ),
        ];
        assert!(!linearizable(&h));
    }

    /// An unknown write may take effect much later (it is still in flight), or never.
    #[test]
    fn unknown_write_may_apply_late_or_never() {
        let (a, b) = (v(1, 1), v(2, 1));
        let late = [
            op(1, Input::Write(a), Output::Unknown, 0, None),
            op(2, Input::Write(b), Output::Written, 10, Some(20)),
            op(3, Input::Read, Output::Read(Some(b)), 30, Some(40)),
            op(3, Input::Read, Output::Read(Some(a)), 50, Some(60)),
        ];
        assert!(linearizable(&late));
        let never = [
            op(1, Input::Write(a), Output::Unknown, 0, None),
            op(3, Input::Read, Output::Read(None), 50, Some(60)),
        ];
        assert!(linearizable(&never));
        // ...but not before it was invoked.
        let early = [
            op(3, Input::Read, Output::Read(Some(a)), 0, Some(5)),
            op(1, Input::Write(a), Output::Unknown, 10, None),
        ];
        assert!(!linearizable(&early));
    }

    /// Once observed, an unknown write has happened: it cannot be undone later.
    #[test]
    fn value_flapping_back_is_a_violation() {
        let (a, b) = (v(1, 1), v(2, 1));
        let h = [
            op(1, Input::Write(a), Output::Written, 0, Some(1)),
            op(2, Input::Write(b), Output::Unknown, 2, None),
            op(3, Input::Read, Output::Read(Some(b)), 10, Some(11)),
            op(3, Input::Read, Output::Read(Some(a)), 12, Some(13)),
        ];
        assert!(!linearizable(&h));
    }

    #[test]
    fn per_key_partitioning_keeps_keys_apart() {
        let a = v(1, 1);
        let mut other = op(2, Input::Read, Output::Read(None), 2, Some(3));
        other.key = 1;
        let h = [op(1, Input::Write(a), Output::Written, 0, Some(1)), other];
        assert!(linearizable(&h), "key 1 never saw key 0's write");
    }

    /// The reported core is small and keeps the writer of every value it shows.
    #[test]
    fn violation_is_shrunk_to_a_faithful_core() {
        let mut h = Vec::new();
        let mut t = 0;
        for seq in 1..=40 {
            let x = v(1, seq);
            h.push(op(1, Input::Write(x), Output::Written, t, Some(t + 1)));
            h.push(op(
                2,
                Input::Read,
                Output::Read(Some(x)),
                t + 2,
                Some(t + 3),
            ));
            t += 10;
        }
        // A stale read at the end: sees the 10th value after the 40th was acknowledged.
        h.push(op(
            3,
            Input::Read,
            Output::Read(Some(v(1, 10))),
            t,
            Some(t + 1),
        ));
        let verdicts = check(&h);
        let [Verdict::Violation { core, .. }] = verdicts.as_slice() else {
            panic!("expected one violation, got {verdicts:?}");
        };
        assert!(core.len() <= 4, "core too big:\n{}", render(core));
        assert!(core.iter().any(|o| o.input == Input::Write(v(1, 10))));
        assert!(core.iter().any(|o| o.client == 3));
        let text = render(core);
        assert!(text.contains("c1#10"), "{text}");
    }

    /// Many concurrent unknown operations stay tractable thanks to memoization and pruning.
    #[test]
    fn many_unknown_operations_stay_tractable() {
        let mut h = Vec::new();
        for c in 0..200u64 {
            h.push(op(
                c as usize,
                Input::Write(v(c, 1)),
                Output::Unknown,
                c,
                None,
            ));
        }
        h.push(op(
            999,
            Input::Read,
            Output::Read(Some(v(7, 1))),
            500,
            Some(501),
        ));
        h.push(op(
            999,
            Input::Read,
            Output::Read(Some(v(9, 1))),
            502,
            Some(503),
        ));
        assert!(linearizable(&h));
    }
}

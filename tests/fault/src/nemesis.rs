//! The fault schedule: generated from a seed, printed before the run, applied to a
//! [`Cluster`] while the workloads run.
//!
//! Faults are sequential — one fault held for a while, healed, a quiet gap, the next — so a
//! majority is always *eventually* reachable and the run ends with a healthy cluster. Targets
//! are "the leader" (resolved when the fault starts, and logged) or a fixed member. Pauses are
//! held longer than the election timeout so that the rest of the cluster moves on.

use std::fmt;
use std::time::{Duration, Instant};

use crate::cluster::{Cluster, ELECTION_MS};
use crate::rng::Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Leader,
    Member(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, then restart on the same data dir.
    Kill(Target),
    /// SIGSTOP, then SIGCONT.
    Pause(Target),
    /// Cut every link to and from the target (a minority of one).
    Isolate(Target),
    /// Cut only the target's outgoing links: it hears the others, they do not hear it.
    MuteOutbound(Target),
    /// Every link slowed down by this many milliseconds.
    Delay(u64),
    /// Remove the target from the cluster, wipe its data, add it back as a new member.
    Replace(Target),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// Quiet time before the fault starts.
    pub gap: Duration,
    pub fault: Fault,
    /// How long the fault is held before it is healed.
    pub hold: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub steps: Vec<Step>,
}

impl Schedule {
    /// Steps filling about `total` of fault time for a cluster of `members`.
    pub fn generate(seed: u64, members: usize, total: Duration) -> Schedule {
        let mut rng = Rng::fork(seed, u64::MAX);
        let mut steps = Vec::new();
        let mut elapsed = Duration::ZERO;
        while elapsed < total {
            let target = if rng.percent(50) {
                Target::Leader
            } else {
                Target::Member(rng.below(members as u64) as usize)
            };
            let fault = match rng.below(6) {
                0 => Fault::Kill(target),
                1 => Fault::Pause(target),
                2 => Fault::Isolate(target),
                3 => Fault::MuteOutbound(target),
                4 => Fault::Replace(target),
                _ => Fault::Delay(rng.between(5, 60)),
            };
            let gap = Duration::from_millis(rng.between(300, 1500));
            let hold = Duration::from_millis(rng.between(2 * ELECTION_MS, 6 * ELECTION_MS));
            elapsed += gap + hold;
            steps.push(Step { gap, fault, hold });
        }
        Schedule { seed, steps }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Leader => write!(f, "leader"),
            Target::Member(i) => write!(f, "m{i}"),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill(t) => write!(f, "kill -9 {t}, restart"),
            Fault::Pause(t) => write!(f, "SIGSTOP {t}, SIGCONT"),
            Fault::Isolate(t) => write!(f, "isolate {t}"),
            Fault::MuteOutbound(t) => write!(f, "cut {t}'s outbound links"),
            Fault::Delay(ms) => write!(f, "delay every link {ms}ms"),
            Fault::Replace(t) => write!(f, "replace {t} by a fresh member"),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "fault schedule for seed {}:", self.seed)?;
        for (i, s) in self.steps.iter().enumerate() {
            writeln!(
                f,
                "  {i:>3}. after {:>5}ms: {} for {}ms",
                s.gap.as_millis(),
                s.fault,
                s.hold.as_millis()
            )?;
        }
        Ok(())
    }
}

/// Applies `schedule` to `cluster`, logging each fault with its resolved target and the time
/// since `start`. Returns the log. Leaves the cluster healed.
pub async fn run(schedule: &Schedule, cluster: &mut Cluster, start: Instant) -> Vec<String> {
    let mut log = Vec::new();
    let mut note = |line: String| {
        let line = format!("[{:>8.3}s] {line}", start.elapsed().as_secs_f64());
        eprintln!("cairn-fault: {line}");
        log.push(line);
    };
    for step in &schedule.steps {
        tokio::time::sleep(step.gap).await;
        let resolve = |t: Target, leader: Option<usize>| match t {
            Target::Member(i) => i,
            Target::Leader => leader.unwrap_or(0),
        };
        let leader = match step.fault {
            Fault::Kill(Target::Leader)
            | Fault::Pause(Target::Leader)
            | Fault::Isolate(Target::Leader)
            | Fault::MuteOutbound(Target::Leader)
            | Fault::Replace(Target::Leader) => cluster.leader().await,
            _ => None,
        };
        match step.fault {
            Fault::Kill(t) => {
                let i = resolve(t, leader);
                note(format!("kill -9 m{i} ({t})"));
                cluster.kill(i);
                tokio::time::sleep(step.hold).await;
                note(format!("restart m{i}"));
                cluster.restart(i);
            }
            Fault::Pause(t) => {
                let i = resolve(t, leader);
                note(format!("SIGSTOP m{i} ({t})"));
                cluster.pause(i, true);
                tokio::time::sleep(step.hold).await;
                note(format!("SIGCONT m{i}"));
                cluster.pause(i, false);
            }
            Fault::Isolate(t) => {
                let i = resolve(t, leader);
                note(format!("isolate m{i} ({t})"));
                cluster.net.isolate(i);
                tokio::time::sleep(step.hold).await;
                note(format!("heal m{i}"));
                cluster.net.heal();
            }
            Fault::MuteOutbound(t) => {
                let i = resolve(t, leader);
                note(format!("cut m{i}'s outbound links ({t})"));
                for o in (0..cluster.members.len()).filter(|o| *o != i) {
                    cluster.net.set_cut(i, o, true);
                }
                tokio::time::sleep(step.hold).await;
                note(format!("heal m{i}'s outbound links"));
                cluster.net.heal();
            }
            Fault::Replace(t) => {
                let i = resolve(t, leader);
                note(format!("replace m{i} ({t})"));
                match cluster.replace(i, Duration::from_secs(30)).await {
                    Ok(what) => note(what),
                    Err(why) => note(format!("replace m{i} gave up: {why}")),
                }
                // The new member catches up while the workloads go on.
                tokio::time::sleep(step.hold).await;
            }
            Fault::Delay(ms) => {
                note(format!("delay every link {ms}ms"));
                cluster.net.delay_all(Duration::from_millis(ms));
                tokio::time::sleep(step.hold).await;
                note("links back to full speed".into());
                cluster.net.heal();
            }
        }
    }
    cluster.heal_all();
    note("schedule done; cluster healed".into());
    log
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_yields_the_same_schedule() {
        let a = Schedule::generate(7, 3, Duration::from_secs(20));
        let b = Schedule::generate(7, 3, Duration::from_secs(20));
        let c = Schedule::generate(8, 3, Duration::from_secs(20));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let total: Duration = a.steps.iter().map(|s| s.gap + s.hold).sum();
        assert!(total >= Duration::from_secs(20));
        assert!(a
            .steps
            .iter()
            .all(|s| s.hold >= Duration::from_millis(2 * ELECTION_MS)));
    }
}

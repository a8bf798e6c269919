//! Fault runs against real 3-member cairn-store clusters.
//!
//! CI runs a few fixed seeds (about 20 s each). `CAIRN_FAULT_SOAK=<seconds>` turns `soak` into
//! a long run with a fresh seed per round; `CAIRN_FAULT_SEED=<n>` makes `replay` rerun one seed.
//! Every run prints its seed and fault schedule first.

use std::time::{Duration, Instant};

use cairn_fault::run::{run, RunConfig};

/// Kill, pause, isolate, mute and delay — the generated mix for seed 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_1_every_workload_stays_correct_under_faults() {
    run(RunConfig::ci(1)).await.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_2_every_workload_stays_correct_under_faults() {
    run(RunConfig::ci(2)).await.assert_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn seed_3_every_workload_stays_correct_under_faults() {
    run(RunConfig::ci(3)).await.assert_clean();
}

/// The minority partition holding the leader, a bridge with the leader at one end, and
/// one-way loss out of and into the leader, each held 2.5 s: every seed draws some of these,
/// this run always has them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_partition_shape_around_the_leader_keeps_every_workload_correct() {
    run(RunConfig::partitions(11)).await.assert_clean();
}

/// `CAIRN_FAULT_SEED=<n>` (and `CAIRN_FAULT_SECONDS`, 15 by default): rerun one seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay() {
    let Some(seed) = env_u64("CAIRN_FAULT_SEED") else {
        eprintln!("replay: set CAIRN_FAULT_SEED=<seed> to rerun a seed; skipping");
        return;
    };
    let fault_time = Duration::from_secs(env_u64("CAIRN_FAULT_SECONDS").unwrap_or(15));
    run(RunConfig {
        fault_time,
        ..RunConfig::ci(seed)
    })
    .await
    .assert_clean();
}

/// `CAIRN_FAULT_SOAK=<seconds>`: back-to-back runs of 60 s of faults each, a new seed per
/// round (printed), until the time is up. The first failing round stops the soak. Run it with
/// `cargo test` (nextest's profile kills tests after 3 minutes), see docs/robustness.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn soak() {
    let Some(secs) = env_u64("CAIRN_FAULT_SOAK") else {
        eprintln!("soak: set CAIRN_FAULT_SOAK=<seconds> for a long soak; skipping");
        return;
    };
    let until = Instant::now() + Duration::from_secs(secs);
    let mut seed = env_u64("CAIRN_FAULT_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs())
    });
    let mut rounds = 0;
    while Instant::now() < until {
        let cfg = RunConfig {
            fault_time: Duration::from_secs(60),
            ..RunConfig::ci(seed)
        };
        run(cfg).await.assert_clean();
        rounds += 1;
        seed += 1;
    }
    eprintln!("soak: {rounds} rounds clean");
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
    )
}

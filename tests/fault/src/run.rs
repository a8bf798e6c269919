//! One fault run: a 3-member cluster, register, list-append, watch and lease clients on every
//! member, the seed's fault schedule, then — with the cluster healed — final reads and every
//! check.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::HashKvRequest;

use crate::append_check::{self, TxnOutcome};
use crate::cluster::{lazy_channel, Cluster};
use crate::linearizability::{self, Output, Verdict};
use crate::nemesis::{self, Schedule};
use crate::workload::{self, RegisterLog};
use crate::{lease_check, watch_check};

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub seed: u64,
    /// Time spent injecting faults (the schedule fills about this much).
    pub fault_time: Duration,
    pub register_clients: usize,
    pub register_keys: usize,
    pub append_clients: usize,
    pub list_keys: usize,
    /// Watchers of the whole key space from revision 1.
    pub watchers: usize,
    /// Clients keeping a lease with an attached key alive.
    pub lease_clients: usize,
    /// A hand-written schedule to apply instead of the one generated from the seed.
    pub schedule: Option<Schedule>,
}

impl RunConfig {
    /// The bounded configuration CI runs for each fixed seed.
    pub fn ci(seed: u64) -> Self {
        Self {
            seed,
            fault_time: Duration::from_secs(15),
            register_clients: 4,
            register_keys: 4,
            append_clients: 3,
            list_keys: 4,
            watchers: 3,
            lease_clients: 2,
            schedule: None,
        }
    }

    /// The CI configuration with every partition shape aimed at the leader
    /// ([`Schedule::partitions`]) instead of a generated schedule.
    pub fn partitions(seed: u64) -> Self {
        Self {
            schedule: Some(Schedule::partitions(seed)),
            ..Self::ci(seed)
        }
    }
}

/// What a run observed. `anomalies` empty means every check held.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub fault_time: Duration,
    pub schedule: String,
    pub fault_log: Vec<String>,
    pub summary: String,
    pub anomalies: Vec<String>,
    /// Where the members' data dirs and logs were kept (only when there are anomalies).
    pub kept: Option<std::path::PathBuf>,
    /// The command that runs this schedule again.
    pub replay: String,
}

impl Report {
    /// Panics with the seed, the schedule, what happened and every anomaly, unless clean.
    pub fn assert_clean(&self) {
        if self.anomalies.is_empty() {
            return;
        }
        panic!(
            "cairn-fault: seed {} found {} anomalies\n\n{}\nfaults as applied:\n{}\n\n{}\n\n{}\n\n\
             member logs and data dirs kept in {:?}\n\
             replay: {}",
            self.seed,
            self.anomalies.len(),
            self.schedule,
            self.fault_log.join("\n"),
            self.summary,
            self.anomalies.join("\n\n"),
            self.kept,
            self.replay,
        );
    }
}

const RECOVERY: Duration = Duration::from_secs(60);

pub async fn run(cfg: RunConfig) -> Report {
    let schedule = cfg
        .schedule
        .clone()
        .unwrap_or_else(|| Schedule::generate(cfg.seed, 3, cfg.fault_time));
    let schedule_text = schedule.to_string();
    eprintln!(
        "cairn-fault: seed {} — {:?}\n{schedule_text}",
        cfg.seed, cfg
    );

    let mut cluster = Cluster::start(3).await;
    let endpoints: Vec<String> = cluster
        .members
        .iter()
        .map(|m| m.client_url.clone())
        .collect();
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));

    let mut registers = Vec::new();
    for id in 0..cfg.register_clients {
        registers.push(tokio::spawn(workload::register(
            id,
            endpoints[id % endpoints.len()].clone(),
            cfg.register_keys,
            cfg.seed,
            start,
            Arc::clone(&stop),
        )));
    }
    let mut appends = Vec::new();
    for j in 0..cfg.append_clients {
        let id = cfg.register_clients + j;
        appends.push(tokio::spawn(workload::append(
            id,
            endpoints[id % endpoints.len()].clone(),
            cfg.list_keys,
            cfg.seed,
            start,
            Arc::clone(&stop),
        )));
    }

    let (target_tx, target_rx) = tokio::sync::watch::channel(0i64);
    let (give_up_tx, give_up_rx) = tokio::sync::watch::channel(false);
    let shared_endpoints = Arc::new(endpoints.clone());
    let watchers: Vec<_> = (0..cfg.watchers)
        .map(|w| {
            tokio::spawn(watch_check::watcher(
                w,
                Arc::clone(&shared_endpoints),
                target_rx.clone(),
                give_up_rx.clone(),
            ))
        })
        .collect();
    let lease_clients: Vec<_> = (0..cfg.lease_clients)
        .map(|l| {
            tokio::spawn(lease_check::lease_client(
                l,
                Arc::clone(&shared_endpoints),
                start,
                Arc::clone(&stop),
            ))
        })
        .collect();

    let fault_log = nemesis::run(&schedule, &mut cluster, start).await;
    // Liveness after healing: every member serves linearizable reads again.
    for i in 0..cluster.members.len() {
        cluster.wait_ready(i, RECOVERY).await;
    }
    // Let the clients work against the healthy cluster for a moment, then stop them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reg = RegisterLog::default();
    for h in registers {
        let log = h.await.expect("register client");
        reg.ops.extend(log.ops);
        reg.facts.extend(log.facts);
    }
    let mut app = workload::AppendLog::default();
    for h in appends {
        let log = h.await.expect("append client");
        app.txns.extend(log.txns);
        app.reads.extend(log.reads);
    }

    let fin =
        workload::final_register_reads(&endpoints[0], cfg.register_keys, start, RECOVERY).await;
    reg.ops.extend(fin.ops);
    reg.facts.extend(fin.facts);
    let (lists, final_revision) = workload::final_lists(
        &endpoints[1 % endpoints.len()],
        cfg.list_keys,
        start,
        RECOVERY,
    )
    .await;

    let mut leases = Vec::new();
    for h in lease_clients {
        leases.push(h.await.expect("lease client"));
    }
    // Every watcher must reach the final revision; then the state it replays is compared
    // with the state read at that revision.
    let _ = target_tx.send(final_revision);
    let give_up = tokio::spawn(async move {
        tokio::time::sleep(RECOVERY).await;
        let _ = give_up_tx.send(true);
    });
    let mut watch_logs = Vec::new();
    for h in watchers {
        watch_logs.push(h.await.expect("watcher"));
    }
    give_up.abort();
    let final_state = watch_check::state_at(&endpoints[0], final_revision, RECOVERY).await;
    let acked: Vec<watch_check::AckedWrite> = reg
        .facts
        .iter()
        .filter(|f| f.acknowledged_write)
        .map(|f| watch_check::AckedWrite {
            revision: f.revision,
            key: workload::register_key(f.key),
            value: f.value.to_string().into_bytes(),
        })
        .collect();

    let mut anomalies = Vec::new();
    anomalies.extend(watch_check::check(
        &watch_logs,
        final_revision,
        &final_state,
        &acked,
    ));
    anomalies.extend(leases.iter().flat_map(|l| l.problems.clone()));
    anomalies.extend(
        lease_check::expired_keys_vanish(
            &endpoints[2 % endpoints.len()],
            &leases,
            Duration::from_secs(lease_check::TTL as u64 + 10),
        )
        .await,
    );
    let t = Instant::now();
    for verdict in linearizability::check(&reg.ops) {
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Violation { key, core } => anomalies.push(format!(
                "NOT LINEARIZABLE: register reg/{key}; a minimal history that no order \
                 explains:\n{}",
                linearizability::render(&core)
            )),
            Verdict::Inconclusive { key, ops } => eprintln!(
                "cairn-fault: WARNING: linearizability of reg/{key} ({ops} ops) inconclusive \
                 (search budget exhausted); nothing claimed for it"
            ),
        }
    }
    let check_time = t.elapsed();
    anomalies.extend(append_check::check(&app.txns, &app.reads, &lists));
    anomalies.extend(revision_anomalies(&reg, &app));
    anomalies.extend(hash_anomalies(&cluster, final_revision).await);

    let mut summary = summarize(&reg, &app, &lists, check_time);
    let _ = write!(
        summary,
        "; watch: {} watchers saw {:?} events with {:?} reconnects up to revision \
         {final_revision}; lease: {} generations ({} abandoned), {} keep-alives, {} reads",
        watch_logs.len(),
        watch_logs
            .iter()
            .map(|l| l.events.len())
            .collect::<Vec<_>>(),
        watch_logs.iter().map(|l| l.reconnects).collect::<Vec<_>>(),
        leases.iter().map(|l| l.generations.len()).sum::<usize>(),
        leases
            .iter()
            .flat_map(|l| &l.generations)
            .filter(|g| g.abandoned)
            .count(),
        leases.iter().map(|l| l.keepalives).sum::<usize>(),
        leases.iter().map(|l| l.reads).sum::<usize>(),
    );
    let kept = (!anomalies.is_empty()).then(|| cluster.keep_dir());
    eprintln!("cairn-fault: seed {}: {summary}", cfg.seed);
    Report {
        seed: cfg.seed,
        fault_time: cfg.fault_time,
        schedule: schedule_text,
        fault_log,
        summary,
        anomalies,
        kept,
        replay: match cfg.schedule {
            // A hand-written schedule is its test's; the clients' seed is the test's too.
            Some(_) => {
                "cargo nextest run -p cairn-fault <the test that failed> --no-capture".into()
            }
            None => format!(
                "CAIRN_FAULT_SEED={} CAIRN_FAULT_SECONDS={} cargo nextest run -p cairn-fault \
                 replay --no-capture",
                cfg.seed,
                cfg.fault_time.as_secs()
            ),
        },
    }
}

/// Every value is written once, so it must carry one mod_revision everywhere it is seen, equal
/// to the revision that acknowledged its write; and no revision acknowledges two writes.
fn revision_anomalies(reg: &RegisterLog, app: &workload::AppendLog) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut by_value: HashMap<u64, BTreeSet<i64>> = HashMap::new();
    for f in &reg.facts {
        by_value.entry(f.value).or_default().insert(f.revision);
    }
    for (v, revs) in &by_value {
        if revs.len() > 1 {
            anomalies.push(format!(
                "value {} was seen with several mod_revisions {revs:?} (applied twice?)",
                linearizability::show_value(Some(*v))
            ));
        }
    }
    let mut acks: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for f in reg.facts.iter().filter(|f| f.acknowledged_write) {
        acks.entry(f.revision).or_default().push(format!(
            "write of {} to reg/{}",
            linearizability::show_value(Some(f.value)),
            f.key
        ));
    }
    for t in &app.txns {
        if let TxnOutcome::Committed { revision } = t.outcome {
            acks.entry(revision).or_default().push(format!(
                "append of element {} to lists {:?}",
                t.element, t.keys
            ));
        }
    }
    for (rev, writes) in acks {
        if writes.len() > 1 {
            anomalies.push(format!(
                "revision {rev} acknowledged {} writes: {writes:?}",
                writes.len()
            ));
        }
    }
    anomalies
}

/// With the cluster healed, every member must hold the same key-value history up to `rev`.
async fn hash_anomalies(cluster: &Cluster, rev: i64) -> Vec<String> {
    let mut hashes = Vec::new();
    for (i, m) in cluster.members.iter().enumerate() {
        // A linearizable read makes sure the member has applied `rev`.
        cluster.wait_ready(i, RECOVERY).await;
        let mut c = MaintenanceClient::new(lazy_channel(&m.client_url));
        match c.hash_kv(HashKvRequest { revision: rev }).await {
            Ok(r) => {
                let r = r.into_inner();
                hashes.push((m.name.clone(), r.hash, r.hash_revision));
            }
            Err(e) => {
                return vec![format!(
                    "HashKV at revision {rev} failed on {}: {e}",
                    m.name
                )]
            }
        }
    }
    if hashes
        .windows(2)
        .all(|w| w[0].1 == w[1].1 && w[0].2 == w[1].2)
    {
        Vec::new()
    } else {
        vec![format!(
            "members disagree on HashKV at revision {rev}: {hashes:?}"
        )]
    }
}

fn summarize(
    reg: &RegisterLog,
    app: &workload::AppendLog,
    lists: &BTreeMap<usize, Vec<u64>>,
    check_time: Duration,
) -> String {
    let mut s = String::new();
    let count = |f: &dyn Fn(&Output) -> bool| reg.ops.iter().filter(|o| f(&o.output)).count();
    let _ = write!(
        s,
        "register: {} ops ({} reads, {} ok writes, {} swapped, {} not swapped, {} unknown), \
         checked in {:.2}s; ",
        reg.ops.len(),
        count(&|o| matches!(o, Output::Read(_))),
        count(&|o| *o == Output::Written),
        count(&|o| *o == Output::Swapped),
        count(&|o| matches!(o, Output::NotSwapped(_))),
        count(&|o| *o == Output::Unknown),
        check_time.as_secs_f64()
    );
    let txn = |f: &dyn Fn(&TxnOutcome) -> bool| app.txns.iter().filter(|t| f(&t.outcome)).count();
    let _ = write!(
        s,
        "append: {} txns ({} committed, {} rejected, {} unknown), {} list reads, final list \
         lengths {:?}",
        app.txns.len(),
        txn(&|o| matches!(o, TxnOutcome::Committed { .. })),
        txn(&|o| *o == TxnOutcome::Rejected),
        txn(&|o| *o == TxnOutcome::Unknown),
        app.reads.len(),
        lists.values().map(Vec::len).collect::<Vec<_>>()
    );
    s
}

//! `compare`: in ONE run on this machine, the same workloads against real etcd and against
//! cairn-store, single member and 3 members on loopback, alternating which server goes first
//! from step to step (and round to round) so drift — page cache, thermal, background work —
//! does not favour either. Then peak RSS, bytes on disk and restart time after the load, and
//! the rendered tables written between markers into `docs/benchmarks.md`.
//!
//! - [`cluster`]: the server processes and their process-level measurements;
//! - [`machine`]: CPU, memory, filesystem, versions and the fdatasync probe;
//! - [`markdown`]: the tables.
//!
//! Both clusters of a size run side by side; the idle one only heartbeats. Each step's
//! server CPU time is read from `/proc` before and after, so the table also says where the
//! CPU went per operation — on 2 cores the load generator competes with the servers, and
//! its own CPU is reported too.

pub mod cluster;
pub mod machine;
pub mod markdown;

use std::path::PathBuf;
use std::time::Duration;

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::{PutRequest, RangeRequest};

use crate::connect::{ConnectOpts, Conns};
use crate::report::Report;
use crate::workload::{self, RunOpts};
use cluster::{Cluster, Kind};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The etcd binary to compare with.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// The cairn-store binary (build it with `cargo build --release -p cairn-store`).
    #[arg(long, default_value = "target/release/cairn-store")]
    pub cairn_bin: PathBuf,
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub members: Vec<usize>,
    /// Times each step runs per server; the table shows medians.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
    /// Multiplies every step's request total (e.g. 10 for a long run).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f64,
    /// Distinct keys written by the final fill step, before RSS, disk and restart are measured
    /// (the memory and restart targets are stated at one million keys).
    #[arg(long, default_value_t = 1_000_000)]
    pub load_keys: u64,
    /// Run only the steps whose name contains one of these (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Markdown file to write the results into (between `<!-- compare:begin/end -->`).
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    /// Where the temp data dirs go (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// fdatasync probes for the disk measurement.
    #[arg(long, default_value_t = 300)]
    pub fsync_probes: u64,
}

#[derive(Debug, Clone)]
pub enum Spec {
    Put(workload::put::Args),
    Range(workload::range::Args),
    TxnPut(workload::txn_put::Args),
    Watch(workload::watch::Args),
    Lease(workload::lease_keepalive::Args),
    Cas(workload::txn_cas::Args),
}

/// One row of the table: a workload at a concurrency.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub conns: usize,
    pub clients: usize,
    pub spec: Spec,
}

/// The key the range steps read, written with a 256-byte value before them.
const RANGE_KEY: &str = "cairn-bench/range";

fn put_step(name: &str, conns: usize, clients: usize, total: u64, space: u64) -> Step {
    Step {
        name: name.into(),
        conns,
        clients,
        spec: Spec::Put(workload::put::Args {
            key_size: 8,
            val_size: 256,
            total,
            rate: 0,
            key_space_size: space,
            sequential_keys: true,
        }),
    }
}

fn range_step(name: &str, consistency: workload::range::Consistency, total: u64) -> Step {
    Step {
        name: name.into(),
        conns: 10,
        clients: 100,
        spec: Spec::Range(workload::range::Args {
            key: RANGE_KEY.into(),
            end: None,
            consistency,
            total,
            rate: 0,
            limit: 0,
            count_only: false,
        }),
    }
}

/// The steps for a cluster of `members`, totals multiplied by `scale`.
pub fn plan(members: usize, scale: f64, load_keys: u64) -> Vec<Step> {
    let n = |base: u64| ((base as f64 * scale).round() as u64).max(1);
    use workload::range::Consistency::{L, S};
    let mut steps = vec![
        put_step("put 1/1", 1, 1, n(1_000), 100_000),
        put_step("put 10/100", 10, 100, n(10_000), 100_000),
        put_step("put 100/1000", 100, 1000, n(20_000), 100_000),
        range_step("range linearizable 10/100", L, n(20_000)),
        range_step("range serializable 10/100", S, n(20_000)),
    ];
    if members == 1 {
        steps.extend([
            Step {
                name: "txn-put 4 ops 10/100".into(),
                conns: 10,
                clients: 100,
                spec: Spec::TxnPut(workload::txn_put::Args {
                    key_size: 8,
                    val_size: 256,
                    txn_ops: 4,
                    rate: 0,
                    total: n(5_000),
                    key_space_size: 100_000,
                }),
            },
            Step {
                name: "watch 10x100 watchers 10/10".into(),
                conns: 10,
                clients: 10,
                spec: Spec::Watch(workload::watch::Args {
                    streams: 10,
                    watch_per_stream: 100,
                    watched_key_total: 1,
                    put_rate: 0,
                    put_total: n(500),
                    key_size: 32,
                    key_space_size: 1,
                    sequential_keys: false,
                    event_timeout: 60,
                }),
            },
            Step {
                name: "lease-keepalive 10/100".into(),
                conns: 10,
                clients: 100,
                spec: Spec::Lease(workload::lease_keepalive::Args {
                    total: n(20_000),
                    ttl: 100,
                    rate: 0,
                }),
            },
            Step {
                name: "txn-cas 4 counters 10/100".into(),
                conns: 10,
                clients: 100,
                spec: Spec::Cas(workload::txn_cas::Args {
                    counters: 4,
                    total: n(2_000),
                    rate: 0,
                    key_prefix: "cairn-bench/cas/".into(),
                }),
            },
        ]);
    }
    steps.push(put_step(
        &format!("fill {load_keys} keys 100/1000"),
        100,
        1000,
        load_keys,
        load_keys,
    ));
    steps
}

/// What one step measured on one server.
#[derive(Debug, Clone)]
pub struct Sample {
    pub report: Report,
    /// CPU time of all the server's members during the step.
    pub server_cpu: Duration,
    /// CPU time of this load generator during the step.
    pub bench_cpu: Duration,
}

#[derive(Debug, Clone)]
pub struct RowResult {
    pub members: usize,
    pub step: Step,
    pub etcd: Vec<Result<Sample, String>>,
    pub cairn: Vec<Result<Sample, String>>,
}

#[derive(Debug, Clone, Default)]
pub struct Resources {
    pub keys: u64,
    pub peak_rss_kib: u64,
    pub disk_bytes: u64,
    pub restart: Option<Duration>,
    pub restart_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SizeResult {
    pub members: usize,
    pub etcd: Resources,
    pub cairn: Resources,
}

async fn run_step(cluster: &Cluster, step: &Step) -> anyhow::Result<Sample> {
    let conns = Conns::connect(&ConnectOpts {
        endpoints: cluster.endpoints(),
        conns: step.conns,
        target_leader: false,
        dial_timeout: Duration::from_secs(5),
    })
    .await?;
    let opts = RunOpts::quiet(step.clients);
    let cpu0 = (cluster.cpu_time(), cluster::own_cpu_time());
    let report = match &step.spec {
        Spec::Put(a) => workload::put::run(&conns, a, &opts).await?,
        Spec::Range(a) => workload::range::run(&conns, a, &opts).await?,
        Spec::TxnPut(a) => workload::txn_put::run(&conns, a, &opts).await?,
        Spec::Watch(a) => workload::watch::run(&conns, a, &opts).await?,
        Spec::Lease(a) => workload::lease_keepalive::run(&conns, a, &opts).await?,
        Spec::Cas(a) => workload::txn_cas::run(&conns, a, &opts).await?,
    };
    Ok(Sample {
        report,
        server_cpu: cluster.cpu_time().saturating_sub(cpu0.0),
        bench_cpu: cluster::own_cpu_time().saturating_sub(cpu0.1),
    })
}

async fn seed_range_key(cluster: &Cluster) -> anyhow::Result<()> {
    let conns = Conns::connect(&ConnectOpts {
        endpoints: cluster.endpoints(),
        conns: 1,
        target_leader: false,
        dial_timeout: Duration::from_secs(5),
    })
    .await?;
    KvClient::new(conns.channel(0))
        .put(PutRequest {
            key: RANGE_KEY.into(),
            value: vec![b'v'; 256],
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn count_keys(cluster: &Cluster) -> anyhow::Result<u64> {
    let conns = Conns::connect(&ConnectOpts {
        endpoints: cluster.endpoints(),
        conns: 1,
        target_leader: false,
        dial_timeout: Duration::from_secs(5),
    })
    .await?;
    let resp = KvClient::new(conns.channel(0))
        .range(RangeRequest {
            key: vec![0],
            range_end: vec![0],
            count_only: true,
            ..Default::default()
        })
        .await?;
    Ok(resp.into_inner().count as u64)
}

async fn measure_resources(cluster: &mut Cluster) -> Resources {
    let mut r = Resources {
        keys: count_keys(cluster).await.unwrap_or(0),
        peak_rss_kib: cluster.peak_rss_kib(),
        disk_bytes: cluster.disk_bytes(),
        ..Default::default()
    };
    match cluster.restart().await {
        Ok(d) => r.restart = Some(d),
        Err(e) => r.restart_error = Some(format!("{e:#}")),
    }
    r
}

fn selected(args: &Args, step: &Step) -> bool {
    args.only.is_empty() || args.only.iter().any(|o| step.name.contains(o.as_str()))
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.cairn_bin.exists(),
        "{} not found: run `cargo build --release -p cairn-store -p cairn-bench` first",
        args.cairn_bin.display()
    );
    anyhow::ensure!(
        args.etcd_bin.exists(),
        "{} not found (apt-get install etcd-server)",
        args.etcd_bin.display()
    );
    let work = match &args.work_dir {
        Some(d) => tempfile::Builder::new()
            .prefix("cairn-compare-")
            .tempdir_in(d)?,
        None => tempfile::Builder::new()
            .prefix("cairn-compare-")
            .tempdir()?,
    };
    eprintln!("measuring fdatasync in {}", work.path().display());
    let fsync = machine::probe_fdatasync(work.path(), args.fsync_probes)?;
    let machine = machine::describe(work.path(), &args.etcd_bin, fsync);
    eprintln!("{machine:?}");

    let mut rows = Vec::new();
    let mut sizes = Vec::new();
    for &members in &args.members {
        eprintln!("== {members} member(s): starting etcd and cairn-store");
        let root = work.path().join(format!("{members}-members"));
        let mut etcd = Cluster::start(Kind::Etcd, &args.etcd_bin, members, &root).await?;
        let mut cairn = Cluster::start(Kind::Cairn, &args.cairn_bin, members, &root).await?;
        seed_range_key(&etcd).await?;
        seed_range_key(&cairn).await?;
        let steps: Vec<Step> = plan(members, args.scale, args.load_keys)
            .into_iter()
            .filter(|s| selected(args, s))
            .collect();
        let first_row = rows.len();
        for step in &steps {
            rows.push(RowResult {
                members,
                step: step.clone(),
                etcd: Vec::new(),
                cairn: Vec::new(),
            });
        }
        for round in 0..args.rounds {
            for (i, step) in steps.iter().enumerate() {
                let order = if (round + i) % 2 == 0 {
                    [&etcd, &cairn]
                } else {
                    [&cairn, &etcd]
                };
                for cluster in order {
                    let r = run_step(cluster, step).await.map_err(|e| format!("{e:#}"));
                    match &r {
                        Ok(s) => eprintln!(
                            "[{members}m r{round}] {:<30} {:<5} {:>10.0} {}/s p99 {:.2} ms{}",
                            step.name,
                            cluster.kind.name(),
                            s.report.rate(),
                            s.report.unit,
                            s.report.latency().p99,
                            if s.report.violations.is_empty() {
                                String::new()
                            } else {
                                format!(" VIOLATIONS {:?}", s.report.violations)
                            }
                        ),
                        Err(e) => eprintln!(
                            "[{members}m r{round}] {} {} FAILED: {e}\n{}",
                            step.name,
                            cluster.kind.name(),
                            cluster.log_tail()
                        ),
                    }
                    let row = &mut rows[first_row + i];
                    match cluster.kind {
                        Kind::Etcd => row.etcd.push(r),
                        Kind::Cairn => row.cairn.push(r),
                    }
                    // Let background work of the last step (compaction of the log, page
                    // cache writeback) settle before the other server's turn.
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        eprintln!("== {members} member(s): resources after the load, restart");
        let etcd_res = measure_resources(&mut etcd).await;
        let cairn_res = measure_resources(&mut cairn).await;
        eprintln!("etcd {etcd_res:?}\ncairn {cairn_res:?}");
        sizes.push(SizeResult {
            members,
            etcd: etcd_res,
            cairn: cairn_res,
        });
        etcd.stop();
        cairn.stop();
    }

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let section = markdown::render(&machine, &rows, &sizes, &command, args);
    markdown::write_section(&args.out, &section)?;
    println!("{section}");
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

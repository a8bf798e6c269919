//! `range KEY [END]`: the same Range again and again — linearizable (`--consistency l`, the
//! default, a read-index round through the leader) or serializable (`s`, served locally).

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::RangeRequest;
use tonic::transport::Channel;

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::progress::{Progress, ProgressLine};
use crate::report::Report;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    L,
    /// Serializable.
    S,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The key to read.
    pub key: String,
    /// End of the range [KEY, END) (etcd's `end-range`).
    pub end: Option<String>,
    /// Linearizable(l) or Serializable(s).
    #[arg(long, value_enum, default_value = "l")]
    pub consistency: Consistency,
    /// Total number of range requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Maximum range requests per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Maximum number of results per request (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub limit: i64,
    /// Only get the count of keys.
    #[arg(long)]
    pub count_only: bool,
}

struct RangeWorker {
    kv: KvClient<Channel>,
    request: RangeRequest,
    /// Keys returned in total, to report what was actually read.
    kvs: u64,
}

impl Worker for RangeWorker {
    async fn call(&mut self, _seq: u64) -> Result<(), crate::driver::CallError> {
        let resp = self.kv.range(self.request.clone()).await?.into_inner();
        self.kvs += if self.request.count_only {
            resp.count as u64
        } else {
            resp.kvs.len() as u64
        };
        Ok(())
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    let request = RangeRequest {
        key: args.key.clone().into_bytes(),
        range_end: args.end.clone().unwrap_or_default().into_bytes(),
        limit: args.limit,
        serializable: args.consistency == Consistency::S,
        count_only: args.count_only,
        ..Default::default()
    };
    let workers = (0..opts.clients)
        .map(|i| RangeWorker {
            kv: KvClient::new(conns.channel(i)),
            request: request.clone(),
            kvs: 0,
        })
        .collect();
    let progress = Progress::default();
    let _line = ProgressLine::start("range".into(), args.total, progress.clone(), opts.progress);
    let out = driver::run(workers, args.total, args.rate, &progress).await;
    let kvs: u64 = out.workers.iter().map(|w| w.kvs).sum();
    let consistency = match args.consistency {
        Consistency::L => "linearizable",
        Consistency::S => "serializable",
    };
    Ok(
        Report::new("range", "requests", out.ok, out.elapsed, out.rec)
            .with("consistency", consistency)
            .with("keys_read", kvs),
    )
}

//! `put`: one Put per request, keys drawn from `--key-space-size` (random, or in order with
//! `--sequential-keys`), values `--val-size` random letters fixed for the run.

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::PutRequest;
use tonic::transport::Channel;

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::keys::{self, Rng};
use crate::progress::{Progress, ProgressLine};
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Key size of put request.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of put request.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Total number of put requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Maximum puts per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys.
    #[arg(long)]
    pub sequential_keys: bool,
}

struct PutWorker {
    kv: KvClient<Channel>,
    key: Vec<u8>,
    value: Vec<u8>,
    space: u64,
    sequential: bool,
    rng: Rng,
}

impl Worker for PutWorker {
    async fn call(&mut self, seq: u64) -> Result<(), crate::driver::CallError> {
        let index = if self.sequential {
            seq % self.space
        } else {
            self.rng.below(self.space)
        };
        keys::write_key(&mut self.key, index as i64);
        self.kv
            .put(PutRequest {
                key: self.key.clone(),
                value: self.value.clone(),
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    keys::check_key_size(args.key_size, args.key_space_size)?;
    let value = Rng::new(0xBEEF).bytes(args.val_size);
    let workers = (0..opts.clients)
        .map(|i| PutWorker {
            kv: KvClient::new(conns.channel(i)),
            key: vec![0; args.key_size],
            value: value.clone(),
            space: args.key_space_size,
            sequential: args.sequential_keys,
            rng: Rng::new(i as u64 + 1),
        })
        .collect();
    let progress = Progress::default();
    let _line = ProgressLine::start("put".into(), args.total, progress.clone(), opts.progress);
    let out = driver::run(workers, args.total, args.rate, &progress).await;
    Ok(Report::new("put", "requests", out.ok, out.elapsed, out.rec))
}

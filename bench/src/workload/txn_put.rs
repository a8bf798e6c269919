//! `txn-put`: transactions of `--txn-ops` puts each, with no comparisons. The keys of one
//! transaction are consecutive indexes of the key space, so they are distinct (etcd refuses
//! a transaction that puts one key twice) — hence `--txn-ops <= --key-space-size`.

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::keys;
use crate::progress::{Progress, ProgressLine};
use crate::report::Report;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Key size of txn put.
    #[arg(long, default_value_t = 8)]
    pub key_size: usize,
    /// Value size of txn put.
    #[arg(long, default_value_t = 8)]
    pub val_size: usize,
    /// Number of puts per txn.
    #[arg(long, default_value_t = 1)]
    pub txn_ops: u64,
    /// Maximum txns per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Total number of txn requests.
    #[arg(long, default_value_t = 10_000)]
    pub total: u64,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
}

struct TxnPutWorker {
    kv: KvClient<Channel>,
    key_size: usize,
    value: Vec<u8>,
    ops: u64,
    space: u64,
}

impl Worker for TxnPutWorker {
    async fn call(&mut self, seq: u64) -> Result<(), crate::driver::CallError> {
        let base = seq.wrapping_mul(self.ops);
        let success = (0..self.ops)
            .map(|j| RequestOp {
                request: Some(Op::RequestPut(PutRequest {
                    key: keys::key(self.key_size, ((base + j) % self.space) as i64),
                    value: self.value.clone(),
                    ..Default::default()
                })),
            })
            .collect();
        self.kv
            .txn(TxnRequest {
                compare: Vec::new(),
                success,
                failure: Vec::new(),
            })
            .await
            .map(drop)
            .map_err(Into::into)
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    anyhow::ensure!(args.txn_ops > 0, "expected positive --txn-ops");
    anyhow::ensure!(
        args.txn_ops <= args.key_space_size,
        "expected --txn-ops no larger than --key-space-size, got txn-ops({}) key-space-size({})",
        args.txn_ops,
        args.key_space_size
    );
    keys::check_key_size(args.key_size, args.key_space_size)?;
    let value = keys::Rng::new(0xBEEF).bytes(args.val_size);
    let workers = (0..opts.clients)
        .map(|i| TxnPutWorker {
            kv: KvClient::new(conns.channel(i)),
            key_size: args.key_size,
            value: value.clone(),
            ops: args.txn_ops,
            space: args.key_space_size,
        })
        .collect();
    let progress = Progress::default();
    let _line = ProgressLine::start(
        "txn-put".into(),
        args.total,
        progress.clone(),
        opts.progress,
    );
    let out = driver::run(workers, args.total, args.rate, &progress).await;
    Ok(
        Report::new("txn-put", "requests", out.ok, out.elapsed, out.rec)
            .with("txn_ops", args.txn_ops),
    )
}

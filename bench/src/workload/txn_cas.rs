//! `txn-cas`: concurrent compare-and-swap increments of `--counters` counters, the way
//! kube-apiserver updates objects: read the counter, then a Txn that puts `value + 1` only if
//! the counter's mod_revision is unchanged, else returns the current value to retry from.
//!
//! Every successful Txn is one increment, so after the run each counter must equal the
//! increments that succeeded on it: fewer means a lost acknowledged write, more means a
//! compare that should have failed succeeded. A request that failed with an error may or
//! may not have been applied, so errors widen the accepted range by their number.

use std::sync::Arc;

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::response_op::Response as OpResp;
use cairn_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use tonic::transport::Channel;
use tonic::Status;

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::progress::{Progress, ProgressLine};
use crate::report::Report;

/// A Txn failing its compare this many times in a row is reported as an error rather than
/// retried forever (it would mean the server never lets this client win).
const MAX_ATTEMPTS: u64 = 10_000;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of counters the clients contend on.
    #[arg(long, default_value_t = 4)]
    pub counters: u64,
    /// Total number of increments.
    #[arg(long, default_value_t = 1_000)]
    pub total: u64,
    /// Maximum increments per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Prefix of the counter keys; they are reset to 0 before the run.
    #[arg(long, default_value = "cairn-bench/cas/")]
    pub key_prefix: String,
}

fn counter_key(prefix: &str, i: u64) -> Vec<u8> {
    format!("{prefix}{i}").into_bytes()
}

fn parse_value(v: &[u8]) -> Result<u64, Status> {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Status::data_loss(format!("counter value {v:?} is not a number")))
}

struct CasWorker {
    kv: KvClient<Channel>,
    keys: Arc<Vec<Vec<u8>>>,
    /// Last known (mod_revision, value) per counter; `None` after an error: re-read.
    known: Vec<Option<(i64, u64)>>,
    successes: Vec<u64>,
    retries: u64,
}

impl CasWorker {
    async fn read(&mut self, c: usize) -> Result<(i64, u64), Status> {
        let resp = self
            .kv
            .range(RangeRequest {
                key: self.keys[c].clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        let kv = resp
            .kvs
            .first()
            .ok_or_else(|| Status::not_found("counter key missing"))?;
        Ok((kv.mod_revision, parse_value(&kv.value)?))
    }

    async fn increment(&mut self, c: usize) -> Result<(), Status> {
        let keys = self.keys.clone();
        let key = &keys[c];
        for _ in 0..MAX_ATTEMPTS {
            let (rev, value) = match self.known[c] {
                Some(k) => k,
                None => self.read(c).await?,
            };
            let resp = self
                .kv
                .txn(TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Equal as i32,
                        target: CompareTarget::Mod as i32,
                        key: key.clone(),
                        range_end: Vec::new(),
                        target_union: Some(TargetUnion::ModRevision(rev)),
                    }],
                    success: vec![RequestOp {
                        request: Some(Op::RequestPut(PutRequest {
                            key: key.clone(),
                            value: (value + 1).to_string().into_bytes(),
                            ..Default::default()
                        })),
                    }],
                    failure: vec![RequestOp {
                        request: Some(Op::RequestRange(RangeRequest {
                            key: key.clone(),
                            ..Default::default()
                        })),
                    }],
                })
                .await?
                .into_inner();
            if resp.succeeded {
                // A one-put Txn's header revision is the put's mod_revision.
                let rev = resp.header.map_or(0, |h| h.revision);
                self.known[c] = Some((rev, value + 1));
                self.successes[c] += 1;
                return Ok(());
            }
            self.retries += 1;
            let current = resp.responses.into_iter().find_map(|r| match r.response {
                Some(OpResp::ResponseRange(range)) => range.kvs.into_iter().next(),
                _ => None,
            });
            let kv = current.ok_or_else(|| Status::not_found("counter key missing"))?;
            self.known[c] = Some((kv.mod_revision, parse_value(&kv.value)?));
        }
        Err(Status::aborted(
            "compare-and-swap lost too many times in a row",
        ))
    }
}

impl Worker for CasWorker {
    async fn call(&mut self, seq: u64) -> Result<(), crate::driver::CallError> {
        let c = (seq % self.keys.len() as u64) as usize;
        let r = self.increment(c).await;
        if r.is_err() {
            self.known[c] = None;
        }
        Ok(r?)
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    anyhow::ensure!(args.counters > 0, "expected positive --counters");
    let keys: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.counters)
            .map(|i| counter_key(&args.key_prefix, i))
            .collect(),
    );
    let mut kv = KvClient::new(conns.channel(0));
    for k in keys.iter() {
        kv.put(PutRequest {
            key: k.clone(),
            value: b"0".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|s| anyhow::anyhow!("resetting counter: {s}"))?;
    }
    let workers = (0..opts.clients)
        .map(|i| CasWorker {
            kv: KvClient::new(conns.channel(i)),
            keys: keys.clone(),
            known: vec![None; keys.len()],
            successes: vec![0; keys.len()],
            retries: 0,
        })
        .collect();
    let progress = Progress::default();
    let line = ProgressLine::start(
        "txn-cas".into(),
        args.total,
        progress.clone(),
        opts.progress,
    );
    let out = driver::run(workers, args.total, args.rate, &progress).await;
    drop(line);

    let retries: u64 = out.workers.iter().map(|w| w.retries).sum();
    let errors = out.rec.error_count();
    let mut violations = Vec::new();
    let mut finals = Vec::with_capacity(keys.len());
    for (c, k) in keys.iter().enumerate() {
        let succeeded: u64 = out.workers.iter().map(|w| w.successes[c]).sum();
        let resp = kv
            .range(RangeRequest {
                key: k.clone(),
                ..Default::default()
            })
            .await
            .map_err(|s| anyhow::anyhow!("reading counter: {s}"))?
            .into_inner();
        let value = match resp.kvs.first() {
            Some(kv) => parse_value(&kv.value).map_err(|s| anyhow::anyhow!("{}", s.message()))?,
            None => anyhow::bail!("counter {} vanished", String::from_utf8_lossy(k)),
        };
        if value < succeeded || value > succeeded + errors {
            violations.push(format!(
                "counter {} is {value} but {succeeded} increments succeeded ({errors} errors)",
                String::from_utf8_lossy(k)
            ));
        }
        finals.push(value);
    }
    let mut report = Report::new("txn-cas", "increments", out.ok, out.elapsed, out.rec)
        .with("counters", args.counters)
        .with("retries", retries)
        .with(
            "retries_per_increment",
            if out.ok > 0 {
                retries as f64 / out.ok as f64
            } else {
                0.0
            },
        )
        .with("final_values", finals);
    report.violations = violations;
    Ok(report)
}

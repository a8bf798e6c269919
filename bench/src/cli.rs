//! The command line: etcd `benchmark`'s global flags and one subcommand per workload, plus
//! `compare`. Flag names and defaults follow etcd's `tools/benchmark/cmd`.

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::compare;
use crate::connect::ConnectOpts;
use crate::workload::{self, RunOpts};

/// A low-level benchmark tool for the etcd v3 API (etcd and cairn-store alike).
#[derive(Debug, Parser)]
#[command(name = "cairn-bench", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Global {
    /// gRPC endpoints.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    pub endpoints: Vec<String>,
    /// Total number of gRPC connections.
    #[arg(long, global = true, default_value_t = 1)]
    pub conns: usize,
    /// Total number of gRPC clients.
    #[arg(long, global = true, default_value_t = 1)]
    pub clients: usize,
    /// Connect only to the leader node.
    #[arg(long, global = true)]
    pub target_leader: bool,
    /// Use full floating point precision.
    #[arg(long, global = true)]
    pub precise: bool,
    /// Dial timeout for client connections, in milliseconds.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    pub dial_timeout: u64,
    /// Print the result as one JSON object.
    #[arg(long, global = true)]
    pub json: bool,
    /// Output format ("json"; etcd's spelling of --json).
    #[arg(long, global = true, value_parser = ["json", "text"])]
    pub output: Option<String>,
}

impl Global {
    pub fn connect_opts(&self) -> ConnectOpts {
        ConnectOpts {
            endpoints: self.endpoints.clone(),
            conns: self.conns,
            target_leader: self.target_leader,
            dial_timeout: Duration::from_millis(self.dial_timeout),
        }
    }

    pub fn run_opts(&self) -> RunOpts {
        RunOpts {
            clients: self.clients,
            progress: !self.wants_json(),
        }
    }

    pub fn wants_json(&self) -> bool {
        self.json || self.output.as_deref() == Some("json")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark put.
    Put(workload::put::Args),
    /// Benchmark range.
    Range(workload::range::Args),
    /// Benchmark txn-put.
    TxnPut(workload::txn_put::Args),
    /// Benchmark watch.
    Watch(workload::watch::Args),
    /// Benchmark lease keepalive.
    LeaseKeepalive(workload::lease_keepalive::Args),
    /// Benchmark compare-and-swap increments (Txn on mod_revision, retried on conflict).
    TxnCas(workload::txn_cas::Args),
    /// Run the same workloads against etcd and cairn-store and write docs/benchmarks.md.
    Compare(compare::Args),
    /// Load a Kubernetes-style API server: ConfigMap create, get, update, list, watch, delete.
    Apiserver(crate::kube::StepArgs),
    /// Run `apiserver` against `cairn apiserver` on etcd and on cairn-store; write the table.
    ApiserverCompare(crate::kube::compare::Args),
}

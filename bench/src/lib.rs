//! cairn-bench: a load generator for the etcd v3 gRPC API, with the subcommands and flag
//! names of etcd's `tools/benchmark`, so one tool measures etcd and cairn-store alike; plus
//! `compare`, which runs the same workloads against both on this machine and writes
//! `docs/benchmarks.md`.
//!
//! - [`cli`]: the command line — global flags (`--endpoints`, `--conns`, `--clients`, ...)
//!   and one subcommand per workload;
//! - [`connect`]: the `--conns` gRPC channels spread over `--endpoints`, `--target-leader`;
//! - [`driver`]: the closed-loop runner — `--clients` tasks pulling request numbers from one
//!   counter until `--total`, each recording into its own histogram;
//! - [`rate`]: the `--rate` limiter (a token bucket of capacity one, as etcd's tool uses);
//! - [`keys`]: etcd's key encoding (a varint of the key index in a `--key-size` buffer) and
//!   a small deterministic random generator;
//! - [`report`]: latency histograms (HDR), the summary and its text / JSON rendering;
//! - [`progress`]: the one-line progress display on a terminal;
//! - [`workload`]: one module per subcommand (`put`, `range`, `txn-put`, `watch`,
//!   `lease-keepalive`, `txn-cas`), each a `run(conns, args, opts) -> Report`;
//! - [`compare`]: starts etcd and cairn-store clusters, alternates the workloads between
//!   them, measures the machine, memory, disk and restart time, and renders the markdown;
//! - [`kube`]: load on a Kubernetes-style API server (`apiserver`), and `apiserver-compare`,
//!   `cairn apiserver` on etcd and on cairn-store against Kubernetes' latency SLOs.
//!
//! Every workload also checks what it can about correctness (counts, lost watch events,
//! compare-and-swap totals): a benchmark that silently measures a broken server is worse
//! than none.

pub mod cli;
pub mod compare;
pub mod connect;
pub mod driver;
pub mod keys;
pub mod kube;
pub mod progress;
pub mod rate;
pub mod report;
pub mod workload;

pub use connect::Conns;
pub use report::Report;

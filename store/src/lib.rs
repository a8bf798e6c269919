//! cairn-store: an etcd-v3-compatible key-value server replicated by Raft.
//!
//! - [`alarms`]: replicated cluster alarms (NOSPACE quota);
//! - [`auth`]: etcd's users, roles, key-range permissions and simple tokens, replicated
//!   through the log and checked on every request while auth is enabled;
//! - [`backup`]: backup files (the Snapshot RPC's stream) and restoring a data dir from one;
//! - [`concurrency`]: etcd's election and lock recipes, run inside the member for the Election
//!   and Lock services, waiting on the watch hub;
//! - [`compactor`]: automatic compaction (`--auto-compaction-*`), run by the leader;
//! - [`config`]: etcd's command-line flags;
//! - [`defrag`]: defragmenting the member's backend while it serves, its writes paused;
//! - [`http`]: the HTTP side of the client port — `/health`, `/livez`, `/readyz`,
//!   `/metrics` and etcd's JSON gateway (`/v3/...`) — and the `--listen-metrics-urls` server;
//! - [`lessor`]: which leases exist and, on the leader, when they expire; keep-alives answered
//!   by the leader; the leader's revocation of expired leases through Raft;
//! - [`metrics`]: counters and latency histograms under etcd's names, and their Prometheus
//!   text rendering;
//! - [`raft`]: openraft type configuration, our log and state-machine adapters, the peer
//!   transport and the entry/command encodings;
//! - [`node`]: a running member — proposing writes (forwarded to the leader from a follower)
//!   and linearizable read barriers;
//! - [`server`]: startup and the client-facing gRPC services (KV, Watch, Lease, Election, Lock,
//!   Maintenance, Cluster, Auth), with request validation and the single table of etcd error codes
//!   and messages;
//! - [`tls`]: transport security for the client and peer ports (etcd's `--cert-file` ...
//!   `--peer-auto-tls`): server configs, the TLS accept path and the peer dialer's config;
//! - [`watch`]: the watch hub the apply loop publishes events into, and the per-stream
//!   tasks that serve watchers from it or, when they are behind, from redb.
//!
//! The Raft log lives in the `cairn-log` crate and the MVCC state machine in `cairn-mvcc`;
//! neither knows about Raft messages or gRPC. What the server decodes from clients and peers
//! (request validation, etcd's error table, the JSON gateway's codec, the Raft entry and peer
//! message encodings) lives in `cairn-wire`, re-exported here at its old paths, so the fuzz
//! targets link it without the rest of the server.

pub mod alarms;
pub mod auth;
pub mod backup;
pub mod compactor;
pub mod concurrency;
pub mod config;
pub mod defrag;
pub mod http;
pub mod lessor;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod server;
pub mod tls;
pub mod watch;

pub use config::Config;
pub use server::{start, start_with_log_fs, start_with_storage, Server};

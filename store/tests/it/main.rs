//! cairn-store integration tests, one binary:
//! - `auth`: users, roles and permissions once auth is enabled — every service checked, tokens
//!   on followers and their expiry, restart, the JSON gateway's Authorization header;
//! - `single_node`: every KV field against an in-process member, through a gRPC client;
//! - `http`: the HTTP side of the client port over plain HTTP/1.1 — `/health`, the probes,
//!   the Prometheus page and the JSON gateway;
//! - `defrag`: Maintenance.Defragment under continuous writes, reads and watches, etcd's
//!   NOSPACE recovery cycle, and kill -9 in the middle of a defragmentation;
//! - `election`: the Election and Lock services with two contenders;
//! - `lease`: grant / revoke / keep-alive / time-to-live, expiry by the leader's lessor,
//!   keep-alives through a follower, leases outliving a killed leader;
//! - `processes`: real `cairn-store` processes — kill -9 and restart, a 3-member cluster
//!   losing its leader, a restarted member catching up, a follower and a leader restarting from
//!   a torn log tail (the leader's holding entries nobody else has);
//! - `storage_failure`: a member whose Raft log fsync or write fails (EIO, ENOSPC), or whose
//!   state machine commit fails, stops serving and exits non-zero, losing nothing acknowledged;
//! - `tls`: `https` client and peer URLs with etcd's certificate flags — gRPC, `/health` and
//!   `/metrics` over TLS, client-certificate authentication, peer TLS and peer auto TLS;
//! - `watch`: the Watch service — every option, exactly-once delivery, history replay,
//!   compaction, thousands of watchers, a slow reader, watches on a follower.

mod auth;
mod defrag;
mod election;
mod harness;
mod hostile;
mod http;
mod lease;
mod membership;
mod processes;
mod single_node;
mod storage_failure;
mod tls;
mod watch;

//! cairn-wire: what a Cairn member decodes from clients and peers, and the rules it checks
//! before anything reaches Raft — without the server around it (no storage, transport, TLS or
//! HTTP server), so the fuzz targets link this crate and not `cairn-store`.
//!
//! - [`errors`]: the one table of etcd's error strings and gRPC status codes;
//! - [`validate`]: etcd's edge checks of Range, Put, DeleteRange, Txn and LeaseGrant requests;
//! - [`watch_request`]: a Watch stream's create / cancel / progress requests, normalized and
//!   checked as etcd does;
//! - [`json`]: the JSON gateway's reading and writing of protobuf messages, as etcd's
//!   grpc-gateway does;
//! - [`auth_command`]: the replicated auth commands and the caller identity a request
//!   carries through the log, with their encodings;
//! - [`raft`]: openraft's type configuration for Cairn, and the byte encodings of log entries,
//!   commands, their results and peer messages (docs/log-format.md).
//!
//! cairn-store re-exports each module where it used to live (`server::errors`,
//! `server::validate`, `http::json`, `auth::command`, `raft::{codec, command}`), so the
//! server's own code and public paths are unchanged.

pub mod auth_command;
pub mod errors;
pub mod json;
pub mod raft;
pub mod validate;
pub mod watch_request;

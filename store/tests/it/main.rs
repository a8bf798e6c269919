//! cairn-store integration tests, one binary:
//! - `single_node`: every KV field against an in-process member, through a gRPC client;
//! - `processes`: real `cairn-store` processes — kill -9 and restart, a 3-member cluster
//!   losing its leader, a restarted member catching up.

mod harness;
mod membership;
mod processes;
mod single_node;

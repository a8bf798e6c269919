//! One module per subcommand. Each has an `Args` (its flags, with etcd's names and defaults)
//! and `run(conns, args, opts) -> Report`, used by the binary, by `compare` and by the smoke
//! test alike.
//!
//! - [`put`]: single-key puts;
//! - [`range`]: reads of one key or a range, linearizable or serializable;
//! - [`txn_put`]: transactions of `--txn-ops` puts;
//! - [`watch`]: watchers on few keys, then puts; counts every event, reports lost ones;
//! - [`lease_keepalive`]: keep-alive round trips on long-lived streams;
//! - [`txn_cas`]: concurrent compare-and-swap increments, checked against the final values.

pub mod lease_keepalive;
pub mod put;
pub mod range;
pub mod txn_cas;
pub mod txn_put;
pub mod watch;

/// Settings shared by all workloads (etcd's global flags that are not about connections).
#[derive(Debug, Clone)]
pub struct RunOpts {
    /// `--clients`: concurrent request loops.
    pub clients: usize,
    /// Draw a progress line (only ever on a terminal).
    pub progress: bool,
}

impl RunOpts {
    pub fn quiet(clients: usize) -> Self {
        Self {
            clients,
            progress: false,
        }
    }
}

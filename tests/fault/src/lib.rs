//! cairn-fault: the fault-injection suite for cairn-store, in the spirit of etcd's robustness
//! tests and Jepsen's etcd analysis. Real `cairn-store` processes, real faults, recorded
//! histories, checked offline.
//!
//! - [`binary`]: finds (or builds) the `cairn-store` executable under test;
//! - [`proxy`]: the harness-owned network — a TCP proxy per member's peer port and a table of
//!   directed link rules (cut, delay);
//! - [`cluster`]: starts members behind the proxies; kill -9, restart, SIGSTOP/SIGCONT;
//! - [`nemesis`]: a fault schedule generated from a seed, printed, then applied;
//! - [`workload`]: concurrent clients recording every operation (register, list-append);
//! - [`linearizability`]: a Wing & Gong / porcupine-style checker for register histories;
//! - [`append_check`]: lost / duplicated / reordered / phantom / non-atomic appends;
//! - [`watch_check`]: watchers across faults: no gap, no duplicate, identical sequences,
//!   replaying to the final state;
//! - [`lease_check`]: kept-alive leases never lose their keys; abandoned ones expire;
//! - [`run`]: one run end to end, producing a [`run::Report`];
//! - [`rng`]: the seeded PRNG everything derives from.

pub mod append_check;
pub mod binary;
pub mod cluster;
pub mod lease_check;
pub mod linearizability;
pub mod nemesis;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod watch_check;
pub mod workload;

//! cairn-mvcc behaviour, one story per file, all checked against etcd 3.5's documented and
//! observed semantics (etcd `server/etcdserver/apply.go`, `server/mvcc/`).

mod compact;
mod defrag;
mod durability;
mod events;
mod hash;
mod kv;
mod lease;
mod model;
mod range;
mod snapshot;
mod support;
mod txn;

//! Wire types of Cairn, generated at build time from the `.proto` files in
//! this crate (`etcd/`, `cairn/`). No logic lives here.
//!
//! The etcd packages match etcd v3.5 field for field, so any etcd v3 client
//! can talk to a Cairn server. Bytes fields are `Vec<u8>`. Each module holds
//! prost messages, a `<service>_server` module (trait + tonic server) and a
//! `<service>_client` module (tonic client) per gRPC service.
//!
//! - [`mvccpb`]: `KeyValue` and watch `Event`.
//! - [`authpb`]: persisted users, roles and permissions.
//! - [`etcdserverpb`]: the client API — services KV, Watch, Lease, Cluster,
//!   Maintenance, Auth — and all their messages.
//! - [`v3electionpb`]: the Election service.
//! - [`v3lockpb`]: the Lock service.
//! - [`cairnraftpb`]: `RaftPeer`, Cairn's member-to-member protocol, whose
//!   payloads are opaque bytes encoded by cairn-store.
//!
//! The generated modules refer to each other as `super::mvccpb` etc., so they
//! must stay siblings at the crate root.

/// Keys, values and watch events (etcd package `mvccpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// Users, roles and permissions (etcd package `authpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 client API (etcd package `etcdserverpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// The Election service (etcd package `v3electionpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}

/// The Lock service (etcd package `v3lockpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod v3lockpb {
    tonic::include_proto!("v3lockpb");
}

/// Cairn's member-to-member protocol (package `cairnraftpb`).
#[allow(missing_docs, clippy::all, clippy::pedantic, clippy::nursery)]
pub mod cairnraftpb {
    tonic::include_proto!("cairnraftpb");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every file above, imports
/// included — for gRPC server reflection or other descriptor-driven tooling.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/cairn_descriptor.bin"));

//! Compiles the `.proto` files of this crate into Rust at build time.
//!
//! `protox` parses the files in pure Rust (no system `protoc` needed) into a
//! `FileDescriptorSet`; `tonic-prost-build` turns that into prost messages
//! plus tonic servers and clients. The encoded descriptor set is also written
//! to `OUT_DIR` so the crate can expose it (for gRPC reflection, tooling).

use std::path::PathBuf;

use prost::Message as _;

/// Every file to compile; their imports resolve against the crate root.
const PROTOS: &[&str] = &[
    "etcd/mvccpb/kv.proto",
    "etcd/authpb/auth.proto",
    "etcd/etcdserverpb/rpc.proto",
    "etcd/v3electionpb/v3election.proto",
    "etcd/v3lockpb/v3lock.proto",
    "cairn/raft.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=etcd");
    println!("cargo:rerun-if-changed=cairn");

    let fds = protox::compile(PROTOS, ["."])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("cairn_descriptor.bin"), fds.encode_to_vec())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    Ok(())
}

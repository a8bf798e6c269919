//! Compiles the Kubernetes message schemas in `proto/` (see `proto/generate-k8s.py`) into one
//! encoded `FileDescriptorSet` in `OUT_DIR`, which the apiserver loads with prost-reflect to read
//! `application/vnd.kubernetes.protobuf` bodies. `protox` parses them in pure Rust (no `protoc`).

use std::path::PathBuf;

/// The API groups' schemas; apimachinery's and the option definitions come in as imports.
const PROTOS: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/batch/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
    "k8s.io/api/autoscaling/v2/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/policy/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/scheduling/v1/generated.proto",
    "k8s.io/api/authentication/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    // Encoded by protox itself: the (cairn.k8s.go_*) field options are extensions, which a
    // round trip through prost_types' FieldOptions would drop.
    let fds = protox::Compiler::new(["proto"])?
        .include_imports(true)
        .include_source_info(false)
        .open_files(PROTOS)?
        .encode_file_descriptor_set();
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("k8s_descriptors.bin");
    std::fs::write(out, fds)?;
    Ok(())
}

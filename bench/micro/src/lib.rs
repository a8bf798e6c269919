//! Helpers shared by the criterion benchmarks in `benches/` (run them with
//! `cargo bench -p cairn-microbench`; docs/benchmarks.md, "Micro-benchmarks").

/// A size from the environment (`name`), or `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

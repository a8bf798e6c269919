//! The `cairn-store` binary: parses etcd's flags and runs a member until SIGINT/SIGTERM.

use cairn_store::Config;
use tokio::signal::unix::{signal, SignalKind};
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: per-thread caches without glibc's bin consolidation,
/// which took a fifth of the CPU of a put-heavy load (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("snapshot") {
        return snapshot_command(&args[2..]);
    }
    let cfg = Config::from_args();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{},openraft=warn", cfg.log_level)));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = cairn_store::start(cfg).await?;
        let mut term = signal(SignalKind::terminate())?;
        // A storage failure ends `run_until` with an error: `main` returns it and the process
        // exits with status 1 after printing it, as etcd exits on its fsync panic.
        server
            .run_until(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                tracing::info!("received shutdown signal, stopping");
            })
            .await
    })
}

/// `cairn-store snapshot restore FILE [member flags]` and `cairn-store snapshot status FILE`,
/// with etcdutl's meaning.
fn snapshot_command(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "usage: cairn-store snapshot restore <file> --name <name> \\
        --data-dir <dir> --initial-cluster <name=url,...> --initial-cluster-token <token> \\
        --initial-advertise-peer-urls <urls>\n       cairn-store snapshot status <file>";
    match (args.first().map(String::as_str), args.get(1)) {
        (Some("restore"), Some(file)) => {
            let flags = std::iter::once("cairn-store".to_string()).chain(args[2..].iter().cloned());
            let cfg = Config::parse_args(flags).map_err(|e| anyhow::anyhow!("{e}"))?;
            cairn_store::backup::restore(std::path::Path::new(file), &cfg)?;
            println!("restored snapshot {file} into {}", cfg.data_dir().display());
            Ok(())
        }
        (Some("status"), Some(file)) => {
            let s = cairn_store::backup::status(std::path::Path::new(file))?;
            println!(
                "{:x}, {}, {}, {}",
                s.hash, s.revision, s.total_keys, s.total_size
            );
            Ok(())
        }
        _ => anyhow::bail!("{USAGE}"),
    }
}

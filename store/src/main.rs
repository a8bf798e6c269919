//! The `cairn-store` binary: parses etcd's flags and runs a member until SIGINT/SIGTERM.

use cairn_store::Config;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
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
        wait_for_signal().await?;
        tracing::info!("received shutdown signal, stopping");
        server.shutdown().await;
        anyhow::Ok(())
    })
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

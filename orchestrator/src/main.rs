//! `cairn`: one binary, one subcommand per control-plane component. Parses flags and runs.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn", about = "Cairn's Kubernetes-style control plane")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Kubernetes API over objects stored in etcd (or cairn-store).
    Apiserver(cairn::apiserver::Config),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Apiserver(config) => {
                let handle = cairn::apiserver::start(config).await?;
                tracing::info!(addr = %handle.addr(), "apiserver serving the insecure port");
                if let Some(addr) = handle.secure_addr() {
                    tracing::info!(%addr, "apiserver serving the secure port");
                }
                tokio::signal::ctrl_c().await?;
                handle.shutdown().await;
                Ok(())
            }
        }
    })
}

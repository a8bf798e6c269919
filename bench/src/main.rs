//! `cairn-bench`: parses the command line and runs one workload (or `compare`); all logic
//! lives in the library (see `lib.rs` for the module map).

use clap::Parser;

use cairn_bench::cli::{Cli, Command};
use cairn_bench::{compare, workload, Conns, Report};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    let opts = g.run_opts();
    let report: Report = match &cli.command {
        Command::Compare(args) => return compare::run(args).await,
        Command::ApiserverCompare(args) => return cairn_bench::kube::compare::run(args).await,
        Command::Apiserver(a) => {
            let reports = cairn_bench::kube::run(a, &opts).await?;
            for r in &reports {
                if g.wants_json() {
                    println!("{}", r.to_json());
                } else {
                    println!("{}", r.to_text(g.precise));
                }
            }
            let violations: Vec<&String> = reports.iter().flat_map(|r| &r.violations).collect();
            anyhow::ensure!(
                violations.is_empty(),
                "correctness violations: {violations:?}"
            );
            return Ok(());
        }
        Command::Put(a) => {
            workload::put::run(&Conns::connect(&g.connect_opts()).await?, a, &opts).await?
        }
        Command::Range(a) => {
            workload::range::run(&Conns::connect(&g.connect_opts()).await?, a, &opts).await?
        }
        Command::TxnPut(a) => {
            workload::txn_put::run(&Conns::connect(&g.connect_opts()).await?, a, &opts).await?
        }
        Command::Watch(a) => {
            workload::watch::run(&Conns::connect(&g.connect_opts()).await?, a, &opts).await?
        }
        Command::LeaseKeepalive(a) => {
            workload::lease_keepalive::run(&Conns::connect(&g.connect_opts()).await?, a, &opts)
                .await?
        }
        Command::TxnCas(a) => {
            workload::txn_cas::run(&Conns::connect(&g.connect_opts()).await?, a, &opts).await?
        }
    };
    if g.wants_json() {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text(g.precise));
    }
    anyhow::ensure!(
        report.violations.is_empty(),
        "correctness violations: {}",
        report.violations.join("; ")
    );
    Ok(())
}

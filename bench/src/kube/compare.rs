//! `cairn-bench apiserver-compare`: `cairn apiserver` on a one-member cairn-store and on a
//! one-member etcd, side by side on this machine, the same steps against each (alternating
//! which goes first), and the table written between `<!-- apiserver:begin -->` and
//! `<!-- apiserver:end -->` in docs/benchmarks.md, with Kubernetes' API call latency SLOs.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::client::Server;
use super::{slo_secs, StepArgs, STEPS};
use crate::compare::cluster::{Cluster, Kind};
use crate::compare::markdown::{utc_now, write_named_section};
use crate::report::Report;
use crate::workload::RunOpts;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The `cairn` binary (build it with `cargo build --release -p cairn`).
    #[arg(long, default_value = "target/release/cairn")]
    pub apiserver_bin: PathBuf,
    /// The cairn-store binary.
    #[arg(long, default_value = "target/release/cairn-store")]
    pub cairn_bin: PathBuf,
    /// The etcd binary.
    #[arg(long, default_value = "/usr/bin/etcd")]
    pub etcd_bin: PathBuf,
    /// Concurrent clients of the request steps.
    #[arg(long, default_value_t = 100)]
    pub api_clients: usize,
    /// Markdown file to write the results into.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub out: PathBuf,
    #[command(flatten)]
    pub steps: StepArgs,
}

/// An apiserver process in front of one store.
struct Apiserver {
    child: Child,
    url: String,
}

impl Drop for Apiserver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Apiserver {
    async fn start(bin: &Path, store: &Cluster, log: &Path) -> anyhow::Result<Self> {
        let port = free_port()?;
        let etcd = store.endpoints().join(",");
        let log = File::create(log)?;
        let child = Command::new(bin)
            .arg("apiserver")
            .args(["--etcd-servers", &etcd])
            .args(["--insecure-port", &port.to_string()])
            // Load goes to the plain port; the TLS port (6443 by default) would collide
            // between the two apiservers.
            .args(["--secure-port", "0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let api = Apiserver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let server = Server::parse(&api.url)?;
        for _ in 0..300 {
            if let Ok(mut c) = server.connect().await {
                if c.call(http::Method::GET, "/readyz", None).await.is_ok() {
                    return Ok(api);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the apiserver on {} never became ready", api.url)
    }
}

pub async fn run(args: &Args) -> anyhow::Result<()> {
    for bin in [&args.apiserver_bin, &args.cairn_bin, &args.etcd_bin] {
        anyhow::ensure!(
            bin.exists(),
            "{} not found: run `cargo build --release -p cairn -p cairn-store -p cairn-bench` \
             (and apt-get install etcd-server) first",
            bin.display()
        );
    }
    let work = tempfile::Builder::new()
        .prefix("cairn-apiserver-compare-")
        .tempdir()?;
    let etcd = Cluster::start(Kind::Etcd, &args.etcd_bin, 1, work.path()).await?;
    let cairn = Cluster::start(Kind::Cairn, &args.cairn_bin, 1, work.path()).await?;
    let on_etcd = Apiserver::start(
        &args.apiserver_bin,
        &etcd,
        &work.path().join("api-etcd.log"),
    )
    .await?;
    let on_cairn = Apiserver::start(
        &args.apiserver_bin,
        &cairn,
        &work.path().join("api-cairn.log"),
    )
    .await?;
    let opts = RunOpts {
        clients: args.api_clients,
        progress: true,
    };
    // Alternate which backend goes first: the whole sequence per backend, twice over.
    let mut results: Vec<(Kind, Vec<Report>)> = Vec::new();
    for (kind, api) in [(Kind::Etcd, &on_etcd), (Kind::Cairn, &on_cairn)] {
        let mut steps = args.steps.clone();
        steps.server = api.url.clone();
        eprintln!("== apiserver on {}", kind.name());
        let reports = super::run(&steps, &opts).await?;
        for r in &reports {
            eprintln!(
                "{:<7} {:<6} {:>9.0} {}/s p99 {:.2} ms, {} errors{}",
                r.workload,
                kind.name(),
                r.rate(),
                r.unit,
                r.latency().p99,
                r.errors(),
                if r.violations.is_empty() {
                    String::new()
                } else {
                    format!(" VIOLATIONS {:?}", r.violations)
                }
            );
        }
        results.push((kind, reports));
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let section = render(&results, &command, args);
    write_named_section(&args.out, "apiserver", &section)?;
    println!("{section}");
    let violations: Vec<String> = results
        .iter()
        .flat_map(|(k, rs)| {
            rs.iter().flat_map(move |r| {
                r.violations
                    .iter()
                    .map(move |v| format!("{}: {v}", k.name()))
            })
        })
        .collect();
    anyhow::ensure!(
        violations.is_empty(),
        "correctness violations: {}",
        violations.join("; ")
    );
    Ok(())
}

fn render(results: &[(Kind, Vec<Report>)], command: &str, args: &Args) -> String {
    let find = |kind: Kind, step: &str| {
        results
            .iter()
            .find(|(k, _)| *k == kind)
            .and_then(|(_, rs)| rs.iter().find(|r| r.workload == step))
    };
    let date = utc_now();
    let s_args = &args.steps;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<!-- apiserver:begin (generated by `cairn-bench apiserver-compare`; edits here are overwritten) -->\n"
    );
    let _ = writeln!(s, "Measured {date} with:\n\n```sh\n{command}\n```\n");
    let _ = writeln!(
        s,
        "`cairn apiserver` (one process) on a one-member etcd and on a one-member cairn-store, on \
         the same machine; {} ConfigMaps of {} bytes, {} clients each with its own HTTP/1.1 \
         connection ({} for the {} lists of all objects), {} watchers receiving {} updates. \
         SLO = Kubernetes' API call latency SLOs (p99 over the run): mutating and single-object \
         calls 1 s, namespace-scoped lists 5 s; watch delivery has none.\n",
        s_args.objects,
        s_args.value_size,
        args.api_clients,
        args.api_clients.clamp(1, 10),
        s_args.lists,
        s_args.watchers,
        s_args.watch_updates.min(s_args.objects),
    );
    let _ = writeln!(
        s,
        "| step | on etcd ops/s | on cairn-store ops/s | ratio | on etcd p50 / p99 ms | on cairn-store p50 / p99 ms | SLO p99 | met (etcd / cairn-store) | errors (etcd / cairn-store) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---|---:|");
    for step in STEPS {
        let (Some(e), Some(c)) = (find(Kind::Etcd, step), find(Kind::Cairn, step)) else {
            continue;
        };
        let (le, lc) = (e.latency(), c.latency());
        let ratio = if e.rate() > 0.0 {
            format!("**{:.2}**", c.rate() / e.rate())
        } else {
            "–".into()
        };
        let (slo, met) = match slo_secs(step) {
            Some(secs) => {
                let ok = |p99_ms: f64| if p99_ms <= secs * 1000.0 { "yes" } else { "NO" };
                (
                    format!("{secs} s"),
                    format!("{} / {}", ok(le.p99), ok(lc.p99)),
                )
            }
            None => ("–".into(), "–".into()),
        };
        let unit = if e.unit == "events" { " (events)" } else { "" };
        let _ = writeln!(
            s,
            "| {step}{unit} | {:.0} | {:.0} | {ratio} | {:.2} / {:.2} | {:.2} / {:.2} | {slo} | {met} | {} / {} |",
            e.rate(),
            c.rate(),
            le.p50,
            le.p99,
            lc.p50,
            lc.p99,
            e.errors(),
            c.errors(),
        );
    }
    let _ = writeln!(s, "\n<!-- apiserver:end -->");
    s
}

//! Load on a Kubernetes-style API server (`cairn apiserver`, or any API server reachable on a
//! plain HTTP port): ConfigMaps created, read, updated, listed, watched and deleted by many
//! concurrent clients, one [`Report`] per step; and [`compare`], which runs the steps on
//! `cairn apiserver` over cairn-store and over etcd and writes the results, with Kubernetes'
//! API latency SLOs, into docs/benchmarks.md.
//!
//! Every client holds its own keep-alive HTTP/1.1 connection. Objects are ConfigMaps named
//! `bench-<n>` in `--namespace`, with one `--value-size`-byte value. The watch step checks that
//! every watcher receives every update exactly once and in order, and measures each event's
//! delivery latency (the update carries its send time).

pub mod client;
pub mod compare;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::driver::{self, CallError, Worker};
use crate::progress::{Progress, ProgressLine};
use crate::report::{Recorder, Report};
use crate::workload::RunOpts;
use client::{Conn, Server};

#[derive(Debug, Clone, clap::Args)]
pub struct StepArgs {
    /// The API server's base URL (plain HTTP, e.g. `cairn apiserver --insecure-port`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Objects created, then read, updated and deleted.
    #[arg(long, default_value_t = 5000)]
    pub objects: u64,
    /// Bytes of data in each ConfigMap.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// Full lists of the namespace's ConfigMaps.
    #[arg(long, default_value_t = 50)]
    pub lists: u64,
    /// Watchers of the namespace's ConfigMaps in the watch step.
    #[arg(long, default_value_t = 100)]
    pub watchers: usize,
    /// Updates made while the watchers watch.
    #[arg(long, default_value_t = 500)]
    pub watch_updates: u64,
    /// The namespace the objects live in (created if missing).
    #[arg(long, default_value = "cairn-bench")]
    pub namespace: String,
}

/// The steps, in the order they run.
pub const STEPS: [&str; 6] = ["create", "get", "update", "list", "watch", "delete"];

/// Whether a step is a mutating call (Kubernetes' SLO: p99 <= 1 s), and its SLO in seconds.
pub fn slo_secs(step: &str) -> Option<f64> {
    match step {
        // Mutating and single-object read-only calls: p99 <= 1 s.
        "create" | "update" | "delete" | "get" => Some(1.0),
        // Namespace-scoped list: p99 <= 5 s.
        "list" => Some(5.0),
        // Watch event delivery has no official SLO.
        _ => None,
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

struct Ctx {
    server: Server,
    namespace: String,
    value: String,
}

impl Ctx {
    fn collection(&self) -> String {
        format!("/api/v1/namespaces/{}/configmaps", self.namespace)
    }

    fn object(&self, n: u64) -> String {
        format!("{}/bench-{n}", self.collection())
    }

    fn body(&self, n: u64, stamp: u64) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": format!("bench-{n}"), "namespace": self.namespace},
            "data": {"value": self.value, "sent": stamp.to_string()},
        }))
        .expect("JSON")
    }
}

/// One client of a request/response step.
struct Client {
    conn: Conn,
    ctx: Arc<Ctx>,
    step: &'static str,
    objects: u64,
}

impl Worker for Client {
    async fn call(&mut self, seq: u64) -> Result<(), CallError> {
        let ctx = &self.ctx;
        let n = seq % self.objects.max(1);
        match self.step {
            "create" => {
                let body = ctx.body(n, 0);
                self.conn
                    .call(Method::POST, &ctx.collection(), Some(body))
                    .await?;
            }
            "get" => {
                // A spread over the objects that is the same from run to run.
                let n = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) % self.objects.max(1);
                self.conn.call(Method::GET, &ctx.object(n), None).await?;
            }
            "update" => {
                let body = ctx.body(n, 1);
                self.conn
                    .call(Method::PUT, &ctx.object(n), Some(body))
                    .await?;
            }
            "list" => {
                let bytes = self.conn.call(Method::GET, &ctx.collection(), None).await?;
                let list: Value = serde_json::from_slice(&bytes)
                    .map_err(|e| CallError(format!("list is not JSON: {e}")))?;
                let items = list["items"].as_array().map_or(0, Vec::len) as u64;
                if items != self.objects {
                    return Err(CallError(format!(
                        "list held {items} objects, expected {}",
                        self.objects
                    )));
                }
            }
            "delete" => {
                self.conn.call(Method::DELETE, &ctx.object(n), None).await?;
            }
            other => return Err(CallError(format!("unknown step {other}"))),
        }
        Ok(())
    }
}

async fn clients(
    ctx: &Arc<Ctx>,
    step: &'static str,
    n: usize,
    objects: u64,
) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Client {
            conn: ctx.server.connect().await?,
            ctx: ctx.clone(),
            step,
            objects,
        });
    }
    Ok(out)
}

async fn request_step(
    ctx: &Arc<Ctx>,
    step: &'static str,
    total: u64,
    objects: u64,
    opts: &RunOpts,
) -> anyhow::Result<Report> {
    let workers = clients(ctx, step, opts.clients.max(1), objects).await?;
    let progress = Progress::default();
    let _line = ProgressLine::start(step.to_string(), total, progress.clone(), opts.progress);
    let out = driver::run(workers, total, 0, &progress).await;
    Ok(Report::new(step, "requests", out.ok, out.elapsed, out.rec))
}

/// The watch step: `watchers` streams from the current resourceVersion, then `updates`
/// updates by the clients; every watcher must see each update once, in order.
async fn watch_step(ctx: &Arc<Ctx>, args: &StepArgs, opts: &RunOpts) -> anyhow::Result<Report> {
    let updates = args.watch_updates.min(args.objects);
    let mut conn = ctx.server.connect().await?;
    let list = conn
        .call(Method::GET, &format!("{}?limit=1", ctx.collection()), None)
        .await
        .map_err(|e| anyhow::anyhow!("listing before the watch: {}", e.0))?;
    let list: Value = serde_json::from_slice(&list)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let path = format!(
        "{}?watch=1&resourceVersion={rv}&timeoutSeconds=600",
        ctx.collection()
    );
    let mut streams = Vec::with_capacity(args.watchers);
    for _ in 0..args.watchers {
        let conn = ctx.server.connect().await?;
        streams.push(
            conn.watch(&path)
                .await
                .map_err(|e| anyhow::anyhow!("opening a watch: {}", e.0))?,
        );
    }
    let progress = Progress::default();
    let expected = updates * args.watchers as u64;
    let _line = ProgressLine::start("watch".into(), expected, progress.clone(), opts.progress);
    let start = Instant::now();
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut w| {
            let progress = progress.clone();
            tokio::spawn(async move {
                let mut rec = Recorder::new();
                let mut seen = Vec::with_capacity(updates as usize);
                let mut problem = None;
                while (seen.len() as u64) < updates {
                    let ev = tokio::time::timeout(Duration::from_secs(60), w.next()).await;
                    let ev = match ev {
                        Err(_) => {
                            problem = Some("no event for 60 s".to_string());
                            break;
                        }
                        Ok(Err(e)) => {
                            problem = Some(e.0);
                            break;
                        }
                        Ok(Ok(None)) => {
                            problem = Some("the server ended the watch".to_string());
                            break;
                        }
                        Ok(Ok(Some(ev))) => ev,
                    };
                    if ev["type"] != "MODIFIED" {
                        continue;
                    }
                    let obj = &ev["object"];
                    let sent: u64 = obj["data"]["sent"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    rec.record(Duration::from_micros(now_micros().saturating_sub(sent)));
                    let rv: u64 = obj["metadata"]["resourceVersion"]
                        .as_str()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    seen.push(rv);
                    progress.inc();
                }
                (rec, seen, problem)
            })
        })
        .collect();
    // The updates, spread over the clients; each stamps its send time.
    let writers: Vec<_> = (0..opts.clients.max(1))
        .map(|c| {
            let ctx = ctx.clone();
            let clients = opts.clients.max(1) as u64;
            tokio::spawn(async move {
                let mut conn = ctx.server.connect().await?;
                let mut n = c as u64;
                while n < updates {
                    let body = ctx.body(n, now_micros());
                    conn.call(Method::PUT, &ctx.object(n), Some(body))
                        .await
                        .map_err(|e| anyhow::anyhow!("update during the watch: {}", e.0))?;
                    n += clients;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for w in writers {
        w.await??;
    }
    let mut rec = Recorder::new();
    let mut count = 0;
    let mut violations = Vec::new();
    let mut first: Option<Vec<u64>> = None;
    for (i, r) in readers.into_iter().enumerate() {
        let (r, seen, problem) = r.await?;
        rec.merge(&r);
        count += seen.len() as u64;
        if let Some(p) = problem {
            violations.push(format!("watcher {i}: {p} after {} events", seen.len()));
        }
        if seen.windows(2).any(|w| w[0] >= w[1]) {
            violations.push(format!("watcher {i}: events out of order or repeated"));
        }
        match &first {
            None => first = Some(seen),
            Some(f) if *f != seen => {
                violations.push(format!("watcher {i} saw other events than watcher 0"))
            }
            Some(_) => {}
        }
    }
    let mut report = Report::new("watch", "events", count, start.elapsed(), rec)
        .with("watchers", args.watchers as u64)
        .with("updates", updates);
    report.violations = violations;
    Ok(report)
}

/// Creates the namespace if missing and removes ConfigMaps a stopped run left behind.
async fn prepare(ctx: &Arc<Ctx>) -> anyhow::Result<()> {
    let mut conn = ctx.server.connect().await?;
    let ns = serde_json::to_vec(&json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ctx.namespace},
    }))?;
    match conn
        .call(Method::POST, "/api/v1/namespaces", Some(ns))
        .await
    {
        Ok(_) => {}
        Err(e) if e.0.starts_with("HTTP 409") => {}
        Err(e) => anyhow::bail!("creating namespace {}: {}", ctx.namespace, e.0),
    }
    conn.call(Method::DELETE, &ctx.collection(), None)
        .await
        .map_err(|e| anyhow::anyhow!("clearing namespace {}: {}", ctx.namespace, e.0))?;
    Ok(())
}

/// Runs every step against one API server.
pub async fn run(args: &StepArgs, opts: &RunOpts) -> anyhow::Result<Vec<Report>> {
    anyhow::ensure!(args.objects > 0, "expected positive --objects");
    let ctx = Arc::new(Ctx {
        server: Server::parse(&args.server)?,
        namespace: args.namespace.clone(),
        value: "v".repeat(args.value_size),
    });
    prepare(&ctx).await?;
    let mut reports = Vec::with_capacity(STEPS.len());
    for step in STEPS {
        let report = match step {
            "watch" => watch_step(&ctx, args, opts).await?,
            "list" => {
                let opts = RunOpts {
                    clients: opts.clients.clamp(1, 10),
                    progress: opts.progress,
                };
                request_step(&ctx, step, args.lists, args.objects, &opts).await?
            }
            _ => request_step(&ctx, step, args.objects, args.objects, opts).await?,
        };
        reports.push(report);
    }
    Ok(reports)
}

//! `watch`: `--streams` Watch streams with `--watch-per-stream` watchers each, on
//! `--watched-key-total` keys; once every watcher is created, `--put-total` puts on those
//! keys. Every event is counted against what the puts imply, so the run reports events/s
//! AND proves that no event was lost, duplicated or reordered.
//!
//! Invariants the accounting relies on:
//! - the put phase starts only after every watcher's `created` response, so each watcher
//!   must see every later put on its key (etcd's watch guarantee);
//! - a stream answers its create requests in order, so the k-th `created` is the k-th
//!   watcher sent on that stream;
//! - each put's value is its send time (nanoseconds since the run's base instant, 8 bytes
//!   little-endian), so delivery latency = receive time - value, with no shared state;
//! - expected events are computed from the puts that SUCCEEDED; a failed put may still have
//!   been applied, so with put errors the count may only exceed the expectation by as many.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Status, Streaming};

use super::RunOpts;
use crate::connect::Conns;
use crate::driver::{self, Worker};
use crate::keys::{self, Rng};
use crate::progress::{Progress, ProgressLine};
use crate::report::{Recorder, Report};

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Total watch streams.
    #[arg(long, default_value_t = 10)]
    pub streams: usize,
    /// Total watchers per stream.
    #[arg(long, default_value_t = 100)]
    pub watch_per_stream: usize,
    /// Total number of keys to be watched.
    #[arg(long, default_value_t = 1)]
    pub watched_key_total: usize,
    /// Number of keys to put per second (0 is no limit).
    #[arg(long, default_value_t = 0)]
    pub put_rate: u64,
    /// Number of put requests.
    #[arg(long, default_value_t = 1_000)]
    pub put_total: u64,
    /// Key size of watch request.
    #[arg(long, default_value_t = 32)]
    pub key_size: usize,
    /// Maximum possible keys.
    #[arg(long, default_value_t = 1)]
    pub key_space_size: u64,
    /// Use sequential keys.
    #[arg(long)]
    pub sequential_keys: bool,
    /// Seconds to wait for outstanding events once the last put is acknowledged.
    #[arg(long, default_value_t = 30)]
    pub event_timeout: u64,
}

/// One stream's watchers and what they received.
struct StreamState {
    /// watch_id -> watcher index within the stream.
    ids: HashMap<i64, usize>,
    /// Index into the watched keys, per watcher.
    key_of: Vec<usize>,
    /// Keeps the request side open; dropping it ends the stream.
    _requests: mpsc::Sender<WatchRequest>,
    inbound: Streaming<WatchResponse>,
}

#[derive(Debug, Default)]
struct StreamTally {
    rec: Recorder,
    received: Vec<u64>,
    reordered: u64,
    canceled: Option<String>,
    last_event: Option<Instant>,
}

fn create(key: Vec<u8>) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key,
            ..Default::default()
        })),
    }
}

async fn open_stream(
    channel: Channel,
    watched: Arc<Vec<Vec<u8>>>,
    first_watcher: usize,
    count: usize,
) -> Result<StreamState, Status> {
    let (tx, rx) = mpsc::channel(count + 1);
    let key_of: Vec<usize> = (0..count)
        .map(|j| (first_watcher + j) % watched.len())
        .collect();
    // Queue every create before opening: a Go server sends headers with its first message.
    for &k in &key_of {
        tx.send(create(watched[k].clone()))
            .await
            .map_err(|_| Status::internal("watch request queue closed"))?;
    }
    let mut inbound = WatchClient::new(channel)
        .watch(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut ids = HashMap::with_capacity(count);
    while ids.len() < count {
        let resp = inbound
            .message()
            .await?
            .ok_or_else(|| Status::unavailable("watch stream ended during creation"))?;
        if resp.canceled {
            return Err(Status::aborted(format!(
                "watch refused: {}",
                resp.cancel_reason
            )));
        }
        if resp.created {
            ids.insert(resp.watch_id, ids.len());
        }
    }
    Ok(StreamState {
        ids,
        key_of,
        _requests: tx,
        inbound,
    })
}

/// Reads events until this stream got `expected` of them or `stop` turns true.
async fn receive(
    mut s: StreamState,
    expected: u64,
    base: Instant,
    progress: Progress,
    mut stop: watch::Receiver<bool>,
) -> StreamTally {
    let mut t = StreamTally {
        received: vec![0; s.key_of.len()],
        ..Default::default()
    };
    let mut last_rev = vec![0i64; s.key_of.len()];
    let mut total = 0u64;
    while total < expected {
        let msg = tokio::select! {
            m = s.inbound.message() => m,
            _ = stop.wait_for(|v| *v) => break,
        };
        let resp = match msg {
            Ok(Some(r)) => r,
            Ok(None) => {
                t.canceled = Some("stream ended".into());
                break;
            }
            Err(status) => {
                t.canceled = Some(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
        };
        if resp.canceled {
            t.canceled = Some(format!(
                "watch {} canceled: {}",
                resp.watch_id, resp.cancel_reason
            ));
            break;
        }
        let Some(&w) = s.ids.get(&resp.watch_id) else {
            continue;
        };
        let now = base.elapsed().as_nanos() as u64;
        for ev in &resp.events {
            let Some(kv) = &ev.kv else { continue };
            if kv.mod_revision <= last_rev[w] {
                t.reordered += 1;
            }
            last_rev[w] = kv.mod_revision;
            t.received[w] += 1;
            total += 1;
            if let Ok(stamp) = <[u8; 8]>::try_from(kv.value.as_slice()) {
                t.rec.record(Duration::from_nanos(
                    now.saturating_sub(u64::from_le_bytes(stamp)),
                ));
            }
        }
        if !resp.events.is_empty() {
            progress.add(resp.events.len() as u64);
            t.last_event = Some(Instant::now());
        }
    }
    t
}

struct StampedPutWorker {
    kv: KvClient<Channel>,
    watched: Arc<Vec<Vec<u8>>>,
    base: Instant,
    /// Successful puts per watched-key index.
    applied: Vec<u64>,
}

impl Worker for StampedPutWorker {
    async fn call(&mut self, seq: u64) -> Result<(), crate::driver::CallError> {
        let k = (seq % self.watched.len() as u64) as usize;
        let stamp = (self.base.elapsed().as_nanos() as u64).to_le_bytes();
        self.kv
            .put(PutRequest {
                key: self.watched[k].clone(),
                value: stamp.to_vec(),
                ..Default::default()
            })
            .await?;
        self.applied[k] += 1;
        Ok(())
    }
}

pub async fn run(conns: &Conns, args: &Args, opts: &RunOpts) -> anyhow::Result<Report> {
    anyhow::ensure!(
        args.watched_key_total > 0,
        "expected positive --watched-key-total"
    );
    anyhow::ensure!(
        args.streams > 0 && args.watch_per_stream > 0,
        "expected watchers"
    );
    keys::check_key_size(args.key_size, args.key_space_size)?;
    let mut rng = Rng::new(7);
    let watched: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..args.watched_key_total)
            .map(|i| {
                let index = if args.sequential_keys {
                    i as u64 % args.key_space_size
                } else {
                    rng.below(args.key_space_size)
                };
                keys::key(args.key_size, index as i64)
            })
            .collect(),
    );

    // Phase 1: every watcher created.
    let create_start = Instant::now();
    let mut opening = tokio::task::JoinSet::new();
    for s in 0..args.streams {
        let (channel, watched, wps) = (conns.channel(s), watched.clone(), args.watch_per_stream);
        opening.spawn(async move { (s, open_stream(channel, watched, s * wps, wps).await) });
    }
    let mut streams: Vec<Option<StreamState>> = (0..args.streams).map(|_| None).collect();
    while let Some(r) = opening.join_next().await {
        let (s, st) = r?;
        streams[s] = Some(st.map_err(|e| anyhow::anyhow!("creating watchers: {e}"))?);
    }
    let create_secs = create_start.elapsed().as_secs_f64();
    let streams: Vec<StreamState> = streams.into_iter().flatten().collect();

    // Phase 2: puts, with receivers already reading. Receivers are told how many events to
    // expect assuming every put succeeds; a failed put only makes them wait for the timeout.
    let mut planned = vec![0u64; watched.len()];
    for p in 0..args.put_total {
        planned[(p % watched.len() as u64) as usize] += 1;
    }
    let puts_on_key = |per_index: &[u64]| -> HashMap<&[u8], u64> {
        let mut m: HashMap<&[u8], u64> = HashMap::new();
        for (i, n) in per_index.iter().enumerate() {
            *m.entry(watched[i].as_slice()).or_default() += n;
        }
        m
    };
    let planned_by_key = puts_on_key(&planned);
    let watchers_total = (args.streams * args.watch_per_stream) as u64;
    let base = Instant::now();
    let (stop_tx, stop_rx) = watch::channel(false);
    let progress = Progress::default();
    let mut receivers = Vec::with_capacity(streams.len());
    let mut expected_planned = 0u64;
    for s in streams {
        let expected: u64 = s
            .key_of
            .iter()
            .map(|&k| planned_by_key[watched[k].as_slice()])
            .sum();
        expected_planned += expected;
        let key_of = s.key_of.clone();
        receivers.push((
            key_of,
            tokio::spawn(receive(
                s,
                expected,
                base,
                progress.clone(),
                stop_rx.clone(),
            )),
        ));
    }
    let line = ProgressLine::start(
        "watch events".into(),
        expected_planned,
        progress.clone(),
        opts.progress,
    );
    let workers = (0..opts.clients)
        .map(|i| StampedPutWorker {
            kv: KvClient::new(conns.channel(i)),
            watched: watched.clone(),
            base,
            applied: vec![0; watched.len()],
        })
        .collect();
    let puts = driver::run(workers, args.put_total, args.put_rate, &Progress::default()).await;

    // Phase 3: wait for the outstanding events, then stop whatever is still waiting.
    let deadline = Instant::now() + Duration::from_secs(args.event_timeout);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep_until(deadline).await;
        let _ = stop_tx.send(true);
    });
    let mut applied = vec![0u64; watched.len()];
    for w in &puts.workers {
        for (a, n) in applied.iter_mut().zip(&w.applied) {
            *a += n;
        }
    }
    let applied_by_key = puts_on_key(&applied);
    let put_errors = puts.rec.error_count();
    let mut rec = Recorder::new();
    let (mut received, mut expected, mut lost, mut extra, mut reordered) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut cancels = Vec::new();
    let mut last_event = None;
    for (key_of, task) in receivers {
        let t = task.await?;
        rec.merge(&t.rec);
        reordered += t.reordered;
        last_event = last_event.max(t.last_event);
        if let Some(c) = t.canceled {
            cancels.push(c);
        }
        for (w, &k) in key_of.iter().enumerate() {
            let want = applied_by_key[watched[k].as_slice()];
            let got = t.received[w];
            expected += want;
            received += got;
            lost += want.saturating_sub(got);
            extra += got.saturating_sub(want);
        }
    }
    stopper.abort();
    drop(line);

    let elapsed = last_event.map_or_else(|| base.elapsed(), |t| t.duration_since(base));
    let put_latency = crate::report::Latency::of(&puts.rec.hist);
    let mut report = Report::new("watch", "events", received, elapsed, rec)
        .with("watchers", watchers_total)
        .with("create_secs", create_secs)
        .with("puts", puts.ok)
        .with("put_errors", put_errors)
        .with(
            "put_per_sec",
            puts.ok as f64 / puts.elapsed.as_secs_f64().max(1e-9),
        )
        .with("put_p99_ms", put_latency.p99)
        .with("events_expected", expected)
        .with("events_lost", lost)
        .with("events_extra", extra)
        .with("events_reordered", reordered);
    report.rec.errors = puts.rec.errors;
    if lost > 0 {
        report
            .violations
            .push(format!("{lost} of {expected} watch events lost"));
    }
    if extra > put_errors * watchers_total {
        report
            .violations
            .push(format!("{extra} watch events more than the puts explain"));
    }
    if reordered > 0 {
        report.violations.push(format!(
            "{reordered} watch events out of revision order or duplicated"
        ));
    }
    for c in cancels.into_iter().take(5) {
        report.violations.push(format!("watch stream: {c}"));
    }
    Ok(report)
}

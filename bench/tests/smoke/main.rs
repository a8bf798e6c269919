//! Smoke test of the load generator itself (not of anyone's speed): one in-process
//! cairn-store member, every workload with tiny totals, and the tool's own correctness
//! checks — exact counts, zero lost watch events, compare-and-swap totals — asserted.
//! Never asserts on throughput or latency: CI machines vary.

use std::time::Duration;

use cairn_bench::connect::ConnectOpts;
use cairn_bench::workload::{self, RunOpts};
use cairn_bench::Conns;

struct Member {
    server: Option<cairn_store::Server>,
    endpoint: String,
    _dir: tempfile::TempDir,
}

/// A free TCP port below the kernel's ephemeral range (32768 and up), so that no outgoing
/// connection of a test running alongside can be handed it between this check and the
/// member's bind (ports from `bind(0)` come from that range and did collide).
fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        h.write_u32(std::process::id());
        let port = 20_000 + (h.finish() % 12_000) as u16;
        // Never the same port twice in one process: a port handed out earlier may not be
        // bound yet (a member still starting), so the bind check alone would not see it.
        static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
}

impl Member {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = format!("http://127.0.0.1:{}", free_port());
        let peer = format!("http://127.0.0.1:{}", free_port());
        let args = [
            "cairn-store",
            "--name",
            "solo",
            "--data-dir",
            dir.path().to_str().expect("utf-8 path"),
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("solo={peer}"),
        ]
        .map(String::from);
        let cfg = cairn_store::Config::parse_args(args).expect("flags");
        let server = cairn_store::start(cfg).await.expect("start cairn-store");
        Self {
            server: Some(server),
            endpoint: client,
            _dir: dir,
        }
    }

    /// Connections as `--conns n --target-leader` would make them; waits for the leader.
    async fn conns(&self, n: usize) -> Conns {
        let opts = ConnectOpts {
            endpoints: vec![self.endpoint.clone()],
            conns: n,
            target_leader: true,
            dial_timeout: Duration::from_secs(2),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match Conns::connect(&opts).await {
                Ok(c) => return c,
                Err(e) if std::time::Instant::now() < deadline => {
                    eprintln!("waiting for a leader: {e:#}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no leader: {e:#}"),
            }
        }
    }

    async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_and_checks_its_results_against_cairn_store() {
    let member = Member::start().await;
    let conns = member.conns(2).await;
    let opts = RunOpts::quiet(4);

    eprintln!("put: exactly --total requests, spread over 4 clients on 2 connections");
    let put = workload::put::run(
        &conns,
        &workload::put::Args {
            key_size: 8,
            val_size: 16,
            total: 50,
            rate: 0,
            key_space_size: 20,
            sequential_keys: true,
        },
        &opts,
    )
    .await
    .expect("put");
    assert_eq!((put.count, put.errors()), (50, 0), "{}", put.to_text(false));
    assert_eq!(put.rec.hist.len(), 50);

    eprintln!("range over the 20 keys just written: serializable, with --limit and --count-only");
    let mut range_args = workload::range::Args {
        key: "\0".into(),
        end: Some("\u{7f}".into()),
        consistency: workload::range::Consistency::S,
        total: 10,
        rate: 0,
        limit: 5,
        count_only: false,
    };
    let range = workload::range::run(&conns, &range_args, &opts)
        .await
        .expect("range");
    assert_eq!((range.count, range.errors()), (10, 0));
    assert_eq!(
        range.extra["keys_read"],
        10 * 5,
        "--limit 5 on every request"
    );
    range_args.consistency = workload::range::Consistency::L;
    range_args.count_only = true;
    range_args.limit = 0;
    let range = workload::range::run(&conns, &range_args, &opts)
        .await
        .expect("range");
    assert_eq!(
        range.extra["keys_read"],
        10 * 20,
        "count of the 20 distinct keys per request"
    );

    eprintln!("txn-put: 3 puts per transaction; --rate bounds the pace");
    let txn = workload::txn_put::run(
        &conns,
        &workload::txn_put::Args {
            key_size: 8,
            val_size: 8,
            txn_ops: 3,
            rate: 200,
            total: 20,
            key_space_size: 10,
        },
        &opts,
    )
    .await
    .expect("txn-put");
    assert_eq!((txn.count, txn.errors()), (20, 0), "{}", txn.to_text(false));
    assert!(
        txn.elapsed >= Duration::from_millis(90),
        "20 txns at 200/s take >= 95 ms"
    );

    eprintln!("watch: 3 streams x 4 watchers on 2 keys, 30 puts -> 180 events, none lost");
    let watch = workload::watch::run(
        &conns,
        &workload::watch::Args {
            streams: 3,
            watch_per_stream: 4,
            watched_key_total: 2,
            put_rate: 0,
            put_total: 30,
            key_size: 32,
            key_space_size: 2,
            sequential_keys: true,
            event_timeout: 20,
        },
        &opts,
    )
    .await
    .expect("watch");
    assert!(watch.violations.is_empty(), "{}", watch.to_text(false));
    assert_eq!(watch.count, 180, "{}", watch.to_text(false));
    assert_eq!(watch.extra["events_lost"], 0);
    assert_eq!(watch.rec.hist.len(), 180, "one delivery latency per event");

    eprintln!("lease-keepalive: a lease per client, keep-alives on one stream each");
    let lease = workload::lease_keepalive::run(
        &conns,
        &workload::lease_keepalive::Args {
            total: 40,
            ttl: 30,
            rate: 0,
        },
        &opts,
    )
    .await
    .expect("lease-keepalive");
    assert_eq!(
        (lease.count, lease.errors()),
        (40, 0),
        "{}",
        lease.to_text(false)
    );
    assert_eq!(lease.extra["revoke_errors"], 0);

    eprintln!("txn-cas: 8 clients contend on 2 counters; the counters must add up");
    let cas = workload::txn_cas::run(
        &conns,
        &workload::txn_cas::Args {
            counters: 2,
            total: 60,
            rate: 0,
            key_prefix: "smoke/cas/".into(),
        },
        &RunOpts::quiet(8),
    )
    .await
    .expect("txn-cas");
    assert!(cas.violations.is_empty(), "{}", cas.to_text(false));
    assert_eq!((cas.count, cas.errors()), (60, 0));
    assert_eq!(cas.extra["final_values"], serde_json::json!([30, 30]));

    eprintln!("reports render as text and JSON");
    let json = cas.to_json();
    assert_eq!(json["count"], 60);
    assert!(cas.to_text(true).contains("Increments/sec"));

    member.stop().await;
}

/// The API server workload against `cairn apiserver` (in-process) on the member: every step's
/// exact count, no errors, and the watch step's own delivery checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apiserver_workload_runs_and_checks_its_results() {
    let member = Member::start().await;
    let args = [
        "cairn",
        "--etcd-servers",
        &member.endpoint,
        "--insecure-port",
        "0",
        "--secure-port",
        "0",
    ]
    .map(String::from);
    let cfg = cairn::apiserver::Config::parse_args(args).expect("flags");
    let api = cairn::apiserver::start(cfg).await.expect("start apiserver");
    let steps = cairn_bench::kube::StepArgs {
        server: format!("http://{}", api.addr()),
        objects: 40,
        value_size: 64,
        lists: 4,
        watchers: 3,
        watch_updates: 20,
        namespace: "smoke".into(),
    };
    let reports = cairn_bench::kube::run(&steps, &RunOpts::quiet(4))
        .await
        .expect("apiserver workload");
    let counts: Vec<(&str, u64, u64)> = reports
        .iter()
        .map(|r| (r.workload.as_str(), r.count, r.errors()))
        .collect();
    assert_eq!(
        counts,
        [
            ("create", 40, 0),
            ("get", 40, 0),
            ("update", 40, 0),
            ("list", 4, 0),
            ("watch", 60, 0),
            ("delete", 40, 0),
        ]
    );
    for r in &reports {
        assert!(r.violations.is_empty(), "{}", r.to_text(false));
    }
    // A second run in the same namespace starts from a clean slate.
    let again = cairn_bench::kube::run(&steps, &RunOpts::quiet(2))
        .await
        .expect("second run");
    assert_eq!(again[0].count, 40);
    api.shutdown().await;
    member.stop().await;
}

//! Leases: grant / revoke / keep-alive / time-to-live / list through the gRPC API, expiry
//! decided by the leader's lessor and carried out through Raft, keep-alives through a follower,
//! leases outliving the loss of their leader (etcd's `Promote`) and a kill -9 restart, and a
//! mass expiry paced so writes go on.
//!
//! Members run with a 50 ms heartbeat and a 500 ms election timeout, so etcd's minimum TTL is
//! 1 s and the tests can use TTLs of a few seconds. Waiting is done by polling with deadlines.

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::harness::{
    channel, cluster, get, kv, leader_of, member_id_of, put, wait_ready, Member, Solo,
};

pub fn phase(what: &str) {
    eprintln!("--- {what}");
}

pub async fn lease_client(endpoint: &str) -> LeaseClient<Channel> {
    LeaseClient::new(channel(endpoint).await.expect("connect"))
}

pub async fn grant(c: &mut LeaseClient<Channel>, id: i64, ttl: i64) -> i64 {
    c.lease_grant(LeaseGrantRequest { ttl, id })
        .await
        .expect("grant")
        .into_inner()
        .id
}

fn put_with(key: &str, lease: i64) -> PutRequest {
    PutRequest {
        lease,
        ..put(key, "v")
    }
}

pub async fn count(endpoint: &str, prefix: &str) -> i64 {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    kv(endpoint)
        .await
        .range(RangeRequest {
            key: prefix.into(),
            range_end: end,
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("count")
        .into_inner()
        .count
}

/// Polls `cond` every 50 ms until it holds; panics after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One client-side keep-alive stream.
struct KeepAlive {
    tx: mpsc::Sender<LeaseKeepAliveRequest>,
    rx: Streaming<LeaseKeepAliveResponse>,
}

impl KeepAlive {
    async fn open(endpoint: &str) -> Self {
        let (tx, reqs) = mpsc::channel(16);
        let rx = lease_client(endpoint)
            .await
            .lease_keep_alive(ReceiverStream::new(reqs))
            .await
            .expect("keep-alive stream")
            .into_inner();
        Self { tx, rx }
    }

    /// Sends one keep-alive and returns the answer.
    async fn ping(&mut self, id: i64) -> Result<LeaseKeepAliveResponse, tonic::Status> {
        self.tx
            .send(LeaseKeepAliveRequest { id })
            .await
            .expect("stream open");
        match self.rx.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(tonic::Status::unavailable("stream ended")),
            Err(s) => Err(s),
        }
    }
}

/// Keeps `id` alive through `endpoint` every `every` until told to stop, reopening the stream
/// whenever it breaks (as clients do across a leader change). Returns the TTLs it was answered.
pub fn keep_alive_in_background(
    endpoint: String,
    id: i64,
    every: Duration,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Vec<i64>>,
) {
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        let mut ttls = Vec::new();
        let mut stream: Option<KeepAlive> = None;
        while !*stopped.borrow() {
            if stream.is_none() {
                if let Some(ch) = channel(&endpoint).await {
                    let (tx, reqs) = mpsc::channel(16);
                    if let Ok(rx) = LeaseClient::new(ch)
                        .lease_keep_alive(ReceiverStream::new(reqs))
                        .await
                    {
                        stream = Some(KeepAlive {
                            tx,
                            rx: rx.into_inner(),
                        });
                    }
                }
            }
            if let Some(s) = &mut stream {
                match s.ping(id).await {
                    Ok(r) => ttls.push(r.ttl),
                    Err(e) => {
                        eprintln!("keep-alive of {id:x} failed, reconnecting: {e}");
                        stream = None;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stopped.changed() => {}
            }
        }
        ttls
    });
    (stop, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_revoke_time_to_live_and_list_follow_etcd() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let mut kv = kv(&s.endpoint).await;

    phase("grant with a chosen id, a server-chosen id, and a TTL below the minimum");
    let g = leases
        .lease_grant(LeaseGrantRequest {
            ttl: 60,
            id: 0x1234,
        })
        .await
        .expect("grant")
        .into_inner();
    assert_eq!((g.id, g.ttl, g.error.as_str()), (0x1234, 60, ""));
    assert_eq!(
        g.header.expect("header").revision,
        1,
        "grants take no revision"
    );
    let chosen = leases
        .lease_grant(LeaseGrantRequest { ttl: 0, id: 0 })
        .await
        .expect("grant")
        .into_inner();
    assert!(chosen.id > 0, "server-chosen ids are positive");
    assert_eq!(
        chosen.ttl, 1,
        "raised to etcd's minimum TTL (1.5 election timeouts)"
    );
    let chosen2 = grant(&mut leases, 0, 30).await;
    assert_ne!(chosen2, chosen.id);

    phase("grant errors");
    let e = leases
        .lease_grant(LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 0,
        })
        .await
        .expect_err("too large");
    assert_eq!(
        (e.code(), e.message()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    let e = leases
        .lease_grant(LeaseGrantRequest {
            ttl: 10,
            id: 0x1234,
        })
        .await
        .expect_err("exists");
    assert_eq!(
        (e.code(), e.message()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );

    phase("puts attach keys; time-to-live lists them");
    kv.put(put_with("a", 0x1234)).await.expect("put a");
    kv.put(put_with("b", 0x1234)).await.expect("put b");
    kv.put(put("other", "x")).await.expect("put other");
    let e = kv
        .put(put_with("c", 0x999))
        .await
        .expect_err("unknown lease");
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    let a = kv.range(get("a")).await.expect("get").into_inner().kvs;
    assert_eq!(a[0].lease, 0x1234);
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x1234,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert_eq!((t.id, t.granted_ttl), (0x1234, 60));
    assert!((58..=60).contains(&t.ttl), "remaining {}", t.ttl);
    assert_eq!(t.keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(t.header.expect("header").revision, 4);
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x1234,
            keys: false,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert!(t.keys.is_empty());

    phase("unknown leases: time-to-live -1, revoke not found");
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x4321,
            keys: true,
        })
        .await
        .expect("ttl of unknown")
        .into_inner();
    assert_eq!(
        (t.id, t.ttl, t.granted_ttl, t.keys.len()),
        (0x4321, -1, 0, 0)
    );
    let e = leases
        .lease_revoke(LeaseRevokeRequest { id: 0x4321 })
        .await
        .expect_err("revoke unknown");
    assert_eq!(
        (e.code(), e.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );

    phase("list");
    let mut ids: Vec<i64> = leases
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    ids.sort();
    let mut want = vec![0x1234, chosen.id, chosen2];
    want.sort();
    // The 1 s lease may already be gone.
    ids.retain(|id| *id != chosen.id);
    want.retain(|id| *id != chosen.id);
    assert_eq!(ids, want);

    phase("revoke deletes every attached key in ONE revision");
    let r = leases
        .lease_revoke(LeaseRevokeRequest { id: 0x1234 })
        .await
        .expect("revoke")
        .into_inner();
    assert_eq!(r.header.expect("header").revision, 5);
    let gone = kv
        .range(RangeRequest {
            key: "a".into(),
            range_end: "c".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!((gone.count, gone.header.expect("h").revision), (0, 5));
    let before = kv
        .range(RangeRequest {
            revision: 4,
            ..get("b")
        })
        .await
        .expect("old read")
        .into_inner();
    assert_eq!(before.count, 1, "history keeps the key before the revoke");
    assert_eq!(count(&s.endpoint, "other").await, 1);
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x1234,
            keys: true,
        })
        .await
        .expect("ttl")
        .into_inner();
    assert_eq!(t.ttl, -1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_extends_and_expiry_deletes_keys() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let mut kv = kv(&s.endpoint).await;

    phase("a keep-alive answers the granted TTL, and TTL 0 for an unknown lease");
    let id = grant(&mut leases, 0, 2).await;
    kv.put(put_with("e/1", id)).await.expect("put");
    kv.put(put_with("e/2", id)).await.expect("put");
    let rev_before = kv
        .range(get("e/1"))
        .await
        .expect("get")
        .into_inner()
        .header
        .expect("h")
        .revision;
    let mut ka = KeepAlive::open(&s.endpoint).await;
    let r = ka.ping(id).await.expect("keep-alive");
    assert_eq!((r.id, r.ttl), (id, 2));
    assert!(r.header.expect("header").revision >= rev_before);
    let r = ka.ping(0x77).await.expect("unknown lease keeps the stream");
    assert_eq!((r.id, r.ttl), (0x77, 0));

    phase("kept alive for twice its TTL, the lease and its keys live on");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        assert_eq!(ka.ping(id).await.expect("keep-alive").ttl, 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(count(&s.endpoint, "e/").await, 2);
    let last_keep_alive = Instant::now();
    ka.ping(id).await.expect("keep-alive");

    phase("left alone, it expires: both keys go in one revision, not before the TTL");
    eventually(Duration::from_secs(8), "lease expired", || async {
        count(&s.endpoint, "e/").await == 0
    })
    .await;
    assert!(
        last_keep_alive.elapsed() >= Duration::from_secs(2),
        "expired {:?} after the last keep-alive, before its 2 s TTL",
        last_keep_alive.elapsed()
    );
    let after = kv
        .range(get("e/1"))
        .await
        .expect("get")
        .into_inner()
        .header
        .expect("h")
        .revision;
    assert_eq!(after, rev_before + 1, "the revoke is one revision");
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: false })
        .await
        .expect("ttl")
        .into_inner();
    assert_eq!(t.ttl, -1);
    assert_eq!(ka.ping(id).await.expect("keep-alive").ttl, 0);
    s.stop().await;
}

/// etcd revokes at most ~1000 leases a second, so a mass expiry cannot stall the cluster:
/// writes go on while the revocations are paced out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mass_expiry_is_paced_and_writes_go_on() {
    let s = Solo::start(&[]).await;
    let n = 1500usize;

    phase("grant 1500 one-second leases, each with a key");
    let mut tasks = Vec::new();
    for part in 0..10 {
        let ep = s.endpoint.clone();
        tasks.push(tokio::spawn(async move {
            let mut leases = lease_client(&ep).await;
            let mut kv = kv(&ep).await;
            for i in (part..n).step_by(10) {
                let id = grant(&mut leases, 0, 1).await;
                kv.put(put_with(&format!("m/{i:05}"), id))
                    .await
                    .expect("put");
            }
        }));
    }
    for t in tasks {
        t.await.expect("granting");
    }

    phase("they expire; writes stay fast while the revokes are paced");
    let mut kv = kv(&s.endpoint).await;
    eventually(Duration::from_secs(10), "first revocations", || async {
        count(&s.endpoint, "m/").await < n as i64
    })
    .await;
    let first_gone = Instant::now();
    let mut slowest = Duration::ZERO;
    while count(&s.endpoint, "m/").await > 0 {
        let t = Instant::now();
        kv.put(put("during", "mass expiry")).await.expect("put");
        slowest = slowest.max(t.elapsed());
        assert!(
            first_gone.elapsed() < Duration::from_secs(15),
            "revocations never finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let spread = first_gone.elapsed();
    eprintln!("revoked {n} leases over {spread:?}; slowest put {slowest:?}");
    assert!(
        spread >= Duration::from_millis(700),
        "{n} revocations in {spread:?}: faster than 1000/s"
    );
    assert!(slowest < Duration::from_secs(1), "a put took {slowest:?}");
    let left = lease_client(&s.endpoint)
        .await
        .lease_leases(LeaseLeasesRequest {})
        .await
        .expect("leases")
        .into_inner()
        .leases;
    assert!(left.is_empty(), "{} leases left", left.len());
    s.stop().await;
}

async fn start_cluster(dir: &std::path::Path) -> Vec<Member> {
    let mut members = cluster(&["l1", "l2", "l3"], dir);
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    members
}

/// (index of the leader, index of a follower)
async fn roles(members: &[Member]) -> (usize, usize) {
    let leader = leader_of(&members[0].client_url).await;
    let mut ids = Vec::new();
    for m in members {
        ids.push(member_id_of(&m.client_url).await);
    }
    let l = ids
        .iter()
        .position(|id| *id == leader)
        .expect("leader is a member");
    (l, (l + 1) % members.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_and_time_to_live_through_a_follower() {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = start_cluster(dir.path()).await;
    let (_, f) = roles(&members).await;
    let follower = &members[f].client_url;

    phase("grant and attach through a follower");
    let mut leases = lease_client(follower).await;
    let id = grant(&mut leases, 0, 2).await;
    kv(follower)
        .await
        .put(put_with("f/1", id))
        .await
        .expect("put");

    phase("keep-alives sent to the follower reach the leader's lessor");
    let mut ka = KeepAlive::open(follower).await;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        let r = ka.ping(id).await.expect("keep-alive via follower");
        assert_eq!(r.ttl, 2);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        count(follower, "f/").await,
        1,
        "kept alive past twice its TTL"
    );
    let t = leases
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .expect("ttl via follower")
        .into_inner();
    assert_eq!(t.granted_ttl, 2);
    assert!((0..=2).contains(&t.ttl), "remaining {}", t.ttl);
    assert_eq!(t.keys, vec![b"f/1".to_vec()]);
    assert_eq!(
        t.header.expect("header").member_id,
        member_id_of(follower).await,
        "the answering member's header"
    );

    phase("left alone it expires, on every member");
    eventually(Duration::from_secs(8), "expired via the leader", || async {
        count(follower, "f/").await == 0
    })
    .await;
    for m in &members {
        assert_eq!(count(&m.client_url, "f/").await, 0, "{}", m.name);
    }
    assert_eq!(ka.ping(id).await.expect("keep-alive").ttl, 0);
}

/// The leader is killed while leases are live: one kept alive through a survivor, one left
/// alone. The new leader gives every lease a full TTL (etcd's Promote), so neither expires
/// early; the one left alone expires later, decided by the new leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_outlive_a_killed_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = start_cluster(dir.path()).await;
    let (l, f) = roles(&members).await;
    let survivor = members[f].client_url.clone();
    let ttl = 3;

    phase("two leases with keys; one kept alive through a follower");
    let mut leases = lease_client(&survivor).await;
    let kept = grant(&mut leases, 0, ttl).await;
    let alone = grant(&mut leases, 0, ttl).await;
    let mut c = kv(&survivor).await;
    c.put(put_with("kept/1", kept)).await.expect("put");
    c.put(put_with("kept/2", kept)).await.expect("put");
    c.put(put_with("alone/1", alone)).await.expect("put");
    let granted = Instant::now();
    let (stop, pings) =
        keep_alive_in_background(survivor.clone(), kept, Duration::from_millis(500));

    phase("kill -9 the leader shortly before the unattended lease would expire");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let old_leader = leader_of(&survivor).await;
    members[l].kill9();
    let killed = Instant::now();
    eventually(Duration::from_secs(20), "a new leader", || async {
        let now = leader_of(&survivor).await;
        now != 0 && now != old_leader
    })
    .await;
    eprintln!("new leader after {:?}", killed.elapsed());

    phase("past both TTLs (measured from the kill), every key is still there");
    let check_at = killed + Duration::from_secs(ttl as u64) - Duration::from_millis(200);
    tokio::time::sleep_until(check_at.into()).await;
    assert!(granted.elapsed() > Duration::from_secs(ttl as u64) + Duration::from_millis(1000));
    assert_eq!(count(&survivor, "kept/").await, 2, "kept-alive lease lost");
    assert_eq!(
        count(&survivor, "alone/").await,
        1,
        "the unattended lease expired although the new leader must give it a full TTL"
    );
    tokio::time::sleep(Duration::from_secs(ttl as u64)).await;
    assert_eq!(count(&survivor, "kept/").await, 2, "kept-alive lease lost");

    phase("the unattended lease expires under the new leader; the kept one lives on");
    eventually(
        Duration::from_secs(10),
        "unattended lease expired",
        || async { count(&survivor, "alone/").await == 0 },
    )
    .await;
    assert_eq!(count(&survivor, "kept/").await, 2);
    let _ = stop.send(true);
    let ttls = pings.await.expect("keep-alive task");
    assert!(
        ttls.iter().all(|t| *t == ttl),
        "a keep-alive saw the lease gone: {ttls:?}"
    );
    assert!(ttls.len() >= 6, "too few keep-alives answered: {ttls:?}");
}

/// A member restarted after kill -9 reloads its leases from the lease table and, once it leads
/// again, gives each its full TTL: the lease survives the restart, then expires normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_reloaded_after_kill_9_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["solo"], dir.path());
    let m = &mut members[0];
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    let ttl = 3;
    let id = grant(&mut lease_client(&m.client_url).await, 0, ttl).await;
    kv(&m.client_url)
        .await
        .put(put_with("r/1", id))
        .await
        .expect("put");

    phase("kill -9 and restart after most of the TTL has passed");
    tokio::time::sleep(Duration::from_secs(2)).await;
    m.kill9();
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    let restarted = Instant::now();
    let t = lease_client(&m.client_url)
        .await
        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: true })
        .await
        .expect("ttl")
        .into_inner();
    assert_eq!((t.granted_ttl, t.keys.len()), (ttl, 1));
    assert!(t.ttl >= ttl - 1, "remaining {} after the restart", t.ttl);
    assert_eq!(count(&m.client_url, "r/").await, 1);

    phase("then it expires as usual, not before a full TTL after the restart");
    eventually(Duration::from_secs(10), "expired after restart", || async {
        count(&m.client_url, "r/").await == 0
    })
    .await;
    assert!(restarted.elapsed() >= Duration::from_secs(ttl as u64 - 1));
}

//! The Election and Lock services with two contenders: who wins, who waits, and how the
//! waiter takes over — on resign / unlock, on its rival's lease expiring, and what happens to
//! a waiter whose client gives up or whose own lease ends while it waits.

use std::time::Duration;

use cairn_proto::v3electionpb::election_client::ElectionClient;
use cairn_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ResignRequest,
};
use cairn_proto::v3lockpb::lock_client::LockClient;
use cairn_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::harness::Solo;
use crate::harness::{channel, get, kv};
use crate::lease::{count, eventually, grant, keep_alive_in_background, lease_client, phase};

async fn election(endpoint: &str) -> ElectionClient<Channel> {
    ElectionClient::new(channel(endpoint).await.expect("connect"))
}

async fn locks(endpoint: &str) -> LockClient<Channel> {
    LockClient::new(channel(endpoint).await.expect("connect"))
}

fn campaign(name: &str, lease: i64, value: &str) -> CampaignRequest {
    CampaignRequest {
        name: name.into(),
        lease,
        value: value.into(),
    }
}

async fn next_value(observe: &mut Streaming<LeaderResponse>) -> String {
    let r = tokio::time::timeout(Duration::from_secs(10), observe.message())
        .await
        .expect("an observation within 10 s")
        .expect("observe stream")
        .expect("observe stream open");
    String::from_utf8(r.kv.expect("kv").value).expect("utf-8")
}

async fn leader_value(endpoint: &str, name: &str) -> String {
    let r = election(endpoint)
        .await
        .leader(LeaderRequest { name: name.into() })
        .await
        .expect("leader")
        .into_inner();
    String::from_utf8(r.kv.expect("kv").value).expect("utf-8")
}

/// How long a blocked call is given to (wrongly) return before we call it blocked.
const STILL_BLOCKED: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_campaigner_waits_for_the_leader_to_resign() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let a = grant(&mut leases, 0xa, 60).await;
    let b = grant(&mut leases, 0xb, 60).await;
    let mut e = election(&s.endpoint).await;

    phase("no leader yet");
    let err = e
        .leader(LeaderRequest { name: "job".into() })
        .await
        .expect_err("no leader");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "election: no leader")
    );

    phase("A campaigns and wins at once; its key is name/<lease hex> with its lease");
    let won = e
        .campaign(campaign("job", a, "a"))
        .await
        .expect("campaign")
        .into_inner();
    let leader_a = won.leader.expect("leader key");
    assert_eq!(
        (
            leader_a.name.as_slice(),
            leader_a.key.as_slice(),
            leader_a.lease
        ),
        (&b"job"[..], &b"job/a"[..], a)
    );
    assert_eq!(leader_a.rev, won.header.expect("header").revision);
    let kv_a = kv(&s.endpoint)
        .await
        .range(get("job/a"))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (kv_a.kvs[0].lease, kv_a.kvs[0].create_revision),
        (a, leader_a.rev)
    );
    assert_eq!(leader_value(&s.endpoint, "job").await, "a");
    let mut observe = election(&s.endpoint)
        .await
        .observe(LeaderRequest { name: "job".into() })
        .await
        .expect("observe")
        .into_inner();
    assert_eq!(next_value(&mut observe).await, "a");

    phase("B campaigns and blocks while A leads");
    let ep = s.endpoint.clone();
    let mut b_campaign =
        tokio::spawn(async move { election(&ep).await.campaign(campaign("job", b, "b")).await });
    assert!(
        tokio::time::timeout(STILL_BLOCKED, &mut b_campaign)
            .await
            .is_err(),
        "B won while A leads"
    );

    phase("A proclaims a new value: observers and Leader see it; a stale key cannot proclaim");
    e.proclaim(ProclaimRequest {
        leader: Some(leader_a.clone()),
        value: "a2".into(),
    })
    .await
    .expect("proclaim");
    assert_eq!(next_value(&mut observe).await, "a2");
    assert_eq!(leader_value(&s.endpoint, "job").await, "a2");
    let stale = LeaderKey {
        rev: leader_a.rev + 100,
        ..leader_a.clone()
    };
    let err = e
        .proclaim(ProclaimRequest {
            leader: Some(stale),
            value: "x".into(),
        })
        .await
        .expect_err("stale leader key");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "election: not leader")
    );
    let err = e
        .resign(ResignRequest { leader: None })
        .await
        .expect_err("missing leader");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "\"leader\" field must be provided")
    );

    phase("A resigns: B's campaign returns, observers see B");
    e.resign(ResignRequest {
        leader: Some(leader_a),
    })
    .await
    .expect("resign");
    let won_b = tokio::time::timeout(Duration::from_secs(10), b_campaign)
        .await
        .expect("B elected within 10 s")
        .expect("task")
        .expect("campaign")
        .into_inner();
    assert_eq!(won_b.leader.expect("leader").key, b"job/b");
    assert_eq!(next_value(&mut observe).await, "b");
    assert_eq!(leader_value(&s.endpoint, "job").await, "b");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_wins_when_the_leaders_lease_expires() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let short = grant(&mut leases, 0, 1).await;
    let long = grant(&mut leases, 0, 60).await;
    let mut e = election(&s.endpoint).await;
    e.campaign(campaign("svc", short, "first"))
        .await
        .expect("first campaign");
    let won = tokio::time::timeout(
        Duration::from_secs(10),
        e.campaign(campaign("svc", long, "second")),
    )
    .await
    .expect("elected once the first leader's lease expired")
    .expect("campaign")
    .into_inner();
    assert_eq!(won.leader.expect("leader").lease, long);
    assert_eq!(leader_value(&s.endpoint, "svc").await, "second");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_exclusive_and_passes_on_unlock() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let a = grant(&mut leases, 0, 60).await;
    let b = grant(&mut leases, 0, 60).await;
    let mut l = locks(&s.endpoint).await;

    phase("A locks at once; locking again with the same lease is the same acquisition");
    let held = l
        .lock(LockRequest {
            name: "res".into(),
            lease: a,
        })
        .await
        .expect("lock")
        .into_inner();
    assert_eq!(held.key, format!("res/{a:x}").into_bytes());
    let again = l
        .lock(LockRequest {
            name: "res".into(),
            lease: a,
        })
        .await
        .expect("relock")
        .into_inner();
    assert_eq!(again.key, held.key);

    phase("B blocks until A unlocks");
    let ep = s.endpoint.clone();
    let mut b_lock = tokio::spawn(async move {
        locks(&ep)
            .await
            .lock(LockRequest {
                name: "res".into(),
                lease: b,
            })
            .await
    });
    assert!(
        tokio::time::timeout(STILL_BLOCKED, &mut b_lock)
            .await
            .is_err(),
        "B got the lock while A holds it"
    );
    let unlocked = l
        .unlock(UnlockRequest {
            key: held.key.clone(),
        })
        .await
        .expect("unlock")
        .into_inner();
    let got = tokio::time::timeout(Duration::from_secs(10), b_lock)
        .await
        .expect("B locks within 10 s")
        .expect("task")
        .expect("lock")
        .into_inner();
    assert_eq!(got.key, format!("res/{b:x}").into_bytes());
    assert!(
        got.header.expect("header").revision >= unlocked.header.expect("header").revision,
        "B's lock is after A's unlock"
    );
    assert_eq!(count(&s.endpoint, "res/").await, 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_and_expired_waiters_leave_no_key() {
    let s = Solo::start(&[]).await;
    let mut leases = lease_client(&s.endpoint).await;
    let holder = grant(&mut leases, 0, 60).await;
    let quitter = grant(&mut leases, 0, 60).await;
    let mut l = locks(&s.endpoint).await;
    let held = l
        .lock(LockRequest {
            name: "m".into(),
            lease: holder,
        })
        .await
        .expect("lock")
        .into_inner();

    phase("a waiter whose client gives up removes its key");
    let gave_up = tokio::time::timeout(
        STILL_BLOCKED,
        locks(&s.endpoint).await.lock(LockRequest {
            name: "m".into(),
            lease: quitter,
        }),
    )
    .await;
    assert!(gave_up.is_err(), "the waiter got a held lock");
    eventually(
        Duration::from_secs(5),
        "abandoned waiter's key removed",
        || async { count(&s.endpoint, "m/").await == 1 },
    )
    .await;

    phase("a waiter whose lease expires while it waits fails with 'session is expired'");
    let mortal = grant(&mut leases, 0, 1).await;
    let ep = s.endpoint.clone();
    let waiter = tokio::spawn(async move {
        locks(&ep)
            .await
            .lock(LockRequest {
                name: "m".into(),
                lease: mortal,
            })
            .await
    });
    eventually(Duration::from_secs(5), "waiter queued", || async {
        count(&s.endpoint, "m/").await == 2
    })
    .await;
    eventually(Duration::from_secs(8), "waiter's lease expired", || async {
        count(&s.endpoint, "m/").await == 1
    })
    .await;
    let (stop, _) = keep_alive_in_background(s.endpoint.clone(), holder, Duration::from_secs(5));
    l.unlock(UnlockRequest { key: held.key })
        .await
        .expect("unlock");
    let err = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter returns once the lock is free")
        .expect("task")
        .expect_err("its lease is gone");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "mutex: session is expired")
    );
    assert_eq!(count(&s.endpoint, "m/").await, 0);
    let _ = stop.send(true);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_with_an_unknown_lease_is_refused_as_etcd_does() {
    let s = Solo::start(&[]).await;
    let err = election(&s.endpoint)
        .await
        .campaign(campaign("x", 0x5eed, "v"))
        .await
        .expect_err("unknown lease");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    let err = locks(&s.endpoint)
        .await
        .lock(LockRequest {
            name: "x".into(),
            lease: 0x5eed,
        })
        .await
        .expect_err("unknown lease");
    assert_eq!(
        (err.code(), err.message()),
        (Code::Unknown, "etcdserver: requested lease not found")
    );
    s.stop().await;
}

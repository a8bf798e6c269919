//! The deterministic parts of leases, elections and locks, driven the same way against real
//! etcd and cairn-store; every response (or error code and message) is compared, revisions
//! included. Only what legitimately differs between two clusters (cluster id, member id, raft
//! term, server-chosen lease ids) is cleared, and remaining TTLs are reduced to "within a
//! second of the granted TTL", since they are clock readings.

use std::fmt::Debug;
use std::time::Duration;

use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseLeasesRequest, LeaseRevokeRequest,
    LeaseTimeToLiveRequest, PutRequest, RangeRequest, ResponseHeader,
};
use cairn_proto::v3electionpb::election_client::ElectionClient;
use cairn_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use cairn_proto::v3lockpb::lock_client::LockClient;
use cairn_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

use crate::harness::{have, kv_client, Cairn, Etcd};

fn clear(h: &mut Option<ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn outcome<T: Debug>(
    r: Result<tonic::Response<T>, tonic::Status>,
    f: impl FnOnce(&mut T),
) -> String {
    match r {
        Ok(resp) => {
            let mut resp = resp.into_inner();
            f(&mut resp);
            format!("{resp:?}")
        }
        Err(s) => format!("error {:?}: {}", s.code(), s.message()),
    }
}

async fn connect(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .expect("endpoint")
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .expect("connect")
}

fn put(key: &str, value: &str, lease: i64) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        lease,
        ..Default::default()
    }
}

const A: i64 = 0x1a;
const B: i64 = 0x1b;

/// Runs the scenario and returns one line per step.
async fn scenario(endpoint: &str) -> Vec<String> {
    let ch = connect(endpoint).await;
    let mut lease = LeaseClient::new(ch.clone());
    let mut kv = kv_client(endpoint).await;
    let mut election = ElectionClient::new(ch.clone());
    let mut lock = LockClient::new(ch);
    let mut out = Vec::new();
    macro_rules! step {
        ($name:expr, $call:expr, $fix:expr) => {
            out.push(format!("{}: {}", $name, outcome($call.await, $fix)))
        };
    }

    // Leases.
    step!(
        "grant A",
        lease.lease_grant(LeaseGrantRequest { ttl: 60, id: A }),
        |r| clear(&mut r.header)
    );
    step!(
        "grant B below the minimum TTL",
        lease.lease_grant(LeaseGrantRequest { ttl: 1, id: B }),
        |r| clear(&mut r.header)
    );
    step!(
        "grant server-chosen",
        lease.lease_grant(LeaseGrantRequest { ttl: 30, id: 0 }),
        |r| {
            clear(&mut r.header);
            assert!(r.id > 0);
            r.id = 0;
        }
    );
    step!(
        "grant existing",
        lease.lease_grant(LeaseGrantRequest { ttl: 60, id: A }),
        |_| ()
    );
    step!(
        "grant too long",
        lease.lease_grant(LeaseGrantRequest {
            ttl: 9_000_000_001,
            id: 0x77
        }),
        |_| ()
    );
    step!("put with A", kv.put(put("k/1", "v1", A)), |r| clear(
        &mut r.header
    ));
    step!("put with A again", kv.put(put("k/2", "v2", A)), |r| clear(
        &mut r.header
    ));
    step!(
        "put with unknown lease",
        kv.put(put("k/3", "v3", 0x99)),
        |r| clear(&mut r.header)
    );
    step!(
        "time to live with keys",
        lease.lease_time_to_live(LeaseTimeToLiveRequest { id: A, keys: true }),
        |r| {
            clear(&mut r.header);
            assert!(
                (r.granted_ttl - 1..=r.granted_ttl).contains(&r.ttl),
                "remaining {}",
                r.ttl
            );
            r.ttl = -100;
            // etcd lists a lease's keys in Go map order, which changes from run to run.
            r.keys.sort();
        }
    );
    step!(
        "time to live unknown",
        lease.lease_time_to_live(LeaseTimeToLiveRequest {
            id: 0x99,
            keys: true
        }),
        |r| clear(&mut r.header)
    );
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(LeaseKeepAliveRequest { id: A })
        .await
        .expect("send");
    tx.send(LeaseKeepAliveRequest { id: 0x99 })
        .await
        .expect("send");
    let mut ka = lease
        .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("keep-alive stream")
        .into_inner();
    for what in ["keep-alive A", "keep-alive unknown"] {
        let mut r = ka.message().await.expect("keep-alive").expect("answer");
        clear(&mut r.header);
        out.push(format!("{what}: {r:?}"));
    }
    drop(tx);
    step!("leases", lease.lease_leases(LeaseLeasesRequest {}), |r| {
        clear(&mut r.header);
        r.leases.retain(|l| l.id == A);
        r.leases.sort_by_key(|l| l.id);
    });
    step!(
        "revoke A",
        lease.lease_revoke(LeaseRevokeRequest { id: A }),
        |r| clear(&mut r.header)
    );
    step!(
        "keys after revoke",
        kv.range(RangeRequest {
            key: "k/".into(),
            range_end: "k0".into(),
            ..Default::default()
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "revoke A again",
        lease.lease_revoke(LeaseRevokeRequest { id: A }),
        |r| clear(&mut r.header)
    );
    step!(
        "time to live revoked",
        lease.lease_time_to_live(LeaseTimeToLiveRequest { id: A, keys: false }),
        |r| clear(&mut r.header)
    );

    // Election, with leases that outlive the scenario.
    lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0x2a })
        .await
        .expect("grant");
    lease
        .lease_grant(LeaseGrantRequest { ttl: 60, id: 0x2b })
        .await
        .expect("grant");
    step!(
        "leader before any campaign",
        election.leader(LeaderRequest { name: "e".into() }),
        |r| clear(&mut r.header)
    );
    step!(
        "campaign with unknown lease",
        election.campaign(CampaignRequest {
            name: "e".into(),
            lease: 0x99,
            value: "x".into()
        }),
        |r| clear(&mut r.header)
    );
    let won = election
        .campaign(CampaignRequest {
            name: "e".into(),
            lease: 0x2a,
            value: "first".into(),
        })
        .await;
    let leader_key = won.as_ref().ok().and_then(|r| r.get_ref().leader.clone());
    out.push(format!(
        "campaign: {}",
        outcome(won, |r| clear(&mut r.header))
    ));
    let leader_key = leader_key.unwrap_or_default();
    step!(
        "campaign again, same lease",
        election.campaign(CampaignRequest {
            name: "e".into(),
            lease: 0x2a,
            value: "again".into()
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "leader",
        election.leader(LeaderRequest { name: "e".into() }),
        |r| clear(&mut r.header)
    );
    let proclaimed = LeaderKey {
        ..leader_key.clone()
    };
    step!(
        "proclaim",
        election.proclaim(ProclaimRequest {
            leader: Some(proclaimed),
            value: "second".into()
        }),
        |r| clear(&mut r.header)
    );
    let stale = LeaderKey {
        rev: leader_key.rev + 50,
        ..leader_key.clone()
    };
    step!(
        "proclaim stale",
        election.proclaim(ProclaimRequest {
            leader: Some(stale),
            value: "x".into()
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "proclaim without leader",
        election.proclaim(ProclaimRequest {
            leader: None,
            value: "x".into()
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "leader after proclaim",
        election.leader(LeaderRequest { name: "e".into() }),
        |r| clear(&mut r.header)
    );
    step!(
        "resign without leader",
        election.resign(ResignRequest { leader: None }),
        |r| clear(&mut r.header)
    );
    step!(
        "resign",
        election.resign(ResignRequest {
            leader: Some(leader_key.clone())
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "resign again",
        election.resign(ResignRequest {
            leader: Some(leader_key)
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "leader after resign",
        election.leader(LeaderRequest { name: "e".into() }),
        |r| clear(&mut r.header)
    );

    // Lock.
    step!(
        "lock with unknown lease",
        lock.lock(LockRequest {
            name: "l".into(),
            lease: 0x99
        }),
        |r| clear(&mut r.header)
    );
    let locked = lock
        .lock(LockRequest {
            name: "l".into(),
            lease: 0x2b,
        })
        .await;
    let key = locked
        .as_ref()
        .map(|r| r.get_ref().key.clone())
        .unwrap_or_default();
    out.push(format!(
        "lock: {}",
        outcome(locked, |r| clear(&mut r.header))
    ));
    step!(
        "lock again, same lease",
        lock.lock(LockRequest {
            name: "l".into(),
            lease: 0x2b
        }),
        |r| clear(&mut r.header)
    );
    step!(
        "unlock",
        lock.unlock(UnlockRequest { key: key.clone() }),
        |r| clear(&mut r.header)
    );
    step!("unlock again", lock.unlock(UnlockRequest { key }), |r| {
        clear(&mut r.header)
    });
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_election_and_lock_scenario_matches_etcd() {
    if !have("etcd") {
        return;
    }
    let etcd = Etcd::start().await;
    let cairn = Cairn::start().await;
    let expected = scenario(&etcd.endpoint).await;
    let got = scenario(&cairn.endpoint).await;
    if std::env::var("CAIRN_DUMP").is_ok() {
        for line in &expected {
            eprintln!("{line}");
        }
    }
    // The reference really answered: its lease was granted.
    assert!(expected[0].contains("ttl: 60"), "{}", expected[0]);
    let mismatches: Vec<String> = expected
        .iter()
        .zip(&got)
        .filter(|(e, g)| e != g)
        .map(|(e, g)| format!("etcd:  {e}\ncairn: {g}"))
        .collect();
    assert_eq!(expected.len(), got.len());
    assert!(
        mismatches.is_empty(),
        "{} of {} steps differ from etcd:\n{}",
        mismatches.len(),
        expected.len(),
        mismatches.join("\n\n")
    );
}

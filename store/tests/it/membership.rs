//! Membership changes with etcd's Cluster API, on real processes, under write load.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::cluster_client::ClusterClient;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::{
    MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest, RangeRequest,
    StatusRequest,
};

use crate::harness::{channel, cluster, kv, leader_of, member_id_of, put, wait_ready, Member};

async fn cluster_client(endpoint: &str) -> ClusterClient<tonic::transport::Channel> {
    ClusterClient::new(channel(endpoint).await.expect("connect"))
}

async fn is_learner(endpoint: &str) -> Option<bool> {
    let ch = channel(endpoint).await?;
    MaintenanceClient::new(ch)
        .status(StatusRequest {})
        .await
        .ok()
        .map(|s| s.into_inner().is_learner)
}

/// Writes keys through `endpoints` until stopped; returns the keys acknowledged.
fn write_load(
    endpoints: Vec<String>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<String>> {
    tokio::spawn(async move {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let mut clients = Vec::new();
        for ep in &endpoints {
            clients.push(
                channel(ep)
                    .await
                    .map(cairn_proto::etcdserverpb::kv_client::KvClient::new),
            );
        }
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            if let Some(Some(c)) = clients.get_mut((i as usize) % endpoints.len()) {
                let key = format!("load/{i:06}");
                let put = tokio::time::timeout(Duration::from_secs(2), c.put(put(&key, "v")));
                if let Ok(Ok(_)) = put.await {
                    acked.lock().expect("lock").push(key);
                }
            }
            i += 1;
        }
        let keys = acked.lock().expect("lock").clone();
        keys
    })
}

async fn assert_all_present(endpoint: &str, keys: &[String]) {
    let r = kv(endpoint)
        .await
        .range(RangeRequest {
            key: "load/".into(),
            range_end: "load0".into(),
            keys_only: true,
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    let present: std::collections::HashSet<Vec<u8>> = r.kvs.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = keys
        .iter()
        .filter(|k| !present.contains(k.as_bytes()))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged writes lost: {lost:?}",
        lost.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_promote_and_remove_members_under_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["c1", "c2", "c3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let load = write_load(
        members.iter().map(|m| m.client_url.clone()).collect(),
        stop.clone(),
    );

    eprintln!("--- member add c4 (a voter) through a member, then start it with state existing");
    let mut c4 = Member::new("c4", dir.path());
    let added = cluster_client(&members[1].client_url)
        .await
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![c4.peer_url.clone()],
            is_learner: false,
        })
        .await
        .expect("member add")
        .into_inner();
    let c4_id = added.member.expect("added member").id;
    assert_eq!(added.members.len(), 4);
    c4.cluster = format!("{},c4={}", members[0].cluster, c4.peer_url);
    c4.extra = vec!["--initial-cluster-state".into(), "existing".into()];
    c4.start();
    wait_ready(&c4.client_url, Duration::from_secs(30)).await;
    assert_eq!(member_id_of(&c4.client_url).await, c4_id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_learner(&c4.client_url).await != Some(false) {
        assert!(Instant::now() < deadline, "c4 was not promoted to voter");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    eprintln!("--- member add c5 as a learner; promote is refused until it is in sync");
    let mut c5 = Member::new("c5", dir.path());
    let added = cluster_client(&members[0].client_url)
        .await
        .member_add(MemberAddRequest {
            peer_ur_ls: vec![c5.peer_url.clone()],
            is_learner: true,
        })
        .await
        .expect("add learner")
        .into_inner();
    let c5_id = added.member.expect("member").id;
    let err = cluster_client(&members[0].client_url)
        .await
        .member_promote(MemberPromoteRequest { id: c5_id })
        .await
        .expect_err("not started yet");
    assert_eq!(
        err.message(),
        "etcdserver: can only promote a learner member which is in sync with leader"
    );
    c5.cluster = format!("{},c5={}", c4.cluster, c5.peer_url);
    c5.extra = vec!["--initial-cluster-state".into(), "existing".into()];
    c5.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster_client(&members[0].client_url)
            .await
            .member_promote(MemberPromoteRequest { id: c5_id })
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(Instant::now() < deadline, "promote never succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let list = cluster_client(&members[0].client_url)
        .await
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.members.len(), 5);
    assert!(list.members.iter().all(|m| !m.is_learner));

    eprintln!("--- remove the leader");
    let leader = leader_of(&members[0].client_url).await;
    let mut removed_endpoint = None;
    for m in members.iter().chain([&c4, &c5]) {
        if member_id_of(&m.client_url).await == leader {
            removed_endpoint = Some(m.client_url.clone());
        }
    }
    let removed_endpoint = removed_endpoint.expect("leader is a member");
    let via = members
        .iter()
        .chain([&c4, &c5])
        .find(|m| m.client_url != removed_endpoint)
        .expect("another member")
        .client_url
        .clone();
    cluster_client(&via)
        .await
        .member_remove(MemberRemoveRequest { id: leader })
        .await
        .expect("remove the leader");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let l = leader_of(&via).await;
        if l != 0 && l != leader {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader after removing the old one"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = cluster_client(&via)
        .await
        .member_list(MemberListRequest { linearizable: true })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(list.members.len(), 4);
    assert!(list.members.iter().all(|m| m.id != leader));

    eprintln!("--- stop the load: nothing acknowledged was lost");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = load.await.expect("load task");
    assert!(
        acked.len() > 20,
        "the load made progress ({} writes)",
        acked.len()
    );
    assert_all_present(&via, &acked).await;
    assert_all_present(&c4.client_url, &acked).await;
}

//! Real `cairn-store` processes, started with etcd's flags the way users start them.

use std::time::{Duration, Instant};

use cairn_proto::etcdserverpb::RangeRequest;

use crate::harness::{cluster, get, kv, leader_of, member_id_of, put, wait_ready};

/// Every acknowledged write survives kill -9, and revisions continue where they stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["solo"], dir.path());
    let m = &mut members[0];
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;

    tracing_phase("writing 300 keys, each acknowledged");
    let mut client = kv(&m.client_url).await;
    let mut last_rev = 0;
    for i in 0..300 {
        let r = client
            .put(put(&format!("key/{i:04}"), &format!("value-{i}")))
            .await
            .expect("put")
            .into_inner();
        last_rev = r.header.expect("header").revision;
    }
    assert_eq!(last_rev, 301);

    tracing_phase("kill -9, then restart on the same data dir");
    m.kill9();
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    let mut client = kv(&m.client_url).await;
    let all = client
        .range(RangeRequest {
            key: "key/".into(),
            range_end: "key0".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(all.count, 300, "every acknowledged write is there");
    assert_eq!(all.kvs[299].value, b"value-299");
    assert_eq!(all.header.expect("header").revision, 301);
    let r = client
        .put(put("after", "restart"))
        .await
        .expect("put")
        .into_inner();
    assert_eq!(
        r.header.expect("header").revision,
        302,
        "revisions continue"
    );

    tracing_phase("SIGTERM is a clean exit");
    m.terminate();
    m.start();
    wait_ready(&m.client_url, Duration::from_secs(20)).await;
    let after = kv(&m.client_url)
        .await
        .range(get("after"))
        .await
        .expect("range")
        .into_inner();
    assert_eq!(after.kvs[0].mod_revision, 302);
}

fn tracing_phase(what: &str) {
    eprintln!("--- {what}");
}

/// A statically configured 3-member cluster: writes through any member, the leader killed,
/// a new leader elected, writes continue, the old leader restarts and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_survive_losing_the_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["m1", "m2", "m3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }

    tracing_phase("writes through every member, reads from every member");
    for (i, m) in members.iter().enumerate() {
        let mut c = kv(&m.client_url).await;
        for j in 0..20 {
            c.put(put(&format!("k/{i}/{j}"), "v")).await.expect("put");
        }
    }
    for m in &members {
        let r = kv(&m.client_url)
            .await
            .range(RangeRequest {
                key: "k/".into(),
                range_end: "k0".into(),
                count_only: true,
                ..Default::default()
            })
            .await
            .expect("linearizable read")
            .into_inner();
        assert_eq!(r.count, 60, "{} sees every acknowledged write", m.name);
    }

    tracing_phase("kill -9 the leader");
    let leader = leader_of(&members[0].client_url).await;
    assert_ne!(leader, 0);
    let mut leader_idx = None;
    for (i, m) in members.iter().enumerate() {
        if member_id_of(&m.client_url).await == leader {
            leader_idx = Some(i);
        }
    }
    let leader_idx = leader_idx.expect("the leader is one of the members");
    members[leader_idx].kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader_idx).collect();

    tracing_phase("a new leader is elected and writes continue");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = leader_of(&members[survivors[0]].client_url).await;
        if l != 0 && l != leader {
            break;
        }
        assert!(Instant::now() < deadline, "no new leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for &i in &survivors {
        let mut c = kv(&members[i].client_url).await;
        for j in 0..20 {
            c.put(put(&format!("after/{i}/{j}"), "v"))
                .await
                .expect("put after failover");
        }
    }

    tracing_phase("the old leader restarts and catches up");
    members[leader_idx].start();
    wait_ready(&members[leader_idx].client_url, Duration::from_secs(30)).await;
    let r = kv(&members[leader_idx].client_url)
        .await
        .range(RangeRequest {
            key: "after/".into(),
            range_end: "after0".into(),
            count_only: true,
            serializable: false,
            ..Default::default()
        })
        .await
        .expect("read on the restarted member")
        .into_inner();
    assert_eq!(r.count, 40);
    let old = kv(&members[leader_idx].client_url)
        .await
        .range(RangeRequest {
            key: "k/".into(),
            range_end: "k0".into(),
            count_only: true,
            ..Default::default()
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(
        old.count, 60,
        "nothing acknowledged before the failover was lost"
    );
}

/// A member that was down while the others wrote (and purged their logs behind snapshots)
/// comes back and catches up by receiving a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_far_behind_catches_up_by_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["s1", "s2", "s3"], dir.path());
    for m in &mut members {
        m.extra = [
            "--snapshot-count",
            "50",
            "--experimental-snapshot-catchup-entries",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }

    tracing_phase("s3 goes down; 400 writes go through the others, far past its log");
    members[2].kill9();
    let mut writer = None;
    for m in &members[..2] {
        if let Some(ch) = crate::harness::channel(&m.client_url).await {
            writer = Some(cairn_proto::etcdserverpb::kv_client::KvClient::new(ch));
            break;
        }
    }
    let mut c = writer.expect("a live member");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut written = 0;
    while written < 400 {
        match c.put(put(&format!("snap/{written:04}"), "v")).await {
            Ok(_) => written += 1,
            // While s3's departure is noticed the leader may still be settling.
            Err(e) => {
                assert!(Instant::now() < deadline, "writes did not resume: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    tracing_phase("s3 restarts and must end up with every key");
    members[2].start();
    wait_ready(&members[2].client_url, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = kv(&members[2].client_url)
            .await
            .range(RangeRequest {
                key: "snap/".into(),
                range_end: "snap0".into(),
                count_only: true,
                serializable: true,
                ..Default::default()
            })
            .await
            .expect("serializable read on s3")
            .into_inner();
        if r.count == 400 {
            break;
        }
        assert!(Instant::now() < deadline, "s3 has {} of 400 keys", r.count);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = kv(&members[2].client_url)
        .await
        .range(get("snap/0399"))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(last.kvs.len(), 1);
}

/// Members that applied the same log agree on HashKV, and MoveLeader hands leadership over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_kv_agrees_and_leadership_moves() {
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::{HashKvRequest, MoveLeaderRequest};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["h1", "h2", "h3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let mut c = kv(&members[0].client_url).await;
    for i in 0..50 {
        c.put(put(&format!("h/{i}"), &i.to_string()))
            .await
            .expect("put");
    }
    let rev = c
        .range(get("h/0"))
        .await
        .expect("read")
        .into_inner()
        .header
        .expect("h")
        .revision;

    tracing_phase("HashKV at the same revision is equal everywhere");
    let mut hashes = Vec::new();
    for m in &members {
        // Wait until the member has applied `rev` (a linearizable read guarantees it).
        kv(&m.client_url)
            .await
            .range(get("h/0"))
            .await
            .expect("barrier");
        let ch = crate::harness::channel(&m.client_url)
            .await
            .expect("connect");
        let h = MaintenanceClient::new(ch)
            .hash_kv(HashKvRequest { revision: rev })
            .await
            .expect("hash kv")
            .into_inner();
        hashes.push((h.hash, h.compact_revision, h.hash_revision));
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert_eq!(hashes[0].2, rev);

    tracing_phase("MoveLeader: refused by a follower, done by the leader");
    let leader = leader_of(&members[0].client_url).await;
    let mut ids = Vec::new();
    for m in &members {
        ids.push(member_id_of(&m.client_url).await);
    }
    let leader_idx = ids
        .iter()
        .position(|id| *id == leader)
        .expect("leader is a member");
    let follower_idx = (leader_idx + 1) % 3;
    let target = ids[follower_idx];
    let ch = crate::harness::channel(&members[follower_idx].client_url)
        .await
        .expect("connect");
    let err = MaintenanceClient::new(ch)
        .move_leader(MoveLeaderRequest { target_id: target })
        .await
        .expect_err("a follower cannot move leadership");
    assert_eq!(err.message(), "etcdserver: not leader");
    let ch = crate::harness::channel(&members[leader_idx].client_url)
        .await
        .expect("connect");
    MaintenanceClient::new(ch)
        .move_leader(MoveLeaderRequest { target_id: target })
        .await
        .expect("move leader");
    assert_eq!(leader_of(&members[leader_idx].client_url).await, target);
    c.put(put("after-move", "ok"))
        .await
        .expect("writes continue");
}

/// Back up through the Snapshot RPC, restore into a new data dir with
/// `cairn-store snapshot restore`, start a new cluster from it: every key and revision is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_save_and_restore_into_a_new_cluster() {
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::SnapshotRequest;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut old = cluster(&["orig"], dir.path());
    old[0].start();
    wait_ready(&old[0].client_url, Duration::from_secs(20)).await;
    let mut c = kv(&old[0].client_url).await;
    for i in 0..100 {
        c.put(put(&format!("b/{i:03}"), &i.to_string()))
            .await
            .expect("put");
    }
    let rev = c
        .range(get("b/000"))
        .await
        .expect("read")
        .into_inner()
        .header
        .expect("h")
        .revision;

    tracing_phase("stream a backup");
    let ch = crate::harness::channel(&old[0].client_url)
        .await
        .expect("connect");
    let mut stream = MaintenanceClient::new(ch)
        .snapshot(SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let mut backup = Vec::new();
    let mut last_remaining = u64::MAX;
    while let Some(chunk) = stream.message().await.expect("chunk") {
        backup.extend_from_slice(&chunk.blob);
        last_remaining = chunk.remaining_bytes;
    }
    assert_eq!(last_remaining, 0);
    let file = dir.path().join("backup.db");
    std::fs::write(&file, &backup).expect("write backup");
    old[0].kill9();

    tracing_phase("a damaged backup is refused");
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &backup[..backup.len() - 1]).expect("write");
    let mut fresh = cluster(&["restored"], dir.path());
    let restore = |file: &std::path::Path, m: &crate::harness::Member| {
        std::process::Command::new(env!("CARGO_BIN_EXE_cairn-store"))
            .args(["snapshot", "restore"])
            .arg(file)
            .args(["--name", &m.name, "--data-dir"])
            .arg(&m.data_dir)
            .args([
                "--initial-cluster",
                &m.cluster,
                "--initial-advertise-peer-urls",
                &m.peer_url,
                "--initial-cluster-token",
                "test-cluster",
            ])
            .output()
            .expect("run restore")
    };
    let out = restore(&damaged, &fresh[0]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));

    tracing_phase("restore and start a new cluster");
    let out = restore(&file, &fresh[0]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    fresh[0].start();
    wait_ready(&fresh[0].client_url, Duration::from_secs(20)).await;
    let mut c = kv(&fresh[0].client_url).await;
    let all = c
        .range(RangeRequest {
            key: "b/".into(),
            range_end: "b0".into(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(all.count, 100);
    assert_eq!(
        all.header.expect("h").revision,
        rev,
        "revisions survive the restore"
    );
    let r = c.put(put("new", "write")).await.expect("put").into_inner();
    assert_eq!(r.header.expect("h").revision, rev + 1);
}

/// A watch stream opened with etcd's `hasleader` metadata ends with "no leader" when its
/// member loses the cluster; a client resuming on another member from the last revision it
/// saw misses nothing and sees nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_resume_on_another_member_and_require_leader() {
    use cairn_proto::etcdserverpb::watch_client::WatchClient;
    use cairn_proto::etcdserverpb::watch_request::RequestUnion;
    use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};

    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["w1", "w2", "w3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let create = |start: i64| WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: "r/".into(),
            range_end: "r0".into(),
            start_revision: start,
            ..Default::default()
        })),
    };

    tracing_phase("watch on w1 with hasleader, read 50 writes");
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(create(0)).await.expect("queue create");
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("hasleader", "true".parse().expect("ascii"));
    let ch = crate::harness::channel(&members[0].client_url)
        .await
        .expect("connect");
    let mut stream = WatchClient::new(ch)
        .watch(req)
        .await
        .expect("watch")
        .into_inner();
    let mut c = kv(&members[1].client_url).await;
    for i in 0..50 {
        c.put(put(&format!("r/{i:03}"), "v")).await.expect("put");
    }
    let mut seen = Vec::new();
    while seen.len() < 50 {
        let resp = stream
            .message()
            .await
            .expect("watch response")
            .expect("open");
        seen.extend(
            resp.events
                .iter()
                .map(|e| e.kv.as_ref().expect("kv").mod_revision),
        );
    }
    let last = *seen.last().expect("events");

    tracing_phase("w2 and w3 die: w1's hasleader stream ends with \"no leader\"");
    members[1].kill9();
    members[2].kill9();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status),
            }
        }
    })
    .await
    .expect("the stream ended within 20 s");
    let status = ended.expect("an error status, not a clean end");
    assert_eq!(status.message(), "etcdserver: no leader");
    drop(tx);

    tracing_phase("bring w2 back, write more, resume on w2 from the last revision seen");
    members[1].start();
    wait_ready(&members[1].client_url, Duration::from_secs(30)).await;
    let mut c = kv(&members[1].client_url).await;
    for i in 50..80 {
        c.put(put(&format!("r/{i:03}"), "v")).await.expect("put");
    }
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(create(last + 1)).await.expect("queue create");
    let ch = crate::harness::channel(&members[1].client_url)
        .await
        .expect("connect");
    let mut stream = WatchClient::new(ch)
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("watch")
        .into_inner();
    let mut resumed = Vec::new();
    while resumed.len() < 30 {
        let resp = stream
            .message()
            .await
            .expect("watch response")
            .expect("open");
        resumed.extend(
            resp.events
                .iter()
                .map(|e| e.kv.as_ref().expect("kv").mod_revision),
        );
    }
    seen.extend(resumed);
    assert!(
        seen.windows(2).all(|w| w[1] == w[0] + 1),
        "gaps or duplicates across the resume: {seen:?}"
    );
    drop(tx);
}

/// How a follower's newest log segment is damaged while it is down.
#[derive(Clone, Copy, Debug)]
enum TailDamage {
    /// The file ends in the middle of its last record (a torn append on a file system that
    /// grew the file as it wrote).
    CutShort,
    /// The second half of the last record reads as zeros, the file keeps its length (a torn
    /// append into the segment's preallocated space).
    Zeroed,
}

/// The newest segment of a member's Raft log, and the offset and length of its last record,
/// read from the framing of docs/log-format.md: records from byte 24 on, each
/// `len: u32, crc: u32` then `len` bytes, until a zero `len`.
fn last_record(data_dir: &std::path::Path) -> (std::path::PathBuf, u64, u64) {
    let log_dir = data_dir.join("member").join("log");
    let newest = std::fs::read_dir(&log_dir)
        .expect("log dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max()
        .expect("a segment");
    let bytes = std::fs::read(&newest).expect("read segment");
    let mut offset = cairn_log::format::SEGMENT_HEADER_LEN as usize;
    let mut last = None;
    while offset + 4 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes"));
        if len == 0 {
            break;
        }
        let size = 8 + len as usize;
        assert!(offset + size <= bytes.len(), "{newest:?} already torn");
        last = Some((offset as u64, size as u64));
        offset += size;
    }
    let (offset, size) = last.expect("the newest segment holds a record");
    (newest, offset, size)
}

/// Tears the last record of `data_dir`'s newest segment in its middle, as `damage` says.
fn tear_log_tail(data_dir: &std::path::Path, damage: TailDamage) {
    let (segment, offset, size) = last_record(data_dir);
    let middle = offset + size / 2;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .expect("open segment");
    match damage {
        TailDamage::CutShort => file.set_len(middle).expect("cut"),
        TailDamage::Zeroed => {
            use std::os::unix::fs::FileExt;
            file.write_all_at(&vec![0; (offset + size - middle) as usize], middle)
                .expect("zero")
        }
    }
    file.sync_all().expect("sync");
    eprintln!("{damage:?}: {segment:?}, record at {offset} ({size} bytes) torn at {middle}");
}

/// HashKV of every member at `rev`, after a linearizable read on each (so each applied it).
async fn hash_kv_of_all(members: &[crate::harness::Member], rev: i64) -> Vec<(u32, i64, i64)> {
    use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
    use cairn_proto::etcdserverpb::HashKvRequest;
    let mut hashes = Vec::new();
    for m in members {
        kv(&m.client_url)
            .await
            .range(get("probe"))
            .await
            .expect("barrier");
        let ch = crate::harness::channel(&m.client_url)
            .await
            .expect("connect");
        let h = MaintenanceClient::new(ch)
            .hash_kv(HashKvRequest { revision: rev })
            .await
            .expect("hash kv")
            .into_inner();
        hashes.push((h.hash, h.compact_revision, h.hash_revision));
    }
    hashes
}

/// A follower killed with a torn record at the end of its Raft log restarts: recovery cuts the
/// torn record (docs/log-format.md, "Recovery"), the leader sends the entries again, and the
/// member converges — HashKV equal everywhere, every acknowledged write readable on it. Both
/// shapes of a torn tail: a file cut short, and zeros in preallocated space. (Here the torn
/// record held an acknowledged entry — the damage is done after the fact — which is the harder
/// case: the follower must not keep it, nor stop on it, and the quorum still has it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarts_from_a_torn_log_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["t1", "t2", "t3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let leader = leader_of(&members[0].client_url).await;
    let mut followers = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if member_id_of(&m.client_url).await != leader {
            followers.push(i);
        }
    }
    assert_eq!(followers.len(), 2, "one leader, two followers");
    let leader_idx = (0..3).find(|i| !followers.contains(i)).expect("leader");
    let mut writer = kv(&members[leader_idx].client_url).await;

    let mut written = 0;
    for (round, (&f, damage)) in followers
        .iter()
        .zip([TailDamage::CutShort, TailDamage::Zeroed])
        .enumerate()
    {
        tracing_phase(&format!(
            "round {round}: 40 acknowledged writes, all on {}",
            members[f].name
        ));
        for _ in 0..40 {
            writer
                .put(put(&format!("torn/{written:03}"), &format!("v{written}")))
                .await
                .expect("put");
            written += 1;
        }
        // A linearizable read on the follower: it has applied, so logged, every write.
        kv(&members[f].client_url)
            .await
            .range(get("torn/000"))
            .await
            .expect("read on the follower");

        tracing_phase(&format!(
            "kill -9 {}, tear its last log record ({damage:?})",
            members[f].name
        ));
        members[f].kill9();
        tear_log_tail(&members[f].data_dir, damage);

        tracing_phase("20 more writes while it is down");
        for _ in 0..20 {
            writer
                .put(put(&format!("torn/{written:03}"), &format!("v{written}")))
                .await
                .expect("put");
            written += 1;
        }

        tracing_phase("restart: it recovers, catches up and agrees on HashKV");
        members[f].start();
        wait_ready(&members[f].client_url, Duration::from_secs(30)).await;
        let rev = writer
            .range(get("torn/000"))
            .await
            .expect("read")
            .into_inner()
            .header
            .expect("header")
            .revision;
        let hashes = hash_kv_of_all(&members, rev).await;
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
        assert_eq!(hashes[0].2, rev);

        let all = kv(&members[f].client_url)
            .await
            .range(RangeRequest {
                key: "torn/".into(),
                range_end: "torn0".into(),
                serializable: true,
                ..Default::default()
            })
            .await
            .expect("read on the restarted member")
            .into_inner();
        assert_eq!(
            all.count, written as i64,
            "every acknowledged write is on it"
        );
        for (i, kv) in all.kvs.iter().enumerate() {
            assert_eq!(kv.value, format!("v{i}").into_bytes(), "torn/{i:03}");
        }
    }
}

/// The index in `members` of the member every running member names as leader, once they agree.
async fn leader_index(members: &[crate::harness::Member], within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let leader = leader_of(&members[0].client_url).await;
        if leader != 0 {
            for (i, m) in members.iter().enumerate() {
                if member_id_of(&m.client_url).await == leader {
                    return i;
                }
            }
        }
        assert!(Instant::now() < deadline, "no leader within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every `torn/` key on `endpoint`, read locally, checked against the `written` acknowledged
/// values `v0..`.
async fn assert_every_acknowledged_write_on(endpoint: &str, written: usize) {
    let all = kv(endpoint)
        .await
        .range(RangeRequest {
            key: "torn/".into(),
            range_end: "torn0".into(),
            serializable: true,
            ..Default::default()
        })
        .await
        .expect("read on the restarted member")
        .into_inner();
    assert_eq!(
        all.count, written as i64,
        "every acknowledged write is on {endpoint}"
    );
    for (i, kv) in all.kvs.iter().enumerate() {
        assert_eq!(kv.value, format!("v{i}").into_bytes(), "torn/{i:03}");
    }
}

/// The leader's own log torn, in the two shapes that matter (Raft §5.4, "Safety"):
///
/// 1. the torn record is an acknowledged entry — a quorum holds it, the leader loses it with
///    its leadership, and gets it back from the next leader;
/// 2. the torn record is one of entries only the leader holds: both followers are frozen
///    (SIGSTOP), writes sent to the leader are appended and fsynced there but never committed
///    nor acknowledged, then the leader is killed with `-9`, its tail torn, the followers
///    resumed. They elect a leader without those entries and go on; the old leader's
///    uncommitted suffix, torn or not, must give way to the new leader's log.
///
/// Each time: nothing acknowledged is lost, the members converge to equal HashKV (so the
/// unacknowledged writes are on all of them or on none), every acknowledged write readable on
/// the restarted member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_restarts_from_a_torn_log_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["l1", "l2", "l3"], dir.path());
    for m in &mut members {
        m.start();
    }
    for m in &members {
        wait_ready(&m.client_url, Duration::from_secs(30)).await;
    }
    let mut written = 0;

    // Round 1: an acknowledged entry torn on the leader.
    let old = leader_index(&members, Duration::from_secs(30)).await;
    tracing_phase(&format!(
        "40 acknowledged writes through the leader {}",
        members[old].name
    ));
    let mut writer = kv(&members[old].client_url).await;
    for _ in 0..40 {
        writer
            .put(put(&format!("torn/{written:03}"), &format!("v{written}")))
            .await
            .expect("put");
        written += 1;
    }
    tracing_phase("kill -9 the leader, tear its last record (cut short)");
    members[old].kill9();
    tear_log_tail(&members[old].data_dir, TailDamage::CutShort);
    let other = (old + 1) % 3;
    wait_ready(&members[other].client_url, Duration::from_secs(30)).await;
    tracing_phase("20 more writes through the new leader, then restart the old one");
    let mut writer = kv(&members[other].client_url).await;
    for _ in 0..20 {
        writer
            .put(put(&format!("torn/{written:03}"), &format!("v{written}")))
            .await
            .expect("put");
        written += 1;
    }
    members[old].start();
    wait_ready(&members[old].client_url, Duration::from_secs(30)).await;
    let rev = writer
        .range(get("torn/000"))
        .await
        .expect("read")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let hashes = hash_kv_of_all(&members, rev).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert_every_acknowledged_write_on(&members[old].client_url, written).await;

    // Round 2: entries only the leader holds, the last of them torn.
    let old = leader_index(&members, Duration::from_secs(30)).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != old).collect();
    let (_, before, _) = last_record(&members[old].data_dir);
    tracing_phase(&format!(
        "freeze both followers; 10 writes to the leader {} that it logs but cannot commit",
        members[old].name
    ));
    for &f in &followers {
        members[f].freeze(true);
    }
    // Each write waits for a quorum that never comes; none may be acknowledged.
    let lonely = kv(&members[old].client_url).await;
    let pending: Vec<_> = (0..10)
        .map(|i| {
            let mut client = lonely.clone();
            tokio::spawn(async move {
                client
                    .put(put(&format!("unacknowledged/{i}"), "never acknowledged"))
                    .await
            })
        })
        .collect();
    // The leader appends a proposal before replicating it; wait until its log shows them.
    let deadline = Instant::now() + Duration::from_secs(30);
    while last_record(&members[old].data_dir).1 == before {
        assert!(
            Instant::now() < deadline,
            "the leader never logged the writes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing_phase("kill -9 the leader, zero the end of its last record, resume the followers");
    members[old].kill9();
    for p in pending {
        let answer = p.await.expect("writer");
        assert!(
            answer.is_err(),
            "a write was acknowledged without a quorum: {answer:?}"
        );
    }
    tear_log_tail(&members[old].data_dir, TailDamage::Zeroed);
    for &f in &followers {
        members[f].freeze(false);
    }
    wait_ready(&members[followers[0]].client_url, Duration::from_secs(30)).await;
    tracing_phase("20 acknowledged writes through the followers' new leader");
    let mut writer = kv(&members[followers[0]].client_url).await;
    for _ in 0..20 {
        writer
            .put(put(&format!("torn/{written:03}"), &format!("v{written}")))
            .await
            .expect("put");
        written += 1;
    }
    tracing_phase("restart the old leader: its uncommitted suffix gives way");
    members[old].start();
    wait_ready(&members[old].client_url, Duration::from_secs(30)).await;
    let rev = writer
        .range(get("torn/000"))
        .await
        .expect("read")
        .into_inner()
        .header
        .expect("header")
        .revision;
    let hashes = hash_kv_of_all(&members, rev).await;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert_eq!(hashes[0].2, rev);
    for m in &members {
        assert_every_acknowledged_write_on(&m.client_url, written).await;
    }
}

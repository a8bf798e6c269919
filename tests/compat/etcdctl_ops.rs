//! Operator flows with the real `etcdctl`: backups, health and consistency checks, and the
//! NOSPACE recovery (defrag, alarms) side by side with etcd.

use crate::etcdctl::etcdctl;
use crate::harness::{have, Cairn, Etcd};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_snapshot_save_hashkv_and_health() {
    if !have("etcdctl") {
        return;
    }
    let cairn = Cairn::start().await;
    let ep = cairn.endpoint.trim_start_matches("http://").to_string();
    let url = cairn.endpoint.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.db");
    let file_arg = file.to_str().expect("utf-8").to_string();
    tokio::task::spawn_blocking(move || {
        for i in 0..20 {
            let (ok, text) = etcdctl(&ep, &["put", &format!("k{i}"), "v"]);
            assert!(ok, "{text}");
        }
        let (ok, text) = etcdctl(&ep, &["snapshot", "save", &file_arg]);
        assert!(ok, "{text}");
        assert!(text.contains("Snapshot saved at"), "{text}");
        assert!(std::fs::metadata(&file_arg).expect("backup file").len() > 32);

        let (ok, text) = etcdctl(&ep, &["endpoint", "hashkv", "-w", "json"]);
        assert!(ok && text.contains("\"hash\""), "{text}");
        let (ok, text) = etcdctl(&ep, &["endpoint", "health"]);
        assert!(ok && text.contains("is healthy"), "{text}");
        // Written with its scheme, the endpoint reaches the member as the HTTP/2 authority;
        // `--cluster` always dials the members' advertised URLs that way.
        for args in [
            &["endpoint", "status"][..],
            &["endpoint", "hashkv"],
            &["endpoint", "status", "--cluster"],
            &["endpoint", "hashkv", "--cluster"],
        ] {
            let (ok, text) = etcdctl(&url, args);
            assert!(ok && text.contains(&url), "{args:?}: {text}");
        }
    })
    .await
    .expect("etcdctl steps");

    // The saved file restores with cairn-store's own tool.
    let status = cairn_store::backup::status(&file).expect("backup status");
    assert_eq!(status.total_keys, 20);
    assert_eq!(status.revision, 21);
}

/// etcd's NOSPACE recovery with etcdctl, side by side (op-guide/maintenance.md, "Space
/// quota"): `defrag`, `endpoint status -w json` and `alarm list` on a healthy member, then
/// fill past `--quota-backend-bytes`, `alarm list`, refused writes, `del` + `compaction` +
/// `defrag`, `alarm disarm`, and writes again. Returns what each step showed, masked.
async fn nospace_flow(endpoint: &str, quota: i64) -> Vec<(&'static str, String)> {
    use crate::etcdctl_cluster::{ctl, mask, shown};
    let mut steps = Vec::new();
    let ep = endpoint;

    steps.push(("alarm list", shown(&ctl(ep, &["alarm", "list"]).await)));
    steps.push(("defrag", shown(&ctl(ep, &["defrag"]).await)));
    let (ok, json) = ctl(ep, &["endpoint", "status", "-w", "json"]).await;
    assert!(ok, "{json}");
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let status = &status[0]["Status"];
    let mut fields: Vec<&String> = status.as_object().expect("Status object").keys().collect();
    fields.sort();
    steps.push(("endpoint status -w json fields", format!("{fields:?}")));
    let (size, in_use) = (
        status["dbSize"].as_i64().expect("dbSize"),
        status["dbSizeInUse"].as_i64().expect("dbSizeInUse"),
    );
    assert!(0 < in_use && in_use <= size, "in use {in_use} of {size}");

    let value = "x".repeat(64 * 1024);
    let mut refused = None;
    for i in 0..200 {
        let out = ctl(ep, &["put", &format!("big/{i:03}"), &value]).await;
        if !out.0 {
            refused = Some(out);
            break;
        }
    }
    let refused = refused.expect("the quota was reached");
    steps.push(("put past the quota", shown(&refused)));
    steps.push(("alarm list", shown(&ctl(ep, &["alarm", "list"]).await)));
    let (_, status) = ctl(ep, &["endpoint", "status"]).await;
    let errors = status.trim_end().rsplit(", ").next().unwrap_or_default();
    steps.push(("endpoint status errors", mask(errors)));
    steps.push((
        "put under NOSPACE",
        shown(&ctl(ep, &["put", "small", "x"]).await),
    ));

    let (ok, _) = ctl(ep, &["del", "big/", "--prefix"]).await;
    assert!(ok);
    let (_, json) = ctl(ep, &["get", "none", "-w", "json"]).await;
    let rev = serde_json::from_str::<serde_json::Value>(&json).expect("get JSON")["header"]
        ["revision"]
        .as_i64()
        .expect("revision");
    let (ok, text) = ctl(ep, &["compaction", "--physical", &rev.to_string()]).await;
    assert_eq!((ok, text), (true, format!("compacted revision {rev}\n")));
    steps.push((
        "defrag after compaction",
        shown(&ctl(ep, &["defrag"]).await),
    ));
    let (_, json) = ctl(ep, &["endpoint", "status", "-w", "json"]).await;
    let status: serde_json::Value = serde_json::from_str(&json).expect("status JSON");
    let size = status[0]["Status"]["dbSize"].as_i64().expect("dbSize");
    assert!(
        size < quota / 2,
        "dbSize {size} after defrag, quota {quota}"
    );
    steps.push((
        "put before disarm",
        shown(&ctl(ep, &["put", "small", "x"]).await),
    ));
    steps.push(("alarm disarm", shown(&ctl(ep, &["alarm", "disarm"]).await)));
    steps.push((
        "alarm list after disarm",
        shown(&ctl(ep, &["alarm", "list"]).await),
    ));
    steps.push((
        "put after disarm",
        shown(&ctl(ep, &["put", "small", "x"]).await),
    ));
    steps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_defrag_alarms_and_nospace_side_by_side() {
    if !have("etcd") || !have("etcdctl") {
        return;
    }
    const QUOTA: i64 = 1024 * 1024;
    let flags = ["--quota-backend-bytes", "1048576"];
    let (etcd, cairn) = tokio::join!(Etcd::start_with(&flags), Cairn::start_with(&flags));
    let (etcd_ep, cairn_ep) = (
        etcd.endpoint.trim_start_matches("http://").to_string(),
        cairn.endpoint.trim_start_matches("http://").to_string(),
    );
    let (want, got) = tokio::join!(
        nospace_flow(&etcd_ep, QUOTA),
        nospace_flow(&cairn_ep, QUOTA)
    );
    assert_eq!(want.len(), got.len());
    for ((step, etcd_shows), (_, cairn_shows)) in want.iter().zip(&got) {
        eprintln!("--- etcdctl {step}\n{etcd_shows}");
        assert_eq!(
            cairn_shows, etcd_shows,
            "`etcdctl {step}`: cairn-store (left) vs etcd (right)"
        );
    }
    let find = |step: &str| &want.iter().find(|(s, _)| *s == step).expect("step").1;
    assert_eq!(
        find("put past the quota"),
        "FAILED Error: etcdserver: mvcc: database space exceeded"
    );
    assert_eq!(find("alarm disarm"), "memberID:<ID> alarm:NOSPACE ");
    assert_eq!(find("put after disarm"), "OK");
}

//! Operator flows with the real `etcdctl`: backups, health and consistency checks.

use crate::etcdctl::etcdctl;
use crate::harness::{have, Cairn};

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

//! The real `etcdctl` against cairn-store: what operators type.

use std::process::Command;

use crate::harness::{have, Cairn};

/// Runs etcdctl (API v3) against `endpoint`; (exit success, stdout + stderr).
pub(crate) fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_put_get_del_txn_compaction() {
    if !have("etcdctl") {
        return;
    }
    let cairn = Cairn::start().await;
    // host:port, as operators usually write it. etcdctl 3.4's per-endpoint commands
    // (endpoint status/health) send a malformed HTTP/2 :authority when the endpoint carries
    // a scheme; see docs/compatibility.md.
    let ep = cairn.endpoint.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| etcdctl(&ep, args);

        assert_eq!(run(&["put", "foo", "bar"]), (true, "OK\n".into()));
        assert_eq!(run(&["get", "foo"]), (true, "foo\nbar\n".into()));
        assert!(run(&["put", "foo2", "baz"]).0);
        assert_eq!(
            run(&["get", "foo", "--prefix", "--keys-only"]),
            (true, "foo\n\nfoo2\n\n".into())
        );
        let (ok, json) = run(&["get", "foo", "-w", "json"]);
        assert!(ok && json.contains("\"revision\":3"), "{json}");

        // etcdctl txn reads compares, then success ops, then failure ops from stdin.
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &ep, "txn"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("etcdctl txn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"value(\"foo\") = \"bar\"\n\nput foo swapped\n\nput foo failed\n\n")
            .expect("write txn");
        let out = child.wait_with_output().expect("txn output");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "SUCCESS\n\nOK\n");
        assert_eq!(
            run(&["get", "foo", "--print-value-only"]),
            (true, "swapped\n".into())
        );

        assert_eq!(run(&["del", "foo", "--prefix"]), (true, "2\n".into()));
        let (ok, text) = run(&["compaction", "4"]);
        assert!(ok, "{text}");
        assert_eq!(text, "compacted revision 4\n");
        let (ok, text) = run(&["get", "foo", "--rev", "2"]);
        assert!(!ok);
        assert!(
            text.contains("required revision has been compacted"),
            "{text}"
        );

        let (ok, text) = run(&["member", "list"]);
        assert!(ok && text.contains("c1"), "{text}");
        let (ok, text) = run(&["endpoint", "status"]);
        assert!(ok && text.contains("3.5.0"), "{text}");
    })
    .await
    .expect("etcdctl steps");
}

/// `etcdctl watch`: history from a revision, then live events, with `--prev-kv`, and the
/// message it prints when the start revision is compacted — etcd 3.4's output, line for line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_watch_replays_follows_and_reports_compaction() {
    if !have("etcdctl") {
        return;
    }
    let cairn = Cairn::start().await;
    let ep = cairn.endpoint.trim_start_matches("http://").to_string();
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        use std::time::Duration;
        let run = |args: &[&str]| etcdctl(&ep, args);
        assert_eq!(run(&["put", "w/1", "a"]), (true, "OK\n".into())); // rev 2
        assert_eq!(run(&["put", "w/1", "b"]), (true, "OK\n".into())); // rev 3

        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &ep, "watch", "w/", "--prefix", "--prev-kv"])
            .args(["--rev", "2"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcdctl watch");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                if tx.send(line.expect("utf-8 line")).is_err() {
                    return;
                }
            }
        });
        let expect = |want: &[&str]| {
            for w in want {
                let line = rx
                    .recv_timeout(Duration::from_secs(10))
                    .expect("etcdctl watch output");
                assert_eq!(line, *w);
            }
        };
        // Replayed: the creation has no previous value; the update shows it first.
        expect(&["PUT", "w/1", "a", "PUT", "w/1", "a", "w/1", "b"]);
        assert_eq!(run(&["del", "w/1"]), (true, "1\n".into())); // rev 4
        expect(&["DELETE", "w/1", "b", "w/1", ""]);
        assert_eq!(run(&["put", "w/2", "c"]), (true, "OK\n".into())); // rev 5
        expect(&["PUT", "w/2", "c"]);
        child.kill().expect("stop etcdctl watch");
        child.wait().expect("reap etcdctl watch");

        assert_eq!(
            run(&["compaction", "4"]),
            (true, "compacted revision 4\n".into())
        );
        let (ok, text) = run(&["watch", "w/1", "--rev", "2"]);
        assert!(!ok, "{text}");
        assert!(
            text.contains(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
            ),
            "{text}"
        );
    })
    .await
    .expect("etcdctl watch steps");
}

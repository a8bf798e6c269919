//! The real `etcdctl` against cairn-store for leases, elections and locks: `lease grant /
//! keep-alive / timetolive / list / revoke` print exactly what they print against etcd (run
//! side by side, lease ids aside), and `etcdctl elect` / `etcdctl lock` with two contenders
//! behave as against etcd — the second waits, and takes over when the first lets go.
//!
//! `etcdctl elect` and `lock` use the KV, Lease and Watch APIs (clientv3's concurrency
//! package), not the Election / Lock services.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use crate::harness::{have, Cairn, Etcd};

fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run etcdctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // etcdctl 3.4 logs client retries as JSON lines on stderr; the error itself follows.
    let stderr: String = stderr
        .lines()
        .filter(|l| !l.starts_with('{'))
        .map(|l| format!("{l}\n"))
        .collect();
    (
        out.status.success(),
        format!("{}{stderr}", String::from_utf8_lossy(&out.stdout)),
    )
}

/// The hex lease id in `lease <id> granted with TTL(..)`.
fn granted_id(text: &str) -> String {
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no lease id in {text:?}"))
        .to_string()
}

/// Makes two sessions comparable: etcd lists a lease's keys in Go map order (so they are
/// sorted here), and the remaining TTL depends on timing (checked to be within the last few
/// seconds of the TTL, then replaced by `<R>`).
fn normalize(text: &str) -> String {
    let mut out = text.to_string();
    if let (Some(start), Some(end)) = (out.find("attached keys(["), out.find("])")) {
        let inner = start + "attached keys([".len();
        let mut keys: Vec<&str> = out[inner..end].split(' ').collect();
        keys.sort_unstable();
        out = format!("{}{}{}", &out[..inner], keys.join(" "), &out[end..]);
    }
    if let Some(start) = out.find("remaining(") {
        let digits = start + "remaining(".len();
        if let Some(len) = out[digits..].find("s)") {
            let secs: i64 = out[digits..digits + len].parse().unwrap_or(-1);
            assert!(
                (50..=60).contains(&secs),
                "remaining TTL {secs} in {text:?}"
            );
            out.replace_range(digits..digits + len, "<R>");
        }
    }
    out
}

/// The `etcdctl lease` session, with the lease id replaced by `<ID>`.
fn lease_session(endpoint: &str) -> Vec<String> {
    let run = |args: &[&str]| etcdctl(endpoint, args);
    let mut out = Vec::new();
    let (ok, granted) = run(&["lease", "grant", "60"]);
    assert!(ok, "{granted}");
    let id = granted_id(&granted);
    let mut note = |(ok, text): (bool, String)| {
        out.push(format!("{ok} {}", normalize(&text.replace(&id, "<ID>"))))
    };
    note((ok, granted.clone()));
    note(run(&["put", "--lease", &id, "lk/1", "a"]));
    note(run(&["put", "--lease", &id, "lk/2", "b"]));
    note(run(&["lease", "timetolive", &id, "--keys"]));
    note(run(&["lease", "timetolive", &id]));
    note(run(&["lease", "keep-alive", "--once", &id]));
    let (ok, list) = run(&["lease", "list"]);
    note((ok && list.contains(&id), "listed".into()));
    note(run(&["lease", "revoke", &id]));
    note(run(&["get", "lk/", "--prefix"]));
    note(run(&["lease", "timetolive", &id]));
    note(run(&["lease", "revoke", &id]));
    note(run(&["lease", "keep-alive", "--once", &id]));
    note(run(&["lease", "grant", "9000000001"]));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_lease_commands_print_what_they_print_against_etcd() {
    if !have("etcdctl") || !have("etcd") {
        return;
    }
    let etcd = Etcd::start().await;
    let cairn = Cairn::start().await;
    let (e, c) = (etcd.endpoint.clone(), cairn.endpoint.clone());
    let (expected, got) =
        tokio::task::spawn_blocking(move || (lease_session(&e), lease_session(&c)))
            .await
            .expect("etcdctl sessions");
    assert!(
        expected[0].contains("granted with TTL(60s)"),
        "{expected:?}"
    );
    assert_eq!(got, expected);
}

/// A long-running etcdctl (elect, lock) whose output lines are read as they come.
struct Running {
    child: Child,
    lines: Receiver<String>,
}

impl Running {
    fn start(endpoint: &str, args: &[&str]) -> Self {
        let mut child = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg("--endpoints")
            .arg(endpoint)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn etcdctl");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(15))
            .expect("an output line within 15 s")
    }

    /// Nothing printed for `d` (the command is blocked).
    fn silent_for(&self, d: Duration) -> bool {
        matches!(self.lines.recv_timeout(d), Err(RecvTimeoutError::Timeout))
    }

    /// SIGINT, which etcdctl handles by resigning / unlocking before it exits.
    fn interrupt(&mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .expect("kill -INT");
        self.child.wait().expect("reap etcdctl");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_elect_and_lock_with_two_contenders() {
    if !have("etcdctl") {
        return;
    }
    let cairn = Cairn::start().await;
    let ep = cairn.endpoint.clone();
    tokio::task::spawn_blocking(move || {
        // Election: alice wins, bob waits, an observer sees both in turn.
        let mut alice = Running::start(&ep, &["elect", "job", "alice"]);
        let alice_key = alice.line();
        assert!(alice_key.starts_with("job/"), "{alice_key}");
        assert_eq!(alice.line(), "alice");
        let mut bob = Running::start(&ep, &["elect", "job", "bob"]);
        assert!(
            bob.silent_for(Duration::from_millis(700)),
            "bob elected while alice leads"
        );
        let mut observer = Running::start(&ep, &["elect", "-l", "job"]);
        assert_eq!(
            (observer.line(), observer.line()),
            (alice_key.clone(), "alice".into())
        );
        alice.interrupt();
        let bob_key = bob.line();
        assert!(
            bob_key.starts_with("job/") && bob_key != alice_key,
            "{bob_key}"
        );
        assert_eq!(bob.line(), "bob");
        assert_eq!((observer.line(), observer.line()), (bob_key, "bob".into()));
        bob.interrupt();
        observer.interrupt();

        // Lock: the second holder runs its command only once the first lets go.
        let mut first = Running::start(&ep, &["lock", "res"]);
        assert!(first.line().starts_with("res/"));
        let second = Running::start(&ep, &["lock", "res", "echo", "second holds it"]);
        assert!(
            second.silent_for(Duration::from_millis(700)),
            "two holders at once"
        );
        first.interrupt();
        assert_eq!(second.line(), "second holds it");
    })
    .await
    .expect("etcdctl elect / lock");
}

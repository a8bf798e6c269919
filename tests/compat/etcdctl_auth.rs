//! An operator's "enable auth" runbook with the real etcdctl 3.4, side by side against etcd
//! and cairn-store: `user add`, `role add`, `role grant-permission` (single key, `--prefix`,
//! a range, `--from-key`), `user grant-role`, `auth enable`, then `--user name:password`
//! reads and writes that are allowed or denied, wrong passwords, a `--no-password` user,
//! what a non-root user may see of users and roles, the root user and role that cannot be
//! taken apart, and `auth disable`. Every command must print the same and exit the same on
//! both servers.
//!
//! Left out on purpose, because cairn-store differs (docs/compatibility.md): the error text of
//! the admin-only maintenance calls (etcd 3.4 sends "auth: permission denied" with code
//! Unknown).

use std::process::Command;

use crate::harness::{have, Cairn, Etcd};

/// etcdctl (API v3) against `endpoint`: exit success and output, without the client's JSON
/// retry logs.
fn etcdctl(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .output()
        .expect("run etcdctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
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

/// The runbook, one etcdctl command line per entry.
const RUNBOOK: &[&[&str]] = &[
    &["auth", "enable"],
    &["user", "add", "root:rootpw"],
    &["user", "add", "root:again"],
    &["user", "grant-role", "root", "root"],
    &["role", "get", "root"],
    &["role", "add", "root"],
    &["role", "get", "root"],
    &["role", "add", ""],
    &["user", "add", "alice:apw"],
    &["user", "add", "nopw", "--no-password"],
    &["user", "get", "nopw"],
    &["role", "add", "r1"],
    &["role", "grant-permission", "r1", "read", "/a"],
    &[
        "role",
        "grant-permission",
        "r1",
        "readwrite",
        "/p/",
        "--prefix",
    ],
    &["role", "grant-permission", "r1", "write", "/w", "/x"],
    &[
        "role",
        "grant-permission",
        "r1",
        "readwrite",
        "/from",
        "--from-key",
    ],
    &["role", "grant-permission", "r1", "read", "/a"],
    &["role", "grant-permission", "nosuch", "read", "/a"],
    &["role", "get", "r1"],
    &["user", "grant-role", "alice", "r1"],
    &["user", "grant-role", "alice", "r1"],
    &["user", "grant-role", "alice", "nosuch"],
    &["user", "grant-role", "nosuch", "r1"],
    &["user", "get", "alice", "--detail"],
    &["user", "list"],
    &["role", "list"],
    &["auth", "enable"],
    &["auth", "enable"],
    &["get", "foo"],
    &["put", "foo", "bar"],
    &["--user", "alice:wrong", "get", "foo"],
    &["--user", "nosuch:x", "get", "foo"],
    &["--user", "nopw:x", "get", "foo"],
    &["--user", "root:rootpw", "put", "/a", "1"],
    &["--user", "alice:apw", "get", "/a"],
    &["--user", "alice:apw", "put", "/a", "2"],
    &["--user", "alice:apw", "put", "/p/1", "1"],
    &["--user", "alice:apw", "get", "/p/", "--prefix"],
    &["--user", "alice:apw", "get", "/p/", "/p1"],
    &["--user", "alice:apw", "get", "", "--prefix"],
    &["--user", "alice:apw", "put", "/w1", "x"],
    &["--user", "alice:apw", "get", "/w1"],
    &["--user", "alice:apw", "get", "/a0"],
    &["--user", "alice:apw", "get", "/from", "--from-key"],
    &["--user", "alice:apw", "get", "/fro", "--from-key"],
    &["--user", "alice:apw", "del", "/w1"],
    &["--user", "alice:apw", "del", "/p/", "--prefix"],
    &["--user", "alice:apw", "put", "/w1", "y", "--prev-kv"],
    &["--user", "alice:apw", "user", "list"],
    &["--user", "alice:apw", "user", "get", "alice"],
    &["--user", "alice:apw", "user", "get", "root"],
    &["--user", "alice:apw", "role", "get", "r1"],
    &["--user", "alice:apw", "role", "get", "root"],
    &["--user", "alice:apw", "role", "list"],
    // Open to every user, and to requests without one (etcd's maintenance auth leaves them).
    &["--user", "alice:apw", "alarm", "list"],
    &["alarm", "list"],
    &["--user", "alice:apw", "compaction", "2"],
    &["--user", "alice:apw", "user", "add", "bob:b"],
    &["--user", "alice:apw", "auth", "disable"],
    &[
        "--user",
        "alice:apw",
        "member",
        "add",
        "x",
        "--peer-urls",
        "http://127.0.0.1:1",
    ],
    &["--user", "root:rootpw", "user", "delete", "root"],
    &[
        "--user",
        "root:rootpw",
        "user",
        "revoke-role",
        "root",
        "root",
    ],
    &["--user", "root:rootpw", "role", "delete", "root"],
    &[
        "--user",
        "root:rootpw",
        "role",
        "revoke-permission",
        "r1",
        "/zzz",
    ],
    &[
        "--user",
        "root:rootpw",
        "role",
        "revoke-permission",
        "nosuch",
        "/zzz",
    ],
    &[
        "--user",
        "root:rootpw",
        "role",
        "revoke-permission",
        "r1",
        "/w",
        "/x",
    ],
    &[
        "--user",
        "root:rootpw",
        "user",
        "revoke-role",
        "alice",
        "nosuch",
    ],
    &[
        "--user",
        "root:rootpw",
        "user",
        "revoke-role",
        "nosuch",
        "r1",
    ],
    &["--user", "root:rootpw", "user", "add", "alice:x"],
    &["--user", "root:rootpw", "user", "delete", "nosuch"],
    &["--user", "root:rootpw", "role", "delete", "nosuch"],
    &["--user", "root:rootpw", "role", "add", "r1"],
    &["--user", "root:rootpw", "role", "get", "r1"],
    &["--user", "root:rootpw", "user", "get", "nosuch"],
    &["--user", "root:rootpw", "role", "delete", "r1"],
    &["--user", "root:rootpw", "user", "get", "alice"],
    &["--user", "alice:apw", "get", "/a"],
    &["--user", "root:rootpw", "user", "delete", "alice"],
    &["--user", "alice:apw", "get", "/a"],
    &["--user", "root:rootpw", "auth", "disable"],
    &["auth", "disable"],
    &["get", "/a"],
    &["user", "list"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcdctl_auth_runbook_prints_what_it_prints_against_etcd() {
    if !have("etcd") || !have("etcdctl") {
        return;
    }
    // Cheap hashing on both sides: etcdctl authenticates anew for every `--user` command.
    let etcd = Etcd::start_with(&["--bcrypt-cost", "4"]).await;
    let cairn = Cairn::start_with(&["--bcrypt-cost", "4"]).await;
    let (e, c) = (etcd.endpoint.clone(), cairn.endpoint.clone());
    tokio::task::spawn_blocking(move || {
        let mut printed = Vec::new();
        for args in RUNBOOK {
            let want = etcdctl(&e, args);
            let got = etcdctl(&c, args);
            assert_eq!(got, want, "etcdctl {}", args.join(" "));
            printed.push((args.join(" "), got));
        }
        // The runbook did what it says, on both: auth got enabled, alice was let in and
        // kept out where her role says.
        let said = |cmd: &str| {
            printed
                .iter()
                .find(|(c, _)| c == cmd)
                .map(|(_, out)| out.clone())
                .unwrap_or_else(|| panic!("{cmd} not in the runbook"))
        };
        assert_eq!(
            said("auth enable"),
            (
                false,
                "Error: etcdserver: root user does not exist\n".into()
            )
        );
        assert_eq!(
            said("--user alice:apw get /p/ --prefix"),
            (true, "/p/1\n1\n".into())
        );
        assert_eq!(
            said("--user alice:apw put /a 2"),
            (false, "Error: etcdserver: permission denied\n".into())
        );
        assert_eq!(
            said("get foo"),
            (false, "Error: etcdserver: user name is empty\n".into())
        );
    })
    .await
    .expect("runbook");
}

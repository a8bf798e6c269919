//! Auth: who may read and write what once `auth enable` has run, through tonic clients the
//! way etcd clients do it (Authenticate, then the `token` metadata on every call).
//!
//! The story follows an operator's runbook: a root user with the root role, a role with a
//! single key, a prefix and a write-only range, a user holding it, another holding nothing,
//! a `--no-password` user; then enable, and check every service against etcd 3.4's answers
//! (recorded side by side by the `cairn-tests` compat suite). Members run with
//! `--bcrypt-cost 4` so that hashing stays cheap.

use std::path::Path;
use std::time::{Duration, Instant};

use cairn_proto::authpb::permission::Type as PermType;
use cairn_proto::authpb::{Permission, UserAddOptions};
use cairn_proto::etcdserverpb::auth_client::AuthClient;
use cairn_proto::etcdserverpb::cluster_client::ClusterClient;
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::lease_client::LeaseClient;
use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::watch_client::WatchClient;
use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::{
    AlarmRequest, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest,
    AuthStatusRequest, AuthUserAddRequest, AuthUserChangePasswordRequest, AuthUserDeleteRequest,
    AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
    AuthenticateRequest, CompactionRequest, Compare, DeleteRangeRequest, HashKvRequest,
    LeaseGrantRequest, LeaseRevokeRequest, MemberAddRequest, PutRequest, RangeRequest, RequestOp,
    SnapshotRequest, StatusRequest, TxnRequest, WatchCreateRequest, WatchRequest,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::harness::{channel, cluster, get, leader_of, member_id_of, put, Member, Solo};
use crate::lease::phase;

const BCRYPT: [&str; 2] = ["--bcrypt-cost", "4"];

/// A gRPC message sent with `token` (none: an anonymous call).
fn with<T>(token: Option<&str>, message: T) -> Request<T> {
    let mut req = Request::new(message);
    if let Some(t) = token {
        req.metadata_mut()
            .insert("token", t.parse().expect("ascii token"));
    }
    req
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, message: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} {message:?}, got {v:?}"),
        Err(s) => assert_eq!((s.code(), s.message()), (code, message)),
    }
}

const DENIED: &str = "etcdserver: permission denied";
/// Passwords long enough that finding one in a data dir by chance is out of the question.
const ROOT_PW: &str = "root-Secret-1";
const ALICE_PW: &str = "alice-Secret-2";
const BOB_PW: &str = "bob-Secret-3";

async fn login(ch: &Channel, name: &str, password: &str) -> Result<String, Status> {
    let resp = AuthClient::new(ch.clone())
        .authenticate(AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        })
        .await?;
    Ok(resp.into_inner().token)
}

fn perm(t: PermType, key: &str, end: &str) -> Option<Permission> {
    Some(Permission {
        perm_type: t as i32,
        key: key.into(),
        range_end: end.into(),
    })
}

/// root (root role), alice (role `r`: read `/a`, readwrite prefix `/p/`, write `[/w, /x)`),
/// bob (no role) and the no-password `svc`; then auth enable. Returns root's token.
async fn runbook(ch: &Channel) -> String {
    let mut auth = AuthClient::new(ch.clone());
    refused(
        auth.auth_enable(AuthEnableRequest {}).await,
        Code::FailedPrecondition,
        "etcdserver: root user does not exist",
    );
    for (name, pw) in [("root", ROOT_PW), ("alice", ALICE_PW), ("bob", BOB_PW)] {
        auth.user_add(AuthUserAddRequest {
            name: name.into(),
            password: pw.into(),
            ..Default::default()
        })
        .await
        .expect("user add");
    }
    auth.user_add(AuthUserAddRequest {
        name: "svc".into(),
        options: Some(UserAddOptions { no_password: true }),
        ..Default::default()
    })
    .await
    .expect("no-password user");
    refused(
        auth.auth_enable(AuthEnableRequest {}).await,
        Code::FailedPrecondition,
        "etcdserver: root user does not have root role",
    );
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "root".into(),
        role: "root".into(),
    })
    .await
    .expect("root role needs no record");
    auth.role_add(AuthRoleAddRequest { name: "r".into() })
        .await
        .expect("role add");
    for p in [
        perm(PermType::Read, "/a", ""),
        perm(PermType::Readwrite, "/p/", "/p0"),
        perm(PermType::Write, "/w", "/x"),
    ] {
        auth.role_grant_permission(AuthRoleGrantPermissionRequest {
            name: "r".into(),
            perm: p,
        })
        .await
        .expect("grant permission");
    }
    auth.user_grant_role(AuthUserGrantRoleRequest {
        user: "alice".into(),
        role: "r".into(),
    })
    .await
    .expect("grant role");
    refused(
        login(ch, "root", ROOT_PW).await,
        Code::FailedPrecondition,
        "etcdserver: authentication is not enabled",
    );
    auth.auth_enable(AuthEnableRequest {})
        .await
        .expect("enable");
    login(ch, "root", ROOT_PW).await.expect("root logs in")
}

fn txn_put(compare_key: &str, put_key: &str) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            key: compare_key.into(),
            result: CompareResult::Equal as i32,
            target: CompareTarget::Version as i32,
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(Op::RequestPut(put(put_key, "v"))),
        }],
        failure: vec![],
    }
}

fn watch_create(key: &str, end: &str) -> WatchRequest {
    WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: key.into(),
            range_end: end.into(),
            ..Default::default()
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_matrix_follows_etcd() {
    let s = Solo::start(&BCRYPT).await;
    let ch = channel(&s.endpoint).await.expect("connect");
    let root = runbook(&ch).await;
    let root = Some(root.as_str());
    let mut kv = KvClient::new(ch.clone());
    let mut auth = AuthClient::new(ch.clone());

    phase("logging in: bad passwords, unknown users, no-password users, bad tokens");
    let failed = "etcdserver: authentication failed, invalid user ID or password";
    refused(
        login(&ch, "alice", "wrong").await,
        Code::InvalidArgument,
        failed,
    );
    refused(
        login(&ch, "nosuch", "x").await,
        Code::InvalidArgument,
        failed,
    );
    refused(
        login(&ch, "svc", "x").await,
        Code::Unknown,
        "auth: authentication failed, password was given for no password user",
    );
    let alice = login(&ch, "alice", ALICE_PW).await.expect("alice");
    let bob = login(&ch, "bob", BOB_PW).await.expect("bob");
    assert_ne!(alice, bob);
    let (alice, bob) = (Some(alice.as_str()), Some(bob.as_str()));
    refused(
        kv.range(with(None, get("/a"))).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    refused(
        kv.put(with(None, put("/p/1", "v"))).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    for bad in ["nonsense", "abcdefghijklmnop.1"] {
        refused(
            kv.range(with(Some(bad), get("/a"))).await,
            Code::Unauthenticated,
            "etcdserver: invalid auth token",
        );
    }

    phase("alice: single key read-only, prefix read-write, range write-only");
    kv.put(with(root, put("/a", "1"))).await.expect("root puts");
    assert_eq!(
        kv.range(with(alice, get("/a")))
            .await
            .expect("read /a")
            .into_inner()
            .count,
        1
    );
    refused(
        kv.put(with(alice, put("/a", "2"))).await,
        Code::PermissionDenied,
        DENIED,
    );
    kv.put(with(alice, put("/p/1", "1")))
        .await
        .expect("put /p/1");
    let prefix = RangeRequest {
        key: "/p/".into(),
        range_end: "/p0".into(),
        ..Default::default()
    };
    assert_eq!(
        kv.range(with(alice, prefix.clone()))
            .await
            .expect("prefix")
            .into_inner()
            .count,
        1
    );
    let everything = RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..Default::default()
    };
    refused(
        kv.range(with(alice, everything)).await,
        Code::PermissionDenied,
        DENIED,
    );
    kv.put(with(alice, put("/w1", "x")))
        .await
        .expect("write-only put");
    refused(
        kv.range(with(alice, get("/w1"))).await,
        Code::PermissionDenied,
        DENIED,
    );
    let del = |key: &str, prev_kv| DeleteRangeRequest {
        key: key.into(),
        prev_kv,
        ..Default::default()
    };
    kv.delete_range(with(alice, del("/w1", false)))
        .await
        .expect("write-only delete");
    refused(
        kv.delete_range(with(alice, del("/w1", true))).await,
        Code::PermissionDenied,
        DENIED,
    );
    refused(
        kv.range(with(bob, get("/a"))).await,
        Code::PermissionDenied,
        DENIED,
    );

    phase("txn: every compare and op is checked, nested ones too");
    kv.txn(with(alice, txn_put("/p/1", "/p/2")))
        .await
        .expect("allowed txn");
    refused(
        kv.txn(with(alice, txn_put("/secret", "/p/3"))).await,
        Code::PermissionDenied,
        DENIED,
    );
    let nested = TxnRequest {
        success: vec![RequestOp {
            request: Some(Op::RequestTxn(txn_put("/p/1", "/secret"))),
        }],
        ..Default::default()
    };
    refused(
        kv.txn(with(alice, nested)).await,
        Code::PermissionDenied,
        DENIED,
    );

    phase("leases: attaching to and revoking a lease that holds keys one may not write");
    let mut leases = LeaseClient::new(ch.clone());
    let grant = |id| LeaseGrantRequest { ttl: 60, id };
    leases
        .lease_grant(with(alice, grant(1001)))
        .await
        .expect("grant");
    kv.put(with(
        alice,
        PutRequest {
            lease: 1001,
            ..put("/p/l", "v")
        },
    ))
    .await
    .expect("put with own lease");
    leases
        .lease_grant(with(root, grant(1002)))
        .await
        .expect("grant");
    kv.put(with(
        root,
        PutRequest {
            lease: 1002,
            ..put("/secret", "v")
        },
    ))
    .await
    .expect("root attaches");
    refused(
        kv.put(with(
            alice,
            PutRequest {
                lease: 1002,
                ..put("/p/m", "v")
            },
        ))
        .await,
        Code::PermissionDenied,
        DENIED,
    );
    refused(
        leases
            .lease_revoke(with(alice, LeaseRevokeRequest { id: 1002 }))
            .await,
        Code::PermissionDenied,
        DENIED,
    );
    leases
        .lease_revoke(with(alice, LeaseRevokeRequest { id: 1001 }))
        .await
        .expect("revoke own lease");

    phase("watch: a create on a range one may not read is refused, the stream goes on");
    let (tx, rx) = mpsc::channel(4);
    let mut stream = WatchClient::new(ch.clone())
        .watch(with(alice, ReceiverStream::new(rx)))
        .await
        .expect("watch stream")
        .into_inner();
    tx.send(watch_create("/secret", "")).await.expect("send");
    let r = stream.message().await.expect("read").expect("response");
    assert!(r.created && r.canceled, "{r:?}");
    assert_eq!(r.watch_id, -1);
    assert_eq!(
        r.cancel_reason,
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
    );
    tx.send(watch_create("/p/", "/p0")).await.expect("send");
    let r = stream.message().await.expect("read").expect("response");
    assert!(r.created && !r.canceled, "{r:?}");
    kv.put(with(alice, put("/p/9", "w"))).await.expect("put");
    let r = stream.message().await.expect("read").expect("event");
    assert_eq!(r.events[0].kv.as_ref().expect("kv").key, b"/p/9");

    phase("admin only: auth management, lists, hash, members");
    refused(
        auth.user_list(with(alice, AuthUserListRequest {})).await,
        Code::PermissionDenied,
        DENIED,
    );
    let me = auth
        .user_get(with(
            alice,
            AuthUserGetRequest {
                name: "alice".into(),
            },
        ))
        .await
        .expect("a user reads itself");
    assert_eq!(me.into_inner().roles, vec!["r"]);
    refused(
        auth.user_get(with(
            alice,
            AuthUserGetRequest {
                name: "root".into(),
            },
        ))
        .await,
        Code::PermissionDenied,
        DENIED,
    );
    let r = auth
        .role_get(with(alice, AuthRoleGetRequest { role: "r".into() }))
        .await
        .expect("a user reads its roles")
        .into_inner();
    assert_eq!(r.perm.len(), 3);
    assert_eq!(r.perm[0].key, b"/a", "sorted by key");
    refused(
        auth.role_add(with(alice, AuthRoleAddRequest { name: "x".into() }))
            .await,
        Code::PermissionDenied,
        DENIED,
    );
    refused(
        auth.user_add(with(
            bob,
            AuthUserAddRequest {
                name: "eve".into(),
                password: "e".into(),
                ..Default::default()
            },
        ))
        .await,
        Code::PermissionDenied,
        DENIED,
    );
    refused(
        auth.auth_status(with(alice, AuthStatusRequest {})).await,
        Code::PermissionDenied,
        DENIED,
    );
    // Compaction and alarms are open to every user, as in etcd (kube-apiserver compacts with
    // whatever user it runs as).
    kv.compact(with(
        alice,
        CompactionRequest {
            revision: 2,
            physical: false,
        },
    ))
    .await
    .expect("any user compacts");
    let mut maintenance = MaintenanceClient::new(ch.clone());
    refused(
        maintenance
            .hash_kv(with(alice, HashKvRequest { revision: 0 }))
            .await,
        Code::PermissionDenied,
        DENIED,
    );
    maintenance
        .alarm(with(None, AlarmRequest::default()))
        .await
        .expect("alarm list without a user");
    maintenance
        .status(with(bob, StatusRequest {}))
        .await
        .expect("status stays open");
    maintenance
        .hash_kv(with(root, HashKvRequest { revision: 0 }))
        .await
        .expect("root");
    refused(
        ClusterClient::new(ch.clone())
            .member_add(with(
                alice,
                MemberAddRequest {
                    peer_ur_ls: vec!["http://127.0.0.1:1".into()],
                    is_learner: true,
                },
            ))
            .await,
        Code::PermissionDenied,
        DENIED,
    );
    let status = auth
        .auth_status(with(root, AuthStatusRequest {}))
        .await
        .expect("root reads status")
        .into_inner();
    assert!(status.enabled);
    assert!(status.auth_revision > 1);

    phase("root itself cannot be taken apart while auth is enabled");
    let invalid = "etcdserver: invalid auth management";
    refused(
        auth.user_delete(with(
            root,
            AuthUserDeleteRequest {
                name: "root".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        invalid,
    );
    refused(
        auth.user_revoke_role(with(
            root,
            AuthUserRevokeRoleRequest {
                name: "root".into(),
                role: "root".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        invalid,
    );
    refused(
        auth.role_delete(with(
            root,
            AuthRoleDeleteRequest {
                role: "root".into(),
            },
        ))
        .await,
        Code::InvalidArgument,
        invalid,
    );

    phase("changes take effect at once: revoke a permission, change a password");
    auth.role_revoke_permission(with(
        root,
        AuthRoleRevokePermissionRequest {
            role: "r".into(),
            key: "/p/".into(),
            range_end: "/p0".into(),
        },
    ))
    .await
    .expect("revoke permission");
    refused(
        kv.range(with(alice, prefix)).await,
        Code::PermissionDenied,
        DENIED,
    );
    auth.user_change_password(with(
        root,
        AuthUserChangePasswordRequest {
            name: "alice".into(),
            password: "new".into(),
            ..Default::default()
        },
    ))
    .await
    .expect("change password");
    refused(
        kv.range(with(alice, get("/a"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    refused(
        login(&ch, "alice", ALICE_PW).await,
        Code::InvalidArgument,
        failed,
    );
    login(&ch, "alice", "new").await.expect("new password");

    phase("auth disable: anonymous calls work again, tokens are gone");
    refused(
        auth.auth_disable(with(alice, AuthDisableRequest {})).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
    auth.auth_disable(with(root, AuthDisableRequest {}))
        .await
        .expect("disable");
    kv.range(with(None, get("/a")))
        .await
        .expect("anonymous read");
    assert_eq!(s.node().auth.token_count(), 0);
    s.stop().await;
}

/// A token issued by one member is valid on the others as soon as they have applied the
/// Authenticate entry; writes sent to a follower are forwarded with the caller's identity, so
/// the leader applies the permission check for the right user. Tokens expire per member after
/// `--auth-token-ttl` seconds without use, and using one keeps it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_work_on_followers_and_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut members = cluster(&["t1", "t2", "t3"], dir.path());
    for m in &mut members {
        m.extra = vec![
            BCRYPT[0].into(),
            BCRYPT[1].into(),
            "--auth-token-ttl".into(),
            "1".into(),
        ];
        m.start();
    }
    for m in &members {
        wait_serving(&m.client_url).await;
    }
    let leader = leader_of(&members[0].client_url).await;
    let mut followers = Vec::new();
    let mut leader_url = String::new();
    for m in &members {
        if member_id_of(&m.client_url).await == leader {
            leader_url = m.client_url.clone();
        } else {
            followers.push(m.client_url.clone());
        }
    }
    assert_eq!(followers.len(), 2);
    let leader_ch = channel(&leader_url).await.expect("connect");
    runbook(&leader_ch).await;

    phase("a token from the leader works on both followers, reads and forwarded writes");
    let alice = login(&leader_ch, "alice", ALICE_PW).await.expect("alice");
    for f in &followers {
        let ch = channel(f).await.expect("connect");
        let mut kv = KvClient::new(ch);
        kv.put(with(Some(&alice), put("/p/f", "1")))
            .await
            .expect("forwarded put as alice");
        refused(
            kv.put(with(Some(&alice), put("/a", "1"))).await,
            Code::PermissionDenied,
            DENIED,
        );
        kv.range(with(Some(&alice), get("/p/f")))
            .await
            .expect("read on a follower");
    }

    phase("a token from a follower works on the leader");
    let f_ch = channel(&followers[0]).await.expect("connect");
    let bob = login(&f_ch, "bob", BOB_PW).await.expect("bob via follower");
    refused(
        KvClient::new(leader_ch.clone())
            .range(with(Some(&bob), get("/a")))
            .await,
        Code::PermissionDenied,
        DENIED,
    );

    phase("used every 400 ms, a 1 s token stays valid; left alone it expires");
    let mut kv = KvClient::new(f_ch.clone());
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(2500) {
        kv.range(with(Some(&bob), get("/nothing")))
            .await
            .map(|_| ())
            .or_else(|s| (s.code() == Code::PermissionDenied).then_some(()).ok_or(s))
            .expect("still valid");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    refused(
        kv.range(with(Some(&bob), get("/a"))).await,
        Code::Unauthenticated,
        "etcdserver: invalid auth token",
    );
}

/// Waits until `endpoint` answers a read, with or without auth enabled (an anonymous read is
/// then refused with "user name is empty", which proves the member serves).
async fn wait_serving(endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(ch) = channel(endpoint).await {
            match KvClient::new(ch).range(get("probe")).await {
                Ok(_) => return,
                Err(s) if s.message() == "etcdserver: user name is empty" => return,
                Err(_) => {}
            }
        }
        assert!(Instant::now() < deadline, "{endpoint} not serving");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            // Log segments are preallocated with zeros: only their written head matters.
            let used = bytes.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
            out.extend_from_slice(&bytes[..used]);
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Users, roles, permissions and "enabled" are replicated state: a member restarted from its
/// data dir enforces them at once. Passwords are only ever stored and logged as bcrypt hashes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_users_and_roles_and_no_password_is_stored_in_clear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = Member::new("r1", dir.path());
    m.cluster = format!("r1={}", m.peer_url);
    m.extra = vec![BCRYPT[0].into(), BCRYPT[1].into()];
    m.start();
    wait_serving(&m.client_url).await;
    let ch = channel(&m.client_url).await.expect("connect");
    let root = runbook(&ch).await;
    KvClient::new(ch.clone())
        .put(with(Some(&root), put("/p/kept", "v")))
        .await
        .expect("put");

    phase("clean restart");
    m.terminate();
    let bytes = all_bytes(&m.data_dir);
    for clear in [ROOT_PW, ALICE_PW, BOB_PW] {
        assert!(
            !contains(&bytes, clear.as_bytes()),
            "password {clear:?} found in clear in the data dir"
        );
    }
    assert!(contains(&bytes, b"$2a$04$"), "bcrypt hashes are stored");
    m.start();
    wait_serving(&m.client_url).await;

    phase("after the restart: still enabled, same users, roles and permissions");
    let ch = channel(&m.client_url).await.expect("connect");
    let mut kv = KvClient::new(ch.clone());
    refused(
        kv.range(with(None, get("/p/kept"))).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    let alice = login(&ch, "alice", ALICE_PW)
        .await
        .expect("alice after restart");
    let got = kv
        .range(with(Some(&alice), get("/p/kept")))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(got.kvs[0].value, b"v");
    refused(
        kv.put(with(Some(&alice), put("/a", "x"))).await,
        Code::PermissionDenied,
        DENIED,
    );
    let root = login(&ch, "root", ROOT_PW)
        .await
        .expect("root after restart");
    let users = AuthClient::new(ch.clone())
        .user_list(with(Some(&root), AuthUserListRequest {}))
        .await
        .expect("users")
        .into_inner()
        .users;
    assert_eq!(users, vec!["alice", "bob", "root", "svc"]);
    m.terminate();
}

/// A backup taken by root through the Snapshot RPC carries the auth store, and `cairn-store
/// snapshot restore` keeps it: the restored cluster starts with the same users and roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_carry_users_and_roles_through_restore() {
    let s = Solo::start(&BCRYPT).await;
    let ch = channel(&s.endpoint).await.expect("connect");
    let root = runbook(&ch).await;
    let mut maintenance = MaintenanceClient::new(ch.clone());
    refused(
        maintenance.snapshot(with(None, SnapshotRequest {})).await,
        Code::InvalidArgument,
        "etcdserver: user name is empty",
    );
    let mut stream = maintenance
        .snapshot(with(Some(&root), SnapshotRequest {}))
        .await
        .expect("snapshot as root")
        .into_inner();
    let mut backup = Vec::new();
    while let Some(chunk) = stream.message().await.expect("chunk") {
        backup.extend(chunk.blob);
    }
    s.stop().await;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backup.db");
    std::fs::write(&file, &backup).expect("write backup");
    let data_dir = dir.path().join("restored");
    let cfg = cairn_store::Config::parse_args(
        [
            "cairn-store",
            "--name",
            "restored",
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
        ]
        .map(String::from),
    )
    .expect("flags");
    cairn_store::backup::restore(&file, &cfg).expect("restore");
    let mvcc = cairn_mvcc::Mvcc::open(&data_dir.join("member").join("db")).expect("open");
    let stored = mvcc
        .read_meta(cairn_store::auth::META_AUTH)
        .expect("read meta")
        .expect("auth store restored");
    let state = cairn_store::auth::AuthState::decode(&stored).expect("decode");
    assert!(state.enabled());
    assert_eq!(state.user_names(), vec!["alice", "bob", "root", "svc"]);
    assert_eq!(state.role("r").expect("role r").key_permission.len(), 3);
}

/// etcd's JSON gateway: `/v3/auth/authenticate` answers a token, which later calls carry in
/// the `Authorization` header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_takes_the_token_in_the_authorization_header() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = Solo::start(&BCRYPT).await;
    let ch = channel(&s.endpoint).await.expect("connect");
    runbook(&ch).await;
    let call = |path: &'static str, body: &'static str, token: Option<String>| {
        let addr = s.http.clone();
        async move {
            let mut conn = tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect");
            let auth = token.map_or(String::new(), |t| format!("Authorization: {t}\r\n"));
            let req = format!(
                "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
                 {auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            conn.write_all(req.as_bytes()).await.expect("send");
            let mut raw = Vec::new();
            conn.read_to_end(&mut raw).await.expect("read");
            crate::http::parse_reply(&raw)
        }
    };
    let r = call(
        "/v3/auth/authenticate",
        r#"{"name":"alice","password":"alice-Secret-2"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json()["token"].as_str().expect("token").to_string();
    // {"key":"/p/g","value":"v"} in base64.
    let put = r#"{"key":"L3AvZw==","value":"dg=="}"#;
    let r = call("/v3/kv/put", put, Some(token.clone())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = call("/v3/kv/put", put, None).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.body,
        r#"{"error":"etcdserver: user name is empty","message":"etcdserver: user name is empty","code":3}"#
    );
    let r = call("/v3/kv/range", r#"{"key":"L2E="}"#, Some("bad.1".into())).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["code"], 16);
    // {"key":"/zzz"}
    let r = call("/v3/kv/range", r#"{"key":"L3p6eg=="}"#, Some(token)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json()["message"], DENIED);
    s.stop().await;
}

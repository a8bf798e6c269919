//! The `etcd-client` crate — what Rust services use — against cairn-store.

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, Txn, TxnOp};

use crate::harness::Cairn;

#[tokio::test]
async fn kv_through_the_etcd_client_crate() {
    let cairn = Cairn::start().await;
    let mut client = Client::connect([cairn.endpoint.as_str()], None)
        .await
        .expect("connect");

    // Revisions start at 1, every put is one more.
    let put = client.put("foo", "bar", None).await.expect("put");
    assert_eq!(put.header().expect("header").revision(), 2);
    let put = client
        .put("foo", "baz", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put prev");
    assert_eq!(put.prev_key().expect("prev kv").value(), b"bar");

    for i in 0..5 {
        client
            .put(format!("dir/{i}"), format!("v{i}"), None)
            .await
            .expect("put dir");
    }
    let got = client
        .get("dir/", Some(GetOptions::new().with_prefix().with_limit(3)))
        .await
        .expect("get prefix");
    assert_eq!(got.kvs().len(), 3);
    assert!(got.more());
    assert_eq!(got.count(), 5);
    assert_eq!(got.kvs()[0].key(), b"dir/0");
    assert_eq!(got.kvs()[0].version(), 1);

    let foo = client.get("foo", None).await.expect("get foo");
    let kv = &foo.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );

    // Compare-and-swap on mod_revision, the way kube-apiserver writes.
    let txn = Txn::new()
        .when([Compare::mod_revision("foo", CompareOp::Equal, 3)])
        .and_then([TxnOp::put("foo", "cas", None)])
        .or_else([TxnOp::get("foo", None)]);
    let resp = client.txn(txn.clone()).await.expect("txn");
    assert!(resp.succeeded());
    let resp = client.txn(txn).await.expect("txn again");
    assert!(
        !resp.succeeded(),
        "a stale mod_revision must fail the compare"
    );

    let del = client
        .delete(
            "dir/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("delete prefix");
    assert_eq!(del.deleted(), 5);
    assert_eq!(del.prev_kvs().len(), 5);

    // etcd's errors come through as etcd's errors.
    let rev = client
        .get("foo", None)
        .await
        .expect("get")
        .header()
        .expect("h")
        .revision();
    client.compact(rev, None).await.expect("compact");
    let err = client
        .get("foo", Some(GetOptions::new().with_revision(rev - 1)))
        .await
        .expect_err("compacted read");
    assert!(
        err.to_string()
            .contains("required revision has been compacted"),
        "{err}"
    );
    let err = client
        .put("leased", "v", Some(PutOptions::new().with_lease(777)))
        .await
        .expect_err("unknown lease");
    assert!(
        err.to_string().contains("requested lease not found"),
        "{err}"
    );

    let members = client.member_list().await.expect("member list");
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "c1");
    let status = client.status().await.expect("status");
    assert!(status.leader() != 0);
    assert!(status.raft_index() > 0);
}

/// The crate's auth flow: `ConnectOptions::with_user` authenticates when connecting and sends
/// the token with every call; permissions apply to that user, as against etcd.
#[tokio::test]
async fn auth_through_the_etcd_client_crate() {
    use etcd_client::{ConnectOptions, Error, Permission};

    let cairn = Cairn::start_with(&["--bcrypt-cost", "4"]).await;
    let ep = [cairn.endpoint.as_str()];
    let mut admin = Client::connect(ep, None).await.expect("connect");
    admin.user_add("root", "rootpw", None).await.expect("root");
    admin
        .user_grant_role("root", "root")
        .await
        .expect("root role");
    admin
        .user_add("app", "apppw", None)
        .await
        .expect("app user");
    admin.role_add("app").await.expect("role");
    admin
        .role_grant_permission("app", Permission::read_write("app/").with_prefix())
        .await
        .expect("grant");
    admin
        .user_grant_role("app", "app")
        .await
        .expect("grant role");
    admin.auth_enable().await.expect("enable");

    let denied = |r: Result<_, Error>| match r {
        Err(Error::GRpcStatus(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected a status, got {other:?}"),
    };
    assert_eq!(
        denied(admin.get("app/x", None).await.map(|_| ())),
        (
            tonic::Code::InvalidArgument,
            "etcdserver: user name is empty".to_string()
        )
    );
    let bad = ConnectOptions::new().with_user("app", "wrong");
    assert!(
        Client::connect(ep, Some(bad)).await.is_err(),
        "wrong password"
    );

    let opts = ConnectOptions::new().with_user("app", "apppw");
    let mut app = Client::connect(ep, Some(opts)).await.expect("app connects");
    app.put("app/a", "1", None).await.expect("own prefix");
    let got = app
        .get("app/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("read own prefix");
    assert_eq!(got.kvs()[0].value(), b"1");
    assert_eq!(
        denied(app.put("other", "1", None).await.map(|_| ())),
        (
            tonic::Code::PermissionDenied,
            "etcdserver: permission denied".to_string()
        )
    );
    assert_eq!(
        denied(app.user_list().await.map(|_| ())).1,
        "etcdserver: permission denied"
    );

    let root = ConnectOptions::new().with_user("root", "rootpw");
    let mut root = Client::connect(ep, Some(root))
        .await
        .expect("root connects");
    assert_eq!(
        root.user_list().await.expect("users").users(),
        &["app".to_string(), "root".to_string()]
    );
    root.auth_disable().await.expect("disable");
    admin.get("app/a", None).await.expect("anonymous again");
}

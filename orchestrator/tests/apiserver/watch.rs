//! Watch streams: initial state, ADDED/MODIFIED/DELETED, selectors entering and leaving,
//! resuming from a resourceVersion, 410 Expired below the watch cache's window, BOOKMARK events,
//! streaming lists (`sendInitialEvents`), one store watch for many watchers, and watches that
//! outlive a store restart.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{Backend, Cluster, Proxy};
use crate::on_both_backends;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .to_string()
}

async fn watch_semantics(c: &Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let api = &c.api;
    eprintln!("-- a first watch starts the resource's watch cache (its window begins there)");
    let mut opener = api.watch(&format!("{CMS}?watch=1")).await;
    eprintln!("-- rv unset: the current state arrives as ADDED first");
    let first = api.post(CMS, &cm("a")).await.body;
    assert_eq!(opener.next().await["type"], "ADDED");
    let mut w = api.watch(&format!("{CMS}?watch=1")).await;
    let ev = w.next().await;
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("a"))
    );

    eprintln!("-- changes arrive in order: ADDED, MODIFIED, DELETED");
    api.post(CMS, &cm("b")).await;
    api.patch(
        &format!("{CMS}/b"),
        "application/merge-patch+json",
        &json!({"data": {"k": "2"}}),
    )
    .await;
    api.delete(&format!("{CMS}/b")).await;
    let types: Vec<(String, String)> = [w.next().await, w.next().await, w.next().await]
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_string(),
                e["object"]["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(
        types,
        [
            ("ADDED".into(), "b".into()),
            ("MODIFIED".into(), "b".into()),
            ("DELETED".into(), "b".into())
        ]
    );

    eprintln!("-- resuming from a resourceVersion replays what came after it, nothing before");
    let mut resumed = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&first)))
        .await;
    let replay: Vec<String> = [
        resumed.next().await,
        resumed.next().await,
        resumed.next().await,
    ]
    .iter()
    .map(|e| e["type"].as_str().unwrap().to_string())
    .collect();
    assert_eq!(replay, ["ADDED", "MODIFIED", "DELETED"]);
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing else happened"
    );

    eprintln!("-- a label selector sees objects enter (ADDED) and leave (DELETED) it");
    let mut selected = api
        .watch(&format!(
            "{CMS}?watch=1&labelSelector=team%3Dx&resourceVersion={}",
            rv(&first)
        ))
        .await;
    api.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"team": "x"}}}),
    )
    .await;
    api.patch(
        &format!("{CMS}/a"),
        "application/merge-patch+json",
        &json!({"metadata": {"labels": {"team": "y"}}}),
    )
    .await;
    let entered = selected.next().await;
    let left = selected.next().await;
    assert_eq!(
        (entered["type"].as_str(), left["type"].as_str()),
        (Some("ADDED"), Some("DELETED"))
    );

    eprintln!("-- Table watch events for kubectl get -w");
    let mut tables = api
        .watch_with(
            &format!("{CMS}?watch=1&resourceVersion={}", rv(&first)),
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
        )
        .await;
    let ev = tables.next().await;
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["kind"].as_str()),
        (Some("ADDED"), Some("Table"))
    );
    assert_eq!(ev["object"]["rows"][0]["cells"][0], "b");

    eprintln!("-- etcd compacting history does not touch the cache's window");
    let latest = api.post(CMS, &cm("c")).await.body;
    c.backend.compact(rv(&latest).parse().unwrap()).await;
    let mut replayed = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&first)))
        .await;
    assert_eq!(replayed.next().await["type"], "ADDED");

    eprintln!("-- with allowWatchBookmarks, a BOOKMARK comes 2s before timeoutSeconds ends it");
    let started = Instant::now();
    let mut timed = api
        .watch(&format!(
            "{CMS}?watch=1&resourceVersion={}&allowWatchBookmarks=true&timeoutSeconds=3",
            rv(&latest)
        ))
        .await;
    let ev = timed.next().await;
    assert_eq!(ev["type"], "BOOKMARK", "{ev}");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "before the timeout"
    );
    assert!(
        timed.next_within(Duration::from_secs(5)).await.is_none(),
        "then the stream ends at the timeout"
    );
}
on_both_backends!(
    watch_semantics,
    watch_semantics_on_cairn_store,
    watch_semantics_on_etcd
);

/// kube's watch cache keeps a bounded window of events: a watch from inside it is replayed, one
/// from before it is answered `too old resource version: <rv> (<oldest>)`, 410 Expired (the
/// client relists).
async fn watch_window(c: &mut Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let api = &c.api;
    let _opener = api.watch(&format!("{CMS}?watch=1")).await;
    let created = api.post(CMS, &cm("w")).await.body;
    let mut last = created.clone();
    for i in 0..5 {
        last = api
            .patch(
                &format!("{CMS}/w"),
                "application/merge-patch+json",
                &json!({"data": {"k": i.to_string()}}),
            )
            .await
            .body;
    }
    eprintln!("-- the window holds the last 3 events: older resourceVersions are 410 Expired");
    let mut expired = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&created)))
        .await;
    let ev = expired.next().await;
    assert_eq!(ev["type"], "ERROR", "{ev}");
    assert_eq!(
        (
            ev["object"]["code"].as_i64(),
            ev["object"]["reason"].as_str()
        ),
        (Some(410), Some("Expired"))
    );
    let message = ev["object"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("too old resource version: {} (", rv(&created))),
        "{message}"
    );
    assert!(
        expired.next_within(Duration::from_secs(2)).await.is_none(),
        "the stream ends after the error"
    );

    eprintln!("-- a resourceVersion inside the window replays what came after it");
    let two_before: i64 = rv(&last).parse::<i64>().unwrap() - 1;
    let mut inside = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={two_before}"))
        .await;
    let ev = inside.next().await;
    assert_eq!(
        (ev["type"].as_str(), rv(&ev["object"])),
        (Some("MODIFIED"), rv(&last))
    );

    eprintln!("-- a resourceVersion the store has not reached is 504 Too large resource version");
    let ahead = rv(&last).parse::<i64>().unwrap() + 1000;
    let mut future = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={ahead}"))
        .await;
    let ev = future.next().await;
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["code"].as_i64()),
        (Some("ERROR"), Some(504)),
        "{ev}"
    );
}
on_both_backends!(
    watch_window,
    watch_window_on_cairn_store,
    watch_window_on_etcd,
    ["--default-watch-cache-size", "3"]
);

/// Bookmarks carry a revision that is current even when this resource had no events (an etcd
/// progress notification), and only watchers that allow them get them.
async fn bookmarks(c: &mut Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let api = &c.api;
    let listed = api.get(CMS).await.body;
    let list_rv = rv(&listed);
    let mut with = api
        .watch(&format!(
            "{CMS}?watch=1&resourceVersion={list_rv}&allowWatchBookmarks=true"
        ))
        .await;
    let mut without = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={list_rv}"))
        .await;
    eprintln!("-- another resource moves the store's revision; configmaps do not change");
    let secret = api
        .post(
            "/api/v1/namespaces/default/secrets",
            &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}),
        )
        .await
        .body;
    let secret_rv: i64 = rv(&secret).parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let bookmark = loop {
        let ev = with.next().await;
        assert_eq!(ev["type"], "BOOKMARK", "{ev}");
        let at: i64 = rv(&ev["object"]).parse().unwrap();
        if at >= secret_rv {
            break ev;
        }
        assert!(Instant::now() < deadline, "no bookmark reached {secret_rv}");
    };
    assert_eq!(
        (
            bookmark["object"]["kind"].as_str(),
            bookmark["object"]["apiVersion"].as_str()
        ),
        (Some("ConfigMap"), Some("v1"))
    );
    assert!(
        without
            .next_within(Duration::from_millis(800))
            .await
            .is_none(),
        "no bookmarks unless allowWatchBookmarks=true"
    );

    eprintln!("-- events still come in order between bookmarks");
    let created = api.post(CMS, &cm("after")).await.body;
    let ev = loop {
        let ev = with.next().await;
        if ev["type"] != "BOOKMARK" {
            break ev;
        }
    };
    assert_eq!(
        (ev["type"].as_str(), rv(&ev["object"])),
        (Some("ADDED"), rv(&created))
    );
    let ev = with.next().await;
    assert_eq!(ev["type"], "BOOKMARK");
    assert!(rv(&ev["object"]).parse::<i64>().unwrap() >= rv(&created).parse::<i64>().unwrap());
}
on_both_backends!(
    bookmarks,
    bookmarks_on_cairn_store,
    bookmarks_on_etcd,
    ["--watch-bookmark-interval", "300ms"]
);

/// `sendInitialEvents=true&resourceVersionMatch=NotOlderThan`: the state as ADDED events, then a
/// BOOKMARK annotated `k8s.io/initial-events-end`, then changes (a streaming list).
async fn streaming_list(c: &Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let api = &c.api;
    api.post(CMS, &cm("one")).await;
    let two = api.post(CMS, &cm("two")).await.body;
    let mut w = api
        .watch(&format!(
            "{CMS}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
        ))
        .await;
    let names: Vec<String> = [w.next().await, w.next().await]
        .iter()
        .map(|e| {
            assert_eq!(e["type"], "ADDED");
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(names, ["one", "two"]);
    let end = w.next().await;
    assert_eq!(end["type"], "BOOKMARK", "{end}");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(rv(&end["object"]).parse::<i64>().unwrap() >= rv(&two).parse::<i64>().unwrap());
    api.delete(&format!("{CMS}/one")).await;
    let ev = w.next().await;
    assert_eq!(ev["type"], "DELETED");

    eprintln!("-- sendInitialEvents without resourceVersionMatch=NotOlderThan is 422, as in kube");
    let bad = api
        .get(&format!("{CMS}?watch=1&sendInitialEvents=true"))
        .await;
    assert_eq!(bad.code, 422, "{}", bad.body);
    assert_eq!(
        bad.body["message"],
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"
    );
}
on_both_backends!(
    streaming_list,
    streaming_list_on_cairn_store,
    streaming_list_on_etcd
);

/// The watch cache: many HTTP watchers of a resource cost the store one watch (counted by the
/// store itself, etcd's `etcd_debugging_mvcc_watcher_total`), and every one of them gets every
/// event.
async fn one_store_watch_per_resource(c: &Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    // 2N client and 2N server sockets in this one process stay well under a 1024 fd limit.
    const N: usize = 150;
    let api = &c.api;
    // Every resource type's cache watches the store from startup; the store counts the
    // capability probe's watch until it notices the probe left.
    let caches = c.handle().watch_caches();
    assert!(caches > 2, "every resource's cache starts with the server");
    // Besides the caches, the RBAC cache follows its four kinds with watches of its own.
    let held = caches + 4;
    settle_store_watchers(c, held).await;
    eprintln!("-- {N} watchers of configmaps and {N} of pods (two namespaces and all of them)");
    let mut watches = Vec::new();
    for i in 0..N {
        let path = match i % 3 {
            0 => format!("{CMS}?watch=1"),
            1 => "/api/v1/configmaps?watch=1".to_string(),
            _ => "/api/v1/namespaces/kube-system/configmaps?watch=1".to_string(),
        };
        watches.push((i % 3 != 2, api.watch(&path).await));
    }
    let mut pods = Vec::new();
    for _ in 0..N {
        pods.push(api.watch("/api/v1/pods?watch=1").await);
    }
    settle_store_watchers(c, held).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        c.backend.watchers().await,
        held,
        "one store watch per resource type, not per HTTP watcher"
    );
    assert_eq!(c.handle().watch_counts(), (caches, 2 * N as i64));

    eprintln!("-- every watcher of the namespace (and of all namespaces) sees the event");
    api.post(CMS, &cm("fan")).await;
    for (sees, w) in &mut watches {
        if *sees {
            let ev = w.next().await;
            assert_eq!(ev["object"]["metadata"]["name"], "fan");
        } else {
            assert!(w.next_within(Duration::from_millis(5)).await.is_none());
        }
    }
    drop(watches);
    drop(pods);
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.handle().watch_counts().1 != 0 {
        assert!(
            Instant::now() < deadline,
            "watchers are unregistered when clients leave"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(c.backend.watchers().await, held, "the cache's watches stay");
}

/// Waits (up to 10 s) for the store's watcher gauge to read `n`.
async fn settle_store_watchers(c: &Cluster, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = c.backend.watchers().await;
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the store counts {now} watchers, not {n}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
on_both_backends!(
    one_store_watch_per_resource,
    one_store_watch_per_resource_on_cairn_store,
    one_store_watch_per_resource_on_etcd
);

/// The cache's etcd watch is re-established from the last revision it saw when the store comes
/// back, so HTTP watches go on as if nothing happened.
async fn watch_outlives_a_store_restart(c: &mut Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let api = c.api.clone();
    let first = api.post(CMS, &cm("before")).await.body;
    let mut w = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&first)))
        .await;
    eprintln!("-- the store restarts under the apiserver");
    c.backend.restart().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let created = loop {
        let r = api.post(CMS, &cm("after")).await;
        if r.code == 201 {
            break r.body;
        }
        assert!(
            Instant::now() < deadline,
            "the apiserver reaches the store again: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let ev = w
        .next_within(Duration::from_secs(20))
        .await
        .expect("the event after the restart");
    assert_eq!(
        (ev["type"].as_str(), rv(&ev["object"])),
        (Some("ADDED"), rv(&created))
    );
}
on_both_backends!(
    watch_outlives_a_store_restart,
    watch_outlives_a_store_restart_on_cairn_store,
    watch_outlives_a_store_restart_on_etcd,
    []
);

/// When the cache's etcd watch comes back to a store that compacted past the cache's revision
/// meanwhile, the cache relists and terminates its watchers (their streams end), and a re-watch
/// from the old resourceVersion is 410 Expired, so clients relist, as from kube's cacher.
async fn compaction_while_partitioned_relists(c: &Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let proxy = Proxy::start(c.backend.endpoint()).await;
    eprintln!("-- an apiserver reaching the store through a proxy that can be cut");
    let behind = Cluster::start_with(Backend::external(&proxy.endpoint), &[]).await;
    let created = behind.api.post(CMS, &cm("x")).await.body;
    let mut w = behind
        .api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&created)))
        .await;

    eprintln!("-- partitioned: the store changes and compacts past the cache's revision");
    proxy.cut();
    c.api.post(CMS, &cm("y")).await;
    c.api.delete(&format!("{CMS}/x")).await;
    let latest = c.api.post(CMS, &cm("z")).await.body;
    c.backend.compact(rv(&latest).parse().unwrap()).await;
    proxy.restore();

    eprintln!("-- the watcher's stream ends; its resourceVersion is now too old");
    assert!(
        w.next_within(Duration::from_secs(20)).await.is_none(),
        "the relist terminated the watcher without events it could not vouch for"
    );
    let mut stale = behind
        .api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&created)))
        .await;
    let ev = stale.next().await;
    assert_eq!(
        (ev["type"].as_str(), ev["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410)),
        "{ev}"
    );

    eprintln!("-- a relist and a watch from its resourceVersion see the store as it is");
    let listed = behind.api.get(CMS).await.body;
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["y", "z"]);
    let mut fresh = behind
        .api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&listed)))
        .await;
    c.api.delete(&format!("{CMS}/y")).await;
    let ev = fresh
        .next_within(Duration::from_secs(20))
        .await
        .expect("an event");
    assert_eq!(
        (
            ev["type"].as_str(),
            ev["object"]["metadata"]["name"].as_str()
        ),
        (Some("DELETED"), Some("y"))
    );
    behind.stop().await;
}
on_both_backends!(
    compaction_while_partitioned_relists,
    compaction_while_partitioned_relists_on_cairn_store,
    compaction_while_partitioned_relists_on_etcd
);

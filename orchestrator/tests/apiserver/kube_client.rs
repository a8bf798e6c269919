//! kube-rs (the `kube` crate with k8s-openapi types) as an unchanged client: typed CRUD with
//! every patch type and kube's error values, the runtime's watcher (with bookmarks, and across a
//! relist forced by a 410) and a reflector whose store converges to the list.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{
    DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::harness::Cluster;
use crate::on_both_backends;

fn client(c: &Cluster) -> Client {
    let config = kube::Config::new(c.api.url().parse().expect("apiserver URL"));
    Client::try_from(config).expect("kube client")
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The Status a failed call carried (kube's `Error::Api`).
fn status(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

async fn config_map_crud(c: &Cluster) {
    let cms: Api<ConfigMap> = Api::namespaced(client(c), "default");
    let pp = PostParams::default();

    eprintln!("-- create, get, list");
    let created = cms
        .create(&pp, &config_map("kube-cm", &[("a", "1")]))
        .await
        .expect("create");
    assert!(created.resource_version().is_some());
    assert!(created.uid().is_some());
    let got = cms.get("kube-cm").await.expect("get");
    assert_eq!(got.data, created.data);
    let listed = cms.list(&ListParams::default()).await.expect("list");
    assert!(listed.metadata.resource_version.is_some());
    assert!(listed.items.iter().any(|cm| cm.name_any() == "kube-cm"));

    eprintln!("-- errors arrive as kube::Error::Api with Kubernetes' reasons");
    let dup = status(
        cms.create(&pp, &config_map("kube-cm", &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let missing = status(cms.get("nope").await.unwrap_err());
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert!(missing.is_not_found());
    assert_eq!(cms.get_opt("nope").await.expect("get_opt"), None);

    eprintln!("-- replace with the current resourceVersion, then with a stale one (409)");
    let mut changed = got.clone();
    changed
        .data
        .get_or_insert_with(BTreeMap::new)
        .insert("b".into(), "2".into());
    let replaced = cms
        .replace("kube-cm", &pp, &changed)
        .await
        .expect("replace");
    assert_ne!(replaced.resource_version(), got.resource_version());
    let stale = status(cms.replace("kube-cm", &pp, &changed).await.unwrap_err());
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    eprintln!("-- merge, JSON and strategic merge patches");
    let patched = cms
        .patch(
            "kube-cm",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"c": "3"}})),
        )
        .await
        .expect("merge patch");
    assert_eq!(patched.data.as_ref().unwrap()["c"], "3");
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "remove", "path": "/data/a"}])).unwrap();
    let patched = cms
        .patch("kube-cm", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await
        .expect("json patch");
    assert!(!patched.data.as_ref().unwrap().contains_key("a"));
    let patched = cms
        .patch(
            "kube-cm",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"via": "kube-rs"}}})),
        )
        .await
        .expect("strategic merge patch");
    assert_eq!(patched.labels()["via"], "kube-rs");

    eprintln!("-- delete, then it is gone");
    cms.delete("kube-cm", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = status(
        cms.delete("kube-cm", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));
}
on_both_backends!(
    config_map_crud,
    kube_config_map_crud_on_cairn_store,
    kube_config_map_crud_on_etcd
);

async fn pod_crud(c: &Cluster) {
    let pods: Api<Pod> = Api::namespaced(client(c), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kube-pod", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    }))
    .unwrap();
    let created = pods
        .create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let spec = created.spec.as_ref().expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "defaulted");
    assert_eq!(
        created.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Pending")
    );

    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("list by label");
    assert_eq!(listed.items.len(), 1);
    let none = pods
        .list(&ListParams::default().labels("app=db"))
        .await
        .expect("list by label");
    assert!(none.items.is_empty());

    let patched = pods
        .patch(
            "kube-pod",
            &PatchParams::default(),
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}),
            ),
        )
        .await
        .expect("strategic patch of a container by name");
    let containers = &patched.spec.as_ref().unwrap().containers;
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("nginx:1.27"));

    let mut stale = created.clone();
    stale.metadata.labels = Some(BTreeMap::from([("app".into(), "api".into())]));
    let conflict = status(
        pods.replace("kube-pod", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

    // An unscheduled pod is deleted at once; the Pod itself is returned.
    let deleted = pods
        .delete("kube-pod", &DeleteParams::default())
        .await
        .expect("delete");
    assert!(deleted.is_left(), "a Pod delete answers with the Pod");
    assert!(pods.get_opt("kube-pod").await.expect("get_opt").is_none());
}
on_both_backends!(
    pod_crud,
    kube_pod_crud_on_cairn_store,
    kube_pod_crud_on_etcd
);

/// A constant 200 ms retry (kube's `DefaultBackoff` grows from 0.8 s to 30 s, which would
/// outlast a test's apiserver restart).
struct QuickRetry;

impl Iterator for QuickRetry {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

impl kube::runtime::utils::Backoff for QuickRetry {
    fn reset(&mut self) {}
}

/// Waits (up to 20 s) for the next watcher event that `want` accepts.
async fn next_matching<S, T>(stream: &mut S, mut want: impl FnMut(&T) -> bool) -> T
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Unpin,
    T: std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a watcher event within 20s")
            .expect("the watcher stream goes on");
        match ev {
            Ok(ev) if want(&ev) => return ev,
            Ok(other) => eprintln!("   (watcher: {other:?})"),
            // A 410 makes the watcher relist by itself; it reports the error first.
            Err(e) => eprintln!("   (watcher error, recovering: {e})"),
        }
    }
}

fn is_apply(
    name: &'static str,
    key: &'static str,
) -> impl FnMut(&watcher::Event<ConfigMap>) -> bool {
    move |ev| {
        matches!(ev, watcher::Event::Apply(cm)
            if cm.name_any() == name && cm.data.as_ref().is_some_and(|d| d.contains_key(key)))
    }
}

/// kube's watcher (default config: list then watch, with bookmarks) sees Added / Modified /
/// Deleted; after the apiserver restarts with a fresh cache and writes happened meanwhile, its
/// re-watch gets 410 and it relists (Init .. InitDone) with what changed; a reflector's store
/// converges to the list throughout.
async fn watcher_and_reflector(c: &mut Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client(c), "default");
    let pp = PostParams::default();
    cms.create(&pp, &config_map("seen-0", &[("k", "v")]))
        .await
        .expect("create");

    // Back-off as kube's docs ask of every watcher (a bare one retries in a tight loop while the
    // apiserver is down below), short enough for a test.
    let mut events = watcher(cms.clone(), watcher::Config::default())
        .backoff(QuickRetry)
        .boxed();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let reflected = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .backoff(QuickRetry)
        .applied_objects()
        // Errors are reported and recovered from by the watcher itself (it relists on 410).
        .for_each(|_| futures::future::ready(()));
    let reflecting = tokio::spawn(reflected);

    eprintln!("-- the initial list arrives as Init, InitApply, InitDone");
    next_matching(&mut events, |e| matches!(e, watcher::Event::Init)).await;
    next_matching(
        &mut events,
        |e| matches!(e, watcher::Event::InitApply(cm) if cm.name_any() == "seen-0"),
    )
    .await;
    next_matching(&mut events, |e| matches!(e, watcher::Event::InitDone)).await;
    tokio::time::timeout(Duration::from_secs(20), reader.wait_until_ready())
        .await
        .expect("the reflector is ready within 20s")
        .expect("writer alive");

    eprintln!("-- added, modified, deleted");
    cms.create(&pp, &config_map("seen-1", &[("k", "v")]))
        .await
        .expect("create");
    next_matching(&mut events, is_apply("seen-1", "k")).await;
    cms.patch(
        "seen-1",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k2": "v2"}})),
    )
    .await
    .expect("patch");
    next_matching(&mut events, is_apply("seen-1", "k2")).await;
    cms.delete("seen-0", &DeleteParams::default())
        .await
        .expect("delete");
    next_matching(
        &mut events,
        |e| matches!(e, watcher::Event::Delete(cm) if cm.name_any() == "seen-0"),
    )
    .await;
    converges(&reader, &cms).await;

    eprintln!("-- the apiserver restarts (a new, empty watch cache) while objects change");
    let url = c.api.url();
    let backend_endpoint = c.backend.endpoint().to_string();
    c.restart_apiserver(async {
        // Written straight through a second apiserver on the same store while the first is down.
        let other =
            Cluster::start_with(crate::harness::Backend::external(&backend_endpoint), &[]).await;
        let other_cms: Api<ConfigMap> = Api::namespaced(client(&other), "default");
        other_cms
            .create(&pp, &config_map("while-down", &[("k", "v")]))
            .await
            .expect("create while the first apiserver is down");
        other_cms
            .delete("seen-1", &DeleteParams::default())
            .await
            .expect("delete while the first apiserver is down");
        other.stop().await;
    })
    .await;
    assert_eq!(c.api.url(), url, "same address");

    eprintln!("-- the watcher re-watches from its resourceVersion, gets 410, relists");
    next_matching(&mut events, |e| matches!(e, watcher::Event::Init)).await;
    let mut relisted = Vec::new();
    loop {
        match next_matching(&mut events, |_| true).await {
            watcher::Event::InitApply(cm) => relisted.push(cm.name_any()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected event during the relist: {other:?}"),
        }
    }
    assert!(relisted.contains(&"while-down".to_string()), "{relisted:?}");
    assert!(!relisted.contains(&"seen-1".to_string()), "{relisted:?}");
    converges(&reader, &cms).await;

    eprintln!("-- and keeps watching");
    cms.create(&pp, &config_map("seen-2", &[("k", "v")]))
        .await
        .expect("create");
    next_matching(&mut events, is_apply("seen-2", "k")).await;
    converges(&reader, &cms).await;
    reflecting.abort();
}
on_both_backends!(
    watcher_and_reflector,
    kube_watcher_and_reflector_on_cairn_store,
    kube_watcher_and_reflector_on_etcd,
    []
);

/// The reflector's store holds exactly what a list returns (within 20 s).
async fn converges(reader: &reflector::Store<ConfigMap>, cms: &Api<ConfigMap>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut listed: Vec<(String, Option<String>)> = cms
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|cm| (cm.name_any(), cm.resource_version()))
            .collect();
        let mut cached: Vec<(String, Option<String>)> = reader
            .state()
            .iter()
            .map(|cm| (cm.name_any(), cm.resource_version()))
            .collect();
        listed.sort();
        cached.sort();
        if listed == cached {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reflector's store {cached:?} never matched the list {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// kube's watcher with the streaming-list strategy (sendInitialEvents + the initial-events-end
/// bookmark) lists through one watch.
async fn streaming_list_watcher(c: &Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client(c), "default");
    cms.create(
        &PostParams::default(),
        &config_map("streamed", &[("k", "v")]),
    )
    .await
    .expect("create");
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists())
        .backoff(QuickRetry)
        .boxed();
    next_matching(&mut events, |e| matches!(e, watcher::Event::Init)).await;
    next_matching(
        &mut events,
        |e| matches!(e, watcher::Event::InitApply(cm) if cm.name_any() == "streamed"),
    )
    .await;
    next_matching(&mut events, |e| matches!(e, watcher::Event::InitDone)).await;
    cms.create(
        &PostParams::default(),
        &config_map("streamed-2", &[("k", "v")]),
    )
    .await
    .expect("create");
    next_matching(&mut events, is_apply("streamed-2", "k")).await;
}
on_both_backends!(
    streaming_list_watcher,
    kube_streaming_list_watcher_on_cairn_store,
    kube_streaming_list_watcher_on_etcd
);

/// kube's low-level `Api::watch` (bookmarks on by default in `WatchParams`) decodes our
/// BOOKMARK events into `WatchEvent::Bookmark`, with a resourceVersion that moves on while the
/// watched resource stays idle (a Secret moves the store's revision; configmaps do not change).
async fn bookmarks_decode(c: &mut Cluster) {
    if !c.backend.supports_watch().await {
        return;
    }
    let cms: Api<ConfigMap> = Api::namespaced(client(c), "default");
    let listed = cms.list(&ListParams::default()).await.expect("list");
    let list_rv = listed
        .metadata
        .resource_version
        .expect("a list resourceVersion");
    let stream = cms
        .watch(&WatchParams::default(), &list_rv)
        .await
        .expect("watch");
    let mut stream = stream.boxed();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client(c), "default");
    let named: k8s_openapi::api::core::v1::Secret = serde_json::from_value(json!({
        "metadata": {"name": "moves-the-revision"}
    }))
    .unwrap();
    let created = secrets
        .create(&PostParams::default(), &named)
        .await
        .expect("create a Secret");
    let moved: i64 = created.resource_version().unwrap().parse().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("a bookmark within 20s")
            .expect("the stream goes on")
            .expect("events decode");
        match ev {
            WatchEvent::Bookmark(bm) => {
                assert_eq!(
                    (bm.types.kind.as_str(), bm.types.api_version.as_str()),
                    ("ConfigMap", "v1")
                );
                if bm.metadata.resource_version.parse::<i64>().unwrap() >= moved {
                    return;
                }
            }
            other => panic!("only bookmarks were expected, got {other:?}"),
        }
    }
}
on_both_backends!(
    bookmarks_decode,
    kube_bookmarks_decode_on_cairn_store,
    kube_bookmarks_decode_on_etcd,
    ["--watch-bookmark-interval", "300ms"]
);

//! Watch streams: initial state, ADDED/MODIFIED/DELETED, selectors entering and leaving,
//! resuming from a resourceVersion, and 410 Expired once that revision is compacted.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::Cluster;
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
    eprintln!("-- rv unset: the current state arrives as ADDED first");
    let first = api.post(CMS, &cm("a")).await.body;
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

    eprintln!("-- watching from a compacted revision is a 410 Expired ERROR event");
    let latest = api.post(CMS, &cm("c")).await.body;
    c.backend.compact(rv(&latest).parse().unwrap()).await;
    let mut expired = api
        .watch(&format!("{CMS}?watch=1&resourceVersion={}", rv(&first)))
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
    assert!(
        expired.next_within(Duration::from_secs(2)).await.is_none(),
        "the stream ends after the error"
    );
}
on_both_backends!(
    watch_semantics,
    watch_semantics_on_cairn_store,
    watch_semantics_on_etcd
);

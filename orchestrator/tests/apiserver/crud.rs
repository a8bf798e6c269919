//! CRUD, optimistic concurrency, patches, selectors, pagination and bad input over raw HTTP.

use serde_json::{json, Value};

use crate::harness::Cluster;
use crate::on_both_backends;

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

fn rv(obj: &Value) -> i64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("resourceVersion")
        .parse()
        .expect("numeric rv")
}

async fn crud_and_concurrency(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- discovery and health answer");
    assert_eq!(api.get("/healthz").await.code, 200);
    assert_eq!(api.get("/version").await.body["major"], "1");
    let core = api.get("/api/v1").await.body;
    let pods = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods")
        .unwrap()
        .clone();
    assert_eq!(pods["kind"], "Pod");
    assert_eq!(pods["namespaced"], true);
    assert_eq!(pods["shortNames"], json!(["po"]));
    assert_eq!(api.get("/apis").await.body["groups"][0]["name"], "apps");
    assert_eq!(
        api.get("/apis/apps/v1").await.body["resources"][0]["kind"],
        "Deployment"
    );

    eprintln!("-- the default namespace exists from startup");
    let ns = api.get("/api/v1/namespaces/default").await;
    assert_eq!(ns.code, 200);
    assert_eq!(ns.body["status"]["phase"], "Active");

    eprintln!("-- create sets server-owned metadata; a second create is AlreadyExists");
    let created = api.post(CMS, &cm("one", json!({"app": "a"}))).await;
    assert_eq!(created.code, 201, "{}", created.body);
    let meta = &created.body["metadata"];
    assert_eq!(meta["namespace"], "default");
    assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
    assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let again = api.post(CMS, &cm("one", json!({}))).await;
    assert_eq!(
        (again.code, again.body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(again.body["kind"], "Status");

    eprintln!("-- get returns the object at the create's revision");
    let got = api.get(&format!("{CMS}/one")).await;
    assert_eq!(got.code, 200);
    assert_eq!(rv(&got.body), rv(&created.body));
    assert_eq!(got.body["metadata"]["uid"], meta["uid"]);

    eprintln!("-- update with the current resourceVersion succeeds and moves it");
    let mut obj = got.body.clone();
    obj["data"]["k"] = json!("v2");
    let updated = api.put(&format!("{CMS}/one"), &obj).await;
    assert_eq!(updated.code, 200, "{}", updated.body);
    assert!(rv(&updated.body) > rv(&got.body));
    assert_eq!(updated.body["metadata"]["uid"], meta["uid"]);

    eprintln!("-- update with a stale resourceVersion is a 409 Conflict");
    obj["data"]["k"] = json!("v3");
    let stale = api.put(&format!("{CMS}/one"), &obj).await;
    assert_eq!(
        (stale.code, stale.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    assert!(stale.body["message"].as_str().unwrap().contains("the object has been modified; please apply your changes to the latest version and try again"));

    eprintln!("-- merge patch and JSON patch");
    let merged = api
        .patch(
            &format!("{CMS}/one"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"tier": "x"}}, "data": {"k": null, "n": "1"}}),
        )
        .await;
    assert_eq!(merged.code, 200, "{}", merged.body);
    assert_eq!(merged.body["data"], json!({"n": "1"}));
    assert_eq!(
        merged.body["metadata"]["labels"],
        json!({"app": "a", "tier": "x"})
    );
    let jp = api.patch(&format!("{CMS}/one"), "application/json-patch+json", &json!([{"op": "add", "path": "/data/m", "value": "2"}, {"op": "remove", "path": "/metadata/labels/tier"}])).await;
    assert_eq!(jp.code, 200, "{}", jp.body);
    assert_eq!(jp.body["data"], json!({"n": "1", "m": "2"}));
    let failing = api
        .patch(
            &format!("{CMS}/one"),
            "application/json-patch+json",
            &json!([{"op": "test", "path": "/data/n", "value": "9"}]),
        )
        .await;
    assert_eq!(failing.code, 422);
    let stale_patch = api.patch(&format!("{CMS}/one"), "application/merge-patch+json", &json!({"metadata": {"resourceVersion": rv(&got.body).to_string()}, "data": {"z": "1"}})).await;
    assert_eq!(
        stale_patch.code, 409,
        "a patch carrying a stale resourceVersion is a precondition"
    );
    let unsupported = api
        .patch(&format!("{CMS}/one"), "text/plain", &json!({}))
        .await;
    assert_eq!(unsupported.code, 415);

    eprintln!("-- strategic merge patch merges containers by name");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}});
    let created_pod = api.post("/api/v1/namespaces/default/pods", &pod).await;
    assert_eq!(created_pod.code, 201, "{}", created_pod.body);
    assert_eq!(created_pod.body["status"]["phase"], "Pending");
    assert_eq!(created_pod.body["metadata"]["generation"], 1);
    let smp = api
        .patch(
            "/api/v1/namespaces/default/pods/p",
            "application/strategic-merge-patch+json",
            &json!({"spec": {"containers": [{"name": "b", "image": "b:2"}]}}),
        )
        .await;
    assert_eq!(smp.code, 200, "{}", smp.body);
    let images: Vec<&str> = smp.body["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["image"].as_str().unwrap())
        .collect();
    assert_eq!(images, ["a:1", "b:2"]);
    assert_eq!(smp.body["metadata"]["generation"], 2);

    eprintln!("-- status is owned by the /status subresource");
    let ignored = api
        .patch(
            "/api/v1/namespaces/default/pods/p",
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}}),
        )
        .await;
    assert_eq!(ignored.body["status"]["phase"], "Pending");
    let via_status = api
        .patch(
            "/api/v1/namespaces/default/pods/p/status",
            "application/merge-patch+json",
            &json!({"status": {"phase": "Running"}}),
        )
        .await;
    assert_eq!(via_status.code, 200, "{}", via_status.body);
    assert_eq!(via_status.body["status"]["phase"], "Running");

    eprintln!("-- delete, then the object is gone");
    let deleted = api.delete(&format!("{CMS}/one")).await;
    assert_eq!(deleted.code, 200);
    assert_eq!(deleted.body["status"], "Success");
    let gone = api.get(&format!("{CMS}/one")).await;
    assert_eq!(
        (gone.code, gone.body["reason"].as_str()),
        (404, Some("NotFound"))
    );
    assert_eq!(api.delete(&format!("{CMS}/one")).await.code, 404);

    eprintln!("-- cluster-scoped kinds and namespace deletion");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    assert_eq!(api.post("/api/v1/namespaces", &ns).await.code, 201);
    assert_eq!(
        api.post(
            "/api/v1/namespaces/team/configmaps",
            &cm("inside", json!({}))
        )
        .await
        .code,
        201
    );
    assert_eq!(api.delete("/api/v1/namespaces/team").await.code, 200);
    // The namespace terminates: its controller empties it, then it goes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while api.get("/api/v1/namespaces/team").await.code != 404 {
        assert!(
            std::time::Instant::now() < deadline,
            "namespace team never went away"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        api.get("/api/v1/namespaces/team/configmaps/inside")
            .await
            .code,
        404
    );
    let orphan = api
        .post("/api/v1/namespaces/team/configmaps", &cm("late", json!({})))
        .await;
    assert_eq!(
        orphan.code, 404,
        "creating in a missing namespace: {}",
        orphan.body
    );
}
on_both_backends!(
    crud_and_concurrency,
    crud_and_concurrency_on_cairn_store,
    crud_and_concurrency_on_etcd
);

async fn bad_input(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- malformed JSON, wrong kind or apiVersion, invalid names");
    assert_eq!(
        api.call("POST", CMS, "application/json", "{not json")
            .await
            .code,
        400
    );
    let wrong_kind = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}});
    assert_eq!(api.post(CMS, &wrong_kind).await.code, 400);
    let wrong_version =
        json!({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}});
    assert_eq!(api.post(CMS, &wrong_version).await.code, 400);
    let invalid = api.post(CMS, &cm("Not_Valid", json!({}))).await;
    assert_eq!(
        (invalid.code, invalid.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    assert_eq!(
        invalid.body["details"]["causes"][0]["field"],
        "metadata.name"
    );
    let no_containers =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}});
    assert_eq!(
        api.post("/api/v1/namespaces/default/pods", &no_containers)
            .await
            .code,
        422
    );
    let with_rv = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "resourceVersion": "5"}});
    assert_eq!(api.post(CMS, &with_rv).await.code, 400);
    let generated = api
        .post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "gen-"}}),
        )
        .await;
    assert_eq!(generated.code, 201);
    assert!(generated.body["metadata"]["name"]
        .as_str()
        .unwrap()
        .starts_with("gen-"));

    eprintln!("-- unknown paths and verbs answer with Status objects");
    let missing = api.get("/apis/networking.k8s.io/v1/ingresses").await;
    assert_eq!(
        (missing.code, missing.body["kind"].as_str()),
        (404, Some("Status"))
    );
    assert_eq!(
        api.call("DELETE", "/api/v1/configmaps", "", "").await.code,
        405,
        "deletecollection is per namespace"
    );
    assert_eq!(
        api.call("DELETE", "/api/v1/namespaces", "", "").await.code,
        405
    );
    assert_eq!(
        api.call("POST", "/version", "application/json", "{}")
            .await
            .code,
        405
    );
    // An empty protobuf envelope decodes (as in Kubernetes) to an empty ConfigMap: no name.
    let protobuf = api
        .call("POST", CMS, "application/vnd.kubernetes.protobuf", "k8s\0")
        .await;
    assert_eq!(
        (protobuf.code, protobuf.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    let yaml = api
        .call("POST", CMS, "application/yaml", "kind: ConfigMap")
        .await;
    assert_eq!(yaml.code, 415);
    let big = format!("{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"big\"}},\"data\":{{\"k\":\"{}\"}}}}", "x".repeat(4 << 20));
    assert_eq!(
        api.call("POST", CMS, "application/json", &big).await.code,
        413
    );
}
on_both_backends!(bad_input, bad_input_on_cairn_store, bad_input_on_etcd);

async fn selectors_and_pagination(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- ten configmaps with labels");
    for i in 0..10 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        let mut labels = json!({"tier": tier, "n": i.to_string()});
        if i < 3 {
            labels["low"] = json!("yes");
        }
        assert_eq!(
            api.post(CMS, &cm(&format!("cm-{i}"), labels)).await.code,
            201
        );
    }
    let names = |v: &Value| -> Vec<String> {
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let q = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    let select = |sel: &str| format!("{CMS}?labelSelector={}", q(sel));
    let cases: &[(&str, usize)] = &[
        ("tier=even", 5),
        ("tier==odd", 5),
        ("tier!=odd", 5),
        ("tier in (even,odd)", 10),
        ("tier notin (even)", 5),
        ("low", 3),
        ("!low", 7),
        ("tier=even,low", 2),
        ("n>6", 3),
        ("nothere=x", 0),
    ];
    for (sel, want) in cases {
        let r = api.get(&select(sel)).await;
        assert_eq!(r.code, 200, "{sel}: {}", r.body);
        assert_eq!(names(&r.body).len(), *want, "{sel}");
    }
    assert_eq!(api.get(&select("a in ()")).await.code, 400);

    eprintln!("-- field selectors");
    let r = api
        .get(&format!("{CMS}?fieldSelector={}", q("metadata.name=cm-3")))
        .await;
    assert_eq!(names(&r.body), ["cm-3"]);
    let r = api
        .get(&format!(
            "/api/v1/configmaps?fieldSelector={}",
            q("metadata.namespace=default,metadata.name!=cm-3")
        ))
        .await;
    assert_eq!(names(&r.body).len(), 9);
    assert_eq!(
        api.get(&format!("{CMS}?fieldSelector={}", q("spec.nodeName=x")))
            .await
            .code,
        400
    );

    eprintln!("-- pages of 4 at one revision, with and without selectors");
    let first = api.get(&format!("{CMS}?limit=4")).await.body;
    assert_eq!(names(&first), ["cm-0", "cm-1", "cm-2", "cm-3"]);
    assert_eq!(first["metadata"]["remainingItemCount"], 6);
    let list_rv = first["metadata"]["resourceVersion"].clone();
    assert_eq!(api.post(CMS, &cm("cm-99", json!({}))).await.code, 201);
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    let second = api
        .get(&format!("{CMS}?limit=4&continue={token}"))
        .await
        .body;
    assert_eq!(names(&second), ["cm-4", "cm-5", "cm-6", "cm-7"]);
    assert_eq!(
        second["metadata"]["resourceVersion"], list_rv,
        "every page reads the first page's revision"
    );
    let token = second["metadata"]["continue"].as_str().unwrap().to_string();
    let third = api
        .get(&format!("{CMS}?limit=4&continue={token}"))
        .await
        .body;
    assert_eq!(
        names(&third),
        ["cm-8", "cm-9"],
        "cm-99 was created after the list's revision"
    );
    assert!(third["metadata"].get("continue").is_none());
    let odd = api
        .get(&format!("{}&limit=2", select("tier=odd")))
        .await
        .body;
    assert_eq!(names(&odd), ["cm-1", "cm-3"]);
    let token = odd["metadata"]["continue"].as_str().unwrap().to_string();
    let odd2 = api
        .get(&format!("{}&limit=2&continue={token}", select("tier=odd")))
        .await
        .body;
    assert_eq!(names(&odd2), ["cm-5", "cm-7"]);
    assert_eq!(
        api.get(&format!("{CMS}?limit=4&continue=garbage"))
            .await
            .code,
        400
    );

    eprintln!("-- a continue token whose revision was compacted is 410 Gone");
    let page = api.get(&format!("{CMS}?limit=2")).await.body;
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    for i in 0..3 {
        assert_eq!(
            api.post(CMS, &cm(&format!("late-{i}"), json!({})))
                .await
                .code,
            201
        );
    }
    let now = rv(&api.get(&format!("{CMS}/late-2")).await.body);
    c.backend.compact(now).await;
    let expired = api.get(&format!("{CMS}?limit=2&continue={token}")).await;
    assert_eq!(
        (expired.code, expired.body["reason"].as_str()),
        (410, Some("Expired")),
        "{}",
        expired.body
    );

    eprintln!("-- Tables for kubectl get");
    let table = api
        .call_with(
            "GET",
            CMS,
            &[(
                "accept",
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
            )],
            "",
        )
        .await
        .body;
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Data", "Age"]);
    assert_eq!(table["rows"][0]["object"]["kind"], "PartialObjectMetadata");
}
on_both_backends!(
    selectors_and_pagination,
    selectors_and_pagination_on_cairn_store,
    selectors_and_pagination_on_etcd
);

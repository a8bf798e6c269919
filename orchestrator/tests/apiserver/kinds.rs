//! Every kind beyond the first few, through the real kubectl: typed `kubectl create` (protobuf
//! bodies) of jobs, cronjobs, RBAC objects, quotas, priority classes and PDBs must store what the
//! same objects sent as JSON store, the rest are applied from a manifest, and `kubectl get`
//! prints each kind with the columns Kubernetes prints.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

const NS: &str = "kinds";

/// A StatefulSet's revision, applied once the StatefulSet exists: its owner reference must
/// carry the owner's uid, or the garbage collector deletes it as an orphan.
const REVISION: &str = r#"apiVersion: apps/v1
kind: ControllerRevision
metadata:
  name: db-7d4b9c
  namespace: kinds
  ownerReferences:
  - {apiVersion: apps/v1, kind: StatefulSet, name: db, uid: OWNER_UID, controller: true}
revision: 3
data: {spec: {}}
"#;

/// Objects applied as JSON (kubectl apply sends JSON): the kinds with no typed create.
const MANIFEST: &str = r#"apiVersion: v1
kind: Endpoints
metadata: {name: web, namespace: kinds}
subsets:
- addresses: [{ip: 10.1.0.1}, {ip: 10.1.0.2}]
  ports: [{port: 8080}]
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: disk-1}
spec:
  capacity: {storage: 5Gi}
  accessModes: [ReadWriteOnce, ReadOnlyMany]
  storageClassName: slow
  hostPath: {path: /tmp/disk-1}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data, namespace: kinds}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: kinds}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: legacy}}
    spec:
      containers: [{name: c, image: "nginx:1.25"}]
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: front, namespace: kinds}
spec:
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec:
      containers: [{name: c, image: "nginx:1.25"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: kinds}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      nodeSelector: {disk: ssd}
      containers: [{name: c, image: busybox}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: kinds}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: c, image: "postgres:16"}]
  volumeClaimTemplates:
  - metadata: {name: pgdata}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: leader, namespace: kinds}
spec: {holderIdentity: node-a, leaseDurationSeconds: 15}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: web, namespace: kinds}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  maxReplicas: 5
---
apiVersion: v1
kind: LimitRange
metadata: {name: limits, namespace: kinds}
spec:
  limits:
  - type: Container
    max: {cpu: "2"}
"#;

/// Typed creates (protobuf bodies) of every kind kubectl has a `create` subcommand for.
fn typed_commands() -> Vec<Vec<&'static str>> {
    vec![
        vec![
            "create",
            "job",
            "pi",
            "--image=perl:5.34",
            "--",
            "perl",
            "-e",
            "print 1",
        ],
        vec![
            "create",
            "cronjob",
            "tick",
            "--image=busybox",
            "--schedule=*/5 * * * *",
            "--",
            "date",
        ],
        vec![
            "create",
            "role",
            "reader",
            "--verb=get,list",
            "--resource=pods,deployments.apps",
        ],
        vec![
            "create",
            "rolebinding",
            "read",
            "--role=reader",
            "--user=alice",
            "--group=devs",
            "--serviceaccount=kinds:robot",
        ],
        vec![
            "create",
            "clusterrole",
            "node-reader",
            "--verb=get",
            "--resource=nodes",
        ],
        vec![
            "create",
            "clusterrolebinding",
            "read-nodes",
            "--clusterrole=node-reader",
            "--user=bob",
        ],
        vec!["create", "quota", "q", "--hard=cpu=1,memory=1G,pods=2"],
        vec![
            "create",
            "priorityclass",
            "high",
            "--value=1000",
            "--description=important",
        ],
        vec![
            "create",
            "poddisruptionbudget",
            "web",
            "--selector=app=web",
            "--min-available=1",
        ],
    ]
}

/// One table of `kubectl get` output: column names, and rows (cells) by their first cell.
type Table = (Vec<String>, BTreeMap<String, Vec<String>>);

/// `cmd` with `flags` right after `create <kind>` (before any `--` that starts a command line).
fn with_flags<'a>(cmd: &[&'a str], flags: &[&'a str]) -> Vec<&'a str> {
    [&cmd[..2], flags, &cmd[2..]].concat()
}

/// `kubectl get` output split into its tables (several kinds print one table each): the
/// header's column names, then each row's cells by the row's first cell. Cells are cut at the
/// header's column offsets, so empty cells keep their place.
fn tables(out: &str) -> Vec<Table> {
    out.split("\n\n")
        .filter(|t| !t.trim().is_empty())
        .map(|t| {
            let mut lines = t.lines();
            let header = lines.next().unwrap_or("");
            let b = header.as_bytes();
            let starts: Vec<usize> = (0..b.len())
                .filter(|&i| b[i] != b' ' && (i == 0 || (i >= 2 && &b[i - 2..i] == b"  ")))
                .collect();
            let cut = |line: &str| -> Vec<String> {
                starts
                    .iter()
                    .enumerate()
                    .map(|(n, &s)| {
                        let end = starts
                            .get(n + 1)
                            .copied()
                            .unwrap_or(line.len())
                            .min(line.len());
                        line.get(s.min(end)..end).unwrap_or("").trim().to_string()
                    })
                    .collect()
            };
            let rows = lines
                .map(|l| {
                    let c = cut(l);
                    (c[0].clone(), c)
                })
                .collect();
            (cut(header), rows)
        })
        .collect()
}

/// The header of the table whose rows name `row`, and that row.
fn row<'a>(tables: &'a [Table], row: &str) -> (&'a [String], &'a [String]) {
    tables
        .iter()
        .find_map(|(h, rows)| rows.get(row).map(|r| (h.as_slice(), r.as_slice())))
        .unwrap_or_else(|| panic!("no row {row} in {tables:#?}"))
}

/// An object without what the server assigns per object (its uid also inside Job labels).
fn normalized(obj: &Value) -> Value {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("-").to_string();
    let text = obj.to_string().replace(&uid, "<uid>");
    let mut v: Value = serde_json::from_str(&text).unwrap();
    let meta = v["metadata"].as_object_mut().unwrap();
    for server_set in ["uid", "creationTimestamp", "resourceVersion"] {
        meta.remove(server_set);
    }
    v
}

fn by_name(list: &Value) -> BTreeMap<String, Value> {
    list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|i| {
            let key = format!(
                "{}/{}",
                i["kind"].as_str().unwrap_or(""),
                i["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, normalized(i))
        })
        .collect()
}

async fn kinds_through_kubectl(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());
    k.ok(&["create", "namespace", NS]).await;

    eprintln!("-- the JSON each typed create would send, stored by a server-side dry run");
    let commands = typed_commands();
    let dry: Vec<_> = commands
        .iter()
        .map(|cmd| {
            let args = with_flags(cmd, &["-n", NS, "--dry-run=client", "-o", "json"]);
            let k = &k;
            async move { serde_json::from_str::<Value>(&k.ok(&args).await).unwrap() }
        })
        .collect();
    let items = futures::future::join_all(dry).await;
    std::fs::write(
        k.path("list.json"),
        json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string(),
    )
    .unwrap();
    let list = k.path("list.json");
    let out = k
        .ok(&[
            "create",
            "-f",
            list.to_str().unwrap(),
            "--dry-run=server",
            "-o",
            "json",
        ])
        .await;
    // One JSON document per object.
    let items: Vec<Value> = serde_json::Deserializer::from_str(&out)
        .into_iter::<Value>()
        .collect::<Result<_, _>>()
        .unwrap();
    let via_json = json!({"items": items});
    let via_json = by_name(&via_json);
    assert_eq!(via_json.len(), 9, "{via_json:#?}");

    eprintln!("-- typed creates (protobuf) of every kind kubectl can create");
    let created: Vec<_> = commands
        .iter()
        .map(|cmd| {
            let args = with_flags(cmd, &["-n", NS]);
            let k = &k;
            async move { k.ok(&args).await }
        })
        .collect();
    for out in futures::future::join_all(created).await {
        assert!(out.contains("created"), "{out}");
    }
    let namespaced = "jobs,cronjobs,roles,rolebindings,resourcequotas,poddisruptionbudgets";
    let mut typed = by_name(
        &serde_json::from_str(&k.ok(&["get", namespaced, "-n", NS, "-o", "json"]).await).unwrap(),
    );
    typed.extend(by_name(
        &serde_json::from_str(
            &k.ok(&[
                "get",
                "clusterroles,clusterrolebindings,priorityclasses",
                "-o",
                "json",
            ])
            .await,
        )
        .unwrap(),
    ));
    // The default RBAC policy and the system PriorityClasses every cluster starts with are not
    // what this test created.
    typed.retain(|name, o| {
        o.pointer("/metadata/labels/kubernetes.io~1bootstrapping")
            .is_none()
            && !name.starts_with("PriorityClass/system-")
    });
    assert_eq!(typed, via_json);

    eprintln!("-- what Kubernetes fills in: job selector and labels, defaults");
    let job = &typed["Job/pi"];
    assert_eq!(
        job["spec"]["selector"],
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "<uid>"}})
    );
    assert_eq!(
        job["metadata"]["labels"],
        json!({"batch.kubernetes.io/controller-uid": "<uid>", "batch.kubernetes.io/job-name": "pi",
               "controller-uid": "<uid>", "job-name": "pi"})
    );
    for (field, want) in [
        ("backoffLimit", json!(6)),
        ("completions", json!(1)),
        ("parallelism", json!(1)),
        ("completionMode", json!("NonIndexed")),
        ("suspend", json!(false)),
    ] {
        assert_eq!(job["spec"][field], want, "{field}");
    }
    let cron = &typed["CronJob/tick"]["spec"];
    assert_eq!(
        (
            &cron["concurrencyPolicy"],
            &cron["successfulJobsHistoryLimit"],
            &cron["failedJobsHistoryLimit"]
        ),
        (&json!("Allow"), &json!(3), &json!(1))
    );
    assert_eq!(
        typed["PriorityClass/high"]["preemptionPolicy"],
        "PreemptLowerPriority"
    );
    assert_eq!(
        typed["PodDisruptionBudget/web"]["status"],
        json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
    );

    eprintln!("-- the other kinds, applied as JSON");
    std::fs::write(k.path("kinds.yaml"), MANIFEST).unwrap();
    let out = k
        .ok(&["apply", "-f", k.path("kinds.yaml").to_str().unwrap()])
        .await;
    assert_eq!(out.lines().count(), 10, "{out}");
    let sts: Value =
        serde_json::from_str(&k.ok(&["get", "sts", "db", "-n", NS, "-o", "json"]).await).unwrap();
    let uid = sts["metadata"]["uid"].as_str().unwrap();
    std::fs::write(k.path("revision.yaml"), REVISION.replace("OWNER_UID", uid)).unwrap();
    k.ok(&["apply", "-f", k.path("revision.yaml").to_str().unwrap()])
        .await;
    assert_eq!(sts["spec"]["replicas"], 1);
    assert_eq!(sts["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["spec"]["volumeMode"],
        "Filesystem"
    );
    assert_eq!(
        sts["status"],
        json!({"availableReplicas": 0, "replicas": 0})
    );

    eprintln!("-- kubectl get prints Kubernetes' columns for every kind");
    let all = "endpoints,pvc,rc,rs,ds,sts,controllerrevisions,leases,hpa,limitranges,jobs,cronjobs,roles,rolebindings,quota,pdb";
    let ns_tables = tables(&k.ok(&["get", all, "-n", NS]).await);
    let cluster_tables = tables(
        &k.ok(&["get", "pv,clusterroles,clusterrolebindings,priorityclasses"])
            .await,
    );
    let expect = |tables: &[Table], name: &str, header: &[&str], cells: &[(usize, &str)]| {
        let (h, r) = row(tables, name);
        assert_eq!(h, header, "{name}");
        for (i, want) in cells {
            assert_eq!(r.get(*i).map(String::as_str), Some(*want), "{name} {r:?}");
        }
    };
    expect(
        &ns_tables,
        "endpoints/web",
        &["NAME", "ENDPOINTS", "AGE"],
        &[(1, "10.1.0.1:8080,10.1.0.2:8080")],
    );
    expect(
        &ns_tables,
        "persistentvolumeclaim/data",
        &[
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE",
        ],
        &[(1, "Pending"), (2, ""), (3, ""), (6, "<unset>")],
    );
    expect(
        &ns_tables,
        "replicationcontroller/legacy",
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        &[(1, "2"), (2, "0"), (3, "0")],
    );
    expect(
        &ns_tables,
        "replicaset.apps/front",
        &["NAME", "DESIRED", "CURRENT", "READY", "AGE"],
        &[(1, "1"), (2, "0")],
    );
    expect(
        &ns_tables,
        "daemonset.apps/agent",
        &[
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
        ],
        &[(1, "0"), (6, "disk=ssd")],
    );
    expect(
        &ns_tables,
        "statefulset.apps/db",
        &["NAME", "READY", "AGE"],
        &[(1, "0/1")],
    );
    expect(
        &ns_tables,
        "controllerrevision.apps/db-7d4b9c",
        &["NAME", "CONTROLLER", "REVISION", "AGE"],
        &[(1, "statefulset.apps/db"), (2, "3")],
    );
    expect(
        &ns_tables,
        "lease.coordination.k8s.io/leader",
        &["NAME", "HOLDER", "AGE"],
        &[(1, "node-a")],
    );
    expect(
        &ns_tables,
        "horizontalpodautoscaler.autoscaling/web",
        &[
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE",
        ],
        &[
            (1, "Deployment/web"),
            (2, "cpu: <unknown>/80%"),
            (3, "1"),
            (4, "5"),
            (5, "0"),
        ],
    );
    expect(
        &ns_tables,
        "limitrange/limits",
        &["NAME", "CREATED AT"],
        &[],
    );
    expect(
        &ns_tables,
        "job.batch/pi",
        &["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"],
        &[(1, "Running"), (2, "0/1")],
    );
    expect(
        &ns_tables,
        "cronjob.batch/tick",
        &[
            "NAME",
            "SCHEDULE",
            "TIMEZONE",
            "SUSPEND",
            "ACTIVE",
            "LAST SCHEDULE",
            "AGE",
        ],
        &[
            (1, "*/5 * * * *"),
            (2, "<none>"),
            (3, "False"),
            (4, "0"),
            (5, "<none>"),
        ],
    );
    expect(
        &ns_tables,
        "role.rbac.authorization.k8s.io/reader",
        &["NAME", "CREATED AT"],
        &[],
    );
    expect(
        &ns_tables,
        "rolebinding.rbac.authorization.k8s.io/read",
        &["NAME", "ROLE", "AGE"],
        &[(1, "Role/reader")],
    );
    expect(
        &ns_tables,
        "resourcequota/q",
        &["NAME", "AGE", "REQUEST", "LIMIT"],
        &[(2, ""), (3, "")],
    );
    expect(
        &ns_tables,
        "poddisruptionbudget.policy/web",
        &[
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE",
        ],
        &[(1, "1"), (2, "N/A"), (3, "0")],
    );
    expect(
        &cluster_tables,
        "persistentvolume/disk-1",
        &[
            "NAME",
            "CAPACITY",
            "ACCESS MODES",
            "RECLAIM POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE",
        ],
        &[
            (1, "5Gi"),
            (2, "RWO,ROX"),
            (3, "Retain"),
            (4, "Pending"),
            (5, ""),
            (6, "slow"),
            (7, "<unset>"),
        ],
    );
    expect(
        &cluster_tables,
        "clusterrole.rbac.authorization.k8s.io/node-reader",
        &["NAME", "CREATED AT"],
        &[],
    );
    expect(
        &cluster_tables,
        "clusterrolebinding.rbac.authorization.k8s.io/read-nodes",
        &["NAME", "ROLE", "AGE"],
        &[(1, "ClusterRole/node-reader")],
    );
    expect(
        &cluster_tables,
        "priorityclass.scheduling.k8s.io/high",
        &["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"],
        &[(1, "1000"), (2, "false"), (4, "PreemptLowerPriority")],
    );
    let wide = tables(
        &k.ok(&["get", "rolebindings,rs,jobs", "-n", NS, "-o", "wide"])
            .await,
    );
    expect(
        &wide,
        "rolebinding.rbac.authorization.k8s.io/read",
        &["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"],
        &[(3, "alice"), (4, "devs"), (5, "kinds/robot")],
    );
    expect(
        &wide,
        "replicaset.apps/front",
        &[
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR",
        ],
        &[(5, "c"), (6, "nginx:1.25"), (7, "app=front")],
    );
    let (h, _) = row(&wide, "job.batch/pi");
    assert_eq!(h.last().map(String::as_str), Some("SELECTOR"));

    eprintln!("-- kind-specific validation answers as Kubernetes does");
    std::fs::write(
        k.path("bad.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata: {name: bad, namespace: kinds}\nspec:\n  template:\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    )
    .unwrap();
    let bad = k
        .run(&["create", "-f", k.path("bad.yaml").to_str().unwrap()])
        .await;
    assert!(
        bad.stderr.contains("spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""),
        "{}",
        bad.stderr
    );
}
on_both_backends!(
    kinds_through_kubectl,
    kinds_through_kubectl_on_cairn_store,
    kinds_through_kubectl_on_etcd
);

fn service(name: &str, cluster_ip: Option<&str>) -> Value {
    let mut svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]}});
    if let Some(ip) = cluster_ip {
        svc["spec"]["clusterIP"] = json!(ip);
    }
    svc
}

async fn service_cluster_ips(c: &Cluster) {
    const SVCS: &str = "/api/v1/namespaces/default/services";
    let api = &c.api;
    eprintln!("-- every Service gets its own address from the range");
    let mut seen = std::collections::HashSet::new();
    for i in 0..5 {
        let r = api.post(SVCS, &service(&format!("s{i}"), None)).await;
        assert_eq!(r.code, 201, "{}", r.body);
        let ip = r.body["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(ip.starts_with("10.0.0.") && ip != "10.0.0.1", "{ip}");
        assert_eq!(r.body["spec"]["clusterIPs"], json!([ip]));
        assert!(seen.insert(ip));
    }

    eprintln!("-- a requested address must be free and in range");
    let r = api.post(SVCS, &service("pinned", Some("10.0.0.5"))).await;
    assert_eq!(
        (r.code, &r.body["spec"]["clusterIP"]),
        (201, &json!("10.0.0.5"))
    );
    let r = api.post(SVCS, &service("twin", Some("10.0.0.5"))).await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Service \"twin\" is invalid: spec.clusterIPs: Invalid value: []string{\"10.0.0.5\"}: failed to allocate IP 10.0.0.5: provided IP is already allocated"
    );
    let r = api.post(SVCS, &service("far", Some("192.168.1.1"))).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let r = api.post(SVCS, &service("bad", Some("not-an-ip"))).await;
    assert_eq!(r.code, 422, "{}", r.body);
    let headless = api.post(SVCS, &service("headless", Some("None"))).await;
    assert_eq!(headless.body["spec"]["clusterIPs"], json!(["None"]));

    eprintln!("-- updates keep the address; it cannot move; deleting frees it");
    let mut replacement = service("pinned", None);
    replacement["spec"]["ports"][0]["port"] = json!(81);
    let r = api.put(&format!("{SVCS}/pinned"), &replacement).await;
    assert_eq!(
        (r.code, &r.body["spec"]["clusterIP"]),
        (200, &json!("10.0.0.5"))
    );
    let r = api
        .put(
            &format!("{SVCS}/pinned"),
            &service("pinned", Some("10.0.0.6")),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(api.delete(&format!("{SVCS}/pinned")).await.code, 200);
    let r = api.post(SVCS, &service("twin", Some("10.0.0.5"))).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let r = api.post(SVCS, &service("pinned", Some("10.0.0.1"))).await;
    assert_eq!(r.code, 422, "the kubernetes Service's address: {}", r.body);
}
on_both_backends!(
    service_cluster_ips,
    service_cluster_ips_on_cairn_store,
    service_cluster_ips_on_etcd
);

const SCALABLE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: scaling}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: "nginx:1.25"}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: front, namespace: scaling}
spec:
  selector: {matchLabels: {app: front}}
  template:
    metadata: {labels: {app: front}}
    spec: {containers: [{name: c, image: "nginx:1.25"}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: scaling}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: c, image: "postgres:16"}]}
---
apiVersion: v1
kind: ReplicationController
metadata: {name: legacy, namespace: scaling}
spec:
  template:
    metadata: {labels: {app: legacy}}
    spec: {containers: [{name: c, image: "nginx:1.25"}]}
"#;

async fn scale_subresource(c: &Cluster) {
    let api = &c.api;
    const DEPLOY: &str = "/apis/apps/v1/namespaces/scaling/deployments/web";
    eprintln!("-- discovery lists <plural>/scale as an autoscaling/v1 Scale");
    let apps = api.get("/apis/apps/v1").await.body;
    let entry = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .cloned()
        .expect("deployments/scale");
    assert_eq!(
        (&entry["group"], &entry["version"], &entry["kind"]),
        (&json!("autoscaling"), &json!("v1"), &json!("Scale"))
    );
    let core = api.get("/api/v1").await.body;
    assert!(core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["name"] == "replicationcontrollers/scale"));

    api.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "scaling"}}),
    )
    .await;
    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        let k = Kubectl::new(&api.url());
        std::fs::write(k.path("scalable.yaml"), SCALABLE).unwrap();
        k.ok(&["apply", "-f", k.path("scalable.yaml").to_str().unwrap()])
            .await;
        eprintln!("-- kubectl scale (a merge patch of /scale) for every scalable kind");
        let out = k
            .ok(&[
                "scale",
                "deploy/web",
                "rs/front",
                "sts/db",
                "rc/legacy",
                "--replicas=3",
                "-n",
                "scaling",
            ])
            .await;
        for line in [
            "deployment.apps/web scaled",
            "replicaset.apps/front scaled",
            "statefulset.apps/db scaled",
            "replicationcontroller/legacy scaled",
        ] {
            assert!(out.contains(line), "{out}");
        }
        let listed: Value = serde_json::from_str(
            &k.ok(&["get", "deploy,rs,sts,rc", "-n", "scaling", "-o", "json"])
                .await,
        )
        .unwrap();
        for item in listed["items"].as_array().unwrap() {
            assert_eq!(item["spec"]["replicas"], 3, "{}", item["metadata"]["name"]);
            assert_eq!(
                item["metadata"]["generation"], 2,
                "{}",
                item["metadata"]["name"]
            );
        }
        eprintln!("-- with --current-replicas kubectl reads the Scale and PUTs it back");
        k.ok(&[
            "scale",
            "deploy/web",
            "--replicas=1",
            "--current-replicas=3",
            "-n",
            "scaling",
        ])
        .await;
        let wrong = k
            .run(&[
                "scale",
                "deploy/web",
                "--replicas=2",
                "--current-replicas=3",
                "-n",
                "scaling",
            ])
            .await;
        assert!(
            !wrong.ok && wrong.stderr.contains("Expected replicas to be 3, was 1"),
            "{}",
            wrong.stderr
        );
    } else {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}});
        assert_eq!(
            api.post("/apis/apps/v1/namespaces/scaling/deployments", &d)
                .await
                .code,
            201
        );
    }

    eprintln!("-- GET, PUT and PATCH of /scale over HTTP");
    let scale = api.get(&format!("{DEPLOY}/scale")).await;
    assert_eq!(scale.code, 200);
    assert_eq!(
        (&scale.body["kind"], &scale.body["apiVersion"]),
        (&json!("Scale"), &json!("autoscaling/v1"))
    );
    assert_eq!(scale.body["spec"], json!({"replicas": 1}));
    assert_eq!(
        scale.body["status"],
        json!({"replicas": 0, "selector": "app=web"})
    );
    let deploy = api.get(DEPLOY).await.body;
    assert_eq!(
        scale.body["metadata"]["resourceVersion"],
        deploy["metadata"]["resourceVersion"]
    );

    let mut stale = scale.body.clone();
    stale["spec"]["replicas"] = json!(4);
    stale["metadata"]["resourceVersion"] = json!("1");
    let r = api.put(&format!("{DEPLOY}/scale"), &stale).await;
    assert_eq!(r.code, 409, "{}", r.body);
    let mut fresh = scale.body.clone();
    fresh["spec"]["replicas"] = json!(4);
    let r = api.put(&format!("{DEPLOY}/scale"), &fresh).await;
    assert_eq!(
        (r.code, &r.body["spec"]["replicas"]),
        (200, &json!(4)),
        "{}",
        r.body
    );
    assert_ne!(
        r.body["metadata"]["resourceVersion"],
        scale.body["metadata"]["resourceVersion"]
    );

    let r = api
        .patch(
            &format!("{DEPLOY}/scale"),
            "application/merge-patch+json",
            &json!({"spec": {"replicas": -1}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    assert_eq!(
        (&r.body["details"]["kind"], &r.body["details"]["group"]),
        (&json!("Scale"), &json!("autoscaling"))
    );
    let r = api
        .patch(
            &format!("{DEPLOY}/scale"),
            "application/json-patch+json",
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 0}]),
        )
        .await;
    assert_eq!((r.code, &r.body["spec"]), (200, &json!({})), "{}", r.body);
    assert_eq!(api.get(DEPLOY).await.body["spec"]["replicas"], 0);

    eprintln!("-- kinds without the subresource, and verbs it does not have");
    let cms = api
        .get("/api/v1/namespaces/default/configmaps/x/scale")
        .await;
    assert_eq!(cms.code, 404);
    assert_eq!(api.delete(&format!("{DEPLOY}/scale")).await.code, 405);
    assert_eq!(
        api.get("/apis/apps/v1/namespaces/scaling/deployments/nope/scale")
            .await
            .code,
        404
    );
}
on_both_backends!(
    scale_subresource,
    scale_subresource_on_cairn_store,
    scale_subresource_on_etcd
);

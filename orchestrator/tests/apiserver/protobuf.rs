//! Kubernetes' protobuf request bodies, end to end. kubectl's typed `create` subcommands send
//! `application/vnd.kubernetes.protobuf`; each object they create must be stored exactly as the
//! same object sent as JSON (`--dry-run=client -o json`, then `create -f`) is. Plus raw HTTP:
//! create, replace and delete with protobuf bodies, and the errors undecodable ones get.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Value};

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

/// A self-signed P-256 certificate and its key for `kubectl create secret tls`.
const TLS_CRT: &str = "-----BEGIN CERTIFICATE-----
MIIBgTCCASegAwIBAgIUUrT7+Rg5knNl0qA1Ka8mvQv2EG8wCgYIKoZIzj0EAwIw
FTETMBEGA1UEAwwKY2Fpcm4tdGVzdDAgFw0yNjExMjcyMTEzMzNaGA8yMTI2MTEw
MzIxMTMzM1owFTETMBEGA1UEAwwKY2Fpcm4tdGVzdDBZMBMGByqGSM49AgEGCCqG
SM49AwEHA0IABEAwSfZuC9IrteA/BG/P2Ae/GbeyXFy5MrygpScfb4hZSDV+s/KT
S3XMjmtvUvJC/w8Ru/3ZkSBCZEgQvp/6qpWjUzBRMB0GA1UdDgQWBBRLRkdmXFry
D8sg/E70CMmc3G7lSTAfBgNVHSMEGDAWgBRLRkdmXFryD8sg/E70CMmc3G7lSTAP
BgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIHllxt8d8Gzgt2NJL9lz
DSMNxev5G87XKfWHo0EEQ3n8AiEAj/m56wGOsVkkknC+TtyXN4uIjGiC85BalPFF
4OGzd0c=
-----END CERTIFICATE-----
";
const TLS_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgb/4CscMRRqYeGHjZ
zXNTS/JZNcDWz+pWBSzCt7g/dDOhRANCAARAMEn2bgvSK7XgPwRvz9gHvxm3slxc
uTK8oKUnH2+IWUg1frPyk0t1zI5rb1LyQv8PEbv92ZEgQmRIEL6f+qqV
-----END PRIVATE KEY-----
";

/// Stored objects keyed "kind/name", without what the server assigns per object.
fn stored(list_json: &str) -> BTreeMap<String, Value> {
    let list: Value = serde_json::from_str(list_json).expect("kubectl get -o json");
    list["items"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| {
            let mut item = item.clone();
            let meta = item["metadata"].as_object_mut().expect("metadata");
            for server_set in ["uid", "creationTimestamp", "resourceVersion", "namespace"] {
                meta.remove(server_set);
            }
            // Each Service gets its own cluster IP and node ports; that it has them is checked
            // separately.
            if let Some(spec) = item["spec"].as_object_mut() {
                for allocated in ["clusterIP", "clusterIPs", "healthCheckNodePort"] {
                    spec.remove(allocated);
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        p.remove("nodePort");
                    }
                }
            }
            let key = format!(
                "{}/{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, item)
        })
        .collect()
}

/// Runs each typed `kubectl create` in namespace `typed` (protobuf bodies), and the same command
/// with `--dry-run=client -o json` created with `create -f` in namespace `viajson` (JSON bodies);
/// returns the objects of `resources` stored in each.
async fn typed_and_json(
    k: &Kubectl,
    commands: &[Vec<&str>],
    resources: &str,
) -> (BTreeMap<String, Value>, BTreeMap<String, Value>) {
    let mut items = Vec::new();
    for cmd in commands {
        let typed = [cmd.as_slice(), &["-n", "typed"]].concat();
        let dry_run = [
            cmd.as_slice(),
            &["-n", "viajson", "--dry-run=client", "-o", "json"],
        ]
        .concat();
        let (out, dry) = tokio::join!(k.ok(&typed), k.ok(&dry_run));
        assert!(out.contains("created"), "{out}");
        items.push(serde_json::from_str::<Value>(&dry).expect("dry-run JSON"));
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::write(k.path("list.json"), list.to_string()).unwrap();
    k.ok(&["create", "-f", k.path("list.json").to_str().unwrap()])
        .await;
    let typed = stored(&k.ok(&["get", resources, "-n", "typed", "-o", "json"]).await);
    let via_json = stored(
        &k.ok(&["get", resources, "-n", "viajson", "-o", "json"])
            .await,
    );
    (typed, via_json)
}

async fn setup(c: &Cluster) -> Option<Kubectl> {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return None;
    }
    let k = Kubectl::new(&c.api.url());
    eprintln!("-- kubectl create namespace sends protobuf");
    let out = k.ok(&["create", "namespace", "typed"]).await;
    assert!(out.contains("namespace/typed created"), "{out}");
    k.ok(&["create", "namespace", "viajson"]).await;
    let ns: Value =
        serde_json::from_str(&k.ok(&["get", "ns", "typed", "-o", "json"]).await).unwrap();
    assert_eq!(ns["status"]["phase"], "Active");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    Some(k)
}

async fn typed_create_of_config_objects(c: &Cluster) {
    let Some(k) = setup(c).await else { return };
    std::fs::write(k.path("tls.crt"), TLS_CRT).unwrap();
    std::fs::write(k.path("tls.key"), TLS_KEY).unwrap();
    let crt = format!("--cert={}", k.path("tls.crt").display());
    let key = format!("--key={}", k.path("tls.key").display());
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "create",
            "configmap",
            "settings",
            "--from-literal=color=blue",
            "--from-literal=empty=",
        ],
        vec![
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=username=admin",
            "--from-literal=password=s3cr=t",
            "--type=kubernetes.io/basic-auth",
        ],
        vec!["create", "secret", "tls", "web-tls", &crt, &key],
        vec![
            "create",
            "secret",
            "docker-registry",
            "pull",
            "--docker-server=registry.example.com",
            "--docker-username=u",
            "--docker-password=p",
        ],
        vec!["create", "serviceaccount", "robot"],
    ];
    eprintln!("-- typed creates (protobuf) store what the same objects sent as JSON store");
    let (typed, via_json) =
        typed_and_json(&k, &commands, "configmaps,secrets,serviceaccounts").await;
    assert_eq!(typed.len(), 5, "{typed:#?}");
    assert_eq!(typed, via_json);

    eprintln!("-- the stored objects hold what kubectl was given");
    let cm = &typed["ConfigMap/settings"];
    assert_eq!(cm["data"], json!({"color": "blue", "empty": ""}));
    let creds = &typed["Secret/creds"];
    assert_eq!(creds["type"], "kubernetes.io/basic-auth");
    assert_eq!(
        creds["data"],
        json!({"username": "YWRtaW4=", "password": "czNjcj10"})
    );
    let tls = &typed["Secret/web-tls"];
    assert_eq!(tls["type"], "kubernetes.io/tls");
    use base64::Engine as _;
    let crt_stored = base64::engine::general_purpose::STANDARD
        .decode(tls["data"]["tls.crt"].as_str().unwrap())
        .unwrap();
    assert_eq!(crt_stored, TLS_CRT.as_bytes());
    assert_eq!(
        typed["Secret/pull"]["type"],
        "kubernetes.io/dockerconfigjson"
    );
    assert!(typed.contains_key("ServiceAccount/robot"));
    let described = k.ok(&["describe", "secret", "creds", "-n", "typed"]).await;
    assert!(described.contains("6 bytes"), "{described}");
}
on_both_backends!(
    typed_create_of_config_objects,
    typed_create_of_config_objects_on_cairn_store,
    typed_create_of_config_objects_on_etcd
);

async fn typed_create_of_workloads_and_services(c: &Cluster) {
    let Some(k) = setup(c).await else { return };
    let commands: Vec<Vec<&str>> = vec![
        vec![
            "create",
            "deployment",
            "web",
            "--image=nginx:1.25",
            "--port=80",
            "--replicas=0",
        ],
        vec!["create", "service", "clusterip", "web", "--tcp=80:8080"],
        vec!["create", "service", "nodeport", "np", "--tcp=8080:http"],
        vec!["create", "service", "loadbalancer", "lb", "--tcp=443"],
        vec![
            "create",
            "service",
            "externalname",
            "ext",
            "--external-name=db.example.com",
        ],
    ];
    eprintln!("-- typed creates (protobuf) store what the same objects sent as JSON store");
    let (typed, via_json) = typed_and_json(&k, &commands, "deployments,services").await;
    assert_eq!(typed.len(), 5, "{typed:#?}");
    assert_eq!(typed, via_json);

    eprintln!("-- a replica count of 0 (a pointer set to zero) survives, defaults apply");
    let web = &typed["Deployment/web"];
    assert_eq!(web["spec"]["replicas"], 0);
    assert_eq!(web["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(web["metadata"]["generation"], 1);
    let container = &web["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "nginx:1.25");
    assert_eq!(
        container["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(web["status"], json!({}));
    let ports = |name: &str| typed[&format!("Service/{name}")]["spec"]["ports"].clone();
    assert_eq!(
        ports("web"),
        json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(ports("np")[0]["targetPort"], "http");
    // No target given: Kubernetes defaults it to the port.
    assert_eq!(ports("lb")[0]["targetPort"], 443);
    assert_eq!(typed["Service/np"]["spec"]["type"], "NodePort");
    let svc: Value = serde_json::from_str(
        &k.ok(&["get", "svc", "web", "-n", "typed", "-o", "json"])
            .await,
    )
    .unwrap();
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(
        ip.starts_with("10.0.0.") && ip != "10.0.0.1",
        "{ip} from the default 10.0.0.0/24"
    );
    assert_eq!(svc["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(svc["spec"]["ipFamilies"], json!(["IPv4"]));
    assert!(typed["Service/ext"]["spec"].get("ipFamilies").is_none());
    assert_eq!(
        typed["Service/ext"]["spec"]["externalName"],
        "db.example.com"
    );

    eprintln!("-- kubectl run and expose (JSON bodies) work alongside");
    k.ok(&[
        "run",
        "solo",
        "--image=busybox",
        "--port=8080",
        "-n",
        "typed",
    ])
    .await;
    let out = k
        .ok(&[
            "expose",
            "deployment",
            "web",
            "--port=80",
            "--name=web-exposed",
            "-n",
            "typed",
        ])
        .await;
    assert!(out.contains("service/web-exposed exposed"), "{out}");
    let svc: Value = serde_json::from_str(
        &k.ok(&["get", "svc", "web-exposed", "-n", "typed", "-o", "json"])
            .await,
    )
    .unwrap();
    assert_eq!(svc["spec"]["selector"], json!({"app": "web"}));
    let listed = k.ok(&["get", "deploy,svc,pods", "-n", "typed"]).await;
    assert!(
        listed.contains("deployment.apps/web") && listed.contains("pod/solo"),
        "{listed}"
    );
}
on_both_backends!(
    typed_create_of_workloads_and_services,
    typed_create_of_workloads_and_services_on_cairn_store,
    typed_create_of_workloads_and_services_on_etcd
);

/// A protobuf field: a varint or a length-delimited payload (k8s.io/api field numbers).
enum F {
    V(u32, u64),
    B(u32, Vec<u8>),
}

fn msg(fields: Vec<F>) -> Vec<u8> {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut out = Vec::new();
    for f in fields {
        match f {
            F::V(n, v) => {
                varint(&mut out, u64::from(n) << 3);
                varint(&mut out, v);
            }
            F::B(n, b) => {
                varint(&mut out, u64::from(n) << 3 | 2);
                varint(&mut out, b.len() as u64);
                out.extend(b);
            }
        }
    }
    out
}

fn text(n: u32, s: &str) -> F {
    F::B(n, s.as_bytes().to_vec())
}

/// `k8s\0` + runtime.Unknown{typeMeta{apiVersion, kind}, raw}.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Bytes {
    let mut body = b"k8s\0".to_vec();
    body.extend(msg(vec![
        F::B(1, msg(vec![text(1, api_version), text(2, kind)])),
        F::B(2, raw),
    ]));
    Bytes::from(body)
}

/// A ConfigMap: metadata{name, resourceVersion} = 1, data = 2 (map entries key 1, value 2).
fn configmap(name: &str, resource_version: &str, data: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![F::B(1, msg(vec![text(1, name), text(6, resource_version)]))];
    for (k, v) in data {
        fields.push(F::B(2, msg(vec![text(1, k), text(2, v)])));
    }
    msg(fields)
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

async fn protobuf_bodies_over_http(c: &Cluster) {
    let api = &c.api;
    let cms = "/api/v1/namespaces/default/configmaps";
    let headers = [
        ("content-type", PROTOBUF),
        (
            "accept",
            "application/vnd.kubernetes.protobuf,application/json",
        ),
    ];

    eprintln!("-- create: 201 with the object, answered in JSON");
    let created = api
        .call_bytes(
            "POST",
            cms,
            &headers,
            envelope("v1", "ConfigMap", configmap("pb", "", &[("a", "1")])),
        )
        .await;
    assert_eq!(created.code, 201, "{}", created.body);
    assert_eq!(created.body["data"], json!({"a": "1"}));
    let rv = created.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    eprintln!("-- replace with a stale resourceVersion is a Conflict, with the current one works");
    let stale = api
        .call_bytes(
            "PUT",
            &format!("{cms}/pb"),
            &headers,
            envelope("v1", "ConfigMap", configmap("pb", "1", &[("a", "2")])),
        )
        .await;
    assert_eq!(stale.code, 409, "{}", stale.body);
    let replaced = api
        .call_bytes(
            "PUT",
            &format!("{cms}/pb"),
            &headers,
            envelope("v1", "ConfigMap", configmap("pb", &rv, &[("a", "2")])),
        )
        .await;
    assert_eq!(replaced.code, 200, "{}", replaced.body);
    assert_eq!(
        api.get(&format!("{cms}/pb")).await.body["data"],
        json!({"a": "2"})
    );

    eprintln!("-- an envelope without typeMeta takes the endpoint's kind");
    let mut bare = b"k8s\0".to_vec();
    bare.extend(msg(vec![F::B(2, configmap("bare", "", &[]))]));
    let r = api
        .call_bytes("POST", cms, &headers, Bytes::from(bare))
        .await;
    assert_eq!(r.code, 201, "{}", r.body);

    eprintln!("-- a Secret sent to the configmaps endpoint is refused like its JSON form");
    let r = api
        .call_bytes(
            "POST",
            cms,
            &headers,
            envelope("v1", "Secret", msg(vec![F::B(1, msg(vec![text(1, "s")]))])),
        )
        .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.body["reason"], "BadRequest");

    eprintln!("-- undecodable bodies are 400 Status objects");
    for (body, expect) in [
        (Bytes::from_static(b"{\"kind\":\"ConfigMap\"}"), "does not appear to be a protobuf message"),
        (Bytes::from_static(b"k8s\0\x0a\x50"), "the object provided is unrecognized (must be of type ConfigMap)"),
        (envelope("v1", "Gizmo", vec![]), "Gizmo in version \"v1\" cannot be handled as a ConfigMap: no kind \"Gizmo\" is registered"),
        (envelope("v1", "ConfigMap", vec![0x0a, 0x05, 0x0a]), "ConfigMap in version \"v1\" cannot be handled as a ConfigMap"),
    ] {
        let r = api.call_bytes("POST", cms, &headers, body).await;
        assert_eq!(r.code, 400, "{}", r.body);
        assert_eq!(r.body["kind"], "Status");
        assert_eq!(r.body["reason"], "BadRequest");
        assert!(r.body["message"].as_str().unwrap().contains(expect), "{}", r.body);
    }

    eprintln!("-- other encodings stay 415");
    let r = api
        .call_bytes(
            "POST",
            cms,
            &[("content-type", "application/yaml")],
            Bytes::from_static(b"kind: ConfigMap"),
        )
        .await;
    assert_eq!(r.code, 415, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/vnd.kubernetes.protobuf"
    );

    eprintln!("-- delete with protobuf DeleteOptions (preconditions.uid)");
    let uid = api.get(&format!("{cms}/pb")).await.body["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = envelope(
        "v1",
        "DeleteOptions",
        msg(vec![F::B(2, msg(vec![text(1, "not-the-uid")]))]),
    );
    let r = api
        .call_bytes("DELETE", &format!("{cms}/pb"), &headers, wrong)
        .await;
    assert_eq!(r.code, 409, "{}", r.body);
    let right = envelope(
        "v1",
        "DeleteOptions",
        msg(vec![F::B(2, msg(vec![text(1, &uid)])), F::V(3, 0)]),
    );
    let r = api
        .call_bytes("DELETE", &format!("{cms}/pb"), &headers, right)
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(api.get(&format!("{cms}/pb")).await.code, 404);
}
on_both_backends!(
    protobuf_bodies_over_http,
    protobuf_bodies_over_http_on_cairn_store,
    protobuf_bodies_over_http_on_etcd
);

async fn autoscaling_v1_protobuf_body(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- an autoscaling/v1 HPA in protobuf is stored as v2");
    // metadata{name} = 1; spec = 2 {scaleTargetRef{kind, name, apiVersion} = 1, minReplicas = 2,
    // maxReplicas = 3, targetCPUUtilizationPercentage = 4}.
    let raw = msg(vec![
        F::B(1, msg(vec![text(1, "pb")])),
        F::B(
            2,
            msg(vec![
                F::B(
                    1,
                    msg(vec![
                        text(1, "Deployment"),
                        text(2, "web"),
                        text(3, "apps/v1"),
                    ]),
                ),
                F::V(2, 1),
                F::V(3, 4),
                F::V(4, 55),
            ]),
        ),
    ]);
    let r = api
        .call_bytes(
            "POST",
            "/apis/autoscaling/v1/namespaces/default/horizontalpodautoscalers",
            &[("content-type", PROTOBUF)],
            envelope("autoscaling/v1", "HorizontalPodAutoscaler", raw),
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["apiVersion"], "autoscaling/v1");
    assert_eq!(r.body["spec"]["targetCPUUtilizationPercentage"], 55);
    let v2 = api
        .get("/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/pb")
        .await;
    assert_eq!(
        v2.body["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 55}}}])
    );
    assert_eq!(v2.body["spec"]["maxReplicas"], 4);
}
on_both_backends!(
    autoscaling_v1_protobuf_body,
    autoscaling_v1_protobuf_body_on_cairn_store,
    autoscaling_v1_protobuf_body_on_etcd
);

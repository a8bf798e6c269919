//! `pods/<name>/log`: the apiserver finds the pod's node, reaches that node's kubelet at the
//! address and port the Node reports, and relays `/containerLogs/...` from it, as
//! kube-apiserver does, through raw HTTP and the real `kubectl logs`.
//!
//! The kubelet's side here is a small HTTPS server answering `/containerLogs` the way a kubelet
//! does (the log as text/plain, `follow` as a stream, a 400 for a container that has not
//! started), with a serving certificate of its own.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cairn::apiserver::auth::tls::{server_config, ServingCert};
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::harness::{free_port, have, Cluster, Kubectl};
use crate::on_both_backends;

const PODS: &str = "/api/v1/namespaces/default/pods";

/// A stand-in for a node's kubelet: its `/containerLogs` endpoint over HTTPS.
struct KubeletLogs {
    port: u16,
    /// Its serving certificate followed by the CA that signed it (PEM).
    ca_file: PathBuf,
    /// Every request's path and query, in order.
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

type Reply = hyper::Response<BoxBody<Bytes, Infallible>>;

fn text(code: u16, body: String) -> Reply {
    hyper::Response::builder()
        .status(code)
        .header("content-type", "text/plain")
        .body(Full::new(Bytes::from(body)).boxed())
        .expect("response")
}

/// What the kubelet answers for `path_and_query`.
fn answer(path_and_query: &str) -> Reply {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let Some(rest) = path.strip_prefix("/containerLogs/") else {
        return text(404, "404 page not found\n".into());
    };
    let parts: Vec<&str> = rest.split('/').collect();
    let [namespace, pod, container] = parts[..] else {
        return text(404, "404 page not found\n".into());
    };
    match container {
        "starting" => text(
            400,
            format!(
                "container \"{container}\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            ),
        ),
        "vanished" => text(404, "no such container\n".into()),
        _ if query.split('&').any(|p| p == "follow=true") => {
            let lines = futures::stream::iter(1..=3).then(|i| async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("tick {i}\n"))))
            });
            hyper::Response::builder()
                .header("content-type", "text/plain")
                .body(BodyExt::boxed(StreamBody::new(lines)))
                .expect("response")
        }
        _ => {
            let mut log = String::new();
            for i in 1..=5 {
                log.push_str(&format!("{namespace}/{pod}/{container} line {i}\n"));
            }
            // Only what `tailLines` keeps, as a kubelet does.
            let tail = query
                .split('&')
                .find_map(|p| p.strip_prefix("tailLines="))
                .and_then(|n| n.parse::<usize>().ok());
            if let Some(n) = tail {
                let lines: Vec<&str> = log.lines().collect();
                log = lines[lines.len().saturating_sub(n)..]
                    .iter()
                    .map(|l| format!("{l}\n"))
                    .collect();
            }
            text(200, log)
        }
    }
}

impl KubeletLogs {
    async fn start() -> KubeletLogs {
        let dir = tempfile::tempdir().expect("tempdir");
        let serving = server_config(
            &ServingCert::SelfSigned {
                dir: dir.path().to_path_buf(),
                hosts: vec!["127.0.0.1".into()],
            },
            None,
        )
        .expect("kubelet serving certificate");
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let acceptor = tokio_rustls::TlsAcceptor::from(serving.config.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                        let pq = req
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        seen.lock().expect("requests").push(pq.clone());
                        async move { Ok::<_, Infallible>(answer(&pq)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        KubeletLogs {
            port,
            ca_file: serving.cert_file,
            requests,
            task,
            _dir: dir,
        }
    }

    fn last_request(&self) -> String {
        self.requests
            .lock()
            .expect("requests")
            .last()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for KubeletLogs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers node `name` with its kubelet at 127.0.0.1:`port`, as a kubelet registers itself:
/// one create carrying the node's status.
async fn register_node(c: &Cluster, name: &str, port: u16) {
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
    "status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
    }});
    let r = c.api.post("/api/v1/nodes", &node).await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["status"], node["status"]);
}

async fn create_pod(c: &Cluster, name: &str, node: Option<&str>, containers: &[&str]) {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": containers.iter()
            .map(|c| json!({"name": c, "image": "busybox"})).collect::<Vec<_>>()}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    let r = c.api.post(PODS, &pod).await;
    assert_eq!(r.code, 201, "{}", r.body);
}

async fn pod_logs(c: &Cluster) {
    let kubelet = KubeletLogs::start().await;
    register_node(c, "n1", kubelet.port).await;
    create_pod(c, "web", Some("n1"), &["app"]).await;
    create_pod(c, "multi", Some("n1"), &["app", "sidecar", "starting"]).await;

    eprintln!("-- discovery lists the subresource");
    let list = c.api.get("/api/v1").await.body;
    let entry = list["resources"]
        .as_array()
        .and_then(|rs| rs.iter().find(|r| r["name"] == "pods/log"))
        .cloned()
        .expect("pods/log in discovery");
    assert_eq!(entry["kind"], "Pod");
    assert_eq!(entry["verbs"], json!(["get"]));

    eprintln!("-- the only container's log, from the node's kubelet");
    let r = c.api.get(&format!("{PODS}/web/log")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.header_values("content-type"), ["text/plain"]);
    assert_eq!(
        r.body,
        Value::String(
            (1..=5)
                .map(|i| format!("default/web/app line {i}\n"))
                .collect()
        )
    );
    assert_eq!(kubelet.last_request(), "/containerLogs/default/web/app");

    eprintln!("-- options travel to the kubelet");
    let r = c
        .api
        .get(&format!(
            "{PODS}/multi/log?container=sidecar&tailLines=2&timestamps=true&limitBytes=4096&sinceSeconds=60"
        ))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.body,
        "default/multi/sidecar line 4\ndefault/multi/sidecar line 5\n"
    );
    assert_eq!(
        kubelet.last_request(),
        "/containerLogs/default/multi/sidecar?limitBytes=4096&sinceSeconds=60&tailLines=2&timestamps=true"
    );

    eprintln!("-- follow streams the log as the kubelet writes it");
    let r = c.api.get(&format!("{PODS}/web/log?follow=true")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body, "tick 1\ntick 2\ntick 3\n");

    eprintln!("-- which container is meant");
    let r = c.api.get(&format!("{PODS}/multi/log")).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "a container name must be specified for pod multi, choose one of: [app sidecar starting]"
    );
    let r = c.api.get(&format!("{PODS}/multi/log?container=db")).await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.body["message"], "container db is not valid for pod multi");

    eprintln!("-- the kubelet's refusals keep their status and text");
    let r = c
        .api
        .get(&format!("{PODS}/multi/log?container=starting"))
        .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.body["reason"], "BadRequest");
    assert_eq!(
        r.body["message"],
        "container \"starting\" in pod \"multi\" is waiting to start: ContainerCreating"
    );
    create_pod(c, "gone", Some("n1"), &["vanished"]).await;
    let r = c.api.get(&format!("{PODS}/gone/log")).await;
    assert_eq!(r.code, 404, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "the server could not find the requested resource ( pods/log gone)"
    );

    eprintln!("-- invalid options are a 422 on PodLogOptions");
    let r = c
        .api
        .get(&format!("{PODS}/web/log?tailLines=-1&sinceSeconds=0"))
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "PodLogOptions \"web\" is invalid: [tailLines: Invalid value: -1: must be greater than or equal to 0, sinceSeconds: Invalid value: 0: must be greater than 0]"
    );
    assert_eq!(r.body["details"]["kind"], "PodLogOptions");

    eprintln!("-- a pod no node has taken has an empty log");
    create_pod(c, "pending", None, &["app"]).await;
    let r = c.api.get(&format!("{PODS}/pending/log")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(r.body, "");

    eprintln!("-- a missing pod, a missing node, an unreachable kubelet");
    let r = c.api.get(&format!("{PODS}/nope/log")).await;
    assert_eq!(r.code, 404, "{}", r.body);
    assert_eq!(r.body["message"], "pods \"nope\" not found");
    create_pod(c, "orphan", Some("ghost"), &["app"]).await;
    let r = c.api.get(&format!("{PODS}/orphan/log")).await;
    assert_eq!(r.code, 404, "{}", r.body);
    assert_eq!(r.body["message"], "nodes \"ghost\" not found");
    let closed = free_port();
    register_node(c, "dark", closed).await;
    create_pod(c, "unlit", Some("dark"), &["app"]).await;
    let r = c.api.get(&format!("{PODS}/unlit/log")).await;
    assert_eq!(r.code, 500, "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "Get \"https://127.0.0.1:{closed}/containerLogs/default/unlit/app\": dial tcp 127.0.0.1:{closed}: "
        )),
        "{message}"
    );
    assert!(r.body.get("reason").is_none(), "{}", r.body);
    let r = c
        .api
        .call("POST", &format!("{PODS}/web/log"), "application/json", "{}")
        .await;
    assert_eq!(r.code, 405, "{}", r.body);

    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    eprintln!("-- kubectl logs");
    let k = Kubectl::new(&c.api.url());
    let out = k.ok(&["logs", "web"]).await;
    assert_eq!(
        out,
        (1..=5)
            .map(|i| format!("default/web/app line {i}\n"))
            .collect::<String>()
    );
    let out = k.ok(&["logs", "multi", "-c", "sidecar", "--tail=1"]).await;
    assert_eq!(out, "default/multi/sidecar line 5\n");
    let out = k.ok(&["logs", "-f", "web"]).await;
    assert_eq!(out, "tick 1\ntick 2\ntick 3\n");
    let out = k.run(&["logs", "multi", "-c", "starting"]).await;
    assert!(!out.ok);
    assert_eq!(
        out.stderr.trim(),
        "Error from server (BadRequest): container \"starting\" in pod \"multi\" is waiting to start: ContainerCreating"
    );
}

on_both_backends!(pod_logs, pod_logs_on_cairn, pod_logs_on_etcd);

/// With `--kubelet-certificate-authority`, a kubelet whose certificate that CA did not sign is
/// refused, unless the request asks to skip verification; the kubelet's own CA is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_certificates_are_verified_against_the_given_ca() {
    let kubelet = KubeletLogs::start().await;
    let stranger = KubeletLogs::start().await;
    let flags = [
        "--kubelet-certificate-authority",
        kubelet.ca_file.to_str().expect("path"),
    ];
    let c = Cluster::start_with(crate::harness::Backend::cairn().await, &flags).await;
    register_node(&c, "trusted", kubelet.port).await;
    register_node(&c, "untrusted", stranger.port).await;
    create_pod(&c, "a", Some("trusted"), &["app"]).await;
    create_pod(&c, "b", Some("untrusted"), &["app"]).await;

    let r = c.api.get(&format!("{PODS}/a/log")).await;
    assert_eq!(r.code, 200, "{}", r.body);
    let r = c.api.get(&format!("{PODS}/b/log")).await;
    assert_eq!(r.code, 500, "{}", r.body);
    let message = r.body["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{message}");
    assert!(stranger.requests.lock().expect("requests").is_empty());
    let r = c
        .api
        .get(&format!("{PODS}/b/log?insecureSkipTLSVerifyBackend=true"))
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(stranger.last_request(), "/containerLogs/default/b/app");
    c.stop().await;

    eprintln!("-- a node without a usable address");
    let c = Cluster::start_with(
        crate::harness::Backend::cairn().await,
        &["--kubelet-preferred-address-types", "ExternalIP"],
    )
    .await;
    register_node(&c, "n1", kubelet.port).await;
    create_pod(&c, "a", Some("n1"), &["app"]).await;
    let r = c.api.get(&format!("{PODS}/a/log")).await;
    assert_eq!(r.code, 500, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "no preferred addresses found; known addresses: [{InternalIP 127.0.0.1}]"
    );
    c.stop().await;
}

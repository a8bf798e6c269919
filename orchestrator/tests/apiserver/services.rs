//! Services beyond their cluster IPs: node ports allocated from `--service-node-port-range`
//! (raw HTTP and `kubectl create service nodeport` / `kubectl expose --type=NodePort`), and the
//! `default/kubernetes` Service with its Endpoints.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

const SVCS: &str = "/api/v1/namespaces/default/services";

fn node_port_service(name: &str, node_port: Option<u64>) -> Value {
    let mut port = json!({"name": "http", "port": 80, "targetPort": 8080});
    if let Some(np) = node_port {
        port["nodePort"] = json!(np);
    }
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "NodePort", "selector": {"app": name}, "ports": [port]}})
}

fn node_port_of(svc: &Value) -> u64 {
    svc["spec"]["ports"][0]["nodePort"]
        .as_u64()
        .unwrap_or_else(|| panic!("no nodePort in {svc}"))
}

async fn node_ports(c: &Cluster) {
    let api = &c.api;
    eprintln!("-- every NodePort Service gets its own port from 30000-32767");
    let mut seen = HashSet::new();
    for i in 0..4 {
        let r = api
            .post(SVCS, &node_port_service(&format!("np{i}"), None))
            .await;
        assert_eq!(r.code, 201, "{}", r.body);
        let np = node_port_of(&r.body);
        assert!((30000..=32767).contains(&np), "{np}");
        assert!(seen.insert(np));
    }
    let taken = *seen.iter().next().unwrap();

    eprintln!("-- a requested port must be free and in range (kube's words)");
    let r = api
        .post(SVCS, &node_port_service("pinned", Some(30100)))
        .await;
    assert_eq!((r.code, node_port_of(&r.body)), (201, 30100), "{}", r.body);
    let r = api
        .post(SVCS, &node_port_service("twin", Some(30100)))
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Service \"twin\" is invalid: spec.ports[0].nodePort: Invalid value: 30100: provided port is already allocated"
    );
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.ports[0].nodePort"
    );
    let r = api
        .post(SVCS, &node_port_service("twin", Some(taken)))
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let r = api.post(SVCS, &node_port_service("low", Some(8080))).await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Service \"low\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    let mut cluster_ip = node_port_service("cip", Some(30200));
    cluster_ip["spec"]["type"] = json!("ClusterIP");
    let r = api.post(SVCS, &cluster_ip).await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        "Service \"cip\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    );

    eprintln!("-- updates keep the port; a move takes the new one and frees the old");
    let r = api
        .put(
            &format!("{SVCS}/pinned"),
            &node_port_service("pinned", None),
        )
        .await;
    assert_eq!((r.code, node_port_of(&r.body)), (200, 30100), "{}", r.body);
    let r = api
        .put(
            &format!("{SVCS}/pinned"),
            &node_port_service("pinned", Some(taken)),
        )
        .await;
    assert_eq!(r.code, 422, "moving onto a taken port: {}", r.body);
    let r = api
        .put(
            &format!("{SVCS}/pinned"),
            &node_port_service("pinned", Some(30101)),
        )
        .await;
    assert_eq!((r.code, node_port_of(&r.body)), (200, 30101), "{}", r.body);
    let r = api
        .post(SVCS, &node_port_service("twin", Some(30100)))
        .await;
    assert_eq!(r.code, 201, "30100 was released: {}", r.body);

    eprintln!("-- a change to ClusterIP drops and releases the port");
    let r = api
        .patch(
            &format!("{SVCS}/pinned"),
            "application/merge-patch+json",
            &json!({"spec": {"type": "ClusterIP"}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(
        r.body["spec"]["ports"][0].get("nodePort").is_none(),
        "{}",
        r.body
    );
    assert!(
        r.body["spec"].get("externalTrafficPolicy").is_none(),
        "{}",
        r.body
    );
    let r = api
        .post(SVCS, &node_port_service("again", Some(30101)))
        .await;
    assert_eq!(r.code, 201, "30101 was released: {}", r.body);

    eprintln!("-- LoadBalancer with externalTrafficPolicy Local gets a health-check port");
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "lb"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
            "ports": [{"name": "https", "port": 443}]}});
    let r = api.post(SVCS, &lb).await;
    assert_eq!(r.code, 201, "{}", r.body);
    let hc = r.body["spec"]["healthCheckNodePort"].as_u64().unwrap();
    let np = node_port_of(&r.body);
    assert!((30000..=32767).contains(&hc) && hc != np);
    let r = api
        .patch(
            &format!("{SVCS}/lb"),
            "application/merge-patch+json",
            &json!({"spec": {"externalTrafficPolicy": "Cluster"}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(
        r.body["spec"].get("healthCheckNodePort").is_none(),
        "{}",
        r.body
    );
    assert_eq!(node_port_of(&r.body), np);
    let reuse = node_port_service("hc-reuse", Some(hc));
    assert_eq!(api.post(SVCS, &reuse).await.code, 201, "{hc} was released");

    eprintln!("-- deleting a Service frees its ports");
    assert_eq!(api.delete(&format!("{SVCS}/np0")).await.code, 200);
    assert_eq!(api.delete(&format!("{SVCS}/again")).await.code, 200);
    let r = api
        .post(SVCS, &node_port_service("third", Some(30101)))
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
}
on_both_backends!(node_ports, node_ports_on_cairn_store, node_ports_on_etcd);

async fn kubectl_node_ports(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());
    eprintln!("-- kubectl create service nodeport shows the allocated port");
    k.ok(&["create", "service", "nodeport", "front", "--tcp=80:8080"])
        .await;
    let svc: Value =
        serde_json::from_str(&k.ok(&["get", "svc", "front", "-o", "json"]).await).unwrap();
    let np = node_port_of(&svc);
    assert!((30000..=32767).contains(&np), "{np}");
    let out = k.ok(&["get", "svc", "front"]).await;
    assert!(out.contains(&format!("80:{np}/TCP")), "{out}");
    assert!(out.contains("NodePort"), "{out}");
    k.ok(&[
        "create",
        "service",
        "nodeport",
        "fixed",
        "--tcp=8443:443",
        "--node-port=30443",
    ])
    .await;
    let out = k.ok(&["get", "svc", "fixed"]).await;
    assert!(out.contains("8443:30443/TCP"), "{out}");
    let clash = k
        .run(&[
            "create",
            "service",
            "nodeport",
            "clash",
            "--tcp=9000:9000",
            "--node-port=30443",
        ])
        .await;
    assert!(!clash.ok);
    assert!(
        clash.stderr.contains(
            "spec.ports[0].nodePort: Invalid value: 30443: provided port is already allocated"
        ),
        "{}",
        clash.stderr
    );

    eprintln!("-- kubectl expose --type=NodePort");
    k.ok(&["create", "deployment", "web", "--image=nginx", "--port=80"])
        .await;
    let out = k
        .ok(&[
            "expose",
            "deployment",
            "web",
            "--type=NodePort",
            "--port=80",
        ])
        .await;
    assert!(out.contains("service/web exposed"), "{out}");
    let svc: Value =
        serde_json::from_str(&k.ok(&["get", "svc", "web", "-o", "json"]).await).unwrap();
    let np = node_port_of(&svc);
    let out = k.ok(&["get", "svc", "web"]).await;
    assert!(out.contains(&format!("80:{np}/TCP")), "{out}");
}
on_both_backends!(
    kubectl_node_ports,
    kubectl_node_ports_on_cairn_store,
    kubectl_node_ports_on_etcd
);

async fn kubernetes_service(c: &Cluster) {
    let api = &c.api;
    let port = c
        .api
        .addr
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    eprintln!(
        "-- default/kubernetes is there from the start: first address, https 443 -> our port"
    );
    let svc = api.get(&format!("{SVCS}/kubernetes")).await;
    assert_eq!(svc.code, 200, "{}", svc.body);
    assert_eq!(svc.body["spec"]["clusterIP"], "10.0.0.1");
    assert_eq!(svc.body["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc.body["spec"]["ports"],
        json!([{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}])
    );
    assert_eq!(
        svc.body["metadata"]["labels"],
        json!({"component": "apiserver", "provider": "kubernetes"})
    );
    assert!(svc.body["spec"].get("selector").is_none());
    let ep = api
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .await;
    assert_eq!(ep.code, 200, "{}", ep.body);
    assert_eq!(
        ep.body["subsets"],
        json!([{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}])
    );

    eprintln!("-- deleted, both come back at once");
    let uid = svc.body["metadata"]["uid"].clone();
    assert_eq!(api.delete(&format!("{SVCS}/kubernetes")).await.code, 200);
    assert_eq!(
        api.delete("/api/v1/namespaces/default/endpoints/kubernetes")
            .await
            .code,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let svc = api.get(&format!("{SVCS}/kubernetes")).await;
        let ep = api
            .get("/api/v1/namespaces/default/endpoints/kubernetes")
            .await;
        if svc.code == 200 && ep.code == 200 {
            assert_ne!(svc.body["metadata"]["uid"], uid, "a new Service");
            assert_eq!(svc.body["spec"]["clusterIP"], "10.0.0.1");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not recreated");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    eprintln!("-- nobody else gets the first address");
    let mut other = node_port_service("other", None);
    other["spec"]["type"] = json!("ClusterIP");
    other["spec"]["clusterIP"] = json!("10.0.0.1");
    other["spec"]["ports"][0]
        .as_object_mut()
        .unwrap()
        .remove("nodePort");
    assert_eq!(api.post(SVCS, &other).await.code, 422);

    if have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        let k = Kubectl::new(&api.url());
        let out = k.ok(&["get", "svc", "kubernetes"]).await;
        assert!(out.contains("10.0.0.1") && out.contains("443/TCP"), "{out}");
        let out = k.ok(&["get", "endpoints", "kubernetes"]).await;
        assert!(out.contains(&format!("127.0.0.1:{port}")), "{out}");
    }
}
on_both_backends!(
    kubernetes_service,
    kubernetes_service_on_cairn_store,
    kubernetes_service_on_etcd
);

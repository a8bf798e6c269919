//! OpenAPI and server-side field validation: the documents kube-apiserver publishes
//! (/openapi/v2 in JSON and protobuf, /openapi/v3 discovery and per-group-version documents
//! behind content-hash URLs), `kubectl explain` reading them, and fieldValidation
//! (Strict / Warn / Ignore) on create, update and every patch type, with unknown fields never
//! stored, as in Kubernetes.

use serde_json::{json, Value};

use crate::harness::{have, Cluster, Kubectl};
use crate::on_both_backends;

async fn openapi_documents(c: &Cluster) {
    let api = &c.api;

    eprintln!("-- /openapi/v3 names one document per served group-version by hash");
    let disc = api.get("/openapi/v3").await;
    assert_eq!(disc.code, 200, "{}", disc.body);
    let paths = disc.body["paths"].as_object().expect("paths");
    for gv in [
        "api/v1",
        "apis/apps/v1",
        "apis/batch/v1",
        "apis/autoscaling/v2",
        "apis/coordination.k8s.io/v1",
        "apis/policy/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "apis/scheduling.k8s.io/v1",
    ] {
        let url = paths[gv]["serverRelativeURL"].as_str().expect(gv);
        assert!(url.starts_with(&format!("/openapi/v3/{gv}?hash=")), "{url}");
    }

    eprintln!("-- the hash URL is cacheable for a year, with kube-apiserver's headers");
    let url = paths["apis/apps/v1"]["serverRelativeURL"].as_str().unwrap();
    let hash = url.split_once("hash=").unwrap().1;
    let doc = api
        .call_with("GET", url, &[("accept", "application/json")], "")
        .await;
    assert_eq!(doc.code, 200);
    assert_eq!(doc.header_values("cache-control"), ["public, immutable"]);
    assert_eq!(doc.header_values("etag"), [format!("\"{hash}\"")]);
    assert_eq!(doc.header_values("vary"), ["Accept"]);
    assert!(doc.header_values("expires")[0].ends_with(" UTC"));
    let schemas = &doc.body["components"]["schemas"];
    let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
    );
    assert_eq!(
        deployment["properties"]["spec"]["allOf"],
        json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}])
    );
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-map-keys"], json!(["name"]));
    let patch =
        &doc.body["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"),
        "{patch}"
    );

    eprintln!("-- a stale hash redirects to the current one; an unknown group-version is 404");
    let stale = api.get("/openapi/v3/apis/apps/v1?hash=0123").await;
    assert_eq!(stale.code, 301);
    assert_eq!(stale.header_values("location"), [url.to_string()]);
    let plain = api.get("/openapi/v3/api/v1").await;
    assert_eq!(plain.code, 200);
    assert!(plain.header_values("cache-control").is_empty());
    assert!(plain.body["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());
    assert_eq!(api.get("/openapi/v3/apis/widgets/v1").await.code, 404);

    eprintln!("-- /openapi/v2 carries the definitions, as JSON and as protobuf");
    let v2 = api.get("/openapi/v2").await;
    assert_eq!(v2.code, 200);
    let defs = v2.body["definitions"].as_object().expect("definitions");
    for name in [
        "io.k8s.api.core.v1.Pod",
        "io.k8s.api.batch.v1.CronJob",
        "io.k8s.api.autoscaling.v1.Scale",
        "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
    ] {
        assert!(defs.contains_key(name), "{name}");
    }
    assert_eq!(
        defs["io.k8s.api.core.v1.Container"]["properties"]["ports"]["items"]["$ref"],
        "#/definitions/io.k8s.api.core.v1.ContainerPort"
    );
    let pb = api
        .call_with(
            "GET",
            "/openapi/v2",
            &[(
                "accept",
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )],
            "",
        )
        .await;
    assert_eq!(pb.code, 200);
    assert_eq!(
        pb.header_values("content-type"),
        ["application/com.github.proto-openapi.spec.v2.v1.0+protobuf"]
    );
    let text = pb.body.as_str().expect("binary body");
    assert!(text.contains("io.k8s.api.apps.v1.DeploymentSpec"));
    assert!(text.contains("x-kubernetes-patch-merge-key"));
    let refused = api
        .call_with("GET", "/openapi/v2", &[("accept", "text/html")], "")
        .await;
    assert_eq!(refused.code, 406, "{}", refused.body);
}

on_both_backends!(
    openapi_documents,
    openapi_documents_on_cairn_store,
    openapi_documents_on_etcd
);

async fn kubectl_explain(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());

    eprintln!("-- kubectl explain pods");
    let out = k.ok(&["explain", "pods"]).await;
    for line in [
        "KIND:       Pod",
        "VERSION:    v1",
        "Pod is a collection of containers that can run on a host.",
        "  apiVersion\t<string>",
        "  metadata\t<ObjectMeta>",
        "  spec\t<PodSpec>",
        "  status\t<PodStatus>",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    eprintln!("-- kubectl explain deployment.spec.template.spec.containers");
    let out = k
        .ok(&["explain", "deployment.spec.template.spec.containers"])
        .await;
    for line in [
        "GROUP:      apps",
        "KIND:       Deployment",
        "FIELD: containers <[]Container>",
        "List of containers belonging to the pod.",
        "  image\t<string>",
        "  name\t<string> -required-",
        "  ports\t<[]ContainerPort>",
        "  resources\t<ResourceRequirements>",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }

    eprintln!("-- kubectl explain pods --recursive walks every field");
    let out = k.ok(&["explain", "pods", "--recursive"]).await;
    for line in [
        "    labels\t<map[string]string>",
        "    containers\t<[]Container> -required-",
        "      livenessProbe\t<Probe>",
        "        httpGet\t<HTTPGetAction>",
        "          port\t<IntOrString> -required-",
        "    conditions\t<[]PodCondition>",
    ] {
        assert!(out.contains(line), "missing {line:?} in {out}");
    }
    assert!(out.lines().count() > 1000, "{} lines", out.lines().count());

    eprintln!("-- every served kind is explained, under its group and version");
    for (resource, version) in [
        ("namespaces", "v1"),
        ("nodes", "v1"),
        ("services", "v1"),
        ("configmaps", "v1"),
        ("secrets", "v1"),
        ("serviceaccounts", "v1"),
        ("events", "v1"),
        ("endpoints", "v1"),
        ("persistentvolumes", "v1"),
        ("persistentvolumeclaims", "v1"),
        ("replicationcontrollers", "v1"),
        ("resourcequotas", "v1"),
        ("limitranges", "v1"),
        ("replicasets.apps", "apps/v1"),
        ("statefulsets.apps", "apps/v1"),
        ("daemonsets.apps", "apps/v1"),
        ("controllerrevisions.apps", "apps/v1"),
        ("jobs.batch", "batch/v1"),
        ("cronjobs.batch", "batch/v1"),
        ("leases.coordination.k8s.io", "coordination.k8s.io/v1"),
        ("poddisruptionbudgets.policy", "policy/v1"),
        (
            "roles.rbac.authorization.k8s.io",
            "rbac.authorization.k8s.io/v1",
        ),
        (
            "rolebindings.rbac.authorization.k8s.io",
            "rbac.authorization.k8s.io/v1",
        ),
        (
            "clusterroles.rbac.authorization.k8s.io",
            "rbac.authorization.k8s.io/v1",
        ),
        (
            "clusterrolebindings.rbac.authorization.k8s.io",
            "rbac.authorization.k8s.io/v1",
        ),
        ("priorityclasses.scheduling.k8s.io", "scheduling.k8s.io/v1"),
    ] {
        let out = k.ok(&["explain", resource]).await;
        let (group, v) = version.rsplit_once('/').unwrap_or(("", version));
        assert!(
            out.contains(&format!("VERSION:    {v}")),
            "{resource}: {out}"
        );
        if !group.is_empty() {
            assert!(
                out.contains(&format!("GROUP:      {group}")),
                "{resource}: {out}"
            );
        }
        assert!(
            out.contains("  metadata\t<ObjectMeta>"),
            "{resource}: {out}"
        );
    }

    eprintln!("-- kubectl explain of other groups' kinds and of a missing field");
    let out = k.ok(&["explain", "cronjob.spec.schedule"]).await;
    assert!(out.contains("FIELD: schedule <string>"), "{out}");
    let out = k.ok(&["explain", "hpa.spec.metrics"]).await;
    assert!(out.contains("VERSION:    v2"), "{out}");
    let missing = k.run(&["explain", "pods.spec.nope"]).await;
    assert!(!missing.ok);
    assert!(
        missing.stderr.contains("field \"nope\" does not exist"),
        "{}",
        missing.stderr
    );
}

on_both_backends!(
    kubectl_explain,
    kubectl_explain_on_cairn_store,
    kubectl_explain_on_etcd
);

const TYPO: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: typo
  namespace: default
spec:
  replica: 2
  selector:
    matchLabels: {app: typo}
  template:
    metadata:
      labels: {app: typo}
    spec:
      containers:
      - name: web
        image: nginx
        imagePullPolicyy: Always
"#;

async fn kubectl_field_validation(c: &Cluster) {
    if !have("kubectl", "CAIRN_REQUIRE_KUBECTL") {
        return;
    }
    let k = Kubectl::new(&c.api.url());
    std::fs::write(k.path("typo.yaml"), TYPO).unwrap();
    let file = k.path("typo.yaml");
    let file = file.to_str().unwrap();
    let strict = "Error from server (BadRequest): error when creating \"PATH\": Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
        .replace("PATH", file);

    eprintln!("-- kubectl apply with default validation: Kubernetes' strict decoding error");
    let out = k.run(&["apply", "-f", file]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains(&strict), "{}", out.stderr);
    let out = k.run(&["create", "-f", file]).await;
    assert!(!out.ok);
    assert!(out.stderr.contains(&strict), "{}", out.stderr);
    let gone = k.run(&["get", "deploy", "typo"]).await;
    assert!(!gone.ok, "nothing was created");

    eprintln!("-- --validate=warn prints the warnings and creates");
    let out = k.run(&["create", "-f", file, "--validate=warn"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(
        out.stdout.contains("deployment.apps/typo created"),
        "{}",
        out.stdout
    );
    for w in [
        "Warning: unknown field \"spec.replica\"",
        "Warning: unknown field \"spec.template.spec.containers[0].imagePullPolicyy\"",
    ] {
        assert!(out.stderr.contains(w), "missing {w:?} in {}", out.stderr);
    }
    let stored: Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "typo", "-o", "json"]).await).unwrap();
    assert!(stored["spec"].get("replica").is_none(), "{stored}");
    assert_eq!(stored["spec"]["replicas"], 1);
    k.ok(&["delete", "deploy", "typo"]).await;

    eprintln!("-- --validate=false creates silently, the unknown fields dropped");
    let out = k.run(&["apply", "-f", file, "--validate=false"]).await;
    assert!(out.ok, "{}", out.stderr);
    assert!(!out.stderr.contains("Warning"), "{}", out.stderr);
    let stored: Value =
        serde_json::from_str(&k.ok(&["get", "deploy", "typo", "-o", "json"]).await).unwrap();
    let container = &stored["spec"]["template"]["spec"]["containers"][0];
    assert!(container.get("imagePullPolicyy").is_none(), "{container}");
    assert_eq!(
        container["imagePullPolicy"], "Always",
        "defaulted, not the typo"
    );

    eprintln!("-- apply of a typo onto an existing object: the patch's 422");
    let out = k.run(&["apply", "-f", file]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains("The request is invalid: patch: Invalid value: \"map[")
            && out.stderr.contains(
                "strict decoding error: unknown field \"spec.replica\", unknown field \"spec.template.spec.containers[0].imagePullPolicyy\""
            ),
        "{}",
        out.stderr
    );

    eprintln!("-- a kind: List file falls back to client-side validation with /openapi/v2");
    std::fs::write(
        k.path("list.yaml"),
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: listed}\n  dataa: {a: b}\n",
    )
    .unwrap();
    let list = k.path("list.yaml");
    let out = k.run(&["create", "-f", list.to_str().unwrap()]).await;
    assert!(!out.ok);
    assert!(
        out.stderr.contains(
            "error validating data: ValidationError(ConfigMap): unknown field \"dataa\" in io.k8s.api.core.v1.ConfigMap"
        ),
        "{}",
        out.stderr
    );
    let out = k
        .run(&["create", "-f", list.to_str().unwrap(), "--validate=false"])
        .await;
    assert!(out.ok, "{}", out.stderr);
    let stored: Value =
        serde_json::from_str(&k.ok(&["get", "cm", "listed", "-o", "json"]).await).unwrap();
    assert!(stored.get("dataa").is_none(), "{stored}");
}

on_both_backends!(
    kubectl_field_validation,
    kubectl_field_validation_on_cairn_store,
    kubectl_field_validation_on_etcd
);

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"example.com/any-key": "v", "x": "y"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{
                    "name": "web", "image": "nginx",
                    "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": 0.25}},
                    "ports": [{"containerPort": 80, "protocol": "TCP"}],
                    "readinessProbe": {"httpGet": {"port": "http", "path": "/"}},
                }]},
            },
        },
    })
}

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

async fn field_validation_over_http(c: &Cluster) {
    let api = &c.api;

    eprintln!("-- valid objects pass every directive without findings: maps of any key, int-or-string, quantities");
    for (i, mode) in ["Strict", "Warn", "Ignore"].iter().enumerate() {
        let name = format!("clean-{i}");
        let r = api
            .post(
                &format!("{DEPLOYMENTS}?fieldValidation={mode}"),
                &deployment(&name),
            )
            .await;
        assert_eq!(r.code, 201, "{mode}: {}", r.body);
        assert!(r.header_values("warning").is_empty(), "{mode}");
        assert_eq!(r.body["metadata"]["labels"]["example.com/any-key"], "v");
        let c0 = &r.body["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c0["resources"]["requests"]["cpu"], 0.25);
        assert_eq!(c0["readinessProbe"]["httpGet"]["port"], "http");
        assert_eq!(
            r.body["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
            1
        );
    }

    let mut bad = deployment("bad");
    bad["spec"]["replica"] = json!(3);
    bad["metadata"]["labelz"] = json!({"a": "b"});
    bad["spec"]["template"]["spec"]["containers"][0]["ports"][0]["hostPot"] = json!(8080);
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limitz"] = json!({});
    let findings = [
        "unknown field \"metadata.labelz\"",
        "unknown field \"spec.replica\"",
        "unknown field \"spec.template.spec.containers[0].ports[0].hostPot\"",
        "unknown field \"spec.template.spec.containers[0].resources.limitz\"",
    ];

    eprintln!("-- Strict: 400 naming every unknown field, nested and inside lists of objects");
    let r = api
        .post(&format!("{DEPLOYMENTS}?fieldValidation=Strict"), &bad)
        .await;
    assert_eq!(r.code, 400, "{}", r.body);
    assert_eq!(r.body["reason"], "BadRequest");
    assert_eq!(
        r.body["message"],
        format!(
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: {}",
            findings.join(", ")
        )
    );
    assert_eq!(api.get(&format!("{DEPLOYMENTS}/bad")).await.code, 404);

    eprintln!(
        "-- Warn (also the default): created, one Warning header per field, nothing unknown stored"
    );
    for (name, query) in [("warned", "?fieldValidation=Warn"), ("defaulted", "")] {
        let mut obj = bad.clone();
        obj["metadata"]["name"] = json!(name);
        let r = api.post(&format!("{DEPLOYMENTS}{query}"), &obj).await;
        assert_eq!(r.code, 201, "{}", r.body);
        let expected: Vec<String> = findings
            .iter()
            .map(|f| format!("299 - \"{}\"", f.replace('"', "\\\"")))
            .collect();
        assert_eq!(r.header_values("warning"), expected);
        let stored = api.get(&format!("{DEPLOYMENTS}/{name}")).await.body;
        assert!(stored["spec"].get("replica").is_none(), "{stored}");
        assert!(stored["metadata"].get("labelz").is_none(), "{stored}");
        assert_eq!(
            stored["spec"]["template"]["spec"]["containers"][0]["ports"][0],
            json!({"containerPort": 80, "protocol": "TCP"})
        );
    }

    eprintln!("-- Ignore: created silently, unknown fields dropped all the same");
    let mut obj = bad.clone();
    obj["metadata"]["name"] = json!("ignored");
    let r = api
        .post(&format!("{DEPLOYMENTS}?fieldValidation=Ignore"), &obj)
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert!(r.header_values("warning").is_empty());
    assert!(r.body["spec"].get("replica").is_none());

    eprintln!("-- duplicate fields: the last one wins, Strict refuses");
    let dup = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"},"data":{"a":"1"},"data":{"b":"2"}}"#;
    let cms = "/api/v1/namespaces/default/configmaps";
    let r = api
        .call(
            "POST",
            &format!("{cms}?fieldValidation=Strict"),
            "application/json",
            dup,
        )
        .await;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"data\""
    );
    let r = api.call("POST", cms, "application/json", dup).await;
    assert_eq!(r.code, 201);
    assert_eq!(
        r.header_values("warning"),
        ["299 - \"duplicate field \\\"data\\\"\""]
    );
    assert_eq!(r.body["data"], json!({"b": "2"}));

    eprintln!("-- RawExtension keeps what it holds");
    let rev = json!({"apiVersion": "apps/v1", "kind": "ControllerRevision", "metadata": {"name": "rev"},
        "revision": 1, "data": {"spec": {"template": {"anything": [1, {"goes": true}]}}}});
    let r = api
        .post(
            "/apis/apps/v1/namespaces/default/controllerrevisions?fieldValidation=Strict",
            &rev,
        )
        .await;
    assert_eq!(r.code, 201, "{}", r.body);
    assert_eq!(r.body["data"], rev["data"]);

    eprintln!("-- update (PUT): the same rules");
    let mut current = api.get(&format!("{DEPLOYMENTS}/clean-0")).await.body;
    current["spec"]["paused"] = json!(true);
    current["spec"]["pausd"] = json!(true);
    let r = api
        .put(
            &format!("{DEPLOYMENTS}/clean-0?fieldValidation=Strict"),
            &current,
        )
        .await;
    assert_eq!(r.code, 400);
    assert_eq!(
        r.body["message"],
        "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.pausd\""
    );
    let r = api.put(&format!("{DEPLOYMENTS}/clean-0"), &current).await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.header_values("warning"),
        ["299 - \"unknown field \\\"spec.pausd\\\"\""]
    );
    assert_eq!(r.body["spec"]["paused"], true);
    assert!(r.body["spec"].get("pausd").is_none());

    eprintln!("-- patches: Strict is a 422 on `patch`, Warn warns, the result is pruned");
    let item = format!("{DEPLOYMENTS}/clean-1");
    let r = api
        .patch(
            &format!("{item}?fieldValidation=Strict"),
            "application/strategic-merge-patch+json",
            &json!({"spec": {"replica": 3}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    assert_eq!(
        r.body["message"],
        " \"\" is invalid: patch: Invalid value: \"map[spec:map[replica:3]]\": strict decoding error: unknown field \"spec.replica\""
    );
    assert_eq!(r.body["details"]["causes"][0]["field"], "patch");
    let r = api
        .patch(
            &format!("{item}?fieldValidation=Strict"),
            "application/merge-patch+json",
            &json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x", "imagee": "y"}]}}}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let msg = r.body["message"].as_str().unwrap();
    assert!(
        msg.starts_with(" \"\" is invalid: patch: Invalid value: \"{")
            && msg.ends_with(
                "strict decoding error: unknown field \"spec.template.spec.containers[0].imagee\""
            ),
        "{msg}"
    );
    let r = api
        .patch(
            &format!("{item}?fieldValidation=Strict"),
            "application/json-patch+json",
            &json!([{"op": "add", "path": "/spec/extra", "value": 1}]),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);
    let r = api
        .patch(
            &item,
            "application/strategic-merge-patch+json",
            &json!({"spec": {"replicas": 2, "replica": 3}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert_eq!(
        r.header_values("warning"),
        ["299 - \"unknown field \\\"spec.replica\\\"\""]
    );
    assert_eq!(r.body["spec"]["replicas"], 2);
    assert!(r.body["spec"].get("replica").is_none());
    let r = api
        .patch(
            &format!("{item}?fieldValidation=Ignore"),
            "application/merge-patch+json",
            &json!({"metadata": {"labels": {"new/key": "v"}, "bogus": 1}}),
        )
        .await;
    assert_eq!(r.code, 200, "{}", r.body);
    assert!(r.header_values("warning").is_empty());
    assert_eq!(r.body["metadata"]["labels"]["new/key"], "v");
    assert!(r.body["metadata"].get("bogus").is_none());
    let stored = api.get(&item).await.body;
    assert!(stored["metadata"].get("bogus").is_none(), "{stored}");

    eprintln!("-- the scale subresource validates its autoscaling/v1 Scale");
    let r = api
        .patch(
            &format!("{item}/scale?fieldValidation=Strict"),
            "application/merge-patch+json",
            &json!({"spec": {"replicaz": 4}}),
        )
        .await;
    assert_eq!(r.code, 422, "{}", r.body);

    eprintln!("-- a bad fieldValidation value is refused as Kubernetes refuses it");
    let r = api
        .post(
            &format!("{DEPLOYMENTS}?fieldValidation=Loud"),
            &deployment("loud"),
        )
        .await;
    assert_eq!(r.code, 422);
    assert_eq!(
        r.body["message"],
        "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"Loud\": supported values: \"Ignore\", \"Strict\", \"Warn\""
    );
}

on_both_backends!(
    field_validation_over_http,
    field_validation_over_http_on_cairn_store,
    field_validation_over_http_on_etcd
);
